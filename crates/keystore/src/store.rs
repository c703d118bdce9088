//! [`KeyStore`]: the redb database, the KEK, and the operations on them.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{
    Database, DatabaseError, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError, TableHandle, WriteTransaction,
};
use zeroize::Zeroizing;

use crate::audit::{AuditFault, AuditMigration, AuditProblem, AuditVerification};
use crate::crypto::{self, KdfParams, MacKey, OpenError, KEK_LEN, MAC_LEN};
use crate::error::KeystoreError;
use crate::format::{
    self, AuditEncodeError, DecodeError, ShareRow, TooLong, AUDIT_GENESIS, AUDIT_ROW_VERSION_V1,
    AUDIT_ROW_VERSION_V2, FORMAT_VERSION, FORMAT_VERSION_V1, SALT_LEN,
};
use crate::journal::{
    Background, Journal, JournalFile, JournalOp, Region, JOURNAL_BYTES, JOURNAL_FILE_NAME,
    ROUND_LEN,
};
use crate::record::{AuditEntry, ShareMeta, ShareRecord, ShareState};

/// File name of the database inside the keystore directory.
pub const DATABASE_FILE_NAME: &str = "keystore.redb";

/// The database's page cache. redb's default is 1 GiB, and its cache grows with the pages a
/// node touches, so the process's memory grew with the file (by tens of MiB over 100,000
/// signatures). Every page a commit writes enters the cache until it is full, so under load it
/// fills whatever its size: at 16 MiB a node held 73 MiB at steady state, at 4 MiB 63 MiB, at the
/// same throughput (BENCHMARKS.md, "Memory under sustained load"). A keystore's working set (the
/// shares, the paths a commit rewrites to the audit log's and the request ids' tails) is far
/// smaller; a page outside the cache is read from the operating system's.
pub const DATABASE_CACHE_BYTES: usize = 4 << 20;

/// `meta`: format version, KDF parameters, salt, check value.
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");
/// `shares`: encoded (key id, epoch) → encoded share row.
const SHARES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("shares");
/// `audit`: sequence number → encoded audit entry.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// `reshares`: session id → the caller's record of a reshare it joined and has not concluded.
const RESHARES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("reshares");
/// `admitted_requests`: u64 BE expiry ‖ approver key (32) ‖ request id (16) → session id (32),
/// every client and operator request id the node admitted, in the order they may be forgotten:
/// a new one goes near the right edge, the expired ones leave from the left. The node looks
/// ids up in memory (its gates, reloaded from here when it starts), never here.
const ADMITTED_REQUESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("admitted_requests");
/// Format version 1's `client_requests`: client key ‖ request id → session id ‖ u64 BE expiry
/// (a lookup by id), migrated into [`ADMITTED_REQUESTS`] on open and deleted.
const CLIENT_REQUESTS_V1: TableDefinition<&[u8], &[u8]> = TableDefinition::new("client_requests");
/// Format version 1's `client_request_expiry`: u64 BE expiry ‖ client key ‖ request id → (),
/// deleted by the same migration.
const CLIENT_REQUEST_EXPIRY_V1: TableDefinition<&[u8], ()> =
    TableDefinition::new("client_request_expiry");
/// `identity`: [`IDENTITY_ROW`] → the node's identity key (the libp2p key encoding), sealed
/// like a share, with [`IDENTITY_AAD`] as associated data.
const IDENTITY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("identity");
/// The one row of the identity table.
const IDENTITY_ROW: &[u8] = b"node";
/// What the sealed identity key is bound to.
const IDENTITY_AAD: &[u8] = b"permafrost/keystore/identity/v1";
/// `concluded_sessions`: session id → () for every DKG and reshare this node took part in and
/// concluded, so an open replayed for it is refused (a node never takes part twice under one
/// session id, so it cannot be made to sign two different dealings under one).
const CONCLUDED: TableDefinition<&[u8], ()> = TableDefinition::new("concluded_sessions");
/// `session_certificates`: DKG or reshare session id → the commit certificate this node
/// concluded it on (its wire frame), handed to a member that asks for the outcome.
const CERTIFICATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("session_certificates");
/// How far around a bad audit row [`KeyStore::verify_audit`] looks for where it belongs.
const REORDER_WINDOW: u64 = 8;
/// Expired client requests are forgotten in passes, once the oldest has been expired this
/// long: a pass rewrites the table's left edge once for many rows, where forgetting each row
/// as it expires rewrote it (reading its cold pages back from the file) at every admission,
/// about a quarter of a long-running node's keystore CPU. The ids stay refused meanwhile: the
/// node's gates look them up in memory, and after a restart `client_requests` lists only the
/// ones not expired.
pub const PRUNE_SLACK_MS: u64 = 5_000;
/// Most expired client requests one pass forgets (a longer backlog goes on at the next
/// admissions, whose oldest row is still late).
const PRUNE_PER_PASS: usize = 256;
/// Every this many [`KeyStore::append_audit_lazily`] calls, one is durable (redb frees pages
/// only on durable commits, so non-durable ones alone would grow the file).
pub const LAZY_FLUSH_EVERY: u64 = 64;

/// The contents of the meta table of an initialised store.
struct Meta {
    /// [`FORMAT_VERSION`], or an earlier one that opening migrates.
    version: u8,
    params: KdfParams,
    kdf: Vec<u8>,
    salt: Vec<u8>,
    check: Vec<u8>,
}

/// An open, unlocked keystore: encrypted shares by (key id, epoch) and an append-only audit
/// log, in one redb database at `<dir>/keystore.redb`, with its journal beside it.
///
/// When a method that writes returns `Ok`, the change survives a crash, except where it says
/// it is not synced ([`append_audit_lazily`](Self::append_audit_lazily), [`admit_client_request`](
/// Self::admit_client_request), a [`write_batch`](Self::write_batch) not `durable`: durable
/// with the next sync). Most methods run one redb write transaction committed with
/// [`Durability::Immediate`]; admissions and audit entries go to the [journal](crate::journal)
/// instead. Every read sees every write made before it. `KeyStore` is `Send + Sync`; writes
/// from several threads are serialised. The database file is locked while the `KeyStore` exists, so a second `open` of the
/// same directory fails with [`KeystoreError::Storage`] until it is dropped.
///
/// See the [crate documentation](crate) for the on-disk format.
pub struct KeyStore {
    /// Shared with the journal's checkpoints in the background.
    db: Arc<Database>,
    kek: Zeroizing<[u8; KEK_LEN]>,
    /// Key of the audit log's MAC chain, derived from the KEK.
    chain: Arc<MacKey>,
    dir: PathBuf,
    params: KdfParams,
    /// How many unchained audit entries this open chained (a migration), if it did.
    migrated: Option<AuditMigration>,
    /// How many admitted request ids this open moved from format version 1's tables, if it
    /// migrated the store from that version.
    migrated_requests: Option<u64>,
    /// Calls of [`KeyStore::append_audit_lazily`] so far.
    lazy_writes: std::sync::atomic::AtomicU64,
    /// The journal of the writes committed to redb without a sync (see [`crate::journal`]).
    /// Every write takes it, so that the journal's records are in redb's order.
    journal: Mutex<Journal>,
    /// How many journal records this open replayed.
    replayed: u64,
    /// Makes the checkpoints of a switch fail, in their thread or in the foreground when no
    /// thread starts: for tests of that failure.
    #[cfg(test)]
    fail_switch_checkpoints: std::sync::atomic::AtomicBool,
    /// Makes a switch's checkpoint run as when no thread can be started: for tests of that
    /// path.
    #[cfg(test)]
    checkpoint_without_a_thread: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("params", &self.params)
            .field("kek", &format_args!("<redacted>"))
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// Closing makes redb hold every journaled write (one synced commit, if any is pending), so
/// that a clean close keeps the writes not yet synced, as redb alone would. After a failed
/// sync of the journal it writes nothing: the store took no write since.
impl Drop for KeyStore {
    fn drop(&mut self) {
        // A failure has nobody to report to: what was synced is in the journal, replayed on
        // open.
        let _ = self.settle("closing the keystore");
    }
}

impl KeyStore {
    /// Opens the keystore in `dir`, creating it (and `dir`) with [`KdfParams::default`] if it
    /// does not exist. An existing store is unlocked with the KDF parameters stored in it.
    ///
    /// Errors: [`KeystoreError::EmptyPassphrase`], [`KeystoreError::WrongPassphrase`] (detected
    /// from the stored check value, before any share is read), [`KeystoreError::Corrupt`],
    /// [`KeystoreError::Storage`] (including: already open).
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Self, KeystoreError> {
        Self::open_with_params(dir, passphrase, KdfParams::default())
    }

    /// Like [`open`](Self::open), but creates a new store with `params`. For an existing store
    /// `params` are ignored: the stored parameters are always used.
    ///
    /// Errors as for [`open`](Self::open), plus [`KeystoreError::InvalidInput`] if a store is
    /// to be created with `params` outside the ranges documented on [`KdfParams`].
    pub fn open_with_params(
        dir: &Path,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<Self, KeystoreError> {
        if passphrase.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        let dir = dir.to_path_buf();
        create_private_dir(&dir)?;
        let db_path = dir.join(DATABASE_FILE_NAME);
        let db = open_database(&dir, &db_path)?;
        let meta = {
            let txn = db
                .begin_read()
                .map_err(|e| storage(&dir, "starting a read", e))?;
            read_meta(&dir, &txn)?
        };
        match meta {
            Some(meta) => Self::unlock(db, dir, passphrase, meta),
            None => Self::initialise(db, dir, passphrase, params),
        }
    }

    /// Derives the KEK with the stored salt and parameters and checks it against the stored
    /// check value. Touches nothing but the meta table.
    fn unlock(
        db: Database,
        dir: PathBuf,
        passphrase: &[u8],
        meta: Meta,
    ) -> Result<Self, KeystoreError> {
        let kek = crypto::derive_kek(passphrase, &meta.salt, &meta.params)
            .map_err(|e| corrupt(&dir, format!("stored KDF parameters: {e}")))?;
        let aad = format::check_aad(&meta.salt, &meta.kdf);
        match crypto::open(&kek, &aad, &meta.check) {
            Ok(plaintext) if plaintext.as_slice() == format::CHECK_PLAINTEXT => {}
            Ok(_) => {
                return Err(corrupt(
                    &dir,
                    "the check value decrypts but holds an unexpected constant".into(),
                ))
            }
            Err(OpenError::Truncated) => {
                return Err(corrupt(&dir, "the stored check value is truncated".into()))
            }
            Err(OpenError::Authentication) => {
                return Err(KeystoreError::WrongPassphrase { path: dir })
            }
        }
        let round = read_journal_round(&db, &dir)?;
        let journal_key = MacKey::derive(&kek, crypto::JOURNAL_LABEL);
        let (file, bytes) = open_journal(&dir)?;
        let (journal_round, region) = round.unwrap_or(([0; ROUND_LEN], Region::Half(0)));
        let mut store = KeyStore {
            db: Arc::new(db),
            chain: Arc::new(MacKey::derive(&kek, crypto::AUDIT_CHAIN_LABEL)),
            kek,
            dir,
            params: meta.params,
            migrated: None,
            migrated_requests: None,
            lazy_writes: std::sync::atomic::AtomicU64::new(0),
            journal: Mutex::new(Journal::new(
                Box::new(file),
                journal_key,
                journal_round,
                region,
            )),
            replayed: 0,
            #[cfg(test)]
            fail_switch_checkpoints: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            checkpoint_without_a_thread: std::sync::atomic::AtomicBool::new(false),
        };
        store.replayed = store.replay(round.is_some(), &bytes)?;
        drop(bytes);
        if meta.version == FORMAT_VERSION_V1 {
            store.migrated_requests = Some(store.migrate_from_format_v1()?);
        }
        store.migrated = store.chain_unchained_audit_log()?;
        Ok(store)
    }

    /// Brings a store of format version 1 to the current one, in one durable transaction:
    /// the admitted request ids move from the two tables of version 1 (one by id, one by
    /// expiry) into [`ADMITTED_REQUESTS`], and the format version becomes
    /// [`FORMAT_VERSION`]. A build that reads only version 1 then refuses the store instead of
    /// opening it without the ids it must not admit again. Returns how many ids it moved.
    fn migrate_from_format_v1(&self) -> Result<u64, KeystoreError> {
        self.write("migrating from format version 1", |txn, dir| {
            let moved = migrate_request_tables_in(txn, dir)?;
            txn.open_table(META)
                .map_err(|e| storage(dir, "opening the meta table", e))?
                .insert(format::META_FORMAT_VERSION, [FORMAT_VERSION].as_slice())
                .map_err(|e| storage(dir, "writing the meta table", e))?;
            Ok(moved)
        })
    }

    /// If opening this keystore migrated it from format version 1: how many admitted request
    /// ids it moved into the table of version 2. Callers should say so in their log (a build
    /// before version 2 no longer opens the store).
    pub fn request_ids_migrated_on_open(&self) -> Option<u64> {
        self.migrated_requests
    }

    /// Migrates an audit log written before the MAC chain: if the keystore has no audit chain
    /// record and every audit row is an unchained (version 1) row, chains them all in order
    /// (keeping their sequence numbers) and writes the record, in one durable transaction.
    /// Returns what it did; `None` if there was nothing to chain. A keystore with a chain
    /// record is never migrated again, so unchained rows planted later are reported by
    /// [`KeyStore::verify_audit`], not chained.
    fn chain_unchained_audit_log(&self) -> Result<Option<AuditMigration>, KeystoreError> {
        {
            let txn = self.read()?;
            let meta = txn
                .open_table(META)
                .map_err(|e| storage(&self.dir, "opening the meta table", e))?;
            if meta
                .get(format::META_AUDIT_CHAIN)
                .map_err(|e| storage(&self.dir, "reading the meta table", e))?
                .is_some()
            {
                return Ok(None);
            }
        }
        let now = now_unix_ms();
        self.write("chaining the audit log", |txn, dir| {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| storage(dir, "opening the meta table", e))?;
            if meta
                .get(format::META_AUDIT_CHAIN)
                .map_err(|e| storage(dir, "reading the meta table", e))?
                .is_some()
            {
                return Ok(None);
            }
            let mut audit = txn
                .open_table(AUDIT)
                .map_err(|e| storage(dir, "opening the audit table", e))?;
            let mut rows = Vec::new();
            for item in audit
                .iter()
                .map_err(|e| storage(dir, "reading the audit log", e))?
            {
                let (seq, value) = item.map_err(|e| storage(dir, "reading the audit log", e))?;
                let value = value.value();
                if value.first() != Some(&AUDIT_ROW_VERSION_V1) {
                    // Chained rows without a chain record: someone removed the record. Leave
                    // everything as it is for verify_audit to report.
                    return Ok(None);
                }
                rows.push((seq.value(), value.get(1..).unwrap_or_default().to_vec()));
            }
            let mut previous = AUDIT_GENESIS;
            for (seq, body) in &rows {
                let mac = self.chain.mac(&format::audit_mac_input(
                    &seq.to_be_bytes(),
                    &previous,
                    body,
                ));
                audit
                    .insert(
                        *seq,
                        format::encode_audit_row(AUDIT_ROW_VERSION_V2, &mac, body).as_slice(),
                    )
                    .map_err(|e| storage(dir, "rewriting the audit log", e))?;
                previous = mac;
            }
            let count = rows.len() as u64;
            let record = self.chain_record(now, count);
            meta.insert(format::META_AUDIT_CHAIN, record.as_slice())
                .map_err(|e| storage(dir, "writing the meta table", e))?;
            Ok((count > 0).then_some(AuditMigration {
                at_unix_ms: now,
                entries: count,
            }))
        })
    }

