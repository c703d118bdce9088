//! The coordinator's metadata: public facts about every key. No share ever enters it; losing
//! it loses no key (every node holds the public key package of its keys).

use std::path::Path;

use permafrost_wire::Curve;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::CoordinatorError;

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");

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
        tx.commit().map_err(storage)?;
        Ok(MetadataStore { db })
    }

    /// Stores a key (durably, before the API answers).
    pub fn put(&self, meta: &KeyMeta) -> Result<(), CoordinatorError> {
        let value = serde_json::to_vec(meta).map_err(storage)?;
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut table = tx.open_table(KEYS).map_err(storage)?;
            table
                .insert(meta.key_id.as_str(), value.as_slice())
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)
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
