#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Behaviour of the keystore through its public API, plus tampering with the documented
//! on-disk format directly through redb.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use permafrost_keystore::{
    AuditEntry, AuditKind, KdfParams, KeyStore, KeystoreError, ShareMeta, ShareRecord, ShareState,
    DATABASE_FILE_NAME,
};
use rand_core::{OsRng, RngCore};
use redb::{Database, ReadableTable, TableDefinition};
use zeroize::Zeroizing;

const PASS: &[u8] = b"correct horse battery staple";
const SHARES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("shares");
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

fn open(dir: &Path) -> KeyStore {
    KeyStore::open_with_params(dir, PASS, KdfParams::FAST_INSECURE_FOR_TESTS).unwrap()
}

fn record(key_id: &str, epoch: u64, state: ShareState, secret: &[u8]) -> ShareRecord {
    ShareRecord {
        key_id: key_id.into(),
        epoch,
        state,
        identifier: format!("id-{key_id}").into_bytes(),
        public: format!("public-{key_id}-{epoch}").into_bytes(),
        secret: Zeroizing::new(secret.to_vec()),
    }
}

fn assert_same(a: &ShareRecord, b: &ShareRecord) {
    assert_eq!(a.meta(), b.meta());
    assert_eq!(&a.secret[..], &b.secret[..]);
}

fn random_secret() -> [u8; 64] {
    let mut secret = [0u8; 64];
    OsRng.fill_bytes(&mut secret);
    secret
}

/// The documented share table key: `lp(key_id) ‖ u64 BE epoch`.
fn share_key(key_id: &str, epoch: u64) -> Vec<u8> {
    let mut key = (key_id.len() as u32).to_be_bytes().to_vec();
    key.extend_from_slice(key_id.as_bytes());
    key.extend_from_slice(&epoch.to_be_bytes());
    key
}

/// Runs `edit` on the raw redb database of a closed keystore.
fn edit_raw(dir: &Path, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(dir.join(DATABASE_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
}

fn raw_share_value(txn: &redb::WriteTransaction, key_id: &str, epoch: u64) -> Vec<u8> {
    let table = txn.open_table(SHARES).unwrap();
    let value = table.get(share_key(key_id, epoch).as_slice()).unwrap();
    let bytes = value.unwrap().value().to_vec();
    bytes
}

fn put_raw_share_value(txn: &redb::WriteTransaction, key_id: &str, epoch: u64, value: &[u8]) {
    let mut table = txn.open_table(SHARES).unwrap();
    table
        .insert(share_key(key_id, epoch).as_slice(), value)
        .unwrap();
}

fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, KeystoreError>) -> String {
    match result {
        Err(e @ KeystoreError::Corrupt(_)) => e.to_string(),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn put_get_list_set_state_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.shares().unwrap().is_empty());
    assert!(store.share("k", 0).unwrap().is_none());

    let b1 = record("b", 1, ShareState::Pending, b"secret b1");
    let a0 = record("a", 0, ShareState::Active, b"secret a0");
    let b0 = record("b", 0, ShareState::Active, b"secret b0");
    let a10 = record("a", 10, ShareState::Retired, b"");
    for r in [&b1, &a0, &b0, &a10] {
        store.put_share(r).unwrap();
    }
    assert_same(&store.share("a", 0).unwrap().unwrap(), &a0);
    assert_same(&store.share("b", 1).unwrap().unwrap(), &b1);
    assert_same(&store.share("a", 10).unwrap().unwrap(), &a10);
    assert!(store.share("a", 1).unwrap().is_none());
    assert!(store.share("c", 0).unwrap().is_none());

    // Sorted by (key id, epoch), whatever the insertion order; epoch 10 after epoch 0.
    let listed: Vec<ShareMeta> = store.shares().unwrap();
    assert_eq!(listed, vec![a0.meta(), a10.meta(), b0.meta(), b1.meta()]);

    // One key's shares: only its rows, sorted by epoch (a key id that begins another, or
    // one that sorts between, is another key).
    let ab = record("ab", 0, ShareState::Active, b"secret ab0");
    store.put_share(&ab).unwrap();
    assert_eq!(store.shares_of("a").unwrap(), vec![a0.meta(), a10.meta()]);
    assert_eq!(store.shares_of("ab").unwrap(), vec![ab.meta()]);
    assert_eq!(store.shares_of("b").unwrap(), vec![b0.meta(), b1.meta()]);
    assert!(store.shares_of("c").unwrap().is_empty());
    assert!(store.shares_of("").unwrap().is_empty());
    store.delete_share("ab", 0).unwrap();

    // State changes without touching the secret.
    store.set_state("b", 1, ShareState::Active).unwrap();
    store.set_state("b", 0, ShareState::Retired).unwrap();
    let b1_now = store.share("b", 1).unwrap().unwrap();
    assert_eq!(b1_now.state, ShareState::Active);
    assert_eq!(&b1_now.secret[..], b"secret b1");
    assert_eq!(
        store.share("b", 0).unwrap().unwrap().state,
        ShareState::Retired
    );

    // Replace.
    let a0_new = record("a", 0, ShareState::Retired, b"a different secret");
    store.put_share(&a0_new).unwrap();
    assert_same(&store.share("a", 0).unwrap().unwrap(), &a0_new);

    // Delete.
    store.delete_share("b", 0).unwrap();
    assert!(store.share("b", 0).unwrap().is_none());
    assert_eq!(
        store
            .shares()
            .unwrap()
            .iter()
            .map(|m| (m.key_id.as_str(), m.epoch))
            .collect::<Vec<_>>(),
        vec![("a", 0), ("a", 10), ("b", 1)]
    );

    // Absent rows.
    match store.set_state("b", 0, ShareState::Active) {
        Err(KeystoreError::NotFound { key_id, epoch }) => {
            assert_eq!((key_id.as_str(), epoch), ("b", 0))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        store.delete_share("b", 0),
        Err(KeystoreError::NotFound { .. })
    ));
    let message = store.delete_share("zz", 7).unwrap_err().to_string();
    assert!(
        message.contains("\"zz\"") && message.contains('7'),
        "{message}"
    );
}

#[test]
fn reopen_with_the_same_passphrase_keeps_everything_and_the_stored_params() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        record("k1", 0, ShareState::Active, &random_secret()),
        record("k1", 1, ShareState::Pending, &random_secret()),
        record("k2", 3, ShareState::Retired, &random_secret()),
    ];
    {
        let store = open(dir.path());
        for r in &records {
            store.put_share(r).unwrap();
        }
        store.set_state("k1", 1, ShareState::Active).unwrap();
    }
    // `open` (default params) on an existing store uses the stored fast parameters.
    let store = KeyStore::open(dir.path(), PASS).unwrap();
    assert_eq!(store.kdf_params(), KdfParams::FAST_INSECURE_FOR_TESTS);
    assert_eq!(store.dir(), dir.path());
    assert_same(&store.share("k1", 0).unwrap().unwrap(), &records[0]);
    let k1_1 = store.share("k1", 1).unwrap().unwrap();
    assert_eq!(k1_1.state, ShareState::Active);
    assert_eq!(&k1_1.secret[..], &records[1].secret[..]);
    assert_same(&store.share("k2", 3).unwrap().unwrap(), &records[2]);
    assert_eq!(store.shares().unwrap().len(), 3);
}