    /// The meta `audit_chain` value: payload and its MAC.
    fn chain_record(&self, rechained_at_unix_ms: u64, rechained: u64) -> Vec<u8> {
        let mut record = format::chain_record_payload(rechained_at_unix_ms, rechained);
        let mac = self.chain.mac(&[format::CHAIN_RECORD_TAG, &record]);
        record.extend_from_slice(&mac);
        record
    }

    /// If opening this keystore chained an audit log written before the MAC chain: when, and
    /// how many entries. Callers should say so in their log.
    pub fn audit_migrated_on_open(&self) -> Option<AuditMigration> {
        self.migrated
    }

    /// Creates a new store: random salt, KEK, check value, and the three tables, in one
    /// durable transaction.
    fn initialise(
        db: Database,
        dir: PathBuf,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<Self, KeystoreError> {
        params
            .argon2_params()
            .map_err(|e| KeystoreError::InvalidInput(format!("KDF parameters: {e}")))?;
        let mut salt = [0u8; SALT_LEN];
        crypto::fill_random(&mut salt).map_err(|e| storage_msg(&dir, "creating the salt", e))?;
        let kek = crypto::derive_kek(passphrase, &salt, &params)
            .map_err(|e| KeystoreError::InvalidInput(format!("KDF parameters: {e}")))?;
        let kdf = format::encode_kdf(&params);
        let check = crypto::seal(
            &kek,
            &format::check_aad(&salt, &kdf),
            format::CHECK_PLAINTEXT,
        )
        .map_err(|e| storage_msg(&dir, "sealing the check value", e))?;
        // A journal left by an earlier store in this directory has no record this KEK verifies.
        let (file, _) = open_journal(&dir)?;
        let journal_key = MacKey::derive(&kek, crypto::JOURNAL_LABEL);
        let store = KeyStore {
            db: Arc::new(db),
            chain: Arc::new(MacKey::derive(&kek, crypto::AUDIT_CHAIN_LABEL)),
            kek,
            dir,
            params,
            migrated: None,
            migrated_requests: None,
            lazy_writes: std::sync::atomic::AtomicU64::new(0),
            // The creation's write below begins the first round.
            journal: Mutex::new(Journal::new(
                Box::new(file),
                journal_key,
                [0; ROUND_LEN],
                Region::Half(0),
            )),
            replayed: 0,
            #[cfg(test)]
            fail_switch_checkpoints: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            checkpoint_without_a_thread: std::sync::atomic::AtomicBool::new(false),
        };
        let chain_record = store.chain_record(0, 0);
        store.write("creating the keystore", |txn, dir| {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| storage(dir, "opening the meta table", e))?;
            for (key, value) in [
                (format::META_FORMAT_VERSION, &[FORMAT_VERSION][..]),
                (format::META_KDF, &kdf[..]),
                (format::META_SALT, &salt[..]),
                (format::META_CHECK, &check[..]),
                (format::META_AUDIT_CHAIN, &chain_record[..]),
            ] {
                meta.insert(key, value)
                    .map_err(|e| storage(dir, "writing the meta table", e))?;
            }
            txn.open_table(SHARES)
                .map_err(|e| storage(dir, "creating the shares table", e))?;
            txn.open_table(AUDIT)
                .map_err(|e| storage(dir, "creating the audit table", e))?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Directory of this keystore.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Argon2id parameters this store was created with.
    pub fn kdf_params(&self) -> KdfParams {
        self.params
    }

    /// Stores `record` under (`record.key_id`, `record.epoch`), replacing any share already
    /// there. The secret is encrypted with a fresh nonce; the change is fsynced before this
    /// returns.
    pub fn put_share(&self, record: &ShareRecord) -> Result<(), KeystoreError> {
        let key = format::share_key(&record.key_id, record.epoch).map_err(too_long)?;
        let aad = format::share_aad(
            &record.key_id,
            record.epoch,
            &record.identifier,
            &record.public,
        )
        .map_err(too_long)?;
        let sealed = crypto::seal(&self.kek, &aad, &record.secret)
            .map_err(|e| storage_msg(&self.dir, "encrypting a share", e))?;
        let row = format::encode_share_row(&ShareRow {
            state: record.state,
            identifier: &record.identifier,
            public: &record.public,
            sealed: &sealed,
        })
        .map_err(too_long)?;
        self.write("storing a share", |txn, dir| {
            txn.open_table(SHARES)
                .map_err(|e| storage(dir, "opening the shares table", e))?
                .insert(key.as_slice(), row.as_slice())
                .map_err(|e| storage(dir, "writing a share", e))?;
            Ok(())
        })
    }

    /// The share stored under (`key_id`, `epoch`), decrypted, or `None`.
    ///
    /// A row that does not decode or fails authentication (edited, truncated, or moved from
    /// another key id or epoch) is [`KeystoreError::Corrupt`]; wrong data is never returned.
    pub fn share(&self, key_id: &str, epoch: u64) -> Result<Option<ShareRecord>, KeystoreError> {
        let key = format::share_key(key_id, epoch).map_err(too_long)?;
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, SHARES)? else {
            return Ok(None);
        };
        let Some(value) = table
            .get(key.as_slice())
            .map_err(|e| storage(&self.dir, "reading a share", e))?
        else {
            return Ok(None);
        };
        let bytes = value.value();
        let row = format::decode_share_row(bytes).map_err(|e| self.bad_share(key_id, epoch, e))?;
        let aad = format::share_aad(key_id, epoch, row.identifier, row.public).map_err(too_long)?;
        let secret = crypto::open(&self.kek, &aad, row.sealed).map_err(|_| {
            corrupt(
                &self.dir,
                format!(
                    "share for key {key_id:?} at epoch {epoch} fails authentication: its row \
                     was modified, or moved from another key id, epoch or identifier"
                ),
            )
        })?;
        Ok(Some(ShareRecord {
            key_id: key_id.to_owned(),
            epoch,
            state: row.state,
            identifier: row.identifier.to_vec(),
            public: row.public.to_vec(),
            secret,
        }))
    }

    /// Changes the state of the share under (`key_id`, `epoch`) without re-encrypting it.
    /// [`KeystoreError::NotFound`] if there is none.
    pub fn set_state(
        &self,
        key_id: &str,
        epoch: u64,
        state: ShareState,
    ) -> Result<(), KeystoreError> {
        self.write("changing a share's state", |txn, dir| {
            self.set_state_in(txn, dir, key_id, epoch, state)
        })
    }

    /// Activates a DKG's share in one durable transaction: its state becomes ACTIVE, `audit`
    /// is appended, and `session` is remembered as concluded. A crash leaves all of it or none.
    pub fn activate_share(
        &self,
        key_id: &str,
        epoch: u64,
        session: &[u8; 32],
        certificate: Option<&[u8]>,
        audit: &AuditEntry,
    ) -> Result<(), KeystoreError> {
        let audit = format::encode_audit_body(audit).map_err(unencodable_audit)?;
        self.write("activating a share", |txn, dir| {
            self.set_state_in(txn, dir, key_id, epoch, ShareState::Active)?;
            if let Some(certificate) = certificate {
                keep_certificate_in(txn, dir, session, certificate)?;
            }
            conclude_in(txn, dir, session)?;
            append_audit_in(txn, dir, &self.chain, &audit)?;
            Ok(())
        })
    }

    fn set_state_in(
        &self,
        txn: &WriteTransaction,
        dir: &Path,
        key_id: &str,
        epoch: u64,
        state: ShareState,
    ) -> Result<(), KeystoreError> {
        let key = format::share_key(key_id, epoch).map_err(too_long)?;
        {
            let mut table = txn
                .open_table(SHARES)
                .map_err(|e| storage(dir, "opening the shares table", e))?;
            let updated = {
                let Some(value) = table
                    .get(key.as_slice())
                    .map_err(|e| storage(dir, "reading a share", e))?
                else {
                    return Err(not_found(key_id, epoch));
                };
                let row = format::decode_share_row(value.value())
                    .map_err(|e| self.bad_share(key_id, epoch, e))?;
                format::encode_share_row(&ShareRow { state, ..row }).map_err(too_long)?
            };
            table
                .insert(key.as_slice(), updated.as_slice())
                .map_err(|e| storage(dir, "writing a share", e))?;
        }
        Ok(())
    }

    /// Deletes the share under (`key_id`, `epoch`). [`KeystoreError::NotFound`] if there is
    /// none (so a caller repeating a delete after a crash can treat that as done).
    pub fn delete_share(&self, key_id: &str, epoch: u64) -> Result<(), KeystoreError> {
        let key = format::share_key(key_id, epoch).map_err(too_long)?;
        self.write("deleting a share", |txn, dir| {
            let removed = txn
                .open_table(SHARES)
                .map_err(|e| storage(dir, "opening the shares table", e))?
                .remove(key.as_slice())
                .map_err(|e| storage(dir, "deleting a share", e))?
                .is_some();
            if removed {
                Ok(())
            } else {
                Err(not_found(key_id, epoch))
            }
        })
    }

    /// Metadata of every stored share, sorted by (key id, epoch). Decrypts nothing.
    pub fn shares(&self) -> Result<Vec<ShareMeta>, KeystoreError> {
        self.share_metas(None)
    }

    /// Metadata of the stored shares of `key_id`, sorted by epoch. Decrypts nothing, and reads
    /// only that key's rows (a range of the table: its keys all begin with the same
    /// length-prefixed key id), however many other keys are stored.
    pub fn shares_of(&self, key_id: &str) -> Result<Vec<ShareMeta>, KeystoreError> {
        self.share_metas(Some(key_id))
    }

    fn share_metas(&self, key_id: Option<&str>) -> Result<Vec<ShareMeta>, KeystoreError> {
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, SHARES)? else {
            return Ok(Vec::new());
        };
        let listing = |e| storage(&self.dir, "listing shares", e);
        let rows = match key_id {
            None => table.iter().map_err(listing)?,
            Some(key_id) => {
                let (first, last) = share_keys_of(key_id)?;
                table
                    .range(first.as_slice()..=last.as_slice())
                    .map_err(listing)?
            }
        };
        let mut out = Vec::new();
        for item in rows {
            let (key, value) = item.map_err(listing)?;
            let (key_id, epoch) = format::decode_share_key(key.value())
                .map_err(|e| corrupt(&self.dir, format!("a share key does not decode: {}", e.0)))?;
            let row = format::decode_share_row(value.value())
                .map_err(|e| self.bad_share(&key_id, epoch, e))?;
            out.push(ShareMeta {
                state: row.state,
                identifier: row.identifier.to_vec(),
                public: row.public.to_vec(),
                key_id,
                epoch,
            });
        }
        out.sort_by(|a, b| (&a.key_id, a.epoch).cmp(&(&b.key_id, b.epoch)));
        Ok(out)
    }

    /// Appends `entry` to the audit log and returns its sequence number (1 for the first
    /// entry, then consecutive). Fsynced before this returns. Entries are never modified or
    /// removed by this crate. Audit entries are stored unencrypted.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<u64, KeystoreError> {
        let value = format::encode_audit_body(entry).map_err(unencodable_audit)?;
        self.write("appending to the audit log", |txn, dir| {
            append_audit_in(txn, dir, &self.chain, &value)
        })
    }

    /// Records that this node joined reshare `session` (the record is the caller's, opaque
    /// here), replacing any record of that session. Fsynced before this returns.
    pub fn put_reshare(&self, session: &[u8; 32], record: &[u8]) -> Result<(), KeystoreError> {
        self.write("recording a reshare", |txn, dir| {
            txn.open_table(RESHARES)
                .map_err(|e| storage(dir, "opening the reshares table", e))?
                .insert(session.as_slice(), record)
                .map_err(|e| storage(dir, "writing a reshare record", e))?;
            Ok(())
        })
    }

    /// Stores the node's identity key (its secret encoding), sealed under the passphrase like a
    /// share, replacing any stored before. Fsynced before this returns.
    pub fn put_identity(&self, secret: &[u8]) -> Result<(), KeystoreError> {
        let sealed = crypto::seal(&self.kek, IDENTITY_AAD, secret)
            .map_err(|e| storage_msg(&self.dir, "encrypting the identity key", e))?;
        self.write("storing the identity key", |txn, dir| {
            txn.open_table(IDENTITY)
                .map_err(|e| storage(dir, "opening the identity table", e))?
                .insert(IDENTITY_ROW, sealed.as_slice())
                .map_err(|e| storage(dir, "writing the identity key", e))?;
            Ok(())
        })
    }

