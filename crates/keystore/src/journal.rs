//! The keystore's journal: how a group commit on a signature's path costs one small sync.
//!
//! redb makes a commit durable with two `fdatasync`s of the database file (two-phase commit),
//! and a commit costs CPU for every page it copies and checksums. The writes on a signature's
//! path — admissions and audit entries — pay neither. Each is appended to the journal as the
//! operation that makes it (`JournalOp`), and a durable one is synced there: one `fdatasync`
//! of a few hundred bytes, in a file preallocated with zeros and overwritten in place, so that
//! the sync writes no file-system metadata. The operations wait in memory (pending) for the
//! next **checkpoint**: one redb transaction that applies them in their order, through the
//! same code a direct write would run, committed with redb's two-phase commit, after which the
//! journal starts again at its beginning.
//!
//! A checkpoint comes every [`CHECKPOINT_EVERY`] records or when the file is full, inside any
//! write that redb syncs itself (before that write's own change), before a read of the tables
//! the journal writes (audit log, admitted requests), and on close. Every synced redb commit of
//! the keystore also begins a new **round**: 16 random bytes, written to the meta table
//! (`"journal_round"`) in that commit and bound into the MAC of every record written until the
//! next one. Opening the keystore replays the records of the round redb holds that follow the
//! audit log, in one synced transaction that begins a new round: the store is then what it was
//! after the last synced record.
//!
//! Why a record is trusted: each carries an HMAC-SHA256 under a key derived from the KEK, so a
//! torn record, or data crafted by a client to look like a complete one after a crash (the
//! attack for which the keystore pays redb's second sync), never verifies; nor does a record
//! of an older round, left further on in the file after the journal started again at its
//! beginning. Without the passphrase nobody can make a record that verifies. Replay is tied to
//! the MAC-chained audit log, not to a number in the meta table: a record is applied only if
//! its first audit entry is the log's next one. Cutting the journal short forgets the newest
//! writes, as restoring an older copy of the database would; someone who can write the data
//! directory and kept an older copy of it (with its round) can bring back what that copy held,
//! as restoring it would.
//!
//! ## Format
//! `<dir>/keystore.journal`, [`JOURNAL_BYTES`] long. A record:
//!
//! `u64 first ‖ u32 len ‖ payload (len bytes) ‖ HMAC-SHA256(journal key, "permafrost-keystore/journal-record/v1" ‖ round(16) ‖ u64 first ‖ u32 len ‖ payload)`
//!
//! with big-endian integers, `first` the sequence number of the operation's first audit entry
//! (every journaled operation appends at least one), and `journal key = HMAC-SHA256(KEK,
//! "permafrost/keystore-journal/v1")`. Replay reads records from the file's start, while they
//! verify under the round redb holds. A record whose entries the log already holds is passed
//! over (a crash between redb's synced commit and the next record, a record written twice); one
//! whose first entry is the log's next is applied; at anything else (a gap, entries held in
//! part), at a record that does not verify (a torn tail: a write a crash cut short, whose sync
//! never returned, so that nothing was released on it) or at zeros, replay stops.
//!
//! A payload (`JournalOp`): `u64 now_unix_ms ‖ u32 count ‖ count × (approver(32) ‖ request
//! id(16) ‖ session(32) ‖ u64 expires_unix_ms ‖ lp(audit body)) ‖ u32 count ‖ count ×
//! lp(audit body)`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use crate::crypto::{MacKey, MAC_LEN};
use crate::store::ClientRequestRow;

/// File name of the journal inside the keystore directory.
pub const JOURNAL_FILE_NAME: &str = "keystore.journal";

/// Length of the journal file, preallocated with zeros.
pub const JOURNAL_BYTES: u64 = 1 << 20;

/// Records after which the keystore makes redb durable and starts the journal again. It bounds
/// what a restart replays and what redb keeps unsynced: redb cannot reuse a page freed by an
/// unsynced commit before the next synced one, so the database file grows with the unsynced
/// commits between two syncs.
pub const CHECKPOINT_EVERY: u64 = 256;

