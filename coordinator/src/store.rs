//! The coordinator's metadata in redb: public facts about every key and the outcome of every
//! reshare ([`permafrost_engine::coordinator::MetadataStore`]). No share ever enters it;
//! losing it loses no key (every node holds the public key package of its keys).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use permafrost_engine::coordinator::{
    KeyMeta, MetadataError, MetadataStore, ReshareEntry, ReshareState, RotationPolicy,
};
use permafrost_wire::{Epoch, KeyId, SessionId};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use crate::CoordinatorError;

/// Keys by key id: [`KeyMeta`] as JSON.
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys/v2");
/// Reshares by session id: [`ReshareEntry`] as JSON (running, committed with the certificate,
/// or aborted).
const RESHARES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("reshares/v2");
/// One past the highest reshare attempt recorded, by (key id, epoch): a proposal reads one
/// row, not every reshare ever recorded (`RESHARES` keeps them all, with their certificates).
const RESHARE_ATTEMPTS: TableDefinition<(&str, u64), u32> =
    TableDefinition::new("reshare_attempts/v1");
/// The session ids of the reshares recorded as running: a restarted coordinator aborts these
/// without reading the concluded ones.
const RUNNING_RESHARES: TableDefinition<&[u8], ()> = TableDefinition::new("running_reshares/v1");
/// How many rows of `RESHARES` the two indexes cover, under [`INDEXED_ROWS`]. A build that
/// does not keep the indexes only adds reshares (or concludes running ones, which
/// `running_reshares` filters out): a count that differs at open means the indexes are behind,
/// and they are rebuilt.
const RESHARE_INDEX_STATE: TableDefinition<&str, u64> = TableDefinition::new("reshare_indexes/v1");
const INDEXED_ROWS: &str = "indexed rows";
/// Rotation policies by key id: [`RotationPolicy`] as JSON.
const ROTATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("rotations/v1");

/// Most key records [`KeyCache`] holds (about 1.5 KB each for a committee of five): when it is
/// full, it starts again empty.
const KEY_CACHE_LEN: usize = 1024;

/// The database's page cache, as the nodes bound their keystore's. redb's default is 1 GiB and
/// its cache grows with the pages the coordinator touches, so with enough keys the process's
/// memory would grow with the file; the working set (the keys being signed with, the running
/// reshares) is far smaller, and key records read often are kept parsed above. (It is not what
/// the coordinator's memory grows with today: 48 MiB after 3,100 keys, with or without it.)
pub const METADATA_CACHE_BYTES: usize = 16 << 20;

/// The metadata database; clones share it (the engine writes, the HTTP API reads).
#[derive(Clone)]
pub struct MetadataDb {
    db: Arc<Database>,
    keys: Arc<Mutex<KeyCache>>,
}