    /// The node's identity key, decrypted, or `None` if none is stored. A sealed key that fails
    /// authentication is [`KeystoreError::Corrupt`].
    pub fn identity(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, IDENTITY)? else {
            return Ok(None);
        };
        let Some(value) = table
            .get(IDENTITY_ROW)
            .map_err(|e| storage(&self.dir, "reading the identity key", e))?
        else {
            return Ok(None);
        };
        crypto::open(&self.kek, IDENTITY_AAD, value.value())
            .map(Some)
            .map_err(|_| {
                corrupt(
                    &self.dir,
                    "the identity key fails authentication: its row was modified".into(),
                )
            })
    }

    /// Remembers that this node concluded session `session` (a DKG's end; a reshare's is
    /// remembered by [`KeyStore::conclude_reshare`]). Fsynced before this returns.
    pub fn conclude_session(&self, session: &[u8; 32]) -> Result<(), KeystoreError> {
        self.write("remembering a concluded session", |txn, dir| {
            conclude_in(txn, dir, session)
        })
    }

    /// Whether this node concluded session `session`.
    pub fn session_concluded(&self, session: &[u8; 32]) -> Result<bool, KeystoreError> {
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, CONCLUDED)? else {
            return Ok(false);
        };
        Ok(table
            .get(session.as_slice())
            .map_err(|e| storage(&self.dir, "reading the concluded sessions", e))?
            .is_some())
    }

    /// Every reshare record, by session id.
    pub fn reshares(&self) -> Result<Vec<ReshareRow>, KeystoreError> {
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, RESHARES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in table
            .iter()
            .map_err(|e| storage(&self.dir, "listing reshares", e))?
        {
            let (key, value) = item.map_err(|e| storage(&self.dir, "listing reshares", e))?;
            let session: [u8; 32] = key
                .value()
                .try_into()
                .map_err(|_| corrupt(&self.dir, "a reshare session id is not 32 bytes".into()))?;
            out.push((session, value.value().to_vec()));
        }
        Ok(out)
    }

    /// Concludes a reshare in one durable transaction: applies `change` to the shares of
    /// `key_id`, forgets the record of `session`, remembers `session` as concluded (see
    /// [`KeyStore::session_concluded`]), and appends `audit`. Either all of it is on
    /// disk when this returns `Ok`, or none of it: a crash can never leave a node with two
    /// active epochs, or with a promoted share and a reshare still open.
    pub fn conclude_reshare(
        &self,
        key_id: &str,
        change: ReshareConclusion,
        session: &[u8; 32],
        audit: &AuditEntry,
    ) -> Result<(), KeystoreError> {
        self.conclude_reshare_certified(key_id, change, session, None, audit)
    }

    /// [`KeyStore::conclude_reshare`], also keeping `certificate` (the commit the reshare was
    /// concluded on, as opaque bytes) in the same transaction, for
    /// [`KeyStore::certificate`].
    pub fn conclude_reshare_certified(
        &self,
        key_id: &str,
        change: ReshareConclusion,
        session: &[u8; 32],
        certificate: Option<&[u8]>,
        audit: &AuditEntry,
    ) -> Result<(), KeystoreError> {
        let audit = format::encode_audit_body(audit).map_err(unencodable_audit)?;
        self.write("concluding a reshare", |txn, dir| {
            {
                let mut shares = txn
                    .open_table(SHARES)
                    .map_err(|e| storage(dir, "opening the shares table", e))?;
                let mut epochs = Vec::new();
                let (first, last) = share_keys_of(key_id)?;
                for item in shares
                    .range(first.as_slice()..=last.as_slice())
                    .map_err(|e| storage(dir, "listing shares", e))?
                {
                    let (key, value) = item.map_err(|e| storage(dir, "listing shares", e))?;
                    let (id, epoch) = format::decode_share_key(key.value()).map_err(|e| {
                        corrupt(dir, format!("a share key does not decode: {}", e.0))
                    })?;
                    if id != key_id {
                        return Err(corrupt(
                            dir,
                            format!("share row {id} in the range of {key_id}"),
                        ));
                    }
                    let row = format::decode_share_row(value.value())
                        .map_err(|e| self.bad_share(key_id, epoch, e))?;
                    epochs.push((epoch, row.state));
                }
                let key = |epoch| format::share_key(key_id, epoch).map_err(too_long);
                match change {
                    ReshareConclusion::Promote { epoch } => {
                        if !epochs.contains(&(epoch, ShareState::Pending)) {
                            return Err(not_found(key_id, epoch));
                        }
                        let promoted = {
                            let Some(value) = shares
                                .get(key(epoch)?.as_slice())
                                .map_err(|e| storage(dir, "reading a share", e))?
                            else {
                                return Err(not_found(key_id, epoch));
                            };
                            let row = format::decode_share_row(value.value())
                                .map_err(|e| self.bad_share(key_id, epoch, e))?;
                            format::encode_share_row(&ShareRow {
                                state: ShareState::Active,
                                ..row
                            })
                            .map_err(too_long)?
                        };
                        shares
                            .insert(key(epoch)?.as_slice(), promoted.as_slice())
                            .map_err(|e| storage(dir, "writing a share", e))?;
                        // Every other epoch of the key goes: the new one is proven.
                        for (other, _) in epochs.iter().filter(|(e, _)| *e != epoch) {
                            shares
                                .remove(key(*other)?.as_slice())
                                .map_err(|e| storage(dir, "deleting a share", e))?;
                        }
                    }
                    ReshareConclusion::Retire { epoch } => {
                        for (other, _) in epochs.iter().filter(|(e, _)| *e <= epoch) {
                            shares
                                .remove(key(*other)?.as_slice())
                                .map_err(|e| storage(dir, "deleting a share", e))?;
                        }
                    }
                    ReshareConclusion::Discard { epoch } => {
                        if epochs.contains(&(epoch, ShareState::Pending)) {
                            shares
                                .remove(key(epoch)?.as_slice())
                                .map_err(|e| storage(dir, "deleting a share", e))?;
                        }
                    }
                }
            }
            txn.open_table(RESHARES)
                .map_err(|e| storage(dir, "opening the reshares table", e))?
                .remove(session.as_slice())
                .map_err(|e| storage(dir, "deleting a reshare record", e))?;
            if let Some(certificate) = certificate {
                keep_certificate_in(txn, dir, session, certificate)?;
            }
            conclude_in(txn, dir, session)?;
            append_audit_in(txn, dir, &self.chain, &audit)?;
            Ok(())
        })
    }

    /// The certificate DKG or reshare `session` was concluded on here, if any.
    pub fn certificate(&self, session: &[u8; 32]) -> Result<Option<Vec<u8>>, KeystoreError> {
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, CERTIFICATES)? else {
            return Ok(None);
        };
        Ok(table
            .get(session.as_slice())
            .map_err(|e| storage(&self.dir, "reading a certificate", e))?
            .map(|v| v.value().to_vec()))
    }

    /// Appends `entry` to the journal without syncing it: it is durable once a later durable
    /// write returns (any other method, a [`sync`](Self::sync), or every [`LAZY_FLUSH_EVERY`]th
    /// call of this one), and lost in a crash before that. For refusals, which promise nothing
    /// to anyone, so that a flood of them does not cost a sync each. Returns the entry's
    /// sequence number.
    pub fn append_audit_lazily(&self, entry: &AuditEntry) -> Result<u64, KeystoreError> {
        let op = JournalOp {
            now_unix_ms: now_unix_ms(),
            admissions: Vec::new(),
            audits: vec![format::encode_audit_body(entry).map_err(unencodable_audit)?],
        };
        let count = self
            .lazy_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sync = count % LAZY_FLUSH_EVERY == LAZY_FLUSH_EVERY - 1;
        self.write_journaled(op, sync, "appending to the audit log")
    }

    /// Admits a client's signing request (or an operator's approval) in one transaction:
    /// remembers `request` until it expires, so that [`client_requests`](Self::client_requests)
    /// returns it after a restart, and appends `audit`. Also forgets a few requests that expired
    /// before `now_unix_ms`.
    ///
    /// It does not look the request id up: refusing an id admitted in another session is the
    /// caller's rule (the node's gates, which remember every id [`client_requests`](
    /// Self::client_requests) returns and each new one they admit), so that the keystore keeps
    /// one table in the order the ids expire and no index by id. What it does refuse, at no
    /// cost, is the same approval (approver, request id and expiry) in another session: a
    /// [`KeystoreError::Conflict`], changing nothing.
    ///
    /// **Not synced** (journaled, see [`crate::journal`]): the admission is durable once
    /// [`sync`](Self::sync) or any other durable write returns, and lost in a crash before that.
    /// The node syncs before any signature share leaves it, so a share never goes out on an
    /// admission a crash could forget; concurrent requests share one sync (group commit).
    pub fn admit_client_request(
        &self,
        request: &ClientRequestRow,
        audit: &AuditEntry,
        now_unix_ms: u64,
    ) -> Result<(), KeystoreError> {
        let op = JournalOp {
            now_unix_ms,
            admissions: vec![(
                request.clone(),
                format::encode_audit_body(audit).map_err(unencodable_audit)?,
            )],
            audits: Vec::new(),
        };
        self.write_journaled(op, false, "admitting a client request")?;
        Ok(())
    }

    /// Group commit: writes `admissions` (as [`admit_client_request`](Self::admit_client_request)
    /// would, each with its audit entry) and appends `audits`, all as **one** journal record,
    /// synced before this returns when `durable` (one `fdatasync` of the journal; else durable
    /// at the next sync). An entry
    /// that cannot be encoded, or an admission that is a [`KeystoreError::Conflict`], fails the
    /// whole batch, changing nothing.
    pub fn write_batch(
        &self,
        admissions: &[(ClientRequestRow, AuditEntry)],
        audits: &[AuditEntry],
        durable: bool,
        now_unix_ms: u64,
    ) -> Result<(), KeystoreError> {
        let op = JournalOp {
            now_unix_ms,
            admissions: admissions
                .iter()
                .map(|(row, entry)| {
                    Ok((
                        row.clone(),
                        format::encode_audit_body(entry).map_err(unencodable_audit)?,
                    ))
                })
                .collect::<Result<_, KeystoreError>>()?,
            audits: audits
                .iter()
                .map(|entry| format::encode_audit_body(entry).map_err(unencodable_audit))
                .collect::<Result<_, KeystoreError>>()?,
        };
        self.write_journaled(
            op,
            durable,
            "writing a batch of admissions and audit entries",
        )?;
        Ok(())
    }

    /// Every remembered client request that has not expired at `now_unix_ms`, in the order
    /// they expire.
    pub fn client_requests(
        &self,
        now_unix_ms: u64,
    ) -> Result<Vec<ClientRequestRow>, KeystoreError> {
        self.settle("listing admitted requests")?;
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, ADMITTED_REQUESTS)? else {
            return Ok(Vec::new());
        };
        let failed = |e| storage(&self.dir, "listing admitted requests", e);
        let from = now_unix_ms.to_be_bytes();
        let mut out = Vec::new();
        for item in table.range(from.as_slice()..).map_err(failed)? {
            let (key, value) = item.map_err(failed)?;
            let row = ClientRequestRow::from_row(key.value(), value.value()).ok_or_else(|| {
                corrupt(&self.dir, "an admitted request row does not decode".into())
            })?;
            out.push(row);
        }
        Ok(out)
    }

    /// Every audit entry with its sequence number, in order. Decodes each row but does not
    /// check the MAC chain: [`KeyStore::verify_audit`] does.
    pub fn audit(&self) -> Result<Vec<(u64, AuditEntry)>, KeystoreError> {
        self.settle("reading the audit log")?;
        let txn = self.read()?;
        let Some(table) = self.open_read_table(&txn, AUDIT)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in table
            .iter()
            .map_err(|e| storage(&self.dir, "reading the audit log", e))?
        {
            let (key, value) = item.map_err(|e| storage(&self.dir, "reading the audit log", e))?;
            let key = key.value();
            let undecodable = |seq: u64, e: format::DecodeError| {
                corrupt(
                    &self.dir,
                    format!("audit entry {seq} does not decode: {}", e.0),
                )
            };
            for stored in
                format::audit_row_entries(key, value.value()).map_err(|e| undecodable(key, e))?
            {
                let entry = format::decode_audit_body(stored.version, &stored.body)
                    .map_err(|e| undecodable(stored.seq, e))?;
                out.push((stored.seq, entry));
            }
        }
        Ok(out)
    }

    /// Walks the audit log in order and checks its MAC chain: sequence numbers run 1, 2, 3, …
    /// with no gap, and each row's MAC verifies over its sequence number, the previous row's
    /// MAC and its contents. Reports the first bad entry (removed, edited, reordered,
    /// undecodable) in [`AuditVerification::fault`]; an `Err` is only a failure to read.
    ///
    /// It cannot see a removed tail (the last entries deleted): what is left is a valid chain.
    /// Nor can it tell a log rewritten by someone holding the passphrase from the real one.
    pub fn verify_audit(&self) -> Result<AuditVerification, KeystoreError> {
        self.settle("verifying the audit log")?;
        let txn = self.read()?;
        let mut outcome = AuditVerification {
            entries: 0,
            verified: 0,
            migrated: None,
            fault: None,
        };
        let record = {
            let meta = txn
                .open_table(META)
                .map_err(|e| storage(&self.dir, "opening the meta table", e))?;
            let value = meta
                .get(format::META_AUDIT_CHAIN)
                .map_err(|e| storage(&self.dir, "reading the meta table", e))?;
            value.map(|v| v.value().to_vec())
        };
        match record {
            None => outcome.fault = Some(record_fault(AuditProblem::ChainRecordMissing)),
            Some(record) => match format::decode_chain_record(&record) {
                Err(e) => outcome.fault = Some(record_fault(AuditProblem::ChainRecordInvalid(e.0))),
                Ok(record) => {
                    if !self
                        .chain
                        .verify(&[format::CHAIN_RECORD_TAG, record.payload], &record.mac)
                    {
                        outcome.fault = Some(record_fault(AuditProblem::ChainRecordInvalid(
                            "its MAC does not verify (edited)".into(),
                        )));
                    } else if record.rechained > 0 {
                        outcome.migrated = Some(AuditMigration {
                            at_unix_ms: record.rechained_at_unix_ms,
                            entries: record.rechained,
                        });
                    }
                }
            },
        }
        let Some(table) = self.open_read_table(&txn, AUDIT)? else {
            return Ok(outcome);
        };
        outcome.entries = self.count_audit_entries(&table)?;
        if outcome.fault.is_some() {
            return Ok(outcome);
        }
        let mut expected = 1u64;
        let mut previous = AUDIT_GENESIS;
        'rows: for item in table
            .iter()
            .map_err(|e| storage(&self.dir, "reading the audit log", e))?
        {
            let (key, value) = item.map_err(|e| storage(&self.dir, "reading the audit log", e))?;
            let key = key.value();
            if key < expected {
                outcome.fault = Some(AuditFault {
                    seq: Some(key),
                    problem: AuditProblem::Inserted,
                });
                break;
            }
            if key > expected {
                outcome.fault = Some(AuditFault {
                    seq: Some(expected),
                    problem: AuditProblem::Missing { through: key - 1 },
                });
                break;
            }
            let entries = match format::audit_row_entries(key, value.value()) {
                Ok(entries) => entries,
                Err(e) => {
                    outcome.fault = Some(AuditFault {
                        seq: Some(key),
                        problem: AuditProblem::Undecodable(e.0),
                    });
                    break;
                }
            };
            for stored in entries {
                let fault = |problem| {
                    Some(AuditFault {
                        seq: Some(stored.seq),
                        problem,
                    })
                };
                let seq_bytes = stored.seq.to_be_bytes();
                if !self.chain.verify(
                    &format::audit_mac_input(&seq_bytes, &previous, &stored.body),
                    &stored.mac,
                ) {
                    outcome.fault = fault(self.diagnose(&table, &stored)?);
                    break 'rows;
                }
                if let Err(e) = format::decode_audit_body(stored.version, &stored.body) {
                    outcome.fault = fault(AuditProblem::Undecodable(e.0));
                    break 'rows;
                }
                previous = stored.mac;
                outcome.verified += 1;
                // seq < u64::MAX here: an entry numbered u64::MAX would be the last one.
                expected = stored.seq.saturating_add(1);
            }
        }
        Ok(outcome)
    }

    /// How many entries the audit table holds (a row that does not decode counts as one).
    fn count_audit_entries(
        &self,
        table: &redb::ReadOnlyTable<u64, &[u8]>,
    ) -> Result<u64, KeystoreError> {
        let mut entries = 0u64;
        for item in table
            .iter()
            .map_err(|e| storage(&self.dir, "reading the audit log", e))?
        {
            let (key, value) = item.map_err(|e| storage(&self.dir, "reading the audit log", e))?;
            let key = key.value();
            entries += match format::audit_row_tail(key, value.value()) {
                Ok((last, _)) => last - key + 1,
                Err(_) => 1,
            };
        }
        Ok(entries)
    }

    /// Why `entry` fails its MAC: an authentic entry written under a nearby other sequence
    /// number (chained to one of the nearby entries' MACs, or the genesis value) was moved
    /// here; anything else was edited.
    fn diagnose(
        &self,
        table: &redb::ReadOnlyTable<u64, &[u8]>,
        entry: &format::StoredAuditEntry,
    ) -> Result<AuditProblem, KeystoreError> {
        let seq = entry.seq;
        let low = seq.saturating_sub(REORDER_WINDOW).max(1);
        let high = seq.saturating_add(REORDER_WINDOW);
        let mut predecessors: Vec<[u8; MAC_LEN]> = vec![AUDIT_GENESIS];
        // The rows holding entries low - 1 ..= high: the last row that starts before low - 1
        // (a block reaching into the window), then every row that starts in it.
        let first = table
            .range(..low.saturating_sub(1))
            .map_err(|e| storage(&self.dir, "reading the audit log", e))?
            .next_back()
            .transpose()
            .map_err(|e| storage(&self.dir, "reading the audit log", e))?
            .map_or(low.saturating_sub(1), |(key, _)| key.value());
        for item in table
            .range(first..=high)
            .map_err(|e| storage(&self.dir, "reading the audit log", e))?
        {
            let (key, value) = item.map_err(|e| storage(&self.dir, "reading the audit log", e))?;
            if let Ok(entries) = format::audit_row_entries(key.value(), value.value()) {
                predecessors.extend(entries.iter().map(|other| other.mac));
            }
        }
        for written_as in (low..=high).filter(|s| *s != seq) {
            let seq_bytes = written_as.to_be_bytes();
            for previous in &predecessors {
                if self.chain.verify(
                    &format::audit_mac_input(&seq_bytes, previous, &entry.body),
                    &entry.mac,
                ) {
                    return Ok(AuditProblem::Reordered { written_as });
                }
            }
        }
        Ok(AuditProblem::Edited)
    }

    /// Makes every write before it durable (one sync of the journal for all the unsynced
    /// writes: admissions and lazily appended audit entries). Returns once they are on disk.
    pub fn sync(&self) -> Result<(), KeystoreError> {
        self.lock_journal("syncing")?
            .sync()
            .map_err(|e| storage_msg(&self.dir, "syncing the journal", e))
    }

    /// Starts making every write before it durable, as [`sync`](Self::sync) does, on a thread
    /// of the journal's own, and returns at once: the caller can go on with other work while
    /// the disk flushes, and must then call [`finish_sync`](Self::finish_sync) before it acts
    /// on those writes being durable. Any other write waits for the sync first. (Without a
    /// thread, it syncs before it returns.)
    pub fn start_sync(&self) -> Result<(), KeystoreError> {
        self.lock_journal("syncing")?
            .start_sync()
            .map_err(|e| storage_msg(&self.dir, "syncing the journal", e))
    }

    /// Waits for the sync [`start_sync`](Self::start_sync) started, if one runs: when this
    /// returns `Ok`, every write before that call is on disk.
    pub fn finish_sync(&self) -> Result<(), KeystoreError> {
        self.lock_journal("syncing")?
            .finish_sync()
            .map_err(|e| storage_msg(&self.dir, "syncing the journal", e))
    }

    /// [`finish_sync`](Self::finish_sync) without waiting: `None` while the sync
    /// [`start_sync`](Self::start_sync) started still runs, else what `finish_sync` returns.
    pub fn try_finish_sync(&self) -> Option<Result<(), KeystoreError>> {
        match self.lock_journal("syncing") {
            Ok(mut journal) => journal
                .try_finish_sync()
                .map(|r| r.map_err(|e| storage_msg(&self.dir, "syncing the journal", e))),
            Err(e) => Some(Err(e)),
        }
    }

    /// Has `waker` called, on the journal's sync thread, each time a sync
    /// [`start_sync`](Self::start_sync) started ends: an event loop can wait for that instead
    /// of blocking in [`finish_sync`](Self::finish_sync), then take the outcome with
    /// [`try_finish_sync`](Self::try_finish_sync). Set it before the first `start_sync`.
    pub fn set_sync_waker(&self, waker: Arc<dyn Fn() + Send + Sync>) -> Result<(), KeystoreError> {
        self.lock_journal("setting the sync waker")?
            .set_sync_waker(waker);
        Ok(())
    }

    /// Why the last checkpoint the journal ran in the background failed, if one did since the
    /// last call (its writes stayed in the journal and went to redb with the next checkpoint,
    /// made in the foreground, which reports its own failure to the write that needed it).
    /// Callers should log it: it is the disk's first complaint.
    pub fn take_checkpoint_failure(&self) -> Option<String> {
        self.journal.lock().ok()?.take_background_failure()
    }

    /// How many journal records opening this keystore replayed: writes made durable by the
    /// journal alone before the last close or crash. Callers may say so in their log.
    pub fn journal_replayed_on_open(&self) -> u64 {
        self.replayed
    }

    /// Appends `op` to the journal, synced before this returns when `sync` (else durable at
    /// the next sync); redb gets it at a checkpoint. When one is due, the journal switches
    /// regions and the checkpoint runs on a thread of its own, off this write's path (in the
    /// foreground only if one still runs and the region is full, or the last one failed).
    /// An operation too large for the journal is written to redb at once, synced. Refuses,
    /// changing nothing, what applying `op` would refuse (see [`refuse_conflicts`](
    /// Self::refuse_conflicts)). Returns the sequence number `op`'s last audit entry takes
    /// (the last one the log holds if `op` has none: such an `op` writes nothing).
    fn write_journaled(&self, op: JournalOp, sync: bool, what: &str) -> Result<u64, KeystoreError> {
        let payload = op.encode();
        let mut journal = self.lock_journal(what)?;
        self.end_checkpoint(&mut journal, false);
        if !Journal::can_hold(payload.len()) {
            self.write_locked(&mut journal, what, |txn, dir| {
                apply_in(txn, dir, &self.chain, &op)
            })?;
            return Ok(next_audit_seq(&self.read()?, &self.dir)? - 1);
        }
        // Due, unless a checkpoint is running and the region still has room: then it goes
        // on past the count rather than wait for it.
        let goes_in = journal.has_room_for(payload.len())
            || (journal.checkpoint_running() && journal.fits(payload.len()));
        if !goes_in {
            self.checkpoint(&mut journal)?;
        }
        {
            let txn = self.read()?;
            self.refuse_conflicts(&txn, &journal, &op)?;
            if journal.next_entry().is_none() {
                // The first record since redb was made durable in the foreground (no
                // checkpoint runs): it follows the log's last entry. The number binds the
                // record to the audit log, so that replay applies it only there.
                journal.numbered_from(next_audit_seq(&txn, &self.dir)?);
            }
        }
        if op.entries() > 0 {
            journal.append(op, &payload);
        }
        if sync {
            journal
                .sync()
                .map_err(|e| storage_msg(&self.dir, what, e))?;
        }
        Ok(journal.next_entry().unwrap_or(1) - 1)
    }

    /// The test hooks of a switch's checkpoint: whether to fail it, and whether to run it
    /// without a thread of its own. Both off outside tests.
    #[cfg(test)]
    fn switch_checkpoint_hooks(&self) -> (bool, bool) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.fail_switch_checkpoints.load(Relaxed),
            self.checkpoint_without_a_thread.load(Relaxed),
        )
    }

    #[cfg(not(test))]
    fn switch_checkpoint_hooks(&self) -> (bool, bool) {
        (false, false)
    }

    /// A checkpoint that is due: in the background if the journal can switch regions (after
    /// the running one, if any, ended), else in the foreground.
    fn checkpoint(&self, journal: &mut Journal) -> Result<(), KeystoreError> {
        const WHAT: &str = "making the journal's writes durable (checkpoint)";
        self.end_checkpoint(journal, true);
        if !journal.can_switch() {
            return self.write_locked(journal, WHAT, |_, _| Ok(()));
        }
        let (ops, round, region) = journal
            .switch()
            .map_err(|e| storage_msg(&self.dir, WHAT, e))?;
        let count = ops.len();
        let db = Arc::clone(&self.db);
        let chain = Arc::clone(&self.chain);
        let dir = self.dir.clone();
        let (fail, without_a_thread) = self.switch_checkpoint_hooks();
        let spawned = if without_a_thread {
            Err(std::io::Error::other("no thread (test)"))
        } else {
            std::thread::Builder::new()
                .name("keystore-checkpoint".into())
                .spawn(move || {
                    if fail {
                        return Err(storage_msg(&dir, WHAT, "failed on purpose (test)".into()));
                    }
                    commit_journaled(&db, &dir, &chain, &ops, round, region, WHAT, |_, _| Ok(()))
                })
        };
        match spawned {
            Ok(thread) => journal.checkpoint_started(Background { ops: count, thread }),
            // No thread: the checkpoint of the switched journal in the foreground.
            Err(_) => {
                if fail {
                    return Err(storage_msg(
                        &self.dir,
                        WHAT,
                        "failed on purpose (test)".into(),
                    ));
                }
                // If it fails, its operations stay pending: their records are in the other
                // region, which the journal does not switch back to before they are applied.
                commit_journaled(
                    &self.db,
                    &self.dir,
                    &self.chain,
                    &journal.pending()[..count],
                    round,
                    region,
                    WHAT,
                    |_, _| Ok(()),
                )?;
                journal.checkpoint_applied(count);
            }
        }
        Ok(())
    }

    /// Ends the checkpoint running in the background, if it has ended or (if `wait`) once it
    /// does. If it failed, its operations stay pending, and the next checkpoint is made in the
    /// foreground, which reports the error if it persists.
    fn end_checkpoint(&self, journal: &mut Journal, wait: bool) {
        if let Some(background) = journal.take_background(wait) {
            match background.thread.join() {
                Ok(Ok(())) => journal.checkpoint_applied(background.ops),
                Ok(Err(e)) => journal.checkpoint_failed(e.to_string()),
                Err(_) => journal.checkpoint_failed("the checkpoint's thread panicked".to_owned()),
            }
        }
    }

    /// What applying `op`'s admissions after the journal's pending operations would refuse,
    /// found before `op` is journaled (so that an operation acknowledged as durable always
    /// applies): an admitted requests table whose first row does not decode (`admit_in` reads
    /// it to prune), or a row (expiry, approver, request id) already held, in redb, pending or
    /// earlier in `op`, with another session (a [`KeystoreError::Conflict`]). Stricter than
    /// `admit_in` in one case the node never meets: a row held but expired before `op`'s
    /// time, which `admit_in` might prune first.
    fn refuse_conflicts(
        &self,
        txn: &ReadTransaction,
        journal: &Journal,
        op: &JournalOp,
    ) -> Result<(), KeystoreError> {
        if op.admissions.is_empty() {
            return Ok(());
        }
        let table = self.open_read_table(txn, ADMITTED_REQUESTS)?;
        if let Some(table) = &table {
            first_expiry(table, &self.dir)?;
        }
        for (i, (row, _)) in op.admissions.iter().enumerate() {
            let key = row.key();
            let earlier = op.admissions[..i]
                .iter()
                .rev()
                .find(|(held, _)| held.key() == key)
                .map(|(held, _)| held.session.to_vec())
                .or_else(|| journal.pending_admission(&key).map(|s| s.to_vec()));
            let held = match (earlier, &table) {
                (Some(session), _) => Some(session),
                (None, Some(table)) => table
                    .get(key.as_slice())
                    .map_err(|e| storage(&self.dir, "looking up an admitted request", e))?
                    .map(|v| v.value().to_vec()),
                (None, None) => None,
            };
            if let Some(session) = held.filter(|s| s.as_slice() != row.session.as_slice()) {
                return Err(conflict(row, &session));
            }
        }
        Ok(())
    }

    /// Makes redb hold every journaled write (a checkpoint, if any is pending): for the reads
    /// of the tables the journal writes. After a failed journal sync it refuses only if writes
    /// are pending (they cannot be made durable).
    fn settle(&self, what: &str) -> Result<(), KeystoreError> {
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| poisoned_journal(&self.dir, what))?;
        self.end_checkpoint(&mut journal, true);
        if journal.pending().is_empty() {
            return Ok(());
        }
        if let Some(failure) = journal.failure() {
            return Err(storage_msg(&self.dir, what, failure.to_owned()));
        }
        self.write_locked(&mut journal, what, |_, _| Ok(()))
    }

    /// Opening: replays the operations of the journal file's `bytes` that follow what redb
    /// holds (if redb has a journal round, `journaled`), and begins a new round, in one synced
    /// transaction. Returns how many operations it replayed.
    fn replay(&self, journaled: bool, bytes: &[u8]) -> Result<u64, KeystoreError> {
        let mut journal = self.lock_journal("opening the journal")?;
        // (The journal was made in redb's round. The audit log's last entry is read only if
        // there is a record: a log whose last row does not decode still opens, for
        // `verify_audit` to name it.)
        let (ops, next_entry) = if journaled && journal.begins_with_record(bytes) {
            let next_entry = next_audit_seq(&self.read()?, &self.dir)?;
            let ops = journal
                .replayable(bytes, next_entry)
                .map_err(|e| corrupt(&self.dir, e))?;
            (ops, next_entry)
        } else {
            (Vec::new(), 1)
        };
        let count = ops.len() as u64;
        journal.numbered_from(next_entry);
        journal.replayed(ops);
        self.write_locked(&mut journal, "replaying the journal", |_, _| Ok(()))
            .map_err(|e| match e {
                KeystoreError::Corrupt(m) => KeystoreError::Corrupt(format!(
                    "{m} (while replaying {count} journal records: the keystore cannot open \
                     until this is repaired)"
                )),
                other => other,
            })?;
        Ok(count)
    }

    /// The journal, if it takes writes.
    fn lock_journal(&self, what: &str) -> Result<MutexGuard<'_, Journal>, KeystoreError> {
        let journal = self
            .journal
            .lock()
            .map_err(|_| poisoned_journal(&self.dir, what))?;
        if let Some(failure) = journal.failure() {
            return Err(storage_msg(&self.dir, what, failure.to_owned()));
        }
        Ok(journal)
    }

    /// Runs `body` in one write transaction and commits it durably (fsync, two-phase commit),
    /// after the journal's pending writes (see [`write_locked`](Self::write_locked)). On error
    /// the transaction is aborted and nothing changes.
    fn write<T>(
        &self,
        what: &str,
        body: impl FnOnce(&WriteTransaction, &Path) -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        let mut journal = self.lock_journal(what)?;
        self.write_locked(&mut journal, what, body)
    }

    /// One write transaction: the journal's pending operations (the writes before this one, in
    /// their order, after any background checkpoint ended), then `body`, committed durably
    /// (fsync, two-phase commit); then the journal starts again in a new round (a checkpoint
    /// in the foreground). On error the transaction is aborted, nothing changes and the
    /// operations stay pending.
    fn write_locked<T>(
        &self,
        journal: &mut Journal,
        what: &str,
        body: impl FnOnce(&WriteTransaction, &Path) -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        self.end_checkpoint(journal, true);
        let mut round = [0; ROUND_LEN];
        crypto::fill_random(&mut round)
            .map_err(|e| storage_msg(&self.dir, "choosing the journal's round", e))?;
        let region = Region::Half(0);
        let out = commit_journaled(
            &self.db,
            &self.dir,
            &self.chain,
            journal.pending(),
            round,
            region,
            what,
            body,
        )?;
        journal.restart(round, region);
        Ok(out)
    }

    fn read(&self) -> Result<ReadTransaction, KeystoreError> {
        self.db
            .begin_read()
            .map_err(|e| storage(&self.dir, "starting a read", e))
    }

    /// Opens a table for reading; `None` if it does not exist yet.
    fn open_read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &ReadTransaction,
        table: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, KeystoreError> {
        match txn.open_table(table) {
            Ok(table) => Ok(Some(table)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(storage(&self.dir, "opening a table", e)),
        }
    }

    /// How the database's disk is used, table by table (redb's own accounting, from one read
    /// transaction), tables that do not exist yet left out.
    pub fn usage(&self) -> Result<Vec<TableUsage>, KeystoreError> {
        self.settle("measuring the tables")?;
        let txn = self.read()?;
        let mut tables = Vec::new();
        if let Some(mut audit) = self.table_usage(&txn, AUDIT)? {
            if let Some(table) = self.open_read_table(&txn, AUDIT)? {
                audit.entries = self.count_audit_entries(&table)?;
            }
            tables.push(audit);
        }
        tables.extend(self.table_usage(&txn, ADMITTED_REQUESTS)?);
        tables.extend(self.table_usage(&txn, SHARES)?);
        tables.extend(self.table_usage(&txn, RESHARES)?);
        tables.extend(self.table_usage(&txn, CONCLUDED)?);
        tables.extend(self.table_usage(&txn, CERTIFICATES)?);
        tables.extend(self.table_usage(&txn, IDENTITY)?);
        tables.extend(self.table_usage(&txn, META)?);
        Ok(tables)
    }

    fn table_usage<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &ReadTransaction,
        definition: TableDefinition<K, V>,
    ) -> Result<Option<TableUsage>, KeystoreError> {
        let Some(table) = self.open_read_table(txn, definition)? else {
            return Ok(None);
        };
        let failed = |e| storage(&self.dir, "reading a table's disk use", e);
        let stats = table.stats().map_err(failed)?;
        Ok(Some(TableUsage {
            table: definition.name().to_owned(),
            entries: table.len().map_err(failed)?,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
            pages: stats.leaf_pages() + stats.branch_pages(),
        }))
    }

    fn bad_share(&self, key_id: &str, epoch: u64, e: DecodeError) -> KeystoreError {
        corrupt(
            &self.dir,
            format!(
                "share row for key {key_id:?} at epoch {epoch} does not decode: {}",
                e.0
            ),
        )
    }
}