/// `u64 first audit entry ‖ u32 len`.
const HEADER_LEN: usize = 12;

/// Length of a journal round's id.
pub(crate) const ROUND_LEN: usize = 16;

/// Domain separation of a record's MAC.
const RECORD_TAG: &[u8] = b"permafrost-keystore/journal-record/v1";

/// One write the journal records: admissions, each with its audit entry, then audit entries,
/// at the time `now_unix_ms` (admitting prunes rows expired before it). Replaying it runs the
/// same code with the same arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JournalOp {
    pub now_unix_ms: u64,
    pub admissions: Vec<(ClientRequestRow, Vec<u8>)>,
    pub audits: Vec<Vec<u8>>,
}

impl JournalOp {
    /// How many audit entries it appends: one per admission, and its audit entries.
    pub(crate) fn entries(&self) -> u64 {
        (self.admissions.len() + self.audits.len()) as u64
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let bodies: usize = self
            .admissions
            .iter()
            .map(|(_, a)| a.len() + 124)
            .sum::<usize>()
            + self.audits.iter().map(|a| a.len() + 4).sum::<usize>();
        let mut out = Vec::with_capacity(16 + bodies);
        out.extend_from_slice(&self.now_unix_ms.to_be_bytes());
        out.extend_from_slice(&count(self.admissions.len()).to_be_bytes());
        for (row, audit) in &self.admissions {
            out.extend_from_slice(&row.client);
            out.extend_from_slice(&row.request_id);
            out.extend_from_slice(&row.session);
            out.extend_from_slice(&row.expires_unix_ms.to_be_bytes());
            put_lp(&mut out, audit);
        }
        out.extend_from_slice(&count(self.audits.len()).to_be_bytes());
        for audit in &self.audits {
            put_lp(&mut out, audit);
        }
        out
    }

    /// Decodes a payload; `None` if it is not exactly one operation.
    pub(crate) fn decode(bytes: &[u8]) -> Option<JournalOp> {
        let mut input = Reader(bytes);
        let now_unix_ms = input.u64()?;
        let mut admissions = Vec::new();
        for _ in 0..input.u32()? {
            let row = ClientRequestRow {
                client: input.array()?,
                request_id: input.array()?,
                session: input.array()?,
                expires_unix_ms: input.u64()?,
            };
            admissions.push((row, input.lp()?.to_vec()));
        }
        let mut audits = Vec::new();
        for _ in 0..input.u32()? {
            audits.push(input.lp()?.to_vec());
        }
        input.0.is_empty().then_some(JournalOp {
            now_unix_ms,
            admissions,
            audits,
        })
    }
}

/// A count as the format stores it. Counts are of items already in memory and bounded by what
/// fits in the journal, so they fit in a `u32`.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&count(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a payload front to back; every read checks the bytes are there.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }
    fn lp(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
}

