#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The journal from outside: what a crash leaves of the writes it made durable.
//!
//! A crash is a copy of the keystore's two files taken while the store is open: redb's file
//! holds the pages of its unsynced commits, but its header still points at the last synced
//! one, as a disk would after a power cut; the journal holds what was written to it. Opening
//! the copy is the restart.

use std::fs;
use std::path::Path;

use permafrost_keystore::{
    AuditEntry, AuditKind, ClientRequestRow, KdfParams, KeyStore, ShareRecord, ShareState,
    CHECKPOINT_EVERY, DATABASE_FILE_NAME, JOURNAL_BYTES, JOURNAL_FILE_NAME,
};
use tempfile::TempDir;
use zeroize::Zeroizing;

fn open(dir: &Path) -> KeyStore {
    KeyStore::open_with_params(dir, b"passphrase", KdfParams::FAST_INSECURE_FOR_TESTS).unwrap()
}

fn row(n: u32) -> ClientRequestRow {
    let mut request_id = [0; 16];
    request_id[..4].copy_from_slice(&n.to_be_bytes());
    ClientRequestRow {
        client: [2; 32],
        request_id,
        session: [n as u8; 32],
        expires_unix_ms: 10_000 + u64::from(n),
    }
}

fn entry(kind: AuditKind, n: u32) -> AuditEntry {
    AuditEntry {
        time_unix_ms: 1_700_000_000_000 + u64::from(n),
        kind,
        key_id: "k".into(),
        epoch: 0,
        message_digest: Some([7; 32]),
        requester: Some("coordinator".into()),
        detail: format!("batch {n}"),
        client: None,
    }
}

/// Batch `n` as the node writes it: one admission and the share's audit entry.
fn write_batch(store: &KeyStore, n: u32, durable: bool) {
    store
        .write_batch(
            &[(row(n), entry(AuditKind::ClientRequest, n))],
            &[entry(AuditKind::SignatureShare, n)],
            durable,
            0,
        )
        .unwrap();
}

/// A store in a new directory that wrote the durable batches `numbers`.
fn store_with(numbers: std::ops::RangeInclusive<u32>) -> (TempDir, KeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in numbers {
        write_batch(&store, n, true);
    }
    (dir, store)
}

/// What a crash of the store in `dir` would leave, now.
fn crash_image(dir: &Path) -> TempDir {
    let image = tempfile::tempdir().unwrap();
    for name in [DATABASE_FILE_NAME, JOURNAL_FILE_NAME] {
        fs::copy(dir.join(name), image.path().join(name)).unwrap();
    }
    image
}

/// The admitted rows and the audit log: what a restart must find.
fn contents(store: &KeyStore) -> (Vec<ClientRequestRow>, Vec<(u64, AuditEntry)>) {
    let verification = store.verify_audit().unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    (store.client_requests(0).unwrap(), store.audit().unwrap())
}

/// The batches `store` holds, by their admitted rows.
fn batches(store: &KeyStore) -> Vec<ClientRequestRow> {
    contents(store).0
}

/// Each record of the journal file in `dir`, whatever its round: the number of its first audit
/// entry and where it starts and ends, read as the format says (`u64 first entry ‖ u32 len ‖
/// payload ‖ 32-byte MAC`), up to the first zero entry number.
fn records(dir: &Path) -> Vec<(u64, std::ops::Range<usize>)> {
    let bytes = fs::read(dir.join(JOURNAL_FILE_NAME)).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let first = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let len = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        if first == 0 || at + 12 + len + 32 > bytes.len() {
            break;
        }
        out.push((first, at..at + 12 + len + 32));
        at += 12 + len + 32;
    }
    out
}

fn edit_journal(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(JOURNAL_FILE_NAME);
    let mut bytes = fs::read(&path).unwrap();
    edit(&mut bytes);
    fs::write(&path, bytes).unwrap();
}

