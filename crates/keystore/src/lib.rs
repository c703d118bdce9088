//! # permafrost-keystore
//!
//! Encrypted, crash-safe storage of a node's key shares by epoch, with an append-only audit
//! log. It knows bytes and epochs, not FROST: the caller serializes its key packages and
//! identifiers and stores them here as opaque bytes.
//!
//! - **Encrypted.** Every secret is sealed with XChaCha20-Poly1305 under a key-encryption key
//!   (KEK) derived from the node's passphrase with Argon2id. A copied data directory without
//!   the passphrase reveals no secret. The plaintext secret is never written to disk, and is
//!   held only in zeroize-on-drop buffers.
//! - **Bound to its row.** The ciphertext authenticates its key id, epoch, identifier and
//!   public data, so a ciphertext moved to another row, or a row whose epoch or identifier was
//!   edited, fails to decrypt ([`KeystoreError::Corrupt`]) instead of yielding wrong data.
//! - **Crash-safe.** A write is durable when its method returns, except the writes documented
//!   as not synced (durable with the next sync). Shares, sessions,
//!   certificates and identity are each one [redb](https://docs.rs/redb) transaction committed
//!   with `Durability::Immediate` (fsync, two-phase commit). The writes on a signature's path
//!   (admissions and audit entries, [`KeyStore::write_batch`]) are appended to the
//!   [`journal`], a preallocated file with one HMAC per record, synced once; redb gets
//!   them at the next checkpoint, and opening replays what redb does not hold.
//! - **Fast wrong-passphrase detection.** Opening derives the KEK once and decrypts a stored
//!   check value; a wrong passphrase is [`KeystoreError::WrongPassphrase`] before any share
//!   is read.
//!
//! ```
//! use permafrost_keystore::{KdfParams, KeyStore, ShareRecord, ShareState};
//! use zeroize::Zeroizing;
//!
//! let dir = tempfile::tempdir()?;
//! let store = KeyStore::open_with_params(dir.path(), b"passphrase", KdfParams::FAST_INSECURE_FOR_TESTS)?;
//! store.put_share(&ShareRecord {
//!     key_id: "key-1".into(),
//!     epoch: 0,
//!     state: ShareState::Active,
//!     identifier: vec![1; 32],
//!     public: b"public key package".to_vec(),
//!     secret: Zeroizing::new(vec![42; 32]),
//! })?;
//! let share = store.share("key-1", 0)?.ok_or("missing")?;
//! assert_eq!(&share.secret[..], &[42; 32]);
//! assert!(format!("{share:?}").contains("<redacted>"));
//! drop(store);
//!
//! // Reopening uses the parameters stored in the keystore; a wrong passphrase is refused.
//! assert!(matches!(
//!     KeyStore::open(dir.path(), b"not the passphrase"),
//!     Err(permafrost_keystore::KeystoreError::WrongPassphrase { .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## On-disk format (format version 2)
//!
//! One redb database, `<dir>/keystore.redb` (file mode 0600, directory 0700 when created
//! here), and its journal, `<dir>/keystore.journal` (mode 0600; its format is in the
//! [`journal`] module's documentation). Integers are big-endian unless redb encodes them; `lp(x)` is `x` preceded by its
//! length as a big-endian `u32`; `‖` is concatenation. The tables:
//!
//! **`meta`** (`&[u8]` → `&[u8]`), written when the store is created (`"audit_chain"` also by the audit migration):
//!
//! | key | value |
//! |---|---|
//! | `"format_version"` | one byte, `2` (`1` before `admitted_requests`; migrated on open, below) |
//! | `"kdf"` | `algorithm (1 = Argon2id v0x13) ‖ u32 m_cost_kib ‖ u32 t_cost ‖ u32 p_cost` (13 bytes) |
//! | `"salt"` | 16 random bytes |
//! | `"check"` | `nonce(24) ‖ XChaCha20-Poly1305(KEK, nonce, "permafrost-keystore passphrase check", aad)`, with `aad = "permafrost-keystore/check/v1" ‖ salt ‖ kdf` |
//! | `"audit_chain"` | the audit chain record (below) |
//! | `"journal_round"` | 16 bytes: the [`journal`]'s round, new with every synced commit (random, or the next after a switch of regions) |
//! | `"journal_region"` | `region ‖ round` (17 bytes): the journal's region, `0` or `1`, the round's records go to, with the round it was written for (absent in a store written before the regions, or of another round once a build from before them wrote: the whole file) |
//!
//! `KEK = Argon2id(passphrase, salt, m_cost_kib, t_cost, p_cost)`, 32 bytes.
//!
//! **`shares`** (`&[u8]` → `&[u8]`), one row per (key id, epoch):
//!
//! - key: `lp(key_id) ‖ u64 epoch` (so the epochs of one key id are adjacent and in order;
//!   [`KeyStore::shares`] sorts by (key id, epoch) itself);
//! - value: `version (1) ‖ state ‖ lp(identifier) ‖ lp(public) ‖ lp(nonce(24) ‖ ciphertext ‖
//!   tag(16))`, where `state` is `1` pending, `2` active, `3` retired;
//! - the ciphertext is XChaCha20-Poly1305 of the secret under the KEK with a fresh random
//!   nonce per write, and associated data `"permafrost-keystore/share/v1" ‖ lp(key_id) ‖
//!   u64 epoch ‖ lp(identifier) ‖ lp(public)`. The state is not authenticated, so
//!   [`KeyStore::set_state`] rewrites one byte without re-encrypting.
//!
//! **`audit`** (`u64` → `&[u8]`), the log of entries numbered from 1, consecutive. A row
//! holds one entry (versions 2 to 4, under its sequence number) or a block of consecutive
//! entries (version 5, under its first entry's number). Entries are never changed or removed
//! (except once by the migration below); a block row is rewritten with each entry appended to
//! it, until the next would take it past 4,080 bytes, so that it fills a 4 KiB page (rows of
//! one entry each leave redb's pages of an append-only table half empty):
//!
//! - an entry's **body** (row version 4): `u64 time_unix_ms ‖ kind ‖ lp(key_id) ‖ u64 epoch ‖
//!   opt(digest(32)) ‖ opt(lp(requester)) ‖ lp(detail) ‖ opt(client)`, where `kind` is `1`
//!   DKG, `2` reshare, `3` signature share, `4` refused, `5` client request, `client =
//!   public_key(32) ‖ request_id(16) ‖ u64 timestamp_ms ‖ session(32) ‖ u8 count ‖ count × u32
//!   index` (the child-key derivation path the client approved, [`AuditClient::path`]: at
//!   most [`MAX_AUDIT_PATH_DEPTH`] (16) indices, each below 2^31, none for the key itself), and
//!   `opt(x)` is `0` or `1 ‖ x`;
//! - a **block** row (written now): `5 ‖ entry ‖ entry ‖ …`, each entry `mac(32) ‖ flags ‖` its
//!   body with the key id, the `opt(lp(requester))` and the client's public key left out when
//!   `flags` bit 0, 1 or 2 says they are the previous entry's of the block (the first entry
//!   sets none);
//! - a single-entry row: `version ‖ mac(32) ‖ body`. Rows written before blocks are read as
//!   they are and never rewritten: version 4 is the body above, version 3 the same body
//!   without the path (`client` ends with `session`, read as an empty path), version 2 the
//!   same without `opt(client)`; one chain may hold rows of all four versions. Decoding is
//!   strict (no byte missing or left over, the path's count and indices in range, no unknown
//!   flag), so a row whose version byte was changed does not decode or fails its MAC, except
//!   that an entry without a client approval has the same body in versions 3 and 4 and reads
//!   the same under either. Audit entries are stored in clear (they hold no secret);
//! - `mac = HMAC-SHA256(chain key, u64 seq ‖ previous entry's mac ‖ body)`, over the body
//!   however it is stored, the first entry chaining to 32 zero bytes, and
//!   `chain key = HMAC-SHA256(KEK, "permafrost/audit-chain/v1")`.
//!   [`KeyStore::verify_audit`] walks the chain and names the first entry edited, removed,
//!   reordered or undecodable. It cannot see the last entries removed (what remains is a valid
//!   chain), nor a log rewritten by someone who has the passphrase.
//!
//! The meta table also holds **`"audit_chain"`**: `1 ‖ u64 rechained_at_unix_ms ‖ u64
//! rechained ‖ HMAC-SHA256(chain key, "permafrost-keystore/audit-chain-record/v1" ‖ the 17
//! bytes before)`, written when the store is created (`0, 0`) or when an audit log of the
//! previous layout (row version 1: `1 ‖ body`, no MAC) is chained on open (into version 2
//! rows, the body as stored): if the record is missing and every audit row is version 1,
//! opening chains them in order in one transaction,
//! keeping their sequence numbers, and records when and how many
//! ([`KeyStore::audit_migrated_on_open`]). A store with the record is never migrated again,
//! so a version 1 row planted later is reported, not chained.
//!
//! **`admitted_requests`** (`&[u8]` → `&[u8]`), the client and operator request ids the node
//! admitted ([`KeyStore::admit_client_request`], [`KeyStore::write_batch`]), until they
//! expire:
//!
//! - key: `u64 expires_unix_ms ‖ approver public key(32) ‖ request id(16)`, so the table is in
//!   the order the rows may be forgotten: a new row lands near its right edge, and each
//!   admission first removes up to 16 rows expired before its time from its left edge;
//! - value: the session id (32) the request was admitted in.
//!
//! It has no index by request id: the node refuses an id admitted before from memory (its
//! gates, loaded from [`KeyStore::client_requests`] at start). The one check made here costs
//! no lookup: a row whose key is already stored with another session (the same approval
//! admitted twice) is seen by the insert itself and fails the write
//! ([`KeystoreError::Conflict`]). Format version 1 kept the same
//! rows in two tables, `client_requests` (`approver ‖ request id → session ‖ u64 expiry`) and
//! `client_request_expiry` (`u64 expiry ‖ approver ‖ request id → ()`); opening a version 1
//! store with its passphrase moves every row into `admitted_requests`, deletes both tables and
//! writes version `2`, in one durable transaction, so that a build reading only version 1
//! refuses the store rather than open it without its request ids.
//!
//! Every decoder checks lengths against the bytes present and rejects unknown versions,
//! unknown enum bytes, invalid UTF-8 and trailing bytes: a damaged row is
//! [`KeystoreError::Corrupt`], never a panic.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod crypto;
mod error;
mod format;
pub mod journal;
pub mod raw_audit;
mod record;
mod store;

pub use audit::{AuditFault, AuditMigration, AuditProblem, AuditVerification};
pub use crypto::KdfParams;
pub use error::KeystoreError;
pub use format::MAX_AUDIT_PATH_DEPTH;
pub use journal::{CHECKPOINT_EVERY, JOURNAL_BYTES, JOURNAL_FILE_NAME};
pub use record::{AuditClient, AuditEntry, AuditKind, ShareMeta, ShareRecord, ShareState};
pub use store::{
    ClientRequestRow, KeyStore, ReshareConclusion, ReshareRow, TableUsage, DATABASE_FILE_NAME,
    LAZY_FLUSH_EVERY, PRUNE_SLACK_MS,
};