#[test]
fn wrong_passphrase_is_refused_clearly_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let secret = random_secret();
    {
        let store = open(dir.path());
        store
            .put_share(&record("k", 0, ShareState::Active, &secret))
            .unwrap();
    }
    let err = KeyStore::open(dir.path(), b"wrong passphrase").unwrap_err();
    match &err {
        KeystoreError::WrongPassphrase { path } => assert_eq!(path, dir.path()),
        other => panic!("expected WrongPassphrase, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "wrong passphrase for the keystore at {}",
            dir.path().display()
        )),
        "{message}"
    );
    // A prefix or extension of the right passphrase is wrong too.
    assert!(matches!(
        KeyStore::open(dir.path(), &PASS[..PASS.len() - 1]),
        Err(KeystoreError::WrongPassphrase { .. })
    ));
    // The failed attempts changed nothing.
    let store = open(dir.path());
    assert_eq!(&store.share("k", 0).unwrap().unwrap().secret[..], &secret);
}

#[test]
fn empty_passphrase_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("new");
    let err = KeyStore::open(&dir, b"").unwrap_err();
    assert!(matches!(err, KeystoreError::EmptyPassphrase), "{err:?}");
    assert!(err.to_string().contains("empty passphrase"), "{err}");
    assert!(!dir.exists(), "refusing must not create anything");

    open(&dir);
    assert!(matches!(
        KeyStore::open_with_params(&dir, b"", KdfParams::FAST_INSECURE_FOR_TESTS),
        Err(KeystoreError::EmptyPassphrase)
    ));
}

#[test]
fn no_file_contains_the_plaintext_secret() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested").join("store");
    let secret = random_secret();
    {
        let store = open(&dir);
        store
            .put_share(&record("k", 0, ShareState::Pending, &secret))
            .unwrap();
        store.set_state("k", 0, ShareState::Active).unwrap();
        store
            .put_share(&record("k", 1, ShareState::Pending, &secret))
            .unwrap();
        store.delete_share("k", 1).unwrap();
        assert_eq!(&store.share("k", 0).unwrap().unwrap().secret[..], &secret);
    }
    let files = all_files(parent.path());
    assert!(files.iter().any(|f| f.ends_with(DATABASE_FILE_NAME)));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!contains(&bytes, &secret), "secret found in {file:?}");
        assert!(
            !contains(&bytes, &secret[..16]),
            "secret prefix found in {file:?}"
        );
        assert!(
            !contains(&bytes, &secret[48..]),
            "secret suffix found in {file:?}"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DATABASE_FILE_NAME)), 0o600);
    }
}