/// Where the journal's bytes go: the file, or a test's stand-in that fails on demand.
pub(crate) trait JournalFile: Send {
    /// Writes all of `bytes` at `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes every write before it durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

impl JournalFile for File {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.write_all(bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// The journal of an open keystore: the records written since redb was last made durable, and
/// those appended since the journal was last synced (not yet written).
pub(crate) struct Journal {
    file: Box<dyn JournalFile>,
    key: MacKey,
    /// The round every record written now belongs to (bound into its MAC), the one redb's
    /// meta table holds.
    round: [u8; ROUND_LEN],
    /// Where the next record goes.
    cursor: u64,
    /// Records appended and not yet written.
    staged: Vec<u8>,
    /// The operations of the records since the last checkpoint, in order: not in redb yet.
    pending: Vec<JournalOp>,
    /// The audit entries of `pending`.
    pending_entries: u64,
    /// The session of each admission in `pending`, by its row's key (the last one's, if a row
    /// comes twice): for the conflict check, without a walk of `pending`.
    pending_admissions: HashMap<[u8; 56], [u8; 32]>,
    /// Why a write or sync of the journal failed, if one did. Nothing written since can be
    /// known to be on disk (a failed `fdatasync` may have dropped the pages it could not
    /// write), so every later write is refused until the keystore is opened again.
    failed: Option<String>,
}

impl Journal {
    /// A journal of `round`, written from the file's start.
    pub(crate) fn new(file: Box<dyn JournalFile>, key: MacKey, round: [u8; ROUND_LEN]) -> Self {
        Journal {
            file,
            key,
            round,
            cursor: 0,
            staged: Vec::new(),
            pending: Vec::new(),
            pending_entries: 0,
            pending_admissions: HashMap::new(),
            failed: None,
        }
    }

    /// Why the journal refuses writes, if it does.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The operations journaled since the last checkpoint, in order: what redb does not hold
    /// yet.
    pub(crate) fn pending(&self) -> &[JournalOp] {
        &self.pending
    }

    /// The session a pending admission of the row keyed `key` was admitted in, if any.
    pub(crate) fn pending_admission(&self, key: &[u8; 56]) -> Option<[u8; 32]> {
        self.pending_admissions.get(key).copied()
    }

    /// How many audit entries [`pending`](Self::pending) appends.
    pub(crate) fn pending_entries(&self) -> u64 {
        self.pending_entries
    }

    /// Whether a record of `payload_len` bytes goes in without a checkpoint first.
    pub(crate) fn has_room_for(&self, payload_len: usize) -> bool {
        (self.pending.len() as u64) < CHECKPOINT_EVERY
            && self.cursor + (self.staged.len() + record_len(payload_len)) as u64 <= JOURNAL_BYTES
    }

    /// Whether a record of `payload_len` bytes fits in an empty journal.
    pub(crate) fn can_hold(payload_len: usize) -> bool {
        record_len(payload_len) as u64 <= JOURNAL_BYTES
    }

    /// Appends `op` (encoded: `payload`), whose first audit entry is numbered `first_entry`, as
    /// the next record, to be written by the next [`sync`](Self::sync), and keeps it
    /// [`pending`](Self::pending) until the next checkpoint. The caller has checked
    /// [`has_room_for`](Self::has_room_for).
    pub(crate) fn append(&mut self, op: JournalOp, payload: &[u8], first_entry: u64) {
        let header = header(first_entry, payload.len());
        let mac = self.key.mac(&[RECORD_TAG, &self.round, &header, payload]);
        self.staged.extend_from_slice(&header);
        self.staged.extend_from_slice(payload);
        self.staged.extend_from_slice(&mac);
        self.keep_pending(op);
    }

    /// Operations replayed from the file on open: pending, as if appended and synced.
    pub(crate) fn replayed(&mut self, ops: Vec<JournalOp>) {
        for op in ops {
            self.keep_pending(op);
        }
    }

    fn keep_pending(&mut self, op: JournalOp) {
        self.pending_entries += op.entries();
        for (row, _) in &op.admissions {
            self.pending_admissions.insert(row.key(), row.session);
        }
        self.pending.push(op);
    }

    /// Writes the appended records and syncs the file: when this returns `Ok`, every record
    /// appended before it survives a crash. A failure is kept (see [`failure`](Self::failure)).
    pub(crate) fn sync(&mut self) -> Result<(), String> {
        if let Some(failure) = &self.failed {
            return Err(failure.clone());
        }
        if self.staged.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_at(self.cursor, &self.staged)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.cursor += self.staged.len() as u64;
                self.staged.clear();
                Ok(())
            }
            Err(e) => {
                let failure = format!(
                    "writing the journal failed ({e}); nothing written since the last sync can be \
                     trusted to be on disk, so the keystore takes no more writes until it is \
                     opened again (restart the node)"
                );
                self.failed = Some(failure.clone());
                Err(failure)
            }
        }
    }

    /// redb holds every operation appended so far, durably, and `round` as the journal's round
    /// (a checkpoint): the journal starts again at its beginning. Records left further on are
    /// of older rounds: they no longer verify.
    pub(crate) fn restart(&mut self, round: [u8; ROUND_LEN]) {
        self.round = round;
        self.cursor = 0;
        self.staged.clear();
        self.pending.clear();
        self.pending_entries = 0;
        self.pending_admissions.clear();
    }