/// Disk use of one keystore table ([`KeyStore::usage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableUsage {
    /// The table's name in the database.
    pub table: String,
    /// Rows; for `audit`, its entries (a row holds a block of them).
    pub entries: u64,
    /// Bytes of its keys and values.
    pub stored_bytes: u64,
    /// Bytes of its branch pages' keys and other bookkeeping.
    pub metadata_bytes: u64,
    /// Bytes of its pages that hold nothing (partly filled and fragmented pages).
    pub fragmented_bytes: u64,
    /// Its pages (leaf and branch).
    pub pages: u64,
}

impl TableUsage {
    /// Every byte the table takes in the database file.
    pub fn total_bytes(&self) -> u64 {
        self.stored_bytes + self.metadata_bytes + self.fragmented_bytes
    }
}

/// A reshare record as stored: (session id, the caller's record bytes).
pub type ReshareRow = ([u8; 32], Vec<u8>);

/// A client signing request a node admitted ([`KeyStore::admit_client_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequestRow {
    /// The client's ed25519 public key.
    pub client: [u8; 32],
    /// The request id.
    pub request_id: [u8; 16],
    /// The signing session it was admitted in.
    pub session: [u8; 32],
    /// When it may be forgotten, milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
}

impl ClientRequestRow {
    /// Its key in [`ADMITTED_REQUESTS`]: expiry ‖ client ‖ request id.
    pub(crate) fn key(&self) -> [u8; 56] {
        let mut key = [0; 56];
        key[..8].copy_from_slice(&self.expires_unix_ms.to_be_bytes());
        key[8..40].copy_from_slice(&self.client);
        key[40..].copy_from_slice(&self.request_id);
        key
    }