#[test]
fn the_identity_key_is_sealed_survives_reopen_and_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let secret = random_secret();
    {
        let store = open(dir.path());
        assert!(store.identity().unwrap().is_none());
        store.put_identity(&secret).unwrap();
        assert_eq!(&store.identity().unwrap().unwrap()[..], &secret);
    }
    for file in all_files(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, &secret[..16]),
            "identity key found in {file:?}"
        );
    }
    let store = open(dir.path());
    assert_eq!(&store.identity().unwrap().unwrap()[..], &secret);
    drop(store);
    // Another passphrase cannot open the store at all.
    assert!(matches!(
        KeyStore::open_with_params(dir.path(), b"another", KdfParams::FAST_INSECURE_FOR_TESTS),
        Err(KeystoreError::WrongPassphrase { .. })
    ));
    // A flipped byte of the sealed key is corruption, never a wrong key.
    edit_raw(dir.path(), |txn| {
        let table: TableDefinition<&[u8], &[u8]> = TableDefinition::new("identity");
        let mut table = txn.open_table(table).unwrap();
        let mut value = table
            .get(b"node".as_slice())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let last = value.len() - 1;
        value[last] ^= 1;
        table.insert(b"node".as_slice(), value.as_slice()).unwrap();
    });
    let store = open(dir.path());
    expect_corrupt(store.identity());
}

#[test]
fn swapped_encrypted_values_are_corrupt_not_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .put_share(&record("k", 0, ShareState::Active, b"epoch zero"))
            .unwrap();
        store
            .put_share(&record("k", 1, ShareState::Active, b"epoch one"))
            .unwrap();
        store
            .put_share(&record("other", 0, ShareState::Active, b"other key"))
            .unwrap();
    }
    edit_raw(dir.path(), |txn| {
        let v0 = raw_share_value(txn, "k", 0);
        let v1 = raw_share_value(txn, "k", 1);
        put_raw_share_value(txn, "k", 0, &v1);
        put_raw_share_value(txn, "k", 1, &v0);
    });
    let store = open(dir.path());
    let message = expect_corrupt(store.share("k", 0));
    assert!(
        message.contains("\"k\"") && message.contains("epoch 0"),
        "{message}"
    );
    expect_corrupt(store.share("k", 1));
    // Untouched rows still decrypt, and listing (no decryption) still works.
    assert_eq!(
        &store.share("other", 0).unwrap().unwrap().secret[..],
        b"other key"
    );
    assert_eq!(store.shares().unwrap().len(), 3);
}

#[test]
fn a_row_moved_to_another_epoch_or_key_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .put_share(&record("k", 0, ShareState::Active, b"secret"))
            .unwrap();
    }
    edit_raw(dir.path(), |txn| {
        let v0 = raw_share_value(txn, "k", 0);
        // Edit the epoch: remove (k, 0), store the same value as (k, 5).
        txn.open_table(SHARES)
            .unwrap()
            .remove(share_key("k", 0).as_slice())
            .unwrap();
        put_raw_share_value(txn, "k", 5, &v0);
        // And a copy under another key id.
        put_raw_share_value(txn, "j", 0, &v0);
    });
    let store = open(dir.path());
    assert!(store.share("k", 0).unwrap().is_none());
    expect_corrupt(store.share("k", 5));
    expect_corrupt(store.share("j", 0));
}

#[test]
fn edited_or_truncated_rows_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for epoch in 0..4 {
            store
                .put_share(&record("k", epoch, ShareState::Active, b"some secret"))
                .unwrap();
        }
    }
    edit_raw(dir.path(), |txn| {
        // Flip one ciphertext bit (last byte is in the tag).
        let mut v = raw_share_value(txn, "k", 0);
        *v.last_mut().unwrap() ^= 1;
        put_raw_share_value(txn, "k", 0, &v);
        // Edit the identifier (first byte after its length prefix at offset 2..6).
        let mut v = raw_share_value(txn, "k", 1);
        v[6] ^= 0x20;
        put_raw_share_value(txn, "k", 1, &v);
        // Edit the state byte: not authenticated by design (state changes without
        // re-encryption), so this must still decrypt.
        let mut v = raw_share_value(txn, "k", 2);
        assert_eq!(v[1], 2, "active is state byte 2");
        v[1] = 3;
        put_raw_share_value(txn, "k", 2, &v);
        // Truncate.
        let v = raw_share_value(txn, "k", 3);
        put_raw_share_value(txn, "k", 3, &v[..v.len() / 2]);
    });
    let store = open(dir.path());
    expect_corrupt(store.share("k", 0));
    expect_corrupt(store.share("k", 1));
    let edited_state = store.share("k", 2).unwrap().unwrap();
    assert_eq!(edited_state.state, ShareState::Retired);
    assert_eq!(&edited_state.secret[..], b"some secret");
    expect_corrupt(store.share("k", 3));
    // Listing decodes every row, so a truncated one makes it fail rather than lie.
    expect_corrupt(store.shares());
    expect_corrupt(store.set_state("k", 3, ShareState::Retired));
    // Deleting the damaged row is still possible.
    store.delete_share("k", 3).unwrap();
    assert_eq!(store.shares().unwrap().len(), 3);
}