#[test]
fn a_synced_batch_survives_a_crash_and_an_unsynced_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_batch(&store, 1, true);
    write_batch(&store, 2, false);
    let image = crash_image(dir.path());
    // (A read takes every write, synced or not, so it comes after the crash.)
    assert_eq!(batches(&store), vec![row(1), row(2)]);
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 1);
    assert_eq!(batches(&restarted), vec![row(1)]);
    let audit = restarted.audit().unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    // The journal file stays preallocated.
    assert_eq!(
        fs::metadata(image.path().join(JOURNAL_FILE_NAME))
            .unwrap()
            .len(),
        JOURNAL_BYTES
    );
}

#[test]
fn a_restart_finds_the_writes_made_exactly_once_across_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let total = 2 * CHECKPOINT_EVERY as u32 + 37;
    for n in 1..=total {
        write_batch(&store, n, true);
    }
    // Refusals appended lazily, the last of them synced by a batch.
    store
        .append_audit_lazily(&entry(AuditKind::Refused, 0))
        .unwrap();
    write_batch(&store, total + 1, true);
    let image = crash_image(dir.path());
    let live = contents(&store);
    assert_eq!(live.0.len() as u32, total + 1);
    let restarted = open(image.path());
    // Only what followed the last checkpoint redb holds is replayed: this round's records, and
    // the region before it if its checkpoint (in the background) had not committed yet.
    assert!(
        (1..=2 * CHECKPOINT_EVERY).contains(&restarted.journal_replayed_on_open()),
        "{}",
        restarted.journal_replayed_on_open()
    );
    assert_eq!(
        contents(&restarted),
        live,
        "same rows, same entries, same chain"
    );
    // Writing on goes on from there; a second restart replays nothing again.
    write_batch(&restarted, total + 2, true);
    let image = crash_image(image.path());
    let after = contents(&restarted);
    let again = open(image.path());
    assert_eq!(again.journal_replayed_on_open(), 1);
    assert_eq!(contents(&again), after);
    drop((again, restarted));
}

#[test]
fn a_torn_last_record_loses_only_its_batch() {
    let (dir, _open) = store_with(1..=3); // open: its writes are not checkpointed
    let image = crash_image(dir.path());
    let records = records(image.path());
    assert_eq!(
        records.iter().map(|(first, _)| *first).collect::<Vec<_>>(),
        vec![1, 3, 5],
        "two audit entries a batch"
    );
    let third = records[2].1.clone();
    // Cut short at every tenth byte of the third record, and with one byte flipped in it.
    for cut in third.clone().step_by(10) {
        let torn = crash_image(image.path());
        edit_journal(torn.path(), |bytes| bytes[cut..third.end].fill(0));
        let restarted = open(torn.path());
        assert_eq!(batches(&restarted), vec![row(1), row(2)], "cut at {cut}");
    }
    let flipped = crash_image(image.path());
    edit_journal(flipped.path(), |bytes| bytes[third.start + 20] ^= 1);
    assert_eq!(batches(&open(flipped.path())), vec![row(1), row(2)]);
    // A journal file cut short (its preallocation lost) is read as far as it goes.
    let truncated = crash_image(image.path());
    edit_journal(truncated.path(), |bytes| bytes.truncate(third.start + 5));
    assert_eq!(batches(&open(truncated.path())), vec![row(1), row(2)]);
}

#[test]
fn a_record_written_twice_is_applied_once() {
    let (dir, store) = store_with(1..=3);
    let image = crash_image(dir.path());
    let live = contents(&store);
    let records = records(image.path());
    let second = records[1].1.clone();
    edit_journal(image.path(), |bytes| {
        let copy = bytes[second.clone()].to_vec();
        let tail = bytes.split_off(second.end);
        bytes.extend_from_slice(&copy);
        bytes.extend_from_slice(&tail);
    });
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 3);
    assert_eq!(contents(&restarted), live);
}