    /// The expiry a key of [`ADMITTED_REQUESTS`] begins with.
    fn expiry_of(key: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
    }

    /// A row of [`ADMITTED_REQUESTS`]; `None` unless both parts have their exact lengths.
    fn from_row(key: &[u8], value: &[u8]) -> Option<Self> {
        if key.len() != 56 || value.len() != 32 {
            return None;
        }
        Some(ClientRequestRow {
            client: key.get(8..40)?.try_into().ok()?,
            request_id: key.get(40..)?.try_into().ok()?,
            session: value.try_into().ok()?,
            expires_unix_ms: Self::expiry_of(key)?,
        })
    }

    /// A row of format version 1's `client_requests`.
    fn from_v1(key: &[u8], value: &[u8]) -> Option<Self> {
        if key.len() != 48 || value.len() != 40 {
            return None;
        }
        Some(ClientRequestRow {
            client: key.get(..32)?.try_into().ok()?,
            request_id: key.get(32..)?.try_into().ok()?,
            session: value.get(..32)?.try_into().ok()?,
            expires_unix_ms: u64::from_be_bytes(value.get(32..)?.try_into().ok()?),
        })
    }
}

/// Keeps `certificate` (opaque bytes) as the one `session` was concluded on.
fn keep_certificate_in(
    txn: &WriteTransaction,
    dir: &Path,
    session: &[u8; 32],
    certificate: &[u8],
) -> Result<(), KeystoreError> {
    txn.open_table(CERTIFICATES)
        .map_err(|e| storage(dir, "opening the certificates table", e))?
        .insert(session.as_slice(), certificate)
        .map_err(|e| storage(dir, "keeping a certificate", e))?;
    Ok(())
}

/// How a reshare ends for this node's shares of the key ([`KeyStore::conclude_reshare`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReshareConclusion {
    /// Committed, and this node is in the new committee: its PENDING share of `epoch` becomes
    /// ACTIVE and every other epoch of the key is deleted.
    Promote {
        /// The new epoch.
        epoch: u64,
    },
    /// Committed, and this node is not in the new committee: its shares of `epoch` and before
    /// are deleted.
    Retire {
        /// The old epoch.
        epoch: u64,
    },
    /// Aborted: the PENDING share of `epoch` (if stored) is deleted; the old epoch stays.
    Discard {
        /// The new epoch that did not happen.
        epoch: u64,
    },
}

fn record_fault(problem: AuditProblem) -> AuditFault {
    AuditFault { seq: None, problem }
}

/// The first and the last key of the shares table's rows of `key_id` (every epoch of one key
/// is one range: the id is length-prefixed, so no other id's rows fall between).
fn share_keys_of(key_id: &str) -> Result<(Vec<u8>, Vec<u8>), KeystoreError> {
    Ok((
        format::share_key(key_id, 0).map_err(too_long)?,
        format::share_key(key_id, u64::MAX).map_err(too_long)?,
    ))
}

fn conclude_in(
    txn: &WriteTransaction,
    dir: &Path,
    session: &[u8; 32],
) -> Result<(), KeystoreError> {
    txn.open_table(CONCLUDED)
        .map_err(|e| storage(dir, "opening the concluded sessions table", e))?
        .insert(session.as_slice(), ())
        .map_err(|e| storage(dir, "remembering a concluded session", e))?;
    Ok(())
}

/// Remembers an admitted request (forgetting expired ones first, in a pass, once the oldest is
/// [`PRUNE_SLACK_MS`] late) and appends its audit
/// entry, in `txn`. Whether the id was admitted before is the caller's question (the node's
/// gates); the same row twice is one row. The one check made here costs no lookup: the row's
/// key already present with another session (redb's insert returns what it replaces) is the
/// same approval admitted twice, a [`KeystoreError::Conflict`].
fn admit_in(
    txn: &WriteTransaction,
    dir: &Path,
    chain: &MacKey,
    request: &ClientRequestRow,
    audit: &[u8],
    now_unix_ms: u64,
) -> Result<(), KeystoreError> {
    let mut admitted = txn
        .open_table(ADMITTED_REQUESTS)
        .map_err(|e| storage(dir, "opening the admitted requests table", e))?;
    let oldest = |admitted: &redb::Table<&[u8], &[u8]>| first_expiry(admitted, dir);
    if oldest(&admitted)?.is_some_and(|expiry| expiry.saturating_add(PRUNE_SLACK_MS) <= now_unix_ms)
    {
        for _ in 0..PRUNE_PER_PASS {
            if oldest(&admitted)?.is_none_or(|expiry| expiry >= now_unix_ms) {
                break;
            }
            admitted
                .pop_first()
                .map_err(|e| storage(dir, "forgetting an admitted request", e))?;
        }
    }
    let replaced = admitted
        .insert(request.key().as_slice(), request.session.as_slice())
        .map_err(|e| storage(dir, "writing an admitted request", e))?;
    if let Some(session) = replaced.filter(|s| s.value() != request.session.as_slice()) {
        return Err(conflict(request, session.value()));
    }
    drop(admitted);
    append_audit_in(txn, dir, chain, audit)?;
    Ok(())
}