/// Key records read recently, by key id: every sign request reads its key's record, and
/// without this each read was a read transaction and a JSON parse of the public key package
/// (4 % of a busy coordinator's CPU). A write of a key holds the cache's lock from before its
/// commit until it has dropped the key's entry and counted itself in `writes`; a read that
/// began before that write (and may have read the old record) sees the count changed and does
/// not cache what it read. So no read is served a record older than the database's.
#[derive(Default)]
struct KeyCache {
    records: HashMap<KeyId, KeyMeta>,
    writes: u64,
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
            let db = Database::builder()
                .set_cache_size(METADATA_CACHE_BYTES)
                .create(path)
                .map_err(storage)?;
            let tx = db.begin_write().map_err(storage)?;
            tx.open_table(KEYS).map_err(storage)?;
            tx.open_table(RESHARES).map_err(storage)?;
            tx.open_table(RESHARE_ATTEMPTS).map_err(storage)?;
            tx.open_table(RUNNING_RESHARES).map_err(storage)?;
            tx.open_table(RESHARE_INDEX_STATE).map_err(storage)?;
            tx.open_table(ROTATIONS).map_err(storage)?;
            migrate_v1(&tx)?;
            let rows = tx
                .open_table(RESHARES)
                .map_err(storage)?
                .len()
                .map_err(storage)?;
            if indexed_rows(&tx)? != Some(rows) {
                reindex_reshares(&tx)?;
            }
            tx.commit().map_err(storage)?;
            Ok::<_, MetadataError>(db)
        })();
        opened
            .map(|db| MetadataDb {
                db: Arc::new(db),
                keys: Arc::default(),
            })
            .map_err(|e| CoordinatorError::Storage(e.to_string()))
    }

    fn write(
        &self,
        meta: Option<&KeyMeta>,
        entry: Option<&ReshareEntry>,
    ) -> Result<(), MetadataError> {
        let Some(meta) = meta else {
            return self.commit(None, entry);
        };
        // The cache stays locked from before the commit until the key's entry is dropped: no
        // read is served the old record once the new one is in the database, and a read that
        // began before (and may have read the old one) finds the count moved and does not cache
        // it. Key writes are rare (a DKG or a reshare concluding); a read waits for one at most.
        let mut cache = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let written = self.commit(Some(meta), entry);
        // Whether or not the commit went through: the next read goes to the database.
        cache.writes += 1;
        cache.records.remove(&meta.key_id);
        written
    }

    fn commit(
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
            let added = tx
                .open_table(RESHARES)
                .map_err(storage)?
                .insert(entry.session.0.as_slice(), value.as_slice())
                .map_err(storage)?
                .is_none();
            index_reshare(&tx, entry)?;
            if added {
                let rows = indexed_rows(&tx)?.unwrap_or(0).saturating_add(1);
                set_indexed_rows(&tx, rows)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// The cached record of `key_id`, or the count of key writes to give
    /// [`MetadataDb::cache_key`] once it is read.
    fn cached_key(&self, key_id: &KeyId) -> Result<KeyMeta, u64> {
        let cache = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        cache.records.get(key_id).cloned().ok_or(cache.writes)
    }

    /// `key_id`'s record in the database.
    fn read_key(&self, key_id: &KeyId) -> Result<Option<KeyMeta>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(KEYS).map_err(storage)?;
        match table.get(key_id.as_str()).map_err(storage)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(unreadable),
            None => Ok(None),
        }
    }

    /// Caches `meta`, read after [`MetadataDb::cached_key`] gave `writes`, unless a key was
    /// written since (the record read may be older than the one written).
    fn cache_key(&self, meta: &KeyMeta, writes: u64) {
        let mut cache = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.writes != writes {
            return;
        }
        if cache.records.len() >= KEY_CACHE_LEN {
            cache.records.clear();
        }
        cache.records.insert(meta.key_id.clone(), meta.clone());
    }

    /// Every reshare recorded, running or concluded (a scan of the whole table; the
    /// coordinator's own operations read the indexes).
    #[cfg(test)]
    fn reshares(&self) -> Result<Vec<ReshareEntry>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(RESHARES).map_err(storage)?;
        decode_all(&table)
    }
}

/// Every value of `table`, decoded from JSON, in key order.
fn decode_all<K: redb::Key + 'static, T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
) -> Result<Vec<T>, MetadataError> {
    let mut out = Vec::new();
    for row in table.iter().map_err(storage)? {
        let (_, v) = row.map_err(storage)?;
        out.push(serde_json::from_slice(v.value()).map_err(unreadable)?);
    }
    Ok(out)
}

/// Keeps the two reshare indexes in step with `entry`, in the transaction that writes it.
fn index_reshare(tx: &WriteTransaction, entry: &ReshareEntry) -> Result<(), MetadataError> {
    let mut attempts = tx.open_table(RESHARE_ATTEMPTS).map_err(storage)?;
    let row = (entry.key_id.as_str(), entry.epoch.0);
    let recorded = attempts.get(row).map_err(storage)?.map_or(0, |v| v.value());
    // One past the highest attempt: an entry rewritten (running, then concluded) or an older
    // attempt written late never lowers it.
    let next = recorded.max(entry.attempt.saturating_add(1));
    attempts.insert(row, next).map_err(storage)?;
    let mut running = tx.open_table(RUNNING_RESHARES).map_err(storage)?;
    if entry.state == ReshareState::Running {
        running
            .insert(entry.session.0.as_slice(), ())
            .map_err(storage)?;
    } else {
        running
            .remove(entry.session.0.as_slice())
            .map_err(storage)?;
    }
    Ok(())
}