#[test]
fn damaged_metadata_is_reported_not_trusted() {
    // Unknown format version.
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    edit_raw(dir.path(), |txn| {
        txn.open_table(META)
            .unwrap()
            .insert(&b"format_version"[..], &[9u8][..])
            .unwrap();
    });
    let message = expect_corrupt(KeyStore::open(dir.path(), PASS));
    assert!(message.contains("format version"), "{message}");

    // KDF parameters edited to ask for u32::MAX KiB of memory: refused before allocating.
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    edit_raw(dir.path(), |txn| {
        let mut kdf = vec![1u8];
        kdf.extend_from_slice(&u32::MAX.to_be_bytes());
        kdf.extend_from_slice(&1u32.to_be_bytes());
        kdf.extend_from_slice(&1u32.to_be_bytes());
        txn.open_table(META)
            .unwrap()
            .insert(&b"kdf"[..], kdf.as_slice())
            .unwrap();
    });
    let message = expect_corrupt(KeyStore::open(dir.path(), PASS));
    assert!(message.contains("KDF"), "{message}");

    // Salt edited: the KEK changes, so the check value no longer opens.
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    edit_raw(dir.path(), |txn| {
        txn.open_table(META)
            .unwrap()
            .insert(&b"salt"[..], &[0u8; 16][..])
            .unwrap();
    });
    assert!(matches!(
        KeyStore::open(dir.path(), PASS),
        Err(KeystoreError::WrongPassphrase { .. })
    ));

    // Meta table missing while shares exist.
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .put_share(&record("k", 0, ShareState::Active, b"s"))
        .unwrap();
    edit_raw(dir.path(), |txn| {
        assert!(txn.delete_table(META).unwrap());
    });
    expect_corrupt(KeyStore::open(dir.path(), PASS));
}

#[test]
fn audit_entries_append_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [
        AuditEntry {
            time_unix_ms: 1_700_000_000_000,
            kind: AuditKind::Dkg,
            key_id: "k".into(),
            epoch: 0,
            message_digest: None,
            requester: Some("coordinator".into()),
            detail: "dkg complete".into(),
            client: None,
        },
        AuditEntry {
            time_unix_ms: 1_700_000_000_001,
            kind: AuditKind::SignatureShare,
            key_id: "k".into(),
            epoch: 0,
            message_digest: Some([0xab; 32]),
            requester: Some("coordinator".into()),
            detail: String::new(),
            client: None,
        },
        AuditEntry {
            time_unix_ms: 1_700_000_000_002,
            kind: AuditKind::Refused,
            key_id: "k".into(),
            epoch: 7,
            message_digest: Some([0xcd; 32]),
            requester: None,
            detail: "wrong epoch".into(),
            client: None,
        },
    ];
    {
        let store = open(dir.path());
        assert!(store.audit().unwrap().is_empty());
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(store.append_audit(entry).unwrap(), i as u64 + 1);
        }
    }
    let store = open(dir.path());
    let expected: Vec<(u64, AuditEntry)> = entries
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    assert_eq!(store.audit().unwrap(), expected);
    let reshare = AuditEntry {
        kind: AuditKind::Reshare,
        epoch: 1,
        ..entries[0].clone()
    };
    assert_eq!(store.append_audit(&reshare).unwrap(), 4);
    let audit = store.audit().unwrap();
    assert_eq!(audit.len(), 4);
    assert_eq!(audit[3], (4, reshare));
}

#[test]
fn debug_of_a_share_record_is_redacted() {
    let secret = random_secret();
    let r = record("k", 0, ShareState::Active, &secret);
    let debug = format!("{r:?}");
    let pretty = format!("{r:#?}");
    assert!(debug.contains("<redacted>"), "{debug}");
    for text in [&debug, &pretty] {
        assert!(!text.contains(&hex::encode(secret)));
        assert!(!text.contains(&hex::encode(&secret[..8])));
        assert!(!text.contains(&format!("{:?}", &secret[..8])));
        assert!(!text.contains(&format!("{:?}", secret.to_vec())));
    }
    // The store itself never prints its KEK.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(format!("{store:?}").contains("<redacted>"));
}

