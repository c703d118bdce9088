//! The coordinator's metadata in redb: public facts about every key and the outcome of every
//! reshare ([`permafrost_engine::coordinator::MetadataStore`]). No share ever enters it;
//! losing it loses no key (every node holds the public key package of its keys).

use std::path::Path;
use std::sync::Arc;

use permafrost_engine::coordinator::{
    KeyMeta, MetadataError, MetadataStore, ReshareEntry, RotationPolicy,
};
use permafrost_wire::{KeyId, SessionId};
use redb::{Database, ReadableTable, TableDefinition};

use crate::CoordinatorError;

/// Keys by key id: [`KeyMeta`] as JSON.
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys/v2");
/// Reshares by session id: [`ReshareEntry`] as JSON (running, committed with the certificate,
/// or aborted).
const RESHARES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("reshares/v2");
/// Rotation policies by key id: [`RotationPolicy`] as JSON.
const ROTATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("rotations/v1");

/// The metadata database; clones share it (the engine writes, the HTTP API reads).
#[derive(Clone)]
pub struct MetadataDb {
    db: Arc<Database>,
}

fn storage(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Storage(e.to_string())
}

fn unreadable(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Unreadable(e.to_string())
}

impl MetadataDb {
    /// Opens or creates the database.
    pub fn open(path: &Path) -> Result<Self, CoordinatorError> {
        let opened = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(storage)?;
            }
            let db = Database::create(path).map_err(storage)?;
            let tx = db.begin_write().map_err(storage)?;
            tx.open_table(KEYS).map_err(storage)?;
            tx.open_table(RESHARES).map_err(storage)?;
            tx.open_table(ROTATIONS).map_err(storage)?;
            migrate_v1(&tx)?;
            tx.commit().map_err(storage)?;
            Ok::<_, MetadataError>(db)
        })();
        opened
            .map(|db| MetadataDb { db: Arc::new(db) })
            .map_err(|e| CoordinatorError::Storage(e.to_string()))
    }

    fn write(
        &self,
        meta: Option<&KeyMeta>,
        entry: Option<&ReshareEntry>,
    ) -> Result<(), MetadataError> {
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
                .insert(entry.session.0.as_slice(), value.as_slice())
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }
}

/// The first format's tables: hex strings and PeerId strings, re-parsed on every read.
const KEYS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const RESHARES_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("reshares");

/// A key as the first format stored it.
#[derive(serde::Deserialize)]
struct KeyMetaV1 {
    key_id: String,
    curve: permafrost_wire::Curve,
    threshold: u16,
    nodes: Vec<String>,
    peers: Vec<String>,
    public_key: String,
    public_key_package: String,
    epoch: u64,
}

/// A reshare as the first format stored it (`outcome`: the commit or abort frame, hex).
#[derive(serde::Deserialize)]
struct ReshareEntryV1 {
    session: String,
    key_id: String,
    epoch: u64,
    attempt: u32,
    state: String,
    outcome: String,
}

