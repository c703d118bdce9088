#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The audit log's MAC chain: a clean log verifies (also across reopens and after migrating
//! an unchained log); an entry edited, removed or swapped on disk, through redb directly (the
//! way someone with write access to the file but not the passphrase can), is named by its
//! sequence number.

use std::path::Path;

use permafrost_keystore::raw_audit::{self, RawAuditEntry};
use permafrost_keystore::{
    AuditClient, AuditEntry, AuditFault, AuditKind, AuditProblem, KdfParams, KeyStore,
    KeystoreError, DATABASE_FILE_NAME,
};
use redb::{Database, ReadableTable, TableDefinition};

const PASS: &[u8] = b"correct horse battery staple";
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new(raw_audit::AUDIT_TABLE);
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

fn open(dir: &Path) -> KeyStore {
    KeyStore::open_with_params(dir, PASS, KdfParams::FAST_INSECURE_FOR_TESTS).unwrap()
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        time_unix_ms: 1_700_000_000_000 + i,
        kind: if i % 2 == 0 {
            AuditKind::SignatureShare
        } else {
            AuditKind::Refused
        },
        key_id: format!("key-{i}"),
        epoch: i,
        message_digest: Some([i as u8; 32]),
        requester: Some("coordinator".into()),
        detail: format!("entry {i}"),
        client: None,
    }
}

/// Entry `i` with a client approval of the child key at `path`.
fn entry_with_path(i: u64, path: Vec<u32>) -> AuditEntry {
    AuditEntry {
        client: Some(AuditClient {
            public_key: [0xc1; 32],
            request_id: [i as u8; 16],
            timestamp_ms: 1_700_000_000_000,
            session: [i as u8; 32],
            path,
        }),
        ..entry(i)
    }
}

/// A closed keystore in a fresh directory with entries 1..=n.
fn log_with(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 1..=n {
        assert_eq!(store.append_audit(&entry(i)).unwrap(), i);
    }
    dir
}