#[test]
fn default_params_work() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = KeyStore::open(dir.path(), PASS).unwrap();
        assert_eq!(store.kdf_params(), KdfParams::default());
        assert_eq!(
            KdfParams::default(),
            KdfParams {
                m_cost_kib: 19_456,
                t_cost: 2,
                p_cost: 1
            }
        );
        store
            .put_share(&record("k", 0, ShareState::Active, b"s"))
            .unwrap();
    }
    // Params passed for an existing store are ignored.
    let store =
        KeyStore::open_with_params(dir.path(), PASS, KdfParams::FAST_INSECURE_FOR_TESTS).unwrap();
    assert_eq!(store.kdf_params(), KdfParams::default());
    assert_eq!(&store.share("k", 0).unwrap().unwrap().secret[..], b"s");
}

#[test]
fn invalid_params_are_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let bad = KdfParams {
        m_cost_kib: 64,
        t_cost: 0,
        p_cost: 1,
    };
    let err = KeyStore::open_with_params(dir.path(), PASS, bad).unwrap_err();
    assert!(matches!(err, KeystoreError::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("t_cost"), "{err}");
    // Nothing was initialised: a later open creates the store normally.
    open(dir.path());
}

#[test]
fn a_second_open_of_the_same_store_is_refused_while_the_first_is_alive() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let err = KeyStore::open(dir.path(), PASS).unwrap_err();
    assert!(matches!(err, KeystoreError::AlreadyOpen { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("already open"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    drop(first);
    open(dir.path());
}

#[test]
fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for epoch in 0..5 {
                    let key = format!("key-{t}");
                    store
                        .put_share(&record(&key, epoch, ShareState::Pending, &[t as u8; 32]))
                        .unwrap();
                    store
                        .append_audit(&AuditEntry {
                            time_unix_ms: epoch,
                            kind: AuditKind::Dkg,
                            key_id: key,
                            epoch,
                            message_digest: None,
                            requester: None,
                            detail: String::new(),
                            client: None,
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(store.shares().unwrap().len(), 20);
    let seqs: Vec<u64> = store.audit().unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[test]
fn an_empty_database_file_is_initialised_and_garbage_is_refused() {
    // A crash between creating the file and the first commit leaves an empty file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE_NAME), b"").unwrap();
    open(dir.path())
        .put_share(&record("k", 0, ShareState::Active, b"s"))
        .unwrap();
    assert_eq!(open(dir.path()).shares().unwrap().len(), 1);

    // A file that is not a redb database is an error, not a panic and not a fresh store.
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(dir.path().join(DATABASE_FILE_NAME), &garbage).unwrap();
    let err = KeyStore::open(dir.path(), PASS).unwrap_err();
    assert!(
        matches!(err, KeystoreError::Storage(_) | KeystoreError::Corrupt(_)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(DATABASE_FILE_NAME)).unwrap(),
        garbage
    );
}

fn reshare_audit(detail: &str) -> AuditEntry {
    AuditEntry {
        time_unix_ms: 1,
        kind: AuditKind::Reshare,
        key_id: "k".into(),
        epoch: 1,
        message_digest: None,
        requester: None,
        detail: detail.into(),
        client: None,
    }
}

fn states(store: &KeyStore) -> Vec<(String, u64, ShareState)> {
    store
        .shares()
        .unwrap()
        .into_iter()
        .map(|m| (m.key_id, m.epoch, m.state))
        .collect()
}

#[test]
fn a_committed_reshare_promotes_the_new_epoch_and_deletes_the_old_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let session = [7u8; 32];
    store
        .put_share(&record("k", 0, ShareState::Active, &random_secret()))
        .unwrap();
    store
        .put_share(&record("other", 0, ShareState::Active, &random_secret()))
        .unwrap();
    store.put_reshare(&session, b"open frame").unwrap();
    let pending = record("k", 1, ShareState::Pending, &random_secret());
    store.put_share(&pending).unwrap();
    assert_eq!(
        store.reshares().unwrap(),
        vec![(session, b"open frame".to_vec())]
    );

    store
        .conclude_reshare(
            "k",
            permafrost_keystore::ReshareConclusion::Promote { epoch: 1 },
            &session,
            &reshare_audit("committed"),
        )
        .unwrap();
    assert!(!store.session_concluded(&[0xdd; 32]).unwrap());
    store.conclude_session(&[0xdd; 32]).unwrap();
    drop(store);
    let store = open(dir.path());
    // The reshare's session is remembered as concluded with it, and a DKG's on its own, across
    // a reopen (a replayed open is refused).
    assert!(store.session_concluded(&session).unwrap());
    assert!(store.session_concluded(&[0xdd; 32]).unwrap());
    assert!(!store.session_concluded(&[0xee; 32]).unwrap());
    assert_eq!(
        states(&store),
        vec![
            ("k".into(), 1, ShareState::Active),
            ("other".into(), 0, ShareState::Active)
        ]
    );
    assert_same(
        &store.share("k", 1).unwrap().unwrap(),
        &ShareRecord {
            state: ShareState::Active,
            ..pending
        },
    );
    assert!(store.reshares().unwrap().is_empty());
    assert_eq!(store.audit().unwrap().last().unwrap().1.detail, "committed");
}

#[test]
fn a_failed_conclusion_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let session = [8u8; 32];
    store
        .put_share(&record("k", 0, ShareState::Active, &random_secret()))
        .unwrap();
    store.put_reshare(&session, b"r").unwrap();
    // No PENDING share of epoch 1: promoting it is refused, and the old share, the record and
    // the audit log are untouched.
    let error = store
        .conclude_reshare(
            "k",
            permafrost_keystore::ReshareConclusion::Promote { epoch: 1 },
            &session,
            &reshare_audit("x"),
        )
        .unwrap_err();
    assert!(matches!(error, KeystoreError::NotFound { .. }), "{error}");
    assert_eq!(states(&store), vec![("k".into(), 0, ShareState::Active)]);
    assert_eq!(store.reshares().unwrap().len(), 1);
    assert!(store.audit().unwrap().is_empty());
}

#[test]
fn retire_and_discard() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Keys whose ids begin like "k" lose nothing when "k" concludes.
    for neighbour in ["kk", "k\0"] {
        store
            .put_share(&record(neighbour, 0, ShareState::Active, &random_secret()))
            .unwrap();
    }
    let neighbours = || -> Vec<(String, u64, ShareState)> {
        vec![
            ("k\0".into(), 0, ShareState::Active),
            ("kk".into(), 0, ShareState::Active),
        ]
    };
    let with_neighbours = |mine: Vec<(String, u64, ShareState)>| {
        let mut all = mine;
        all.extend(neighbours());
        all.sort();
        all
    };
    store
        .put_share(&record("k", 0, ShareState::Active, &random_secret()))
        .unwrap();
    store
        .put_share(&record("k", 1, ShareState::Pending, &random_secret()))
        .unwrap();
    store.put_reshare(&[1; 32], b"a").unwrap();
    store.put_reshare(&[2; 32], b"b").unwrap();
    // An abort discards only the PENDING share.
    store
        .conclude_reshare(
            "k",
            permafrost_keystore::ReshareConclusion::Discard { epoch: 1 },
            &[1; 32],
            &reshare_audit("aborted"),
        )
        .unwrap();
    assert_eq!(
        states(&store),
        with_neighbours(vec![("k".into(), 0, ShareState::Active)])
    );
    // Discarding an epoch that is ACTIVE deletes nothing.
    store
        .conclude_reshare(
            "k",
            permafrost_keystore::ReshareConclusion::Discard { epoch: 0 },
            &[2; 32],
            &reshare_audit("aborted again"),
        )
        .unwrap();
    assert_eq!(
        states(&store),
        with_neighbours(vec![("k".into(), 0, ShareState::Active)])
    );
    // Retiring deletes the old epoch.
    store.put_reshare(&[3; 32], b"c").unwrap();
    store
        .conclude_reshare(
            "k",
            permafrost_keystore::ReshareConclusion::Retire { epoch: 0 },
            &[3; 32],
            &reshare_audit("retired"),
        )
        .unwrap();
    assert_eq!(states(&store), neighbours());
    assert!(store.reshares().unwrap().is_empty());
    assert_eq!(store.audit().unwrap().len(), 3);
}

fn client_entry(detail: &str) -> AuditEntry {
    AuditEntry {
        time_unix_ms: 1,
        kind: AuditKind::ClientRequest,
        key_id: "k".into(),
        epoch: 0,
        message_digest: Some([7; 32]),
        requester: Some("coordinator".into()),
        detail: detail.into(),
        client: None,
    }
}

/// Group commit: a batch of admissions and audit entries is one transaction. The same
/// approval already admitted in another session anywhere in it fails the whole batch, writing
/// nothing; a durable batch is on disk with the chain intact, in order, after a reopen.
#[test]
fn a_batch_is_written_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let row = |id: u8, session: u8| permafrost_keystore::ClientRequestRow {
        client: [2; 32],
        request_id: [id; 16],
        session: [session; 32],
        expires_unix_ms: 10_000,
    };
    let share = |detail: &str| AuditEntry {
        kind: AuditKind::SignatureShare,
        ..client_entry(detail)
    };
    {
        let store = open(dir.path());
        store
            .write_batch(
                &[
                    (row(1, 1), client_entry("a")),
                    (row(2, 2), client_entry("b")),
                ],
                &[share("share a"), share("share b")],
                true,
                0,
            )
            .unwrap();
        let audited = store.audit().unwrap().len();
        // Request 1's approval again in another session: the batch fails, and its fresh
        // request 3 and its share entry are not written either.
        let err = store
            .write_batch(
                &[
                    (row(3, 3), client_entry("c")),
                    (row(1, 4), client_entry("replay")),
                ],
                &[share("share c")],
                true,
                0,
            )
            .unwrap_err();
        assert!(matches!(err, KeystoreError::Conflict(_)), "{err}");
        assert_eq!(store.audit().unwrap().len(), audited);
        assert_eq!(
            store.client_requests(0).unwrap(),
            vec![row(1, 1), row(2, 2)]
        );
        // Not durable by itself: made durable by the next sync.
        store
            .write_batch(&[(row(5, 5), client_entry("e"))], &[], false, 0)
            .unwrap();
        store.sync().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        store.client_requests(0).unwrap(),
        vec![row(1, 1), row(2, 2), row(5, 5)]
    );
    let details: Vec<String> = store
        .audit()
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.detail)
        .collect();
    assert_eq!(details, vec!["a", "b", "share a", "share b", "e"]);
    assert!(store.verify_audit().unwrap().is_intact());
}

#[test]
fn admitted_requests_survive_reopen_in_expiry_order_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let row = |id: u8, session: u8, expires: u64| permafrost_keystore::ClientRequestRow {
        client: [1; 32],
        request_id: [id; 16],
        session: [session; 32],
        expires_unix_ms: expires,
    };
    {
        let store = open(dir.path());
        store
            .admit_client_request(&row(1, 1, 1_000), &client_entry("a"), 0)
            .unwrap();
        // The same row again is one row (the store does not look ids up: the node's gates
        // refuse an id admitted before, and remember what `client_requests` returns).
        store
            .admit_client_request(&row(1, 1, 1_000), &client_entry("a again"), 0)
            .unwrap();
        // The same approval (same expiry) in another session is what the store does see, at no
        // cost: refused, nothing written.
        let audited = store.audit().unwrap().len();
        let err = store
            .admit_client_request(&row(1, 2, 1_000), &client_entry("replay"), 0)
            .unwrap_err();
        assert!(matches!(err, KeystoreError::Conflict(_)), "{err}");
        assert_eq!(store.audit().unwrap().len(), audited);
        // Listed in the order they expire, whatever the order they came in.
        store
            .admit_client_request(&row(2, 3, 5_000), &client_entry("b"), 0)
            .unwrap();
        store
            .admit_client_request(&row(9, 9, 3_000), &client_entry("z"), 0)
            .unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        store.client_requests(0).unwrap(),
        vec![row(1, 1, 1_000), row(9, 9, 3_000), row(2, 3, 5_000)]
    );
    // Expiring at `now` counts as not expired yet.
    assert_eq!(
        store.client_requests(3_000).unwrap(),
        vec![row(9, 9, 3_000), row(2, 3, 5_000)]
    );
    assert_eq!(
        store.client_requests(3_001).unwrap(),
        vec![row(2, 3, 5_000)]
    );
    // Expired rows are forgotten in a pass, once the oldest has been expired PRUNE_SLACK_MS:
    // at time 2,000 the row expiring at 1,000 is kept (listed at time 0, not at 2,000)...
    store
        .admit_client_request(&row(3, 4, 9_000), &client_entry("c"), 2_000)
        .unwrap();
    store
        .admit_client_request(
            &row(1, 5, 9_000),
            &client_entry("reused after expiry"),
            2_000,
        )
        .unwrap();
    assert_eq!(
        store.client_requests(0).unwrap(),
        vec![
            row(1, 1, 1_000),
            row(9, 9, 3_000),
            row(2, 3, 5_000),
            row(1, 5, 9_000),
            row(3, 4, 9_000)
        ]
    );
    assert_eq!(store.client_requests(2_000).unwrap().len(), 4);
    // ... and once it is that late, one admission forgets every row expired by then.
    let late = 1_000 + permafrost_keystore::PRUNE_SLACK_MS;
    assert!(late > 5_000 && late < 9_000, "the rows below assume it");
    store
        .admit_client_request(&row(4, 6, 20_000), &client_entry("d"), late)
        .unwrap();
    assert_eq!(
        store.client_requests(0).unwrap(),
        vec![row(1, 5, 9_000), row(3, 4, 9_000), row(4, 6, 20_000)]
    );
    // Refusals are audited without a sync each, are readable at once, and are on disk after
    // the next durable write.
    let before = store.audit().unwrap().len();
    let lazy = 2 * permafrost_keystore::LAZY_FLUSH_EVERY as usize + 3;
    for _ in 0..lazy {
        store
            .append_audit_lazily(&AuditEntry {
                kind: AuditKind::Refused,
                ..client_entry("refused")
            })
            .unwrap();
    }
    assert_eq!(store.audit().unwrap().len(), before + lazy);
    store
        .admit_client_request(&row(4, 6, 9_000), &client_entry("d"), 2_000)
        .unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.audit().unwrap().len(), before + lazy + 1);
}