    /// Puts `file` in the place of the journal's file: for tests that make it fail.
    #[cfg(test)]
    pub(crate) fn replace_file(&mut self, file: Box<dyn JournalFile>) {
        self.file = file;
    }

    /// Whether `bytes` (a journal file) begins with a record that verifies in this journal's
    /// round: if not, there is nothing to replay.
    pub(crate) fn begins_with_record(&self, bytes: &[u8]) -> bool {
        read_record(&self.key, &self.round, bytes).is_some()
    }

    /// The operations of `bytes` (a journal file) to replay, in this journal's round, on a
    /// store whose next audit entry is `next_entry`, in order (see the module documentation
    /// for the rule). An error names a record that verifies but does not decode.
    pub(crate) fn replayable(
        &self,
        bytes: &[u8],
        mut next_entry: u64,
    ) -> Result<Vec<JournalOp>, String> {
        let mut ops = Vec::new();
        let mut rest = bytes;
        while let Some((first, payload, next)) = read_record(&self.key, &self.round, rest) {
            let op = JournalOp::decode(payload).ok_or_else(|| {
                format!("the journal's record of audit entry {first} verifies but does not decode")
            })?;
            let end = first.saturating_add(op.entries());
            if first == next_entry {
                next_entry = end;
                ops.push(op);
            } else if end > next_entry {
                // A gap, or entries only partly held: nothing after it follows what redb holds.
                break;
            }
            rest = next;
        }
        Ok(ops)
    }
}

fn record_len(payload_len: usize) -> usize {
    HEADER_LEN + payload_len + MAC_LEN
}

fn header(first_entry: u64, payload_len: usize) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..8].copy_from_slice(&first_entry.to_be_bytes());
    header[8..].copy_from_slice(&count(payload_len).to_be_bytes());
    header
}

/// The record at the start of `bytes`, if one is there and verifies under `round`: the number
/// of its first audit entry, its payload and the bytes after it.
fn read_record<'a>(
    key: &MacKey,
    round: &[u8; ROUND_LEN],
    bytes: &'a [u8],
) -> Option<(u64, &'a [u8], &'a [u8])> {
    let mut input = Reader(bytes);
    let header: [u8; HEADER_LEN] = input.array()?;
    let first = u64::from_be_bytes(header[..8].try_into().ok()?);
    let len = usize::try_from(u32::from_be_bytes(header[8..].try_into().ok()?)).ok()?;
    let payload = input.take(len)?;
    let mac = input.take(MAC_LEN)?;
    key.verify(&[RECORD_TAG, round, &header, payload], mac)
        .then_some((first, payload, input.0))
}

#[cfg(test)]
pub(crate) mod memory_file {
    use super::*;

    /// A journal file in memory that fails its writes or syncs when told to; clones share it.
    #[derive(Clone, Default)]
    pub(crate) struct MemoryFile(std::sync::Arc<std::sync::Mutex<MemoryState>>);

    #[derive(Default)]
    pub(crate) struct MemoryState {
        pub bytes: Vec<u8>,
        pub fail_write: bool,
        pub fail_sync: bool,
        pub syncs: usize,
    }