#[test]
fn what_redb_already_holds_is_not_replayed() {
    let (dir, store) = store_with(1..=3);
    // A write redb syncs itself: the three batches are in redb now, and still in the journal.
    store
        .put_share(&ShareRecord {
            key_id: "k".into(),
            epoch: 0,
            state: ShareState::Active,
            identifier: vec![1; 32],
            public: b"public".to_vec(),
            secret: Zeroizing::new(vec![9; 32]),
        })
        .unwrap();
    let image = crash_image(dir.path());
    let live = contents(&store);
    assert_eq!(records(image.path()).len(), 3);
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 0);
    assert_eq!(contents(&restarted), live);
}

#[test]
fn a_journal_without_the_passphrase_adds_nothing() {
    // Records from another keystore (another KEK) laid over this one's journal.
    let (other, other_store) = store_with(10..=12);
    drop(other_store);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let image = crash_image(dir.path());
    fs::copy(
        other.path().join(JOURNAL_FILE_NAME),
        image.path().join(JOURNAL_FILE_NAME),
    )
    .unwrap();
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 0);
    assert!(batches(&restarted).is_empty());
    // An edited payload of this keystore's own first record: nothing after it is replayed.
    write_batch(&store, 1, true);
    write_batch(&store, 2, true);
    let image = crash_image(dir.path());
    let first = records(image.path())[0].1.clone();
    edit_journal(image.path(), |bytes| bytes[first.start + 12] ^= 0x80);
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 0);
    assert!(batches(&restarted).is_empty());
}

#[test]
fn a_clean_close_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        write_batch(&store, 1, true);
        write_batch(&store, 2, false);
    }
    let store = open(dir.path());
    assert_eq!(batches(&store), vec![row(1), row(2)]);
}

/// The same approval admitted again in another session is refused, changing nothing, whether
/// the first admission is pending in the journal, in redb after a checkpoint, or earlier in
/// the same batch.
#[test]
fn a_conflicting_admission_is_refused_wherever_the_first_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let again = |n: u32| ClientRequestRow {
        session: [0xee; 32],
        ..row(n)
    };
    let admit = |rows: &[ClientRequestRow]| {
        let admissions: Vec<_> = rows
            .iter()
            .map(|r| (r.clone(), entry(AuditKind::ClientRequest, 0)))
            .collect();
        store.write_batch(&admissions, &[], true, 0)
    };
    admit(&[row(1)]).unwrap();
    let conflict = |result: Result<(), permafrost_keystore::KeystoreError>| {
        assert!(
            matches!(result, Err(permafrost_keystore::KeystoreError::Conflict(_))),
            "{result:?}"
        )
    };
    conflict(admit(&[row(2), again(1)])); // pending
    store.sync().unwrap();
    store.put_identity(b"identity").unwrap(); // a checkpoint: row 1 is in redb now
    conflict(admit(&[again(1)]));
    conflict(admit(&[row(3), again(3)])); // the same batch
                                          // The same row again in its own session is one row.
    admit(&[row(1), row(4)]).unwrap();
    let image = crash_image(dir.path());
    assert_eq!(batches(&store), vec![row(1), row(4)]);
    assert_eq!(batches(&open(image.path())), vec![row(1), row(4)]);
    assert_eq!(store.audit().unwrap().len(), 3);
}

/// Records written but never synced whole (the first one torn) stay in the file after the
/// restart that found nothing to replay; the next records are numbered as they were. They
/// are of an older round and never replayed, however the new records line up with them.
#[test]
fn an_older_rounds_records_are_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 1..=3 {
        write_batch(&store, n, false);
    }
    store.sync().unwrap(); // one write of all three records
    let image = crash_image(dir.path());
    let first = records(image.path())[0].1.clone();
    edit_journal(image.path(), |bytes| bytes[first.end - 1] ^= 1);
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 0);
    assert!(batches(&restarted).is_empty());
    // Batch 4 takes the same audit entries as batch 1 and the same place in the file; records
    // 2 and 3 of the older round follow it there.
    write_batch(&restarted, 4, true);
    let again = crash_image(image.path());
    assert_eq!(records(again.path()).len(), 3);
    let reopened = open(again.path());
    assert_eq!(reopened.journal_replayed_on_open(), 1);
    assert_eq!(batches(&reopened), vec![row(4)]);
    drop(restarted);
    // And after a clean close.
    assert_eq!(batches(&open(image.path())), vec![row(4)]);
}