/// The disk use report counts every row of the tables a signature writes, and no table takes
/// fewer bytes than its keys and values.
#[test]
fn disk_use_is_reported_by_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let row = |id: u8| permafrost_keystore::ClientRequestRow {
        client: [2; 32],
        request_id: [id; 16],
        session: [id; 32],
        expires_unix_ms: u64::MAX,
    };
    let before = store.usage().unwrap();
    let audited = |usage: &[permafrost_keystore::TableUsage]| {
        usage
            .iter()
            .find(|t| t.table == "audit")
            .map_or(0, |t| t.entries)
    };
    let admissions: Vec<_> = (0..40u8)
        .map(|id| (row(id), client_entry(&format!("request {id}"))))
        .collect();
    store.write_batch(&admissions, &[], true, 0).unwrap();
    let usage = store.usage().unwrap();
    assert_eq!(audited(&usage), audited(&before) + 40);
    let requests = usage
        .iter()
        .find(|t| t.table == "admitted_requests")
        .unwrap();
    assert_eq!(requests.entries, 40);
    for table in usage.iter().filter(|t| t.entries > 0) {
        assert!(table.stored_bytes > 0 && table.pages > 0, "{table:?}");
        // Whole pages: what the table takes is at least its rows and at most its pages.
        assert!(table.total_bytes() > table.stored_bytes, "{table:?}");
        assert!(table.total_bytes() <= table.pages * 4096, "{table:?}");
    }
    // Each entry stores its 32-byte MAC and 32-byte digest at least; the block written once
    // shares the key id and requester, so it stays within one page.
    let audit = usage.iter().find(|t| t.table == "audit").unwrap();
    assert!(audit.stored_bytes >= 40 * 64, "{audit:?}");
    assert_eq!(audit.pages, 1, "{audit:?}");
}