/// Runs `edit` on the raw redb database of a closed keystore.
fn edit_raw(dir: &Path, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(dir.join(DATABASE_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
}

fn put_raw_row(txn: &redb::WriteTransaction, seq: u64, value: &[u8]) {
    txn.open_table(AUDIT).unwrap().insert(seq, value).unwrap();
}

/// The audit table's rows: (key, first byte of the value).
fn raw_versions(txn: &redb::WriteTransaction) -> Vec<(u64, u8)> {
    let table = txn.open_table(AUDIT).unwrap();
    let rows = table
        .iter()
        .unwrap()
        .map(|item| {
            let (key, value) = item.unwrap();
            (key.value(), value.value()[0])
        })
        .collect();
    rows
}

/// Every audit entry as stored, in order.
fn raw_entries(txn: &redb::WriteTransaction) -> Vec<RawAuditEntry> {
    let table = txn.open_table(AUDIT).unwrap();
    let entries = table
        .iter()
        .unwrap()
        .flat_map(|item| {
            let (key, value) = item.unwrap();
            raw_audit::entries_of_row(key.value(), value.value()).unwrap()
        })
        .collect();
    entries
}

/// Removes every audit row.
fn clear_audit(txn: &redb::WriteTransaction) {
    let mut table = txn.open_table(AUDIT).unwrap();
    let keys: Vec<u64> = table
        .iter()
        .unwrap()
        .map(|item| item.unwrap().0.value())
        .collect();
    for key in keys {
        table.remove(key).unwrap();
    }
}

/// Stores `entries` as the keystore stores entries (one block per run of consecutive numbers).
fn put_entries(txn: &redb::WriteTransaction, entries: &[RawAuditEntry]) {
    let mut start = 0;
    for end in 1..=entries.len() {
        if end == entries.len() || entries[end].seq != entries[end - 1].seq + 1 {
            let (key, value) = raw_audit::block_row(&entries[start..end]).unwrap();
            put_raw_row(txn, key, &value);
            start = end;
        }
    }
}

/// Rewrites a closed keystore's audit log after `edit` changed its entries.
fn edit_entries(dir: &Path, edit: impl FnOnce(&mut Vec<RawAuditEntry>)) {
    edit_raw(dir, |txn| {
        let mut entries = raw_entries(txn);
        edit(&mut entries);
        clear_audit(txn);
        put_entries(txn, &entries);
    });
}

/// Swaps the contents of the entries at `a` and `b`, leaving their numbers in place.
fn swap_contents(entries: &mut [RawAuditEntry], a: usize, b: usize) {
    let (seq_a, seq_b) = (entries[a].seq, entries[b].seq);
    entries.swap(a, b);
    entries[a].seq = seq_a;
    entries[b].seq = seq_b;
}

fn first_fault(dir: &Path) -> AuditFault {
    let outcome = open(dir).verify_audit().unwrap();
    assert!(!outcome.is_intact());
    outcome.fault.unwrap()
}

fn assert_intact(store: &KeyStore, entries: u64) {
    let outcome = store.verify_audit().unwrap();
    assert_eq!(outcome.fault, None, "{outcome:?}");
    assert!(outcome.is_intact());
    assert_eq!(outcome.entries, entries);
    assert_eq!(outcome.verified, entries);
}

#[test]
fn a_clean_log_verifies_and_an_empty_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_intact(&store, 0);
    for i in 1..=5 {
        store.append_audit(&entry(i)).unwrap();
    }
    store.append_audit_lazily(&entry(6)).unwrap();
    assert_intact(&store, 6);
    assert_eq!(store.audit_migrated_on_open(), None);
    assert_eq!(store.verify_audit().unwrap().migrated, None);
    let seqs: Vec<u64> = store.audit().unwrap().iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_log_written_across_reopens_verifies() {
    let dir = log_with(3);
    for round in 0..2u64 {
        let store = open(dir.path());
        assert_intact(&store, 3 + 2 * round);
        store.append_audit(&entry(10 + round)).unwrap();
        store.append_audit_lazily(&entry(20 + round)).unwrap();
    }
    let store = open(dir.path());
    assert_intact(&store, 7);
    assert_eq!(store.audit().unwrap().len(), 7);
}

#[test]
fn an_edited_entry_is_named() {
    let dir = log_with(5);
    edit_entries(dir.path(), |entries| {
        // The byte before the last (the absent client field) is the last byte of the detail
        // ("entry 3").
        let body = &mut entries[2].body;
        let last = body.len() - 2;
        body[last] = b'9';
    });
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(3));
    assert_eq!(fault.problem, AuditProblem::Edited);
    assert!(fault.to_string().contains("entry 3"), "{fault}");
    // The entry still reads (show works on a damaged log), with the edited detail.
    let store = open(dir.path());
    assert_eq!(store.audit().unwrap()[2].1.detail, "entry 9");
    assert_eq!(store.verify_audit().unwrap().verified, 2);
}

#[test]
fn an_edited_mac_is_named() {
    let dir = log_with(4);
    edit_entries(dir.path(), |entries| entries[1].mac[0] ^= 1);
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(2));
    assert_eq!(fault.problem, AuditProblem::Edited);
}

#[test]
fn a_removed_entry_is_named() {
    let dir = log_with(5);
    edit_entries(dir.path(), |entries| {
        entries.remove(2);
    });
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(3));
    assert_eq!(fault.problem, AuditProblem::Missing { through: 3 });
    assert!(fault.to_string().contains("entry 3 is missing"), "{fault}");

    // The first entry removed.
    let dir = log_with(3);
    edit_entries(dir.path(), |entries| {
        entries.remove(0);
    });
    assert_eq!(first_fault(dir.path()).seq, Some(1));
}

#[test]
fn a_removed_entry_with_the_rest_renumbered_is_named() {
    let dir = log_with(5);
    edit_entries(dir.path(), |entries| {
        entries.remove(2);
        entries[2].seq = 3;
        entries[3].seq = 4;
    });
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(3));
    assert!(
        matches!(
            fault.problem,
            AuditProblem::Reordered { written_as: 4 } | AuditProblem::Edited
        ),
        "{fault:?}"
    );
}