/// Replay follows the MAC-chained audit log, not a number someone could edit: records whose
/// entries the log holds are not applied again, even under the round they were written in.
#[test]
fn records_whose_entries_the_log_holds_are_not_applied_again() {
    let (dir, _open) = store_with(1..=3);
    let image = crash_image(dir.path());
    let round = meta_value(image.path(), b"journal_round");
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 3);
    let live = contents(&restarted);
    drop(restarted);
    // The meta table set back to the round of those records.
    set_meta_value(image.path(), b"journal_round", &round);
    let reopened = open(image.path());
    assert_eq!(reopened.journal_replayed_on_open(), 0);
    assert_eq!(contents(&reopened), live);
}

/// A checkpoint that comes due runs in the background while the journal goes on in its other
/// region. A crash before that checkpoint's commit leaves redb as it was before it: replay
/// reads the first region, then the second in the round after, and loses nothing.
#[test]
fn a_crash_while_a_checkpoint_runs_in_the_background_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let full = CHECKPOINT_EVERY as u32;
    for n in 1..=full {
        write_batch(&store, n, true);
    }
    // redb now: its state before the checkpoint that the next batch starts.
    let before = crash_image(dir.path());
    assert_eq!(meta_value(before.path(), b"journal_region")[0], 0);
    let total = full + 40;
    for n in full + 1..=total {
        write_batch(&store, n, true);
    }
    // The journal after batches in the other region: with redb from before, the crash hit
    // while the checkpoint was running.
    fs::copy(
        dir.path().join(JOURNAL_FILE_NAME),
        before.path().join(JOURNAL_FILE_NAME),
    )
    .unwrap();
    let live = contents(&store);
    assert_eq!(live.0, (1..=total).map(row).collect::<Vec<_>>());
    let restarted = open(before.path());
    assert_eq!(restarted.journal_replayed_on_open(), u64::from(total));
    assert_eq!(
        contents(&restarted),
        live,
        "same rows, same entries, same chain"
    );
}

/// Crashes at many points of a long run, across several switches of region (timed however
/// the background checkpoints happen to run): each restart holds exactly the batches synced
/// before it, once each, with a chain that verifies.
#[test]
fn crashes_across_switches_of_region_keep_exactly_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut images = Vec::new();
    let mut unsynced = Vec::new();
    let mut n = 0;
    while n < 3 * CHECKPOINT_EVERY as u32 + 30 {
        for _ in 0..61 {
            n += 1;
            write_batch(&store, n, true);
        }
        // An unsynced batch: durable with the next sync, and a crash before it may lose it.
        write_batch(&store, 100_000 + n, false);
        unsynced.push(100_000 + n);
        images.push((n, crash_image(dir.path())));
    }
    for (synced, image) in images {
        let restarted = open(image.path());
        let mut rows = batches(&restarted);
        rows.sort_by_key(|r| r.expires_unix_ms);
        let mut expected: Vec<_> = (1..=synced)
            .chain(unsynced.iter().copied().filter(|u| *u < 100_000 + synced))
            .map(row)
            .collect();
        expected.sort_by_key(|r| r.expires_unix_ms);
        let lost_last = rows == expected;
        expected.push(row(100_000 + synced));
        assert!(
            lost_last || rows == expected,
            "after {synced} synced batches: {} rows",
            rows.len()
        );
    }
    drop(store);
}