/// The audit log costs at most 256 bytes on disk per signature (issue 12's target; a real
/// node measured 154, BENCHMARKS.md "Disk"). Each of 2,000 signatures is written as a signer
/// writes it: one entry for its admission and share, approved by a client, with its own
/// request id, session and digest, in batches of eight as under load. Then every byte the
/// audit table takes in the database file, divided by its entries.
#[test]
fn a_signature_takes_at_most_256_bytes_of_audit_log_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let signatures: u32 = 2_000;
    let unique = |id: u32, tag: u8| {
        let mut bytes = [tag; 32];
        bytes[..4].copy_from_slice(&id.to_le_bytes());
        bytes
    };
    for batch in 0..signatures / 8 {
        let admissions: Vec<_> = (batch * 8..batch * 8 + 8)
            .map(|id| {
                let request_id: [u8; 16] = unique(id, 1)[..16].try_into().unwrap();
                let session = unique(id, 2);
                let row = permafrost_keystore::ClientRequestRow {
                    client: [3; 32],
                    request_id,
                    session,
                    expires_unix_ms: u64::MAX,
                };
                let entry = AuditEntry {
                    time_unix_ms: 1_764_800_000_000 + u64::from(id),
                    kind: AuditKind::SignatureShare,
                    key_id: "7c9e6679-7425-40de-944b-e07fc1f90ae7".into(),
                    epoch: 0,
                    message_digest: Some(unique(id, 4)),
                    requester: Some("coordinator".into()),
                    detail: String::new(),
                    client: Some(permafrost_keystore::AuditClient {
                        public_key: [3; 32],
                        request_id,
                        timestamp_ms: 1_764_800_000_000 + u64::from(id),
                        session,
                        path: Vec::new(),
                    }),
                };
                (row, entry)
            })
            .collect();
        store.write_batch(&admissions, &[], true, 0).unwrap();
    }
    let usage = store.usage().unwrap();
    let audit = usage.iter().find(|t| t.table == "audit").unwrap();
    assert_eq!(audit.entries, u64::from(signatures), "{audit:?}");
    let per_signature = audit.total_bytes() / audit.entries;
    assert!(
        per_signature <= 256,
        "{per_signature} B per signature: {audit:?}"
    );
    // Each entry holds its 32-byte MAC, digest and session at least: a figure below that
    // would mean entries were lost, not compacted.
    assert!(
        per_signature >= 96,
        "{per_signature} B per signature: {audit:?}"
    );
}