#[test]
fn two_swapped_entries_are_named() {
    let dir = log_with(6);
    edit_entries(dir.path(), |entries| swap_contents(entries, 2, 3));
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(3));
    assert_eq!(fault.problem, AuditProblem::Reordered { written_as: 4 });
    assert!(fault.to_string().contains("reordered"), "{fault}");

    // Swapped with the first entry: the genesis value is a predecessor too.
    let dir = log_with(3);
    edit_entries(dir.path(), |entries| swap_contents(entries, 0, 1));
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(1));
    assert_eq!(fault.problem, AuditProblem::Reordered { written_as: 2 });
}

#[test]
fn an_inserted_or_undecodable_row_is_named() {
    // Entry 2 replaced by a row too short to hold a MAC.
    let dir = log_with(2);
    edit_raw(dir.path(), |txn| {
        let mut entries = raw_entries(txn);
        entries.truncate(1);
        clear_audit(txn);
        put_entries(txn, &entries);
        put_raw_row(txn, 2, &[2, 0, 1]);
    });
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(2));
    assert!(
        matches!(fault.problem, AuditProblem::Undecodable(_)),
        "{fault:?}"
    );
    // Appending after an undecodable last row fails clearly instead of chaining to nothing.
    let store = open(dir.path());
    let error = store.append_audit(&entry(3)).unwrap_err();
    assert!(matches!(error, KeystoreError::Corrupt(_)), "{error:?}");
    drop(store);

    // A block whose first entry sets a flag that means nothing.
    let dir = log_with(2);
    edit_raw(dir.path(), |txn| {
        let table = txn.open_table(AUDIT).unwrap();
        let mut block = table.get(1).unwrap().unwrap().value().to_vec();
        drop(table);
        assert_eq!(block[0], 5);
        block[1 + 32] = 0x80;
        put_raw_row(txn, 1, &block);
    });
    let fault = first_fault(dir.path());
    assert_eq!(fault.seq, Some(1));
    assert!(
        matches!(&fault.problem, AuditProblem::Undecodable(why) if why.contains("flags")),
        "{fault:?}"
    );

    // A copy of entry 1 planted before it, as entry 0.
    let dir = log_with(2);
    edit_entries(dir.path(), |entries| {
        let planted = RawAuditEntry {
            seq: 0,
            ..entries[0].clone()
        };
        entries.insert(0, planted);
    });
    let fault = first_fault(dir.path());
    assert_eq!(
        (fault.seq, fault.problem),
        (Some(0), AuditProblem::Inserted)
    );
}