/// Moves the records of the first format into the typed tables, in the same transaction that
/// opens the database, and empties the old tables: a coordinator upgraded in place keeps every
/// key it knew and every reshare outcome it can be asked for. A record that does not convert
/// stops the open, naming it (nothing is changed then).
fn migrate_v1(tx: &redb::WriteTransaction) -> Result<(), MetadataError> {
    use permafrost_engine::coordinator::ReshareState;
    use permafrost_wire::{decode, Epoch, Message};
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        MetadataError::Unreadable(format!("migrating {what} from the first format: {e}"))
    };
    let mut keys = Vec::new();
    let mut reshares = Vec::new();
    let first_format = tx
        .list_tables()
        .map_err(storage)?
        .any(|t| redb::TableHandle::name(&t) == "keys");
    if !first_format {
        return Ok(());
    }
    {
        let old = tx.open_table(KEYS_V1).map_err(storage)?;
        for row in old.iter().map_err(storage)? {
            let (_, v) = row.map_err(storage)?;
            let k: KeyMetaV1 = serde_json::from_slice(v.value()).map_err(|e| bad("a key", &e))?;
            let what = format!("key {}", k.key_id);
            let committee = k
                .peers
                .iter()
                .map(|p| {
                    p.parse::<permafrost_net::PeerId>()
                        .map_err(|e| bad(&what, &e))
                        .and_then(|p| {
                            permafrost_runtime::identity::node_id(&p).map_err(|e| bad(&what, &e))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            keys.push(KeyMeta {
                key_id: KeyId::new(k.key_id.clone()).map_err(|e| bad(&what, &e))?,
                curve: k.curve,
                threshold: k.threshold,
                committee,
                nodes: k.nodes,
                public_key: hex::decode(&k.public_key).map_err(|e| bad(&what, &e))?,
                public_key_package: hex::decode(&k.public_key_package)
                    .map_err(|e| bad(&what, &e))?,
                epoch: Epoch(k.epoch),
            });
        }
        let old = tx.open_table(RESHARES_V1).map_err(storage)?;
        for row in old.iter().map_err(storage)? {
            let (_, v) = row.map_err(storage)?;
            let r: ReshareEntryV1 =
                serde_json::from_slice(v.value()).map_err(|e| bad("a reshare", &e))?;
            let what = format!("reshare {}", r.session);
            let session = hex::decode(&r.session)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(SessionId)
                .ok_or_else(|| bad(&what, &"the session id is not 32 bytes of hex"))?;
            let outcome = hex::decode(&r.outcome).ok().map(|f| decode(&f));
            let state = match (r.state.as_str(), outcome) {
                // The open records it aborted.
                ("running", _) => ReshareState::Running,
                ("committed", Some(Ok(Message::ReshareCommit(commit)))) => {
                    ReshareState::Committed(commit)
                }
                ("aborted", Some(Ok(Message::ReshareAbort(abort)))) => ReshareState::Aborted(abort),
                (state, _) => {
                    return Err(bad(
                        &what,
                        &format!("state {state:?} without a recorded outcome that decodes"),
                    ))
                }
            };
            reshares.push(ReshareEntry {
                session,
                key_id: KeyId::new(r.key_id.clone()).map_err(|e| bad(&what, &e))?,
                epoch: Epoch(r.epoch),
                attempt: r.attempt,
                state,
            });
        }
    }
    {
        let mut table = tx.open_table(KEYS).map_err(storage)?;
        for meta in &keys {
            let value = serde_json::to_vec(meta).map_err(storage)?;
            table
                .insert(meta.key_id.as_str(), value.as_slice())
                .map_err(storage)?;
        }
        let mut table = tx.open_table(RESHARES).map_err(storage)?;
        for entry in &reshares {
            let value = serde_json::to_vec(entry).map_err(storage)?;
            table
                .insert(entry.session.0.as_slice(), value.as_slice())
                .map_err(storage)?;
        }
    }
    tx.delete_table(KEYS_V1).map_err(storage)?;
    tx.delete_table(RESHARES_V1).map_err(storage)?;
    tracing::warn!(
        keys = keys.len(),
        reshares = reshares.len(),
        "coordinator metadata migrated from the first format"
    );
    Ok(())
}

impl MetadataStore for MetadataDb {
    fn key(&self, key_id: &KeyId) -> Result<Option<KeyMeta>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(KEYS).map_err(storage)?;
        match table.get(key_id.as_str()).map_err(storage)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(unreadable),
            None => Ok(None),
        }
    }

    fn keys(&self) -> Result<Vec<KeyMeta>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(KEYS).map_err(storage)?;
        let mut keys = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            keys.push(serde_json::from_slice(v.value()).map_err(unreadable)?);
        }
        Ok(keys)
    }

    fn put_key(&mut self, meta: &KeyMeta) -> Result<(), MetadataError> {
        self.write(Some(meta), None)
    }

    fn reshare(&self, session: &SessionId) -> Result<Option<ReshareEntry>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(RESHARES).map_err(storage)?;
        match table.get(session.0.as_slice()).map_err(storage)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(unreadable),
            None => Ok(None),
        }
    }

    fn reshares(&self) -> Result<Vec<ReshareEntry>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(RESHARES).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            out.push(serde_json::from_slice(v.value()).map_err(unreadable)?);
        }
        Ok(out)
    }

    fn put_reshare(&mut self, entry: &ReshareEntry) -> Result<(), MetadataError> {
        self.write(None, Some(entry))
    }

    fn commit_reshare(
        &mut self,
        meta: &KeyMeta,
        entry: &ReshareEntry,
    ) -> Result<(), MetadataError> {
        self.write(Some(meta), Some(entry))
    }

    fn rotations(&self) -> Result<Vec<RotationPolicy>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(ROTATIONS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (_, v) = entry.map_err(storage)?;
            out.push(serde_json::from_slice(v.value()).map_err(unreadable)?);
        }
        Ok(out)
    }

    fn put_rotation(&mut self, policy: &RotationPolicy) -> Result<(), MetadataError> {
        let value = serde_json::to_vec(policy).map_err(storage)?;
        let tx = self.db.begin_write().map_err(storage)?;
        tx.open_table(ROTATIONS)
            .map_err(storage)?
            .insert(policy.key_id.as_str(), value.as_slice())
            .map_err(storage)?;
        tx.commit().map_err(storage)
    }

    fn delete_rotation(&mut self, key_id: &KeyId) -> Result<bool, MetadataError> {
        let tx = self.db.begin_write().map_err(storage)?;
        let removed = tx
            .open_table(ROTATIONS)
            .map_err(storage)?
            .remove(key_id.as_str())
            .map_err(storage)?
            .is_some();
        tx.commit().map_err(storage)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use permafrost_engine::coordinator::ReshareState;

    #[test]
    fn a_first_format_database_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.redb");
        let peer = permafrost_net::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            let key = serde_json::json!({
                "key_id": "k-1", "curve": "Secp256k1", "threshold": 2,
                "nodes": ["node1"], "peers": [peer.to_string()],
                "public_key": "02aa", "public_key_package": "00ff", "epoch": 3
            });
            tx.open_table(KEYS_V1)
                .unwrap()
                .insert("k-1", serde_json::to_vec(&key).unwrap().as_slice())
                .unwrap();
            let running = serde_json::json!({
                "session": hex::encode([5u8; 32]), "key_id": "k-1", "epoch": 3,
                "attempt": 1, "state": "running", "outcome": ""
            });
            tx.open_table(RESHARES_V1)
                .unwrap()
                .insert("05", serde_json::to_vec(&running).unwrap().as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let db = MetadataDb::open(&path).unwrap();
        let meta = db.key(&KeyId::new("k-1").unwrap()).unwrap().unwrap();
        assert_eq!(
            meta.committee,
            vec![permafrost_runtime::identity::node_id(&peer).unwrap()]
        );
        assert_eq!(
            (meta.epoch, meta.public_key.clone()),
            (permafrost_wire::Epoch(3), vec![0x02, 0xaa])
        );
        let entry = db.reshare(&SessionId([5; 32])).unwrap().unwrap();
        assert_eq!((entry.attempt, entry.state), (1, ReshareState::Running));
        drop(db);
        // Opened again: nothing left to migrate, nothing lost.
        let db = MetadataDb::open(&path).unwrap();
        assert_eq!(db.keys().unwrap().len(), 1);
        assert_eq!(db.reshares().unwrap().len(), 1);
    }
}