/// Applies one journaled operation in `txn`: its admissions, then its audit entries.
fn apply_in(
    txn: &WriteTransaction,
    dir: &Path,
    chain: &MacKey,
    op: &JournalOp,
) -> Result<(), KeystoreError> {
    for (row, audit) in &op.admissions {
        admit_in(txn, dir, chain, row, audit, op.now_unix_ms)?;
    }
    for audit in &op.audits {
        append_audit_in(txn, dir, chain, audit)?;
    }
    Ok(())
}

/// One synced write transaction (two-phase commit): `ops` (journaled operations redb does not
/// hold yet), in order, then `body`, and the journal's `round` and `region` in the meta table.
/// Returns `body`'s value. On error the
/// transaction is aborted and nothing changes. Run by a checkpoint in the foreground and in
/// the background.
#[allow(clippy::too_many_arguments)]
fn commit_journaled<T>(
    db: &Database,
    dir: &Path,
    chain: &MacKey,
    ops: &[JournalOp],
    round: [u8; ROUND_LEN],
    region: Region,
    what: &str,
    body: impl FnOnce(&WriteTransaction, &Path) -> Result<T, KeystoreError>,
) -> Result<T, KeystoreError> {
    let mut txn = db.begin_write().map_err(|e| storage(dir, what, e))?;
    txn.set_durability(Durability::Immediate);
    txn.set_two_phase_commit(true);
    let written = (|| {
        for op in ops {
            apply_in(&txn, dir, chain, op)?;
        }
        let mut meta = txn
            .open_table(META)
            .map_err(|e| storage(dir, "opening the meta table", e))?;
        meta.insert(format::META_JOURNAL_ROUND, round.as_slice())
            .map_err(|e| storage(dir, "writing the journal's round", e))?;
        if let Some(byte) = region.meta_byte() {
            // With the round it belongs to: a build from before the regions renews the round
            // alone, and its records then span the file.
            let mut value = vec![byte];
            value.extend_from_slice(&round);
            meta.insert(format::META_JOURNAL_REGION, value.as_slice())
                .map_err(|e| storage(dir, "writing the journal's region", e))?;
        }
        drop(meta);
        body(&txn, dir)
    })();
    match written {
        Ok(out) => {
            txn.commit().map_err(|e| storage(dir, what, e))?;
            Ok(out)
        }
        Err(e) => {
            // The error being reported matters more than a failure to abort; dropping the
            // transaction aborts it in any case.
            let _ = txn.abort();
            Err(e)
        }
    }
}

/// The number the next audit entry takes, as of `txn` (1 before the first).
fn next_audit_seq(txn: &ReadTransaction, dir: &Path) -> Result<u64, KeystoreError> {
    let table = match txn.open_table(AUDIT) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(1),
        Err(e) => return Err(storage(dir, "opening the audit table", e)),
    };
    Ok(next_in_chain(last_audit_row(&table, dir)?.as_ref(), dir)?.0)
}

/// The journal's round `db` holds, if any (a store written before the journal has none), and
/// its region: the whole file if the meta table names none (a store written before the
/// regions) or names it for another round (a build from before the regions wrote since, which
/// renews the round alone).
fn read_journal_round(
    db: &Database,
    dir: &Path,
) -> Result<Option<([u8; ROUND_LEN], Region)>, KeystoreError> {
    let txn = db
        .begin_read()
        .map_err(|e| storage(dir, "starting a read", e))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(storage(dir, "opening the meta table", e)),
    };
    let round: [u8; ROUND_LEN] = match meta
        .get(format::META_JOURNAL_ROUND)
        .map_err(|e| storage(dir, "reading the journal's round", e))?
    {
        None => return Ok(None),
        Some(value) => value
            .value()
            .try_into()
            .map_err(|_| corrupt(dir, format!("the journal's round is not {ROUND_LEN} bytes")))?,
    };
    let region = match meta
        .get(format::META_JOURNAL_REGION)
        .map_err(|e| storage(dir, "reading the journal's region", e))?
    {
        None => Region::Whole,
        Some(value) => match value.value() {
            [h @ (0 | 1), of @ ..] if of == round.as_slice() => Region::Half(*h),
            [0 | 1, of @ ..] if of.len() == ROUND_LEN => Region::Whole,
            other => {
                return Err(corrupt(
                    dir,
                    format!(
                        "the journal's region ({} bytes) is not 0 or 1 followed by a round",
                        other.len()
                    ),
                ))
            }
        },
    };
    Ok(Some((round, region)))
}

/// The expiry of the first row of the admitted requests table, if any (the row `admit_in`
/// prunes from); a row whose key does not decode is corruption.
fn first_expiry(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    dir: &Path,
) -> Result<Option<u64>, KeystoreError> {
    table
        .first()
        .map_err(|e| storage(dir, "listing admitted requests", e))?
        .map(|(key, _)| {
            ClientRequestRow::expiry_of(key.value())
                .ok_or_else(|| corrupt(dir, "an admitted request row does not decode".into()))
        })
        .transpose()
}

/// The conflict of admitting `row` where its key is held with `session` (as stored).
fn conflict(row: &ClientRequestRow, session: &[u8]) -> KeystoreError {
    KeystoreError::Conflict(format!(
        "request id {} of approver {} was already admitted in session {}",
        hex::encode(row.request_id),
        hex::encode(row.client),
        hex::encode(session)
    ))
}

fn poisoned_journal(dir: &Path, what: &str) -> KeystoreError {
    storage_msg(
        dir,
        what,
        "a write panicked while holding the journal; reopen the keystore".into(),
    )
}

/// Opens the journal file (creating it, mode 0600 on Unix), reads its first
/// [`JOURNAL_BYTES`], and makes sure the file is that long in written bytes (zeros past what
/// it holds), so that a sync of a record writes no file-system metadata.
fn open_journal(dir: &Path) -> Result<(fs::File, Vec<u8>), KeystoreError> {
    let path = dir.join(JOURNAL_FILE_NAME);
    let failed = |what: &str, e: std::io::Error| storage_msg(dir, what, e.to_string());
    let created = !path.exists();
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| failed("opening the journal", e))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(JOURNAL_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| failed("reading the journal", e))?;
    let len = bytes.len() as u64;
    if len < JOURNAL_BYTES {
        let zeros = vec![0; (JOURNAL_BYTES - len) as usize];
        JournalFile::write_at(&mut file, len, &zeros)
            .and_then(|()| file.sync_all())
            .map_err(|e| failed("preallocating the journal", e))?;
    }
    if created {
        sync_dir(dir)?;
    }
    Ok((file, bytes))
}

/// Moves format version 1's two request tables into [`ADMITTED_REQUESTS`] and deletes them, in
/// `txn`. Returns how many rows it moved.
fn migrate_request_tables_in(txn: &WriteTransaction, dir: &Path) -> Result<u64, KeystoreError> {
    const WHAT: &str = "migrating the client requests table";
    let failed = |e: redb::Error| storage(dir, WHAT, e);
    let mut moved = 0;
    {
        let old = txn
            .open_table(CLIENT_REQUESTS_V1)
            .map_err(|e| failed(e.into()))?;
        let mut admitted = txn
            .open_table(ADMITTED_REQUESTS)
            .map_err(|e| failed(e.into()))?;
        for item in old.iter().map_err(|e| failed(e.into()))? {
            let (key, value) = item.map_err(|e| failed(e.into()))?;
            let row = ClientRequestRow::from_v1(key.value(), value.value()).ok_or_else(|| {
                corrupt(
                    dir,
                    "a client request row of format 1 does not decode".into(),
                )
            })?;
            admitted
                .insert(row.key().as_slice(), row.session.as_slice())
                .map_err(|e| failed(e.into()))?;
            moved += 1;
        }
    }
    txn.delete_table(CLIENT_REQUESTS_V1)
        .map_err(|e| failed(e.into()))?;
    txn.delete_table(CLIENT_REQUEST_EXPIRY_V1)
        .map_err(|e| failed(e.into()))?;
    Ok(moved)
}

/// Appends the encoded (version 4) entry `body` to the audit log, chained to the last entry:
/// `mac = HMAC(chain key, seq ‖ last entry's MAC ‖ body)` (the first entry chains to
/// [`AUDIT_GENESIS`]). The entry goes into the last row if that is a block with room for it,
/// which is rewritten with it, else into a new block row under `seq`. Every writer of the
/// audit table goes through here.
fn append_audit_in(
    txn: &WriteTransaction,
    dir: &Path,
    chain: &MacKey,
    body: &[u8],
) -> Result<u64, KeystoreError> {
    let mut table = txn
        .open_table(AUDIT)
        .map_err(|e| storage(dir, "opening the audit table", e))?;
    let (last, seq, mac) = chain_to_last(&table, dir, chain, body)?;
    let bad_block = |e: format::DecodeError| {
        corrupt(
            dir,
            format!(
                "the audit entry {seq} cannot be stored next to the last row: {}",
                e.0
            ),
        )
    };
    let extended = match &last {
        Some((key, value)) if value.first() == Some(&format::AUDIT_BLOCK_VERSION) => {
            format::extend_block(value, &mac, body)
                .map_err(bad_block)?
                .map(|block| (*key, block))
        }
        _ => None,
    };
    let (key, row) = match extended {
        Some(extended) => extended,
        None => (
            seq,
            format::encode_block(&[(&mac, body)]).map_err(bad_block)?,
        ),
    };
    table
        .insert(key, row.as_slice())
        .map_err(|e| storage(dir, "writing the audit log", e))?;
    Ok(seq)
}

/// An audit row as stored: its key and its value.
type AuditRowBytes = (u64, Vec<u8>);

/// Chains `body` to the audit log's last entry: the last row, the new entry's sequence number,
/// and its MAC.
fn chain_to_last(
    table: &redb::Table<'_, u64, &[u8]>,
    dir: &Path,
    chain: &MacKey,
    body: &[u8],
) -> Result<(Option<AuditRowBytes>, u64, [u8; MAC_LEN]), KeystoreError> {
    let last = last_audit_row(table, dir)?;
    let (seq, previous) = next_in_chain(last.as_ref(), dir)?;
    let mac = chain.mac(&format::audit_mac_input(
        &seq.to_be_bytes(),
        &previous,
        body,
    ));
    Ok((last, seq, mac))
}

/// The audit table's last row (its key and value), if any.
fn last_audit_row(
    table: &impl ReadableTable<u64, &'static [u8]>,
    dir: &Path,
) -> Result<Option<AuditRowBytes>, KeystoreError> {
    Ok(table
        .last()
        .map_err(|e| storage(dir, "reading the audit log", e))?
        .map(|(key, value)| (key.value(), value.value().to_vec())))
}

/// The sequence number of the next audit entry after the last row `last` and the MAC it
/// chains to.
fn next_in_chain(
    last: Option<&AuditRowBytes>,
    dir: &Path,
) -> Result<(u64, [u8; MAC_LEN]), KeystoreError> {
    let Some((key, value)) = last else {
        return Ok((1, AUDIT_GENESIS));
    };
    let (last, mac) = format::audit_row_tail(*key, value).map_err(|e| {
        corrupt(
            dir,
            format!(
                "the last audit row ({key}) does not decode, so nothing can be chained to it: {}",
                e.0
            ),
        )
    })?;
    let seq = last.checked_add(1).ok_or_else(|| {
        corrupt(
            dir,
            "the audit log's last sequence number is u64::MAX".into(),
        )
    })?;
    Ok((seq, mac))
}

/// Chains `body` to the last audit entry as a single-entry row of the old `version` (2, 3 or
/// 4), as the builds before audit blocks wrote it: for tests, which write such rows.
#[cfg(test)]
fn append_audit_row_in(
    txn: &WriteTransaction,
    dir: &Path,
    chain: &MacKey,
    version: u8,
    body: &[u8],
) -> Result<u64, KeystoreError> {
    let mut table = txn
        .open_table(AUDIT)
        .map_err(|e| storage(dir, "opening the audit table", e))?;
    let (_, seq, mac) = chain_to_last(&table, dir, chain, body)?;
    table
        .insert(
            seq,
            format::encode_audit_row(version, &mac, body).as_slice(),
        )
        .map_err(|e| storage(dir, "writing the audit log", e))?;
    Ok(seq)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads the meta table. `None` for a store that was never initialised (no meta table, and no
/// shares or audit entries either).
fn read_meta(dir: &Path, txn: &ReadTransaction) -> Result<Option<Meta>, KeystoreError> {
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            if let Ok(shares) = txn.open_table(SHARES) {
                if shares
                    .len()
                    .map_err(|e| storage(dir, "reading the shares table", e))?
                    > 0
                {
                    return Err(corrupt(
                        dir,
                        "the shares table has rows but the meta table is missing".into(),
                    ));
                }
            }
            return Ok(None);
        }
        Err(e) => return Err(storage(dir, "opening the meta table", e)),
    };
    let field = |key: &[u8]| -> Result<Vec<u8>, KeystoreError> {
        let name = String::from_utf8_lossy(key);
        let value = meta
            .get(key)
            .map_err(|e| storage(dir, "reading the meta table", e))?
            .ok_or_else(|| corrupt(dir, format!("the meta table has no {name:?} entry")))?;
        Ok(value.value().to_vec())
    };
    let version = match field(format::META_FORMAT_VERSION)?.as_slice() {
        [version @ (FORMAT_VERSION_V1 | FORMAT_VERSION)] => *version,
        version => {
            return Err(corrupt(
                dir,
                format!(
                    "format version {version:?} is not supported by this build (it reads \
                     versions {FORMAT_VERSION_V1} and {FORMAT_VERSION})"
                ),
            ))
        }
    };
    let kdf = field(format::META_KDF)?;
    let params = format::decode_kdf(&kdf)
        .map_err(|e| corrupt(dir, format!("the stored KDF parameters: {}", e.0)))?;
    params
        .argon2_params()
        .map_err(|e| corrupt(dir, format!("the stored KDF parameters: {e}")))?;
    let salt = field(format::META_SALT)?;
    if salt.len() != SALT_LEN {
        return Err(corrupt(
            dir,
            format!(
                "the stored salt is {} bytes, expected {SALT_LEN}",
                salt.len()
            ),
        ));
    }
    let check = field(format::META_CHECK)?;
    Ok(Some(Meta {
        version,
        params,
        kdf,
        salt,
        check,
    }))
}