    impl MemoryFile {
        pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl JournalFile for MemoryFile {
        fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
            let mut state = self.state();
            if state.fail_write {
                return Err(io::Error::other("no space left (test)"));
            }
            let offset = offset as usize;
            if state.bytes.len() < offset + bytes.len() {
                state.bytes.resize(offset + bytes.len(), 0);
            }
            state.bytes[offset..offset + bytes.len()].copy_from_slice(bytes);
            Ok(())
        }
        fn sync_data(&mut self) -> io::Result<()> {
            let mut state = self.state();
            if state.fail_sync {
                return Err(io::Error::other("input/output error (test)"));
            }
            state.syncs += 1;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory_file::MemoryFile;
    use super::*;
    use crate::crypto::{JOURNAL_LABEL, KEK_LEN};

    fn key() -> MacKey {
        MacKey::derive(&[3; KEK_LEN], JOURNAL_LABEL)
    }

    fn op(n: u8) -> JournalOp {
        JournalOp {
            now_unix_ms: 1_000 + u64::from(n),
            admissions: vec![(
                ClientRequestRow {
                    client: [n; 32],
                    request_id: [n; 16],
                    session: [n ^ 0xff; 32],
                    expires_unix_ms: 9_000,
                },
                vec![n; 40],
            )],
            audits: vec![vec![n; 3], vec![]],
        }
    }

    const ROUND: [u8; ROUND_LEN] = [5; ROUND_LEN];

    fn journal() -> (Journal, MemoryFile) {
        let file = MemoryFile::default();
        (Journal::new(Box::new(file.clone()), key(), ROUND), file)
    }

    /// Appends `op(n)` for each of `ns`, numbering entries on from `first` (three an op).
    fn append(journal: &mut Journal, first: u64, ns: impl IntoIterator<Item = u8>) {
        for (i, n) in ns.into_iter().enumerate() {
            journal.append(op(n), &op(n).encode(), first + 3 * i as u64);
        }
    }

    /// What a journal of `key` and `round` replays of `bytes`.
    fn replay_as(
        key: MacKey,
        round: [u8; ROUND_LEN],
        bytes: &[u8],
        next_entry: u64,
    ) -> Result<Vec<JournalOp>, String> {
        Journal::new(Box::new(MemoryFile::default()), key, round).replayable(bytes, next_entry)
    }

    fn replay(bytes: &[u8], next_entry: u64) -> Vec<JournalOp> {
        replay_as(key(), ROUND, bytes, next_entry).unwrap()
    }

    #[test]
    fn an_operation_decodes_to_itself_and_nothing_else_decodes() {
        let op = op(7);
        assert_eq!(op.entries(), 3);
        let bytes = op.encode();
        assert_eq!(JournalOp::decode(&bytes), Some(op.clone()));
        let empty = JournalOp {
            now_unix_ms: 0,
            admissions: vec![],
            audits: vec![],
        };
        assert_eq!(JournalOp::decode(&empty.encode()), Some(empty));
        for cut in 0..bytes.len() {
            assert_eq!(JournalOp::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(JournalOp::decode(&longer), None);
        // A count larger than the bytes present.
        let mut lying = bytes;
        lying[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(JournalOp::decode(&lying), None);
    }

    #[test]
    fn synced_records_are_read_back_in_order_and_only_once_synced() {
        let (mut journal, file) = journal();
        append(&mut journal, 10, [1, 2]);
        assert!(file.state().bytes.is_empty(), "appending writes nothing");
        journal.sync().unwrap();
        assert_eq!(file.state().syncs, 1, "one sync for both records");
        append(&mut journal, 16, [3]);
        let bytes = file.state().bytes.clone();
        assert_eq!(
            replay(&bytes, 10),
            vec![op(1), op(2)],
            "the unsynced third record is not in the file"
        );
        journal.sync().unwrap();
        let bytes = file.state().bytes.clone();
        assert_eq!(replay(&bytes, 10), vec![op(1), op(2), op(3)]);
        // What redb already holds is passed over.
        assert_eq!(replay(&bytes, 16), vec![op(3)]);
        assert!(replay(&bytes, 19).is_empty());
        // Entries partly held, or a gap: nothing.
        assert!(replay(&bytes, 11).is_empty());
        assert!(replay(&bytes, 9).is_empty());
        // Under another key, or of another round, nothing verifies.
        let other = MacKey::derive(&[4; KEK_LEN], JOURNAL_LABEL);
        assert!(replay_as(other, ROUND, &bytes, 10).unwrap().is_empty());
        assert!(replay_as(key(), [6; ROUND_LEN], &bytes, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn replay_stops_at_a_torn_record_and_at_an_older_round() {
        let (mut journal, file) = journal();
        append(&mut journal, 1, [1, 2, 3]);
        journal.sync().unwrap();
        let full = file.state().bytes.clone();
        let third = full.len() - record_len(op(3).encode().len());
        // A crash cut the third record short: every cut replays the first two.
        for cut in third..full.len() {
            assert_eq!(replay(&full[..cut], 1).len(), 2, "cut at {cut}");
        }
        // A flipped bit anywhere in the third record.
        for at in third..full.len() {
            let mut flipped = full.clone();
            flipped[at] ^= 1;
            assert_eq!(replay(&flipped, 1).len(), 2, "flip at {at}");
        }
        // redb was made durable with all three, and a new round began; its first record
        // overwrites the first record only, and the older round's second and third stay
        // behind it, numbered as the new round's next records would be.
        journal.restart([6; ROUND_LEN]);
        journal.append(op(4), &op(4).encode(), 4);
        journal.sync().unwrap();
        let bytes = file.state().bytes.clone();
        assert_eq!(
            replay_as(key(), [6; ROUND_LEN], &bytes, 4).unwrap(),
            vec![op(4)],
            "the older round's records do not verify in the new round"
        );
    }

    #[test]
    fn a_record_written_twice_is_replayed_once() {
        let (mut journal, file) = journal();
        append(&mut journal, 1, [1, 2]);
        journal.sync().unwrap();
        let bytes = file.state().bytes.clone();
        let first = record_len(op(1).encode().len());
        // The first record, then the first again (a write repeated), then the second.
        let mut doubled = bytes[..first].to_vec();
        doubled.extend_from_slice(&bytes[..first]);
        doubled.extend_from_slice(&bytes[first..]);
        assert_eq!(replay(&doubled, 1), vec![op(1), op(2)]);
        // A gap: the second record without the first is not replayed.
        assert!(replay(&bytes[first..], 1).is_empty());
    }

    #[test]
    fn a_record_that_verifies_but_does_not_decode_is_named() {
        let (mut journal, file) = journal();
        journal.append(op(1), b"not an operation", 7);
        journal.sync().unwrap();
        let bytes = file.state().bytes.clone();
        let error = replay_as(key(), ROUND, &bytes, 7).unwrap_err();
        assert!(error.contains("audit entry 7"), "{error}");
    }

    #[test]
    fn a_failed_write_or_sync_refuses_every_later_write() {
        for fail_sync in [false, true] {
            let (mut journal, file) = journal();
            append(&mut journal, 1, [1]);
            journal.sync().unwrap();
            file.state().fail_sync = fail_sync;
            file.state().fail_write = !fail_sync;
            append(&mut journal, 4, [2]);
            let error = journal.sync().unwrap_err();
            assert!(error.contains("restart the node"), "{error}");
            assert_eq!(journal.failure(), Some(error.as_str()));
            // The disk recovers; the journal does not trust it again.
            file.state().fail_sync = false;
            file.state().fail_write = false;
            append(&mut journal, 7, [3]);
            assert_eq!(journal.sync().unwrap_err(), error);
            journal.restart([7; ROUND_LEN]);
            assert_eq!(journal.sync().unwrap_err(), error);
        }
    }

    #[test]
    fn a_checkpoint_is_due_after_its_count_or_a_full_file() {
        let (mut journal, _) = journal();
        let small = op(1).encode();
        for i in 0..CHECKPOINT_EVERY {
            assert!(journal.has_room_for(small.len()));
            journal.append(op(1), &small, 1 + 3 * i);
        }
        assert!(!journal.has_room_for(small.len()));
        assert_eq!(journal.pending_entries(), 3 * CHECKPOINT_EVERY);
        journal.restart(ROUND);
        assert!(journal.has_room_for(small.len()));
        assert_eq!(journal.pending_entries(), 0);
        let big = (JOURNAL_BYTES as usize) - HEADER_LEN - MAC_LEN;
        assert!(journal.has_room_for(big));
        assert!(Journal::can_hold(big));
        assert!(!Journal::can_hold(big + 1));
        journal.append(op(1), &small, 1);
        assert!(!journal.has_room_for(big));
    }
}