/// A store whose meta table names no region was written by a build before the regions; its
/// round's records are read from the start of the file.
#[test]
fn a_journal_from_before_the_regions_is_replayed() {
    let (dir, _open) = store_with(1..=3);
    let image = crash_image(dir.path());
    let live: Vec<_> = (1..=3).map(row).collect();
    let db = redb::Database::open(image.path().join(DATABASE_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .remove(b"journal_region".as_slice())
        .unwrap();
    txn.commit().unwrap();
    drop(db);
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 3);
    assert_eq!(batches(&restarted), live);
    drop(restarted);
    // A region that is neither is corruption, named.
    let mut region = vec![2];
    region.extend_from_slice(&meta_value(image.path(), b"journal_round"));
    set_meta_value(image.path(), b"journal_region", &region);
    let error = KeyStore::open_with_params(
        image.path(),
        b"passphrase",
        KdfParams::FAST_INSECURE_FOR_TESTS,
    )
    .unwrap_err();
    assert!(error.to_string().contains("journal's region"), "{error}");
}

const META: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");

fn meta_value(dir: &Path, key: &[u8]) -> Vec<u8> {
    let db = redb::Database::open(dir.join(DATABASE_FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(META).unwrap();
    let value = table.get(key).unwrap().unwrap().value().to_vec();
    value
}

fn set_meta_value(dir: &Path, key: &[u8], value: &[u8]) {
    let db = redb::Database::open(dir.join(DATABASE_FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META).unwrap().insert(key, value).unwrap();
    txn.commit().unwrap();
}

/// An admission acknowledged as durable must apply at the checkpoint, or the store could take
/// no write and not open again. So what applying it would refuse is refused before it is
/// journaled: a first row of the admitted requests that does not decode (applying prunes
/// from there), and a held row whose session is stored with another length.
#[test]
fn what_applying_would_refuse_is_refused_before_it_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let admitted: redb::TableDefinition<&[u8], &[u8]> =
        redb::TableDefinition::new("admitted_requests");
    let key_of = |row: &ClientRequestRow| {
        let mut key = row.expires_unix_ms.to_be_bytes().to_vec();
        key.extend_from_slice(&row.client);
        key.extend_from_slice(&row.request_id);
        key
    };
    let plant = |key: &[u8], value: &[u8]| {
        let db = redb::Database::open(dir.path().join(DATABASE_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(admitted)
            .unwrap()
            .insert(key, value)
            .unwrap();
        txn.commit().unwrap();
    };
    let unplant = |key: &[u8]| {
        let db = redb::Database::open(dir.path().join(DATABASE_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(admitted).unwrap().remove(key).unwrap();
        txn.commit().unwrap();
    };
    let admit = |store: &KeyStore, n: u32| {
        store.write_batch(
            &[(row(n), entry(AuditKind::ClientRequest, n))],
            &[],
            true,
            0,
        )
    };
    plant(b"x", &[0; 32]);
    let store = open(dir.path());
    let error = admit(&store, 1).unwrap_err();
    assert!(
        matches!(error, permafrost_keystore::KeystoreError::Corrupt(_)),
        "{error}"
    );
    // Nothing was journaled: other writes go on, and the store opens again.
    store.append_audit(&entry(AuditKind::Refused, 0)).unwrap();
    drop(store);
    unplant(b"x");
    plant(&key_of(&row(2)), &[2; 31]);
    let store = open(dir.path());
    let error = admit(&store, 2).unwrap_err();
    assert!(
        matches!(error, permafrost_keystore::KeystoreError::Conflict(_)),
        "{error}"
    );
    admit(&store, 3).unwrap();
    let image = crash_image(dir.path());
    drop(store);
    let restarted = open(image.path());
    assert_eq!(restarted.journal_replayed_on_open(), 1);
    assert_eq!(restarted.audit().unwrap().len(), 2);
}