#[test]
fn a_log_from_another_keystore_does_not_verify() {
    // Same passphrase, other salt: another chain key.
    let theirs = log_with(2);
    let ours = log_with(2);
    let theirs: Vec<RawAuditEntry> = {
        let db = Database::create(theirs.path().join(DATABASE_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        let entries = raw_entries(&txn);
        txn.abort().unwrap();
        entries
    };
    edit_entries(ours.path(), |entries| *entries = theirs);
    let fault = first_fault(ours.path());
    assert_eq!((fault.seq, fault.problem), (Some(1), AuditProblem::Edited));
}

/// Rewrites a keystore's audit table the way the previous format stored it (`01 ‖ body`, no
/// MAC) and removes the chain record: a keystore as the previous build left it.
fn downgrade_to_unchained(dir: &Path) {
    edit_raw(dir, |txn| {
        let entries = raw_entries(txn);
        clear_audit(txn);
        for entry in entries {
            // Version 4 bodies without a client field: the previous body is the same but for
            // the last byte (the absent client field).
            assert_eq!((entry.version, entry.body[entry.body.len() - 1]), (4, 0));
            let mut v1 = vec![1u8];
            v1.extend_from_slice(&entry.body[..entry.body.len() - 1]);
            put_raw_row(txn, entry.seq, &v1);
        }
        txn.open_table(META)
            .unwrap()
            .remove(b"audit_chain".as_slice())
            .unwrap()
            .unwrap();
    });
}

#[test]
fn an_unchained_log_is_migrated_on_open_and_then_verifies() {
    let dir = log_with(4);
    let before = open(dir.path()).audit().unwrap();
    downgrade_to_unchained(dir.path());
    {
        let store = open(dir.path());
        let migration = store.audit_migrated_on_open().unwrap();
        assert_eq!(migration.entries, 4);
        assert!(migration.at_unix_ms > 1_700_000_000_000);
        assert_eq!(store.audit().unwrap(), before);
        let outcome = store.verify_audit().unwrap();
        assert_eq!(outcome.fault, None);
        assert_eq!(outcome.migrated, Some(migration));
        store.append_audit(&entry(5)).unwrap();
        store
            .append_audit(&entry_with_path(6, vec![0, 17]))
            .unwrap();
        assert_intact(&store, 6);
    }
    // The migrated rows are version 2 (no client field), the new entries one block: one chain.
    edit_raw(dir.path(), |txn| {
        assert_eq!(
            raw_versions(txn),
            vec![(1, 2), (2, 2), (3, 2), (4, 2), (5, 5)]
        );
    });
    // Once only: the next open migrates nothing, and the log still verifies.
    let store = open(dir.path());
    assert_eq!(store.audit_migrated_on_open(), None);
    assert_intact(&store, 6);
    let last = store.audit().unwrap().pop().unwrap();
    assert_eq!(last, (6, entry_with_path(6, vec![0, 17])));
    assert_eq!(store.verify_audit().unwrap().migrated.unwrap().entries, 4);
}

#[test]
fn an_empty_unchained_log_is_migrated_silently() {
    let dir = log_with(0);
    downgrade_to_unchained(dir.path());
    let store = open(dir.path());
    assert_eq!(store.audit_migrated_on_open(), None);
    assert_intact(&store, 0);
    store.append_audit(&entry(1)).unwrap();
    assert_intact(&store, 1);
}

#[test]
fn unchained_rows_planted_in_a_chained_log_are_not_migrated() {
    let dir = log_with(3);
    // An unchained row in place of entry 2: the chain record stays, so no migration.
    edit_raw(dir.path(), |txn| {
        let entries = raw_entries(txn);
        clear_audit(txn);
        put_entries(txn, &entries[..1]);
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&entries[1].body);
        put_raw_row(txn, 2, &v1);
        put_entries(txn, &entries[2..]);
    });
    let store = open(dir.path());
    assert_eq!(store.audit_migrated_on_open(), None);
    let fault = store.verify_audit().unwrap().fault.unwrap();
    assert_eq!(fault.seq, Some(2));
    assert!(
        matches!(fault.problem, AuditProblem::Undecodable(_)),
        "{fault:?}"
    );
    drop(store);

    // The chain record removed but chained rows left: nothing is migrated, verify says so.
    let dir = log_with(2);
    edit_raw(dir.path(), |txn| {
        txn.open_table(META)
            .unwrap()
            .remove(b"audit_chain".as_slice())
            .unwrap();
    });
    let store = open(dir.path());
    assert_eq!(store.audit_migrated_on_open(), None);
    let fault = store.verify_audit().unwrap().fault.unwrap();
    assert_eq!(
        (fault.seq, fault.problem),
        (None, AuditProblem::ChainRecordMissing)
    );
    drop(store);

    // The chain record edited (to claim another migration): it does not verify.
    let dir = log_with(2);
    edit_raw(dir.path(), |txn| {
        let mut meta = txn.open_table(META).unwrap();
        let mut record = meta
            .get(b"audit_chain".as_slice())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        record[16] = 9;
        meta.insert(b"audit_chain".as_slice(), record.as_slice())
            .unwrap();
    });
    let fault = first_fault(dir.path());
    assert!(
        matches!(fault.problem, AuditProblem::ChainRecordInvalid(_)),
        "{fault:?}"
    );
}

#[test]
fn a_removed_tail_is_not_detectable_by_the_chain() {
    // Documented limit: deleting the last entries leaves a valid, shorter chain.
    let dir = log_with(5);
    edit_entries(dir.path(), |entries| entries.truncate(3));
    let store = open(dir.path());
    assert_intact(&store, 3);
}

#[test]
fn debug_of_the_store_does_not_show_the_chain_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let debug = format!("{store:?}");
    assert!(debug.contains("MacKey(<redacted>)"), "{debug}");
}
