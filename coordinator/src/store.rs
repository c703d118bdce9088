//! The coordinator's metadata: public facts about every key. No share ever enters it; losing
//! it loses no key (every node holds the public key package of its keys).

use std::path::Path;

use permafrost_wire::Curve;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::CoordinatorError;

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// Reshares by session id (hex): running, committed (with the certificate) or aborted.
const RESHARES: TableDefinition<&str, &[u8]> = TableDefinition::new("reshares");

/// What the coordinator knows of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// The key id.
    pub key_id: String,
    /// Its curve.
    pub curve: Curve,
    /// Signers needed.
    pub threshold: u16,
    /// The committee's node names, sorted by PeerId (the protocol's committee order).
    pub nodes: Vec<String>,
    /// The committee's PeerIds, same order.
    pub peers: Vec<String>,
    /// `VerifyingKey::serialize()`, hex.
    pub public_key: String,
    /// `PublicKeyPackage::serialize()`, hex.
    pub public_key_package: String,
    /// The current epoch.
    pub epoch: u64,
}

/// Where a reshare stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReshareState {
    /// Opened, not concluded. A coordinator that restarts finds it so and records it aborted:
    /// a commit is only ever sent after the reshare is recorded committed.
    Running,
    /// Committed: `outcome` is the `ReshareCommit` frame (the certificate).
    Committed,
    /// Aborted: `outcome` is the `ReshareAbort` frame.
    Aborted,
}

/// What the coordinator records of a reshare: enough to answer a member that asks what
/// became of it (`ReshareStatus`) after any crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareEntry {
    /// The session id, hex.
    pub session: String,
    /// The key.
    pub key_id: String,
    /// The epoch reshared.
    pub epoch: u64,
    /// The attempt number within that epoch.
    pub attempt: u32,
    /// Where it stands.
    pub state: ReshareState,
    /// The wire frame of the commit or abort, hex (empty while running).
    pub outcome: String,
}

/// The metadata database.
pub struct MetadataStore {
    db: Database,
}

fn storage(e: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Storage(e.to_string())
}

impl MetadataStore {
    /// Opens or creates the database.
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(storage)?;
        }
        let db = Database::create(path).map_err(storage)?;
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(KEYS).map_err(storage)?;
        tx.open_table(RESHARES).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(MetadataStore { db })
    }

    /// Records a reshare (durably).
    pub fn put_reshare(&self, entry: &ReshareEntry) -> Result<(), CoordinatorError> {
        self.write(None, Some(entry))
    }

    /// Records a committed reshare and the key's new epoch in one transaction.
    pub fn commit_reshare(
        &self,
        meta: &KeyMeta,
        entry: &ReshareEntry,
    ) -> Result<(), CoordinatorError> {
        self.write(Some(meta), Some(entry))
    }

    fn write(
        &self,
        meta: Option<&KeyMeta>,
        entry: Option<&ReshareEntry>,
    ) -> Result<(), CoordinatorError> {
        let tx = self.db.begin_write().map_err(storage)?;
        if let Some(meta) = meta {
            let value = serde_json::to_vec(meta).map_err(storage)?;
            tx.open_table(KEYS)
                .map_err(storage)?
                .insert(meta.key_id.as_str(), value.as_slice())
                .map_err(storage)?;
        }
        if let Some(entry) = entry {
            let value = serde_json::to_vec(entry).map_err(storage)?;
            tx.open_table(RESHARES)
                .map_err(storage)?
                .insert(entry.session.as_str(), value.as_slice())
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    /// One reshare, by session id (hex).
    pub fn reshare(&self, session: &str) -> Result<Option<ReshareEntry>, CoordinatorError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(RESHARES).map_err(storage)?;
        match table.get(session).map_err(storage)? {
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(storage),
            None => Ok(None),
        }
    }

    /// Every reshare recorded.
    pub fn reshares(&self) -> Result<Vec<ReshareEntry>, CoordinatorError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(RESHARES).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            out.push(serde_json::from_slice(v.value()).map_err(storage)?);
        }
        Ok(out)
    }

    /// The next attempt number for a reshare of `key_id` at `epoch`.
    pub fn next_attempt(&self, key_id: &str, epoch: u64) -> Result<u32, CoordinatorError> {
        let attempts = self
            .reshares()?
            .iter()
            .filter(|r| r.key_id == key_id && r.epoch == epoch)
            .map(|r| r.attempt + 1)
            .max();
        Ok(attempts.unwrap_or(0))
    }

    /// Stores a key (durably, before the API answers).
    pub fn put(&self, meta: &KeyMeta) -> Result<(), CoordinatorError> {
        self.write(Some(meta), None)
    }

    /// One key.
    pub fn get(&self, key_id: &str) -> Result<Option<KeyMeta>, CoordinatorError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(KEYS).map_err(storage)?;
        match table.get(key_id).map_err(storage)? {
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(storage),
            None => Ok(None),
        }
    }

    /// Every key, sorted by id.
    pub fn list(&self) -> Result<Vec<KeyMeta>, CoordinatorError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(KEYS).map_err(storage)?;
        let mut keys = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            keys.push(serde_json::from_slice(v.value()).map_err(storage)?);
        }
        Ok(keys)
    }
}