/// How many rows of `RESHARES` the indexes cover (`None`: never indexed).
fn indexed_rows(tx: &WriteTransaction) -> Result<Option<u64>, MetadataError> {
    Ok(tx
        .open_table(RESHARE_INDEX_STATE)
        .map_err(storage)?
        .get(INDEXED_ROWS)
        .map_err(storage)?
        .map(|v| v.value()))
}

fn set_indexed_rows(tx: &WriteTransaction, rows: u64) -> Result<(), MetadataError> {
    tx.open_table(RESHARE_INDEX_STATE)
        .map_err(storage)?
        .insert(INDEXED_ROWS, rows)
        .map_err(storage)?;
    Ok(())
}

/// Rebuilds both reshare indexes from every reshare recorded: when a database written before
/// they existed is opened, or one a build without them wrote to since (its reshares are not
/// in them).
fn reindex_reshares(tx: &WriteTransaction) -> Result<(), MetadataError> {
    tx.open_table(RESHARE_ATTEMPTS)
        .map_err(storage)?
        .retain(|_, _| false)
        .map_err(storage)?;
    tx.open_table(RUNNING_RESHARES)
        .map_err(storage)?
        .retain(|_, _| false)
        .map_err(storage)?;
    let entries: Vec<ReshareEntry> = decode_all(&tx.open_table(RESHARES).map_err(storage)?)?;
    for entry in &entries {
        index_reshare(tx, entry)?;
    }
    set_indexed_rows(tx, entries.len() as u64)?;
    if !entries.is_empty() {
        tracing::info!(
            reshares = entries.len(),
            "coordinator metadata: reshare indexes rebuilt"
        );
    }
    Ok(())
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
        let writes = match self.cached_key(key_id) {
            Ok(meta) => return Ok(Some(meta)),
            Err(writes) => writes,
        };
        let meta = self.read_key(key_id)?;
        if let Some(meta) = &meta {
            self.cache_key(meta, writes);
        }
        Ok(meta)
    }

    fn keys(&self) -> Result<Vec<KeyMeta>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(KEYS).map_err(storage)?;
        decode_all(&table)
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

    fn next_reshare_attempt(&self, key_id: &KeyId, epoch: Epoch) -> Result<u32, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(RESHARE_ATTEMPTS).map_err(storage)?;
        Ok(table
            .get((key_id.as_str(), epoch.0))
            .map_err(storage)?
            .map_or(0, |v| v.value()))
    }

    fn running_reshares(&self) -> Result<Vec<ReshareEntry>, MetadataError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let running = tx.open_table(RUNNING_RESHARES).map_err(storage)?;
        let reshares = tx.open_table(RESHARES).map_err(storage)?;
        let mut out = Vec::new();
        for row in running.iter().map_err(storage)? {
            let (session, _) = row.map_err(storage)?;
            let entry = reshares
                .get(session.value())
                .map_err(storage)?
                .ok_or_else(|| unreadable("a running reshare's index row names no reshare"))?;
            let entry: ReshareEntry = serde_json::from_slice(entry.value()).map_err(unreadable)?;
            // Concluded by a build that did not keep this index: no longer running.
            if entry.state == ReshareState::Running {
                out.push(entry);
            }
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
        decode_all(&table)
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

    fn entry(session: u8, key: &str, epoch: u64, attempt: u32, running: bool) -> ReshareEntry {
        let session = SessionId([session; 32]);
        ReshareEntry {
            session,
            key_id: KeyId::new(key).unwrap(),
            epoch: Epoch(epoch),
            attempt,
            state: if running {
                ReshareState::Running
            } else {
                ReshareState::Aborted(permafrost_wire::ReshareAbort {
                    session,
                    culprits: Vec::new(),
                    reason: "test".into(),
                })
            },
        }
    }

    fn sessions(entries: Vec<ReshareEntry>) -> Vec<u8> {
        entries.iter().map(|e| e.session.0[0]).collect()
    }

    fn key_meta(key: &str, epoch: u64) -> KeyMeta {
        KeyMeta {
            key_id: KeyId::new(key).unwrap(),
            curve: permafrost_wire::Curve::Secp256k1,
            threshold: 2,
            committee: Vec::new(),
            nodes: vec!["node1".into()],
            public_key: vec![2; 33],
            public_key_package: vec![epoch as u8; 40],
            epoch: Epoch(epoch),
        }
    }

    /// The HTTP API reads keys through one clone, the engine writes through another: every
    /// read after a write sees it, whether the key was cached or not, also across the cache
    /// starting again empty when full.
    #[test]
    fn a_cached_key_is_never_older_than_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = MetadataDb::open(&dir.path().join("coordinator.redb")).unwrap();
        let http = engine.clone();
        let k1 = KeyId::new("k-1").unwrap();
        assert_eq!(http.key(&k1).unwrap(), None);
        engine.put_key(&key_meta("k-1", 1)).unwrap();
        assert_eq!(http.key(&k1).unwrap(), Some(key_meta("k-1", 1)));
        assert_eq!(http.key(&k1).unwrap(), Some(key_meta("k-1", 1)));
        engine.put_key(&key_meta("k-1", 2)).unwrap();
        assert_eq!(http.key(&k1).unwrap(), Some(key_meta("k-1", 2)));
        engine
            .commit_reshare(&key_meta("k-1", 3), &entry(1, "k-1", 2, 0, false))
            .unwrap();
        assert_eq!(http.key(&k1).unwrap(), Some(key_meta("k-1", 3)));
        // More keys than the cache holds, each read twice: every one as written.
        for i in 0..KEY_CACHE_LEN + 10 {
            engine.put_key(&key_meta(&format!("key-{i}"), 4)).unwrap();
        }
        for _ in 0..2 {
            for i in 0..KEY_CACHE_LEN + 10 {
                let id = KeyId::new(format!("key-{i}")).unwrap();
                assert_eq!(
                    http.key(&id).unwrap(),
                    Some(key_meta(&format!("key-{i}"), 4))
                );
            }
        }
        assert!(http.keys.lock().unwrap().records.len() <= KEY_CACHE_LEN);
        engine.put_key(&key_meta("key-3", 5)).unwrap();
        let id = KeyId::new("key-3").unwrap();
        assert_eq!(http.key(&id).unwrap(), Some(key_meta("key-3", 5)));
        // Reopened (the cache starts empty): the same records.
        drop((engine, http));
        let db = MetadataDb::open(&dir.path().join("coordinator.redb")).unwrap();
        assert_eq!(db.key(&k1).unwrap(), Some(key_meta("k-1", 3)));
        assert_eq!(db.key(&id).unwrap(), Some(key_meta("key-3", 5)));
    }

    /// A read that began before a write of its key, and read the older record, does not
    /// cache it: the next read gets the newer one.
    #[test]
    fn a_read_overtaken_by_a_write_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = MetadataDb::open(&dir.path().join("coordinator.redb")).unwrap();
        let k1 = KeyId::new("k-1").unwrap();
        db.put_key(&key_meta("k-1", 1)).unwrap();
        // A read: not cached, then the database's record...
        let writes = db.cached_key(&k1).unwrap_err();
        let old = db.read_key(&k1).unwrap().unwrap();
        // ... overtaken by a write before it caches what it read.
        db.put_key(&key_meta("k-1", 2)).unwrap();
        db.cache_key(&old, writes);
        assert_eq!(db.key(&k1).unwrap(), Some(key_meta("k-1", 2)));
        // Not overtaken: cached.
        let writes = db.cached_key(&KeyId::new("k-2").unwrap()).unwrap_err();
        db.cache_key(&key_meta("k-2", 7), writes);
        assert_eq!(
            db.cached_key(&KeyId::new("k-2").unwrap()),
            Ok(key_meta("k-2", 7))
        );
    }

    #[test]
    fn reshare_indexes_follow_every_write_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.redb");
        let (k1, k2) = (KeyId::new("k-1").unwrap(), KeyId::new("k-2").unwrap());
        let mut db = MetadataDb::open(&path).unwrap();
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(3)).unwrap(), 0);
        db.put_reshare(&entry(1, "k-1", 3, 0, true)).unwrap();
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(3)).unwrap(), 1);
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(4)).unwrap(), 0);
        assert_eq!(db.next_reshare_attempt(&k2, Epoch(3)).unwrap(), 0);
        assert_eq!(sessions(db.running_reshares().unwrap()), vec![1]);
        // Concluded: no longer running, its attempt still counted.
        db.put_reshare(&entry(1, "k-1", 3, 0, false)).unwrap();
        assert!(db.running_reshares().unwrap().is_empty());
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(3)).unwrap(), 1);
        // A later attempt raises it; an earlier one written late does not lower it.
        db.put_reshare(&entry(2, "k-1", 3, 2, true)).unwrap();
        db.put_reshare(&entry(3, "k-1", 3, 1, false)).unwrap();
        db.put_reshare(&entry(4, "k-2", 3, 0, true)).unwrap();
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(3)).unwrap(), 3);
        assert_eq!(db.next_reshare_attempt(&k2, Epoch(3)).unwrap(), 1);
        assert_eq!(sessions(db.running_reshares().unwrap()), vec![2, 4]);
        drop(db);
        let db = MetadataDb::open(&path).unwrap();
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(3)).unwrap(), 3);
        assert_eq!(sessions(db.running_reshares().unwrap()), vec![2, 4]);
        assert_eq!(db.reshares().unwrap().len(), 4);
    }

    #[test]
    fn a_database_without_reshare_indexes_is_indexed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.redb");
        // As a build before the indexes wrote it: the reshares table alone.
        write_without_indexes(
            &path,
            &[entry(7, "k-1", 2, 0, false), entry(8, "k-1", 2, 1, true)],
        );
        let db = MetadataDb::open(&path).unwrap();
        let k1 = KeyId::new("k-1").unwrap();
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(2)).unwrap(), 2);
        assert_eq!(sessions(db.running_reshares().unwrap()), vec![8]);
    }

    /// Writes `entries` into the reshares table alone, as a build without the indexes does.
    fn write_without_indexes(path: &Path, entries: &[ReshareEntry]) {
        let db = Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(RESHARES).unwrap();
            for e in entries {
                let value = serde_json::to_vec(e).unwrap();
                table
                    .insert(e.session.0.as_slice(), value.as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    #[test]
    fn reshares_a_build_without_the_indexes_wrote_are_indexed_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.redb");
        let k1 = KeyId::new("k-1").unwrap();
        let mut db = MetadataDb::open(&path).unwrap();
        db.put_reshare(&entry(1, "k-1", 5, 0, true)).unwrap();
        drop(db);
        // An earlier build aborts the running reshare at its start and runs attempt 1.
        write_without_indexes(
            &path,
            &[entry(1, "k-1", 5, 0, false), entry(2, "k-1", 5, 1, true)],
        );
        let db = MetadataDb::open(&path).unwrap();
        assert_eq!(sessions(db.running_reshares().unwrap()), vec![2]);
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(5)).unwrap(), 2);
        drop(db);
        // It concludes attempt 1 without adding a row: no longer listed as running.
        write_without_indexes(&path, &[entry(2, "k-1", 5, 1, false)]);
        let db = MetadataDb::open(&path).unwrap();
        assert!(db.running_reshares().unwrap().is_empty());
        assert_eq!(db.next_reshare_attempt(&k1, Epoch(5)).unwrap(), 2);
    }

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
        // The migrated reshare is indexed: running, attempt 1 taken.
        assert_eq!(sessions(db.running_reshares().unwrap()), vec![5]);
        assert_eq!(
            db.next_reshare_attempt(&KeyId::new("k-1").unwrap(), permafrost_wire::Epoch(3))
                .unwrap(),
            2
        );
    }
}