/// Creates `dir` (mode 0700 on Unix) if it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), KeystoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| storage(dir, "creating the keystore directory", e))
}

/// Opens (or creates, mode 0600 on Unix) the database file, and makes a new file's directory
/// entry durable.
fn open_database(dir: &Path, db_path: &Path) -> Result<Database, KeystoreError> {
    let created = if db_path.exists() {
        false
    } else {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(db_path) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(storage(dir, "creating the database file", e)),
        }
    };
    let db = Database::builder()
        .set_cache_size(DATABASE_CACHE_BYTES)
        .create(db_path)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => KeystoreError::AlreadyOpen {
                path: dir.to_path_buf(),
            },
            other => storage(dir, "opening the database", other),
        })?;
    if created {
        sync_dir(dir)?;
    }
    Ok(db)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), KeystoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage(dir, "syncing the keystore directory", e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), KeystoreError> {
    Ok(())
}

fn storage(dir: &Path, what: &str, e: impl Into<redb::Error>) -> KeystoreError {
    match e.into() {
        redb::Error::Corrupted(msg) => corrupt(dir, format!("while {what}: {msg}")),
        other => KeystoreError::Storage(format!(
            "{what} in the keystore at {}: {other}",
            dir.display()
        )),
    }
}

fn storage_msg(dir: &Path, what: &str, msg: String) -> KeystoreError {
    KeystoreError::Storage(format!(
        "{what} in the keystore at {}: {msg}",
        dir.display()
    ))
}

fn corrupt(dir: &Path, msg: String) -> KeystoreError {
    KeystoreError::Corrupt(format!("keystore at {}: {msg}", dir.display()))
}

fn not_found(key_id: &str, epoch: u64) -> KeystoreError {
    KeystoreError::NotFound {
        key_id: key_id.to_owned(),
        epoch,
    }
}

fn too_long(e: TooLong) -> KeystoreError {
    KeystoreError::InvalidInput(format!(
        "the {} is longer than the keystore format allows (4 GiB)",
        e.0
    ))
}

fn unencodable_audit(e: AuditEncodeError) -> KeystoreError {
    match e {
        AuditEncodeError::TooLong(e) => too_long(e),
        AuditEncodeError::InvalidPath(why) => KeystoreError::InvalidInput(format!(
            "the audit entry's client key path {why}: the audit log cannot record it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_audit_body_before_v4, AUDIT_ROW_VERSION, AUDIT_ROW_VERSION_V3};
    use crate::record::{AuditClient, AuditKind};

    fn open(dir: &Path) -> KeyStore {
        KeyStore::open_with_params(dir, b"passphrase", KdfParams::FAST_INSECURE_FOR_TESTS).unwrap()
    }

    /// A failed sync of the journal: the batch it was to make durable fails (so the node
    /// releases no share on it), and the store takes no write after it, journaled or synced by
    /// redb, even once the disk answers again. A crash then keeps what was synced before.
    #[test]
    fn a_failed_journal_sync_fails_its_batch_and_every_write_after_it() {
        use crate::journal::memory_file::MemoryFile;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let row = |n: u8| ClientRequestRow {
            client: [1; 32],
            request_id: [n; 16],
            session: [n; 32],
            expires_unix_ms: 10_000,
        };
        let admit = |n: u8| store.write_batch(&[(row(n), entry(n, None))], &[], true, 0);
        admit(1).unwrap();
        let failing = MemoryFile::default();
        failing.state().fail_sync = true;
        store
            .journal
            .lock()
            .unwrap()
            .replace_file(Box::new(failing.clone()));
        let error = admit(2).unwrap_err();
        assert!(
            matches!(&error, KeystoreError::Storage(m) if m.contains("restart the node")),
            "{error}"
        );
        failing.state().fail_sync = false;
        assert!(admit(3).is_err());
        assert!(store.sync().is_err());
        assert!(store.append_audit(&entry(4, None)).is_err());
        assert!(store.conclude_session(&[4; 32]).is_err());
        assert_eq!(
            failing.state().syncs,
            0,
            "nothing was synced after the failure"
        );
        // The crash: the copy keeps the journal as the disk had it.
        after_a_crash(dir.path(), |restarted| {
            assert_eq!(restarted.client_requests(0).unwrap(), vec![row(1)]);
            admit_and_check(restarted);
        });
    }

    /// Client request `n` of one client, admitted in session `[n; 32]`.
    fn admitted_request(n: u32) -> ClientRequestRow {
        ClientRequestRow {
            client: [1; 32],
            request_id: {
                let mut id = [0; 16];
                id[..4].copy_from_slice(&n.to_be_bytes());
                id
            },
            session: [n as u8; 32],
            expires_unix_ms: 10_000,
        }
    }

    /// Opens what a crash now would leave on disk (the database and the journal of `dir`,
    /// copied) and reads it with `read`; the copy lives until `read` returns.
    fn after_a_crash<T>(dir: &Path, read: impl FnOnce(&KeyStore) -> T) -> T {
        let image = tempfile::tempdir().unwrap();
        for name in [DATABASE_FILE_NAME, JOURNAL_FILE_NAME] {
            fs::copy(dir.join(name), image.path().join(name)).unwrap();
        }
        read(&open(image.path()))
    }

    /// A checkpoint in the background that fails: its operations stay pending, the journal
    /// goes on in the other region, and the next checkpoint is made in the foreground. A crash
    /// in between replays both regions; nothing is lost either way.
    #[test]
    fn a_failed_background_checkpoint_is_made_again_in_the_foreground() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let row = admitted_request;
        let admit = |n: u32| {
            store
                .write_batch(&[(row(n), entry(n as u8, None))], &[], true, 0)
                .unwrap()
        };
        let every = crate::CHECKPOINT_EVERY as u32;
        store.fail_switch_checkpoints.store(true, Ordering::Relaxed);
        for n in 1..=every + 10 {
            admit(n);
        }
        // The switch at `every + 1` started a checkpoint that failed; nothing reached redb.
        after_a_crash(dir.path(), |restarted| {
            assert_eq!(restarted.journal_replayed_on_open(), u64::from(every + 10));
            assert_eq!(
                restarted.client_requests(0).unwrap().len() as u32,
                every + 10
            );
        });
        {
            let journal = store.journal.lock().unwrap();
            assert!(!journal.checkpoint_running() || journal.pending().len() as u32 == every + 10);
        }
        // The disk answers again: the next checkpoint that comes due is made in the
        // foreground, with every pending operation.
        store
            .fail_switch_checkpoints
            .store(false, Ordering::Relaxed);
        for n in every + 11..=2 * every + 1 {
            admit(n);
        }
        {
            let journal = store.journal.lock().unwrap();
            assert!(
                !journal.checkpoint_running(),
                "the checkpoint ran in the foreground"
            );
            assert!(journal.pending().len() < 5, "{}", journal.pending().len());
        }
        // The failure is told once, for the log.
        let failure = store.take_checkpoint_failure().unwrap();
        assert!(failure.contains("failed on purpose"), "{failure}");
        assert_eq!(store.take_checkpoint_failure(), None);
        let rows = store.client_requests(0).unwrap();
        assert_eq!(rows.len() as u32, 2 * every + 1);
        assert!(store.verify_audit().unwrap().is_intact());
    }

    /// A switch whose checkpoint cannot have a thread is checkpointed in the foreground; if
    /// that fails, its operations stay pending (their records are in the region the journal
    /// left), the journal does not switch back over them, and the next checkpoint applies them.
    #[test]
    fn a_failed_checkpoint_without_a_thread_keeps_its_operations_pending() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let row = admitted_request;
        let admit = |n: u32| store.write_batch(&[(row(n), entry(n as u8, None))], &[], true, 0);
        let every = crate::CHECKPOINT_EVERY as u32;
        store
            .checkpoint_without_a_thread
            .store(true, Ordering::Relaxed);
        store.fail_switch_checkpoints.store(true, Ordering::Relaxed);
        for n in 1..=every {
            admit(n).unwrap();
        }
        // The next write comes after a switch whose checkpoint failed: it is refused, and the
        // operations of the switched round stay pending.
        let refused = admit(every + 1).unwrap_err();
        assert!(
            refused.to_string().contains("failed on purpose"),
            "{refused}"
        );
        {
            let journal = store.journal.lock().unwrap();
            assert!(!journal.checkpoint_running());
            assert_eq!(journal.pending().len() as u32, every);
            assert!(!journal.can_switch(), "no switch back over their records");
        }
        // Written again, it goes to the other region; a crash now replays both regions.
        admit(every + 1).unwrap();
        after_a_crash(dir.path(), |restarted| {
            assert_eq!(
                restarted.client_requests(0).unwrap().len() as u32,
                every + 1
            );
        });
        // The disk answers again: the next checkpoint applies every pending operation.
        store
            .fail_switch_checkpoints
            .store(false, Ordering::Relaxed);
        for n in every + 2..=2 * every + 1 {
            admit(n).unwrap();
        }
        assert!(store.journal.lock().unwrap().pending().len() < 5);
        // Not a background failure: the write that needed the checkpoint was told.
        assert_eq!(store.take_checkpoint_failure(), None);
        assert_eq!(
            store.client_requests(0).unwrap().len() as u32,
            2 * every + 1
        );
        assert!(store.verify_audit().unwrap().is_intact());
        drop(store);
        let reopened = open(dir.path());
        assert_eq!(
            reopened.client_requests(0).unwrap().len() as u32,
            2 * every + 1
        );
    }

    /// A batch written without a sync, then synced on the journal's thread: once the sync was
    /// waited for, a crash keeps it; a write made meanwhile waits for it.
    #[test]
    fn a_sync_started_on_the_journals_thread_makes_its_batch_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let row = admitted_request;
        store
            .write_batch(&[(row(1), entry(1, None))], &[], false, 0)
            .unwrap();
        store.start_sync().unwrap();
        store.finish_sync().unwrap();
        after_a_crash(dir.path(), |restarted| {
            assert_eq!(restarted.client_requests(0).unwrap(), vec![row(1)]);
        });
        store
            .write_batch(&[(row(2), entry(2, None))], &[], false, 0)
            .unwrap();
        store.start_sync().unwrap();
        store
            .write_batch(&[(row(3), entry(3, None))], &[], true, 0)
            .unwrap();
        store.finish_sync().unwrap();
        after_a_crash(dir.path(), |restarted| {
            assert_eq!(restarted.client_requests(0).unwrap().len(), 3);
            assert!(restarted.verify_audit().unwrap().is_intact());
        });
    }

    /// Upgrading again after an older build (from before the regions) ran and crashed: that
    /// build renewed the round alone and wrote its records across the whole file, past the
    /// middle. The region the meta table still names is of an older round, so the file is read
    /// whole and every synced record is replayed.
    #[test]
    fn records_an_older_build_wrote_past_the_middle_are_replayed_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.append_audit(&entry(1, None)).unwrap();
        let key = MacKey::derive(&store.kek, crypto::JOURNAL_LABEL);
        drop(store); // meta: journal_round, journal_region = [0] ‖ journal_round
                     // The older build's open: a round of its own, journal_region left as it was.
        let old_round = [0x42; ROUND_LEN];
        let db = Database::open(dir.path().join(DATABASE_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(format::META_JOURNAL_ROUND, old_round.as_slice())
            .unwrap();
        txn.commit().unwrap();
        let next = next_audit_seq(&db.begin_read().unwrap(), dir.path()).unwrap();
        drop(db);
        // Its records (30 audit entries each), synced, from the start of the file.
        let file = fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(JOURNAL_FILE_NAME))
            .unwrap();
        let mut journal = Journal::new(Box::new(file), key, old_round, Region::Whole);
        journal.numbered_from(next);
        let records = 200u64;
        for n in 0..records {
            let op = JournalOp {
                now_unix_ms: 1,
                admissions: vec![],
                audits: (0..30)
                    .map(|i| format::encode_audit_body(&entry((n * 30 + i) as u8, None)).unwrap())
                    .collect(),
            };
            let payload = op.encode();
            assert!(journal.fits(payload.len()));
            journal.append(op, &payload);
        }
        journal.sync().unwrap();
        drop(journal);
        assert!(
            fs::read(dir.path().join(JOURNAL_FILE_NAME))
                .unwrap()
                .iter()
                .skip(crate::journal::REGION_BYTES as usize)
                .any(|b| *b != 0),
            "the records reach past the middle"
        );
        // The crash; this build opens the store again.
        let restarted = open(dir.path());
        assert_eq!(restarted.journal_replayed_on_open(), records);
        assert_eq!(restarted.audit().unwrap().len() as u64, 1 + 30 * records);
        assert!(restarted.verify_audit().unwrap().is_intact());
    }

    /// The store takes writes again after a restart.
    fn admit_and_check(store: &KeyStore) {
        let row = ClientRequestRow {
            client: [1; 32],
            request_id: [9; 16],
            session: [9; 32],
            expires_unix_ms: 10_000,
        };
        store
            .write_batch(&[(row.clone(), entry(9, None))], &[], true, 0)
            .unwrap();
        assert!(store.client_requests(0).unwrap().contains(&row));
        assert!(store.verify_audit().unwrap().is_intact());
    }

    fn entry(i: u8, path: Option<Vec<u32>>) -> AuditEntry {
        AuditEntry {
            time_unix_ms: 1_700_000_000_000 + u64::from(i),
            kind: AuditKind::SignatureShare,
            key_id: "k".into(),
            epoch: 1,
            message_digest: Some([i; 32]),
            requester: Some("coordinator".into()),
            detail: format!("entry {i}"),
            client: path.map(|path| AuditClient {
                public_key: [0xc1; 32],
                request_id: [i; 16],
                timestamp_ms: 1_700_000_000_000,
                session: [i; 32],
                path,
            }),
        }
    }

    /// Appends a row of `version` with `body`, chained as the build that wrote that version
    /// chained it.
    fn append_old(store: &KeyStore, version: u8, body: &[u8]) -> u64 {
        store
            .write("appending an old audit row", |txn, dir| {
                append_audit_row_in(txn, dir, &store.chain, version, body)
            })
            .unwrap()
    }

    fn versions(store: &KeyStore) -> Vec<u8> {
        let txn = store.read().unwrap();
        let table = store.open_read_table(&txn, AUDIT).unwrap().unwrap();
        table
            .iter()
            .unwrap()
            .map(|item| item.unwrap().1.value()[0])
            .collect()
    }

    /// Rows of versions 2 and 3, written by the encoders of the builds before version 4 (as an
    /// upgraded node finds them), then a block of version 4 bodies: one chain that verifies
    /// and reads back.
    #[test]
    fn old_rows_and_version_4_rows_verify_in_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let expected = vec![
            entry(1, None),
            entry(2, Some(Vec::new())),
            entry(3, None),
            entry(4, Some(vec![0, 17])),
            entry(5, Some(Vec::new())),
            entry(6, None),
        ];
        {
            let store = open(dir.path());
            let v2 = encode_audit_body_before_v4(AUDIT_ROW_VERSION_V2, &expected[0]).unwrap();
            assert_eq!(append_old(&store, AUDIT_ROW_VERSION_V2, &v2), 1);
            for (seq, entry) in (2..).zip(&expected[1..3]) {
                let v3 = encode_audit_body_before_v4(AUDIT_ROW_VERSION_V3, entry).unwrap();
                assert_eq!(append_old(&store, AUDIT_ROW_VERSION_V3, &v3), seq);
            }
            assert_eq!(store.append_audit(&expected[3]).unwrap(), 4);
            assert_eq!(store.append_audit_lazily(&expected[4]).unwrap(), 5);
        }
        // Reopened, as after an upgrade: nothing is migrated, a new entry chains on.
        let store = open(dir.path());
        assert_eq!(store.audit_migrated_on_open(), None);
        assert_eq!(store.append_audit(&expected[5]).unwrap(), 6);
        assert_eq!(versions(&store), vec![2, 3, 3, 5]);
        let outcome = store.verify_audit().unwrap();
        assert_eq!(outcome.fault, None, "{outcome:?}");
        assert_eq!((outcome.entries, outcome.verified), (6, 6));
        let read: Vec<AuditEntry> = store.audit().unwrap().into_iter().map(|(_, e)| e).collect();
        assert_eq!(read, expected);
    }

    /// In a mixed chain, a version 3 row with a client approval relabelled 4 (or a version 4
    /// row relabelled 3) is reported undecodable, a block relabelled as a single-entry row
    /// fails its MAC, and an edited path is reported edited.
    #[test]
    fn a_relabelled_or_edited_row_in_a_mixed_chain_is_named() {
        let relabel = |seq: u64, to: u8| {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let v3 = encode_audit_body_before_v4(AUDIT_ROW_VERSION_V3, &entry(1, Some(Vec::new())))
                .unwrap();
            append_old(&store, AUDIT_ROW_VERSION_V3, &v3);
            let v4 = format::encode_audit_body(&entry(2, Some(vec![4]))).unwrap();
            append_old(&store, AUDIT_ROW_VERSION, &v4);
            store.append_audit(&entry(3, Some(vec![5]))).unwrap();
            assert_eq!(versions(&store), vec![3, 4, 5]);
            store
                .write("editing", |txn, dir| {
                    let mut table = txn
                        .open_table(AUDIT)
                        .map_err(|e| storage(dir, "opening", e))?;
                    let mut row = table.get(seq).unwrap().unwrap().value().to_vec();
                    if to == 0 {
                        // The path's last byte: m/5 becomes m/6.
                        *row.last_mut().unwrap() += 1;
                    } else {
                        row[0] = to;
                    }
                    table
                        .insert(seq, row.as_slice())
                        .map_err(|e| storage(dir, "writing", e))?;
                    Ok(())
                })
                .unwrap();
            store.verify_audit().unwrap().fault.unwrap()
        };
        for (seq, to) in [(1, AUDIT_ROW_VERSION), (2, AUDIT_ROW_VERSION_V3)] {
            let fault = relabel(seq, to);
            assert_eq!(fault.seq, Some(seq));
            assert!(
                matches!(fault.problem, AuditProblem::Undecodable(_)),
                "{fault:?}"
            );
        }
        for to in [AUDIT_ROW_VERSION, AUDIT_ROW_VERSION_V3] {
            let fault = relabel(3, to);
            assert_eq!((fault.seq, fault.problem), (Some(3), AuditProblem::Edited));
        }
        let fault = relabel(3, 0);
        assert_eq!((fault.seq, fault.problem), (Some(3), AuditProblem::Edited));
    }

    /// Entries go into blocks that each fill one page (below 4 KiB), and a block holds many
    /// entries: the audit log costs far less than a row per entry.
    #[test]
    fn entries_fill_blocks_of_one_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for i in 0..200u8 {
            store
                .append_audit(&entry(i, Some(vec![0, u32::from(i)])))
                .unwrap();
        }
        let txn = store.read().unwrap();
        let table = store.open_read_table(&txn, AUDIT).unwrap().unwrap();
        let rows: Vec<(u64, usize)> = table
            .iter()
            .unwrap()
            .map(|item| {
                let (key, value) = item.unwrap();
                (key.value(), value.value().len())
            })
            .collect();
        drop((table, txn));
        // About 160 bytes an entry here: at least 24 entries a block, and every block but the
        // last within 150 bytes (one entry) of full.
        assert!(rows.len() <= 9, "{rows:?}");
        for (_, len) in &rows[..rows.len() - 1] {
            assert!(
                (format::audit_block::AUDIT_BLOCK_BYTES - 150
                    ..=format::audit_block::AUDIT_BLOCK_BYTES)
                    .contains(len),
                "{rows:?}"
            );
        }
        let seqs: Vec<u64> = store.audit().unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
        assert!(store.verify_audit().unwrap().is_intact());
        let usage = store.usage().unwrap();
        let audit = usage.iter().find(|t| t.table == "audit").unwrap();
        // One page a block, and one branch page over them.
        assert_eq!(audit.pages, rows.len() as u64 + 1, "{audit:?}");
        assert_eq!(audit.total_bytes(), audit.pages * 4096, "{audit:?}");
    }

    /// Makes the store in `dir` a store of format version 1 holding `by_id` in its
    /// `client_requests` table (raw rows) and `by_expiry` in its `client_request_expiry`; a
    /// table given no rows is not created (a version 1 store that never admitted a request).
    fn write_format_1(dir: &Path, by_id: &[(Vec<u8>, Vec<u8>)], by_expiry: &[Vec<u8>]) {
        let store = open(dir);
        store
            .write("writing format 1", |txn, dir| {
                let failed = |e: redb::Error| storage(dir, "writing format 1", e);
                if !by_id.is_empty() {
                    let mut ids = txn
                        .open_table(CLIENT_REQUESTS_V1)
                        .map_err(|e| failed(e.into()))?;
                    for (key, value) in by_id {
                        ids.insert(key.as_slice(), value.as_slice())
                            .map_err(|e| failed(e.into()))?;
                    }
                }
                if !by_expiry.is_empty() {
                    let mut expiries = txn
                        .open_table(CLIENT_REQUEST_EXPIRY_V1)
                        .map_err(|e| failed(e.into()))?;
                    for key in by_expiry {
                        expiries
                            .insert(key.as_slice(), ())
                            .map_err(|e| failed(e.into()))?;
                    }
                }
                txn.open_table(META)
                    .map_err(|e| failed(e.into()))?
                    .insert(format::META_FORMAT_VERSION, [FORMAT_VERSION_V1].as_slice())
                    .map_err(|e| failed(e.into()))?;
                Ok(())
            })
            .unwrap();
    }

    /// The format version stored in `dir`, read without opening the keystore.
    fn stored_version(dir: &Path) -> Vec<u8> {
        let db = Database::open(dir.join(DATABASE_FILE_NAME)).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let version = meta.get(format::META_FORMAT_VERSION).unwrap().unwrap();
        version.value().to_vec()
    }

    /// A store of format version 1 is migrated when it is opened with its passphrase (not
    /// before): every request id its two tables held is listed, in the order they expire, the
    /// two tables are gone, and the store says version 2, which a build reading only
    /// version 1 refuses.
    #[test]
    fn format_1_request_tables_are_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let row = |id: u8, expires_unix_ms: u64| ClientRequestRow {
            client: [id; 32],
            request_id: [id.wrapping_mul(7); 16],
            session: [id.wrapping_add(1); 32],
            expires_unix_ms,
        };
        let rows = [row(1, 9_000), row(2, 3_000), row(3, 5_000), row(4, 1_000)];
        let id = |row: &ClientRequestRow| [row.client.as_slice(), &row.request_id].concat();
        let by_id: Vec<_> = rows
            .iter()
            .map(|row| {
                let value = [row.session.as_slice(), &row.expires_unix_ms.to_be_bytes()].concat();
                (id(row), value)
            })
            .collect();
        let by_expiry: Vec<_> = rows
            .iter()
            .map(|row| [row.expires_unix_ms.to_be_bytes().as_slice(), &id(row)].concat())
            .collect();
        write_format_1(dir.path(), &by_id, &by_expiry);
        let old_tables = |store: &KeyStore| {
            let txn = store.read().unwrap();
            (
                store
                    .open_read_table(&txn, CLIENT_REQUESTS_V1)
                    .unwrap()
                    .is_some(),
                store
                    .open_read_table(&txn, CLIENT_REQUEST_EXPIRY_V1)
                    .unwrap()
                    .is_some(),
            )
        };
        assert!(matches!(
            KeyStore::open(dir.path(), b"not the passphrase"),
            Err(KeystoreError::WrongPassphrase { .. })
        ));
        // The wrong passphrase changed nothing.
        assert_eq!(stored_version(dir.path()), vec![FORMAT_VERSION_V1]);
        let store = open(dir.path());
        assert_eq!(store.request_ids_migrated_on_open(), Some(4));
        assert_eq!(FORMAT_VERSION, 2);
        assert_eq!(old_tables(&store), (false, false));
        let mut expected = rows.to_vec();
        expected.sort_by_key(|row| row.expires_unix_ms);
        assert_eq!(store.client_requests(0).unwrap(), expected);
        assert_eq!(store.client_requests(4_000).unwrap(), expected[2..]);
        // Admitting after the migration forgets the expired ones from the left.
        store
            .admit_client_request(&row(5, 20_000), &entry(1, None), 6_000)
            .unwrap();
        drop(store);
        assert_eq!(stored_version(dir.path()), vec![FORMAT_VERSION]);
        let store = open(dir.path());
        assert_eq!(
            store.client_requests(0).unwrap(),
            vec![row(1, 9_000), row(5, 20_000)]
        );
        // Opened again: nothing left to migrate, the version stays.
        assert_eq!(store.request_ids_migrated_on_open(), None);
        drop(store);
        assert_eq!(stored_version(dir.path()), vec![FORMAT_VERSION]);
        // A version 1 store that never admitted a request (no request tables): migrated too.
        let empty = tempfile::tempdir().unwrap();
        write_format_1(empty.path(), &[], &[]);
        let store = open(empty.path());
        assert_eq!(store.request_ids_migrated_on_open(), Some(0));
        assert!(store.client_requests(0).unwrap().is_empty());
        assert_eq!(old_tables(&store), (false, false));
        drop(store);
        assert_eq!(stored_version(empty.path()), vec![FORMAT_VERSION]);
    }

    /// A row of format version 1 that does not decode stops the migration: the open fails as
    /// corrupt, naming it, and the store is left as it was (still version 1, the row kept).
    #[test]
    fn a_format_1_row_that_does_not_decode_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write_format_1(dir.path(), &[(vec![1u8; 48], vec![2u8; 39])], &[]);
        let error = KeyStore::open_with_params(
            dir.path(),
            b"passphrase",
            KdfParams::FAST_INSECURE_FOR_TESTS,
        )
        .unwrap_err();
        assert!(
            matches!(&error, KeystoreError::Corrupt(why) if why.contains("format 1 does not decode")),
            "{error:?}"
        );
        assert_eq!(stored_version(dir.path()), vec![FORMAT_VERSION_V1]);
        let db = Database::open(dir.path().join(DATABASE_FILE_NAME)).unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(
            txn.open_table(CLIENT_REQUESTS_V1).unwrap().len().unwrap(),
            1
        );
        assert!(txn.open_table(ADMITTED_REQUESTS).is_err());
    }

    /// A path the log cannot record is refused before anything is written, in every writer
    /// that takes an entry.
    #[test]
    fn an_unrecordable_path_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.append_audit(&entry(1, None)).unwrap();
        for path in [(0..17).collect::<Vec<u32>>(), vec![1 << 31]] {
            let bad = entry(2, Some(path));
            let error = store.append_audit(&bad).unwrap_err();
            assert!(
                matches!(&error, KeystoreError::InvalidInput(why) if why.contains("client key path")),
                "{error:?}"
            );
            assert!(matches!(
                store.append_audit_lazily(&bad),
                Err(KeystoreError::InvalidInput(_))
            ));
            let row = ClientRequestRow {
                client: [0xc1; 32],
                request_id: [9; 16],
                session: [9; 32],
                expires_unix_ms: u64::MAX,
            };
            assert!(matches!(
                store.write_batch(&[(row.clone(), bad.clone())], &[], true, 0),
                Err(KeystoreError::InvalidInput(_))
            ));
            assert!(matches!(
                store.write_batch(&[], &[entry(3, None), bad.clone()], true, 0),
                Err(KeystoreError::InvalidInput(_))
            ));
            assert!(matches!(
                store.admit_client_request(&row, &bad, 0),
                Err(KeystoreError::InvalidInput(_))
            ));
        }
        assert_eq!(store.audit().unwrap().len(), 1);
        assert!(store.client_requests(0).unwrap().is_empty());
        assert!(store.verify_audit().unwrap().is_intact());
    }
}
