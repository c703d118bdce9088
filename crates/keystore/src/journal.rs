//! The keystore's journal: how a group commit on a signature's path costs one small sync.
//!
//! redb makes a commit durable with two `fdatasync`s of the database file (two-phase commit),
//! and a commit costs CPU for every page it copies and checksums. The writes on a signature's
//! path — admissions and audit entries — pay neither. Each is appended to the journal as the
//! operation that makes it (`JournalOp`), and a durable one is synced there: one `fdatasync`
//! of a few hundred bytes, in a file preallocated with zeros and overwritten in place, so that
//! the sync writes no file-system metadata. A caller with work to do meanwhile starts the sync
//! on the journal's own thread and waits for it later (`start_sync`, `finish_sync`). The
//! operations wait in memory (pending) for the next **checkpoint**: one redb transaction that
//! applies them in their order, through the same code a direct write would run, committed
//! with redb's two-phase commit, after which the journal starts again.
//!
//! A checkpoint comes every [`CHECKPOINT_EVERY`] records or when the region in use is full
//! (below), inside any write that redb syncs itself (before that write's own change), before
//! a read of the tables the journal writes (audit log, admitted requests), and on close.
//!
//! **Rounds and regions.** The file has two regions of [`REGION_BYTES`]. Every synced redb
//! commit of the keystore names a **round** (16 bytes) and a region in its meta table
//! (`"journal_round"`, `"journal_region"`, the latter with the round it was written for, so
//! that a build from before the regions, which renews the round alone, leaves it behind); the
//! records written until the next one go to that
//! region from its start, each with the round bound into its MAC. A commit the keystore makes
//! itself (any write that is not a journal record, a checkpoint in the foreground, the open)
//! begins a random round in region 0. A checkpoint that comes due on a signature's path does
//! not wait: the journal **switches** to the other region in the next round,
//! `HMAC(journal key, "permafrost-keystore/journal-next-round/v1" ‖ round)` cut to 16 bytes,
//! and a thread of its own applies the pending operations to redb in one synced commit that
//! names that round and region. Writes go on meanwhile. At most one such checkpoint runs; the
//! journal switches again only after it ended, and if it failed the next checkpoint is made in
//! the foreground (the other region still holds its operations' records).
//!
//! Opening the keystore replays, in order, the records of the round and region redb names
//! that follow the audit log, then those of the other region in the next round (a switch
//! whose checkpoint did not reach redb), in one synced transaction that begins a new round:
//! the store is then what it was after the last synced record. A store written before the
//! regions names no region (or, once such a build wrote, one of an older round): its round's
//! records span the file, and it is read as one region.
//!
//! Why a record is trusted: each carries an HMAC-SHA256 under a key derived from the KEK, so a
//! torn record, or data crafted by a client to look like a complete one after a crash (the
//! attack for which the keystore pays redb's second sync), never verifies; nor does a record
//! of an older round, left further on in a region after the journal started it again (a
//! round is never used twice: a random one, or the next after one). Without the passphrase nobody can make a record that verifies. Replay is tied to
//! the MAC-chained audit log, not to a number in the meta table: a record is applied only if
//! its first audit entry is the log's next one. Cutting the journal short forgets the newest
//! writes, as restoring an older copy of the database would; someone who can write the data
//! directory and kept an older copy of it (with its round) can bring back what that copy held,
//! as restoring it would.
//!
//! ## Format
//! `<dir>/keystore.journal`, [`JOURNAL_BYTES`] long: region 0, then region 1. A record:
//!
//! `u64 first ‖ u32 len ‖ payload (len bytes) ‖ HMAC-SHA256(journal key, "permafrost-keystore/journal-record/v1" ‖ round(16) ‖ u64 first ‖ u32 len ‖ payload)`
//!
//! with big-endian integers, `first` the sequence number of the operation's first audit entry
//! (every journaled operation appends at least one), and `journal key = HMAC-SHA256(KEK,
//! "permafrost/keystore-journal/v1")`. Replay reads records from a region's start, while they
//! verify under its round. A record whose entries the log already holds is passed
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
use std::sync::Arc;

use crate::crypto::{MacKey, MAC_LEN};
use crate::store::ClientRequestRow;

/// File name of the journal inside the keystore directory.
pub const JOURNAL_FILE_NAME: &str = "keystore.journal";

/// Length of the journal file, preallocated with zeros.
pub const JOURNAL_BYTES: u64 = 1 << 20;

/// Length of each of the journal's two regions: a round's records go to one of them.
pub const REGION_BYTES: u64 = JOURNAL_BYTES / 2;

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

/// Domain separation of the round after a switch of regions.
const NEXT_ROUND_TAG: &[u8] = b"permafrost-keystore/journal-next-round/v1";

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
    /// A second handle on the same file that another thread can sync it with (what it syncs
    /// is every write made through either handle before the sync starts).
    fn sync_handle(&self) -> io::Result<Box<dyn JournalFile>>;
}

impl JournalFile for File {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.write_all(bytes)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_handle(&self) -> io::Result<Box<dyn JournalFile>> {
        Ok(Box::new(self.try_clone()?))
    }
}

/// Called on the sync thread each time a sync ends ([`Journal::set_sync_waker`]).
pub(crate) type SyncWaker = Arc<dyn Fn() + Send + Sync>;

/// A thread that syncs the journal file when asked, so that a caller can go on with other
/// work while the disk flushes ([`Journal::start_sync`]). Dropping it ends the thread.
struct Syncer {
    ask: std::sync::mpsc::Sender<()>,
    done: std::sync::mpsc::Receiver<io::Result<()>>,
}

impl Syncer {
    /// A thread syncing through `file`, calling `waker` after each sync.
    fn start(mut file: Box<dyn JournalFile>, waker: Option<SyncWaker>) -> io::Result<Syncer> {
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (reply, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("keystore-sync".into())
            .spawn(move || {
                for () in asked {
                    if reply.send(file.sync_data()).is_err() {
                        break;
                    }
                    if let Some(waker) = &waker {
                        waker();
                    }
                }
            })?;
        Ok(Syncer { ask, done })
    }
}

/// Which part of the file a journal round's records go to: one of the two regions (the
/// current layout), or the whole file (a store whose meta table names no region: written by a
/// build before the regions; the store only replays it, and tests write it to stand for
/// such a build).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    Half(u8),
    Whole,
}

impl Region {
    /// The byte range of the file the region covers.
    fn range(self) -> std::ops::Range<u64> {
        match self {
            Region::Half(0) => 0..REGION_BYTES,
            Region::Half(_) => REGION_BYTES..JOURNAL_BYTES,
            Region::Whole => 0..JOURNAL_BYTES,
        }
    }

    /// The region records go to after a switch from this one.
    fn other(self) -> Region {
        match self {
            Region::Half(0) => Region::Half(1),
            _ => Region::Half(0),
        }
    }

    /// The byte the meta table holds for it (`None`: the whole file, which is never written).
    pub(crate) fn meta_byte(self) -> Option<u8> {
        match self {
            Region::Half(h) => Some(h),
            Region::Whole => None,
        }
    }
}

/// The round that follows `round` when the journal switches regions:
/// `HMAC-SHA256(journal key, "permafrost-keystore/journal-next-round/v1" ‖ round)`, cut to
/// [`ROUND_LEN`] bytes. Replay finds the records of the region after a switch with it.
fn next_round(key: &MacKey, round: &[u8; ROUND_LEN]) -> [u8; ROUND_LEN] {
    let mac = key.mac(&[NEXT_ROUND_TAG, round]);
    let mut next = [0; ROUND_LEN];
    next.copy_from_slice(&mac[..ROUND_LEN]);
    next
}

/// A checkpoint running on a thread of its own: it applies the first `ops` pending operations
/// to redb and makes redb name the round and region the journal switched to.
pub(crate) struct Background {
    pub ops: usize,
    pub thread: std::thread::JoinHandle<Result<(), crate::KeystoreError>>,
}

/// The journal of an open keystore: the operations written since redb was last made durable,
/// and the records appended since the journal was last synced (not yet written).
pub(crate) struct Journal {
    file: Box<dyn JournalFile>,
    key: MacKey,
    /// The round every record written now belongs to (bound into its MAC).
    round: [u8; ROUND_LEN],
    /// Where this round's records go.
    region: Region,
    /// Where the next record goes (an offset in the file, inside `region`).
    cursor: u64,
    /// Records appended and not yet written.
    staged: Vec<u8>,
    /// The operations redb does not hold yet (as far as this journal knows), in order: those
    /// of a checkpoint running in the background (or one that failed) first, then this
    /// round's.
    pending: Vec<JournalOp>,
    /// How many of `pending` belong to this round (the last ones).
    this_round: usize,
    /// The checkpoint running in the background, if one is.
    background: Option<Background>,
    /// Why the last checkpoint in the background failed, until someone asks.
    background_failure: Option<String>,
    /// The number the next journaled audit entry takes, once known: unknown after redb was
    /// made durable in the foreground until the next record (the store reads it from the audit
    /// log then, so that a store whose log's last row does not decode still opens).
    next_entry: Option<u64>,
    /// The session of each admission in `pending`, by its row's key (the last one's, if a row
    /// comes twice): for the conflict check, without a walk of `pending`.
    pending_admissions: HashMap<[u8; 56], [u8; 32]>,
    /// Why a write or sync of the journal failed, if one did. Nothing written since can be
    /// known to be on disk (a failed `fdatasync` may have dropped the pages it could not
    /// write), so every later write is refused until the keystore is opened again.
    failed: Option<String>,
    /// The thread that syncs for [`start_sync`](Self::start_sync), once one was started.
    syncer: Option<Syncer>,
    /// Whether a sync started by [`start_sync`](Self::start_sync) has not been waited for.
    syncing: bool,
    /// Called on the sync thread when a sync it ran ends.
    sync_waker: Option<SyncWaker>,
}

impl Journal {
    /// A journal of `round` in `region`, written from the region's start.
    pub(crate) fn new(
        file: Box<dyn JournalFile>,
        key: MacKey,
        round: [u8; ROUND_LEN],
        region: Region,
    ) -> Self {
        Journal {
            file,
            key,
            round,
            region,
            cursor: region.range().start,
            staged: Vec::new(),
            pending: Vec::new(),
            this_round: 0,
            background: None,
            background_failure: None,
            next_entry: None,
            pending_admissions: HashMap::new(),
            failed: None,
            syncer: None,
            syncing: false,
            sync_waker: None,
        }
    }

    /// Why the journal refuses writes, if it does.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The operations redb does not hold yet, in order (a background checkpoint's first).
    pub(crate) fn pending(&self) -> &[JournalOp] {
        &self.pending
    }

    /// The session a pending admission of the row keyed `key` was admitted in, if any.
    pub(crate) fn pending_admission(&self, key: &[u8; 56]) -> Option<[u8; 32]> {
        self.pending_admissions.get(key).copied()
    }

    /// The number the next journaled audit entry takes, one after the last entry redb or the
    /// journal holds, if known (see [`numbered_from`](Self::numbered_from)).
    pub(crate) fn next_entry(&self) -> Option<u64> {
        self.next_entry
    }

    /// The journal's audit entries follow the entry numbered `next_entry - 1`: the last one
    /// redb holds, when no operation is pending. Set before the first record after a
    /// checkpoint in the foreground.
    pub(crate) fn numbered_from(&mut self, next_entry: u64) {
        self.next_entry = Some(next_entry);
    }

    /// Whether a record of `payload_len` bytes fits in this round's region after what it holds.
    pub(crate) fn fits(&self, payload_len: usize) -> bool {
        self.cursor + (self.staged.len() + record_len(payload_len)) as u64
            <= self.region.range().end
    }

    /// Whether a record of `payload_len` bytes goes in without a checkpoint first: it fits,
    /// and this round holds fewer than [`CHECKPOINT_EVERY`] records.
    pub(crate) fn has_room_for(&self, payload_len: usize) -> bool {
        (self.this_round as u64) < CHECKPOINT_EVERY && self.fits(payload_len)
    }

    /// Whether a record of `payload_len` bytes fits in an empty region.
    pub(crate) fn can_hold(payload_len: usize) -> bool {
        record_len(payload_len) as u64 <= REGION_BYTES
    }

    /// Appends `op` (encoded: `payload`, with at least one audit entry) as the next record,
    /// numbered [`next_entry`](Self::next_entry) (known by then), to be written by the next
    /// [`sync`](Self::sync), and keeps it [`pending`](Self::pending) until a checkpoint. The
    /// caller has checked [`has_room_for`](Self::has_room_for) or [`fits`](Self::fits).
    pub(crate) fn append(&mut self, op: JournalOp, payload: &[u8]) {
        let header = header(self.next_entry.unwrap_or(1), payload.len());
        let mac = self.key.mac(&[RECORD_TAG, &self.round, &header, payload]);
        self.staged.extend_from_slice(&header);
        self.staged.extend_from_slice(payload);
        self.staged.extend_from_slice(&mac);
        self.keep_pending(op);
        self.this_round += 1;
    }

    /// Operations replayed from the file on open: pending, as if appended and synced.
    pub(crate) fn replayed(&mut self, ops: Vec<JournalOp>) {
        for op in ops {
            self.keep_pending(op);
        }
    }

    fn keep_pending(&mut self, op: JournalOp) {
        self.next_entry = self.next_entry.map(|n| n + op.entries());
        for (row, _) in &op.admissions {
            self.pending_admissions.insert(row.key(), row.session);
        }
        self.pending.push(op);
    }

    /// Writes the appended records and syncs the file: when this returns `Ok`, every record
    /// appended before it survives a crash. A failure is kept (see [`failure`](Self::failure)).
    pub(crate) fn sync(&mut self) -> Result<(), String> {
        self.write_staged(true)
    }

    /// Writes the appended records and starts syncing the file on a thread of its own, so
    /// that the caller can go on meanwhile: every record appended before it survives a crash
    /// once [`finish_sync`](Self::finish_sync) returned `Ok`. Any other write or sync of the
    /// journal waits for this one first. Without a thread (none could be started), it syncs
    /// before it returns.
    pub(crate) fn start_sync(&mut self) -> Result<(), String> {
        self.finish_sync()?;
        if self.staged.is_empty() {
            return Ok(());
        }
        if self.syncer.is_none() {
            let waker = self.sync_waker.clone();
            self.syncer = self
                .file
                .sync_handle()
                .and_then(|file| Syncer::start(file, waker))
                .ok();
        }
        let Some(syncer) = &self.syncer else {
            return self.write_staged(true);
        };
        let written = self.file.write_at(self.cursor, &self.staged);
        let written = written.and_then(|()| {
            syncer
                .ask
                .send(())
                .map_err(|_| io::Error::other("the journal's sync thread ended"))
        });
        self.syncing = written.is_ok();
        self.wrote(written)
    }

    /// Waits for the sync [`start_sync`](Self::start_sync) started, if one runs: when this
    /// returns `Ok`, every record appended before that call survives a crash. A failure is
    /// kept (see [`failure`](Self::failure)).
    pub(crate) fn finish_sync(&mut self) -> Result<(), String> {
        // Waiting, it always has an outcome.
        self.end_sync(true).unwrap_or(Ok(()))
    }

    /// [`finish_sync`](Self::finish_sync) without waiting: `None` while the sync
    /// [`start_sync`](Self::start_sync) started still runs, else what `finish_sync` returns.
    pub(crate) fn try_finish_sync(&mut self) -> Option<Result<(), String>> {
        self.end_sync(false)
    }

    /// The outcome of the sync [`start_sync`](Self::start_sync) started (`Ok` if none runs),
    /// waiting for it if `wait`, else `None` while it runs. A failure is kept.
    fn end_sync(&mut self, wait: bool) -> Option<Result<(), String>> {
        if let Some(failure) = &self.failed {
            return Some(Err(failure.clone()));
        }
        if !self.syncing {
            return Some(Ok(()));
        }
        let ended = || io::Error::other("the journal's sync thread ended");
        let synced = match &self.syncer {
            Some(syncer) if wait => syncer.done.recv().unwrap_or_else(|_| Err(ended())),
            Some(syncer) => match syncer.done.try_recv() {
                Ok(synced) => synced,
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(ended()),
            },
            None => Err(io::Error::other("the journal's sync thread is gone")),
        };
        self.syncing = false;
        if synced.is_err() {
            self.syncer = None;
        }
        Some(self.failed_if(synced))
    }

    /// Has `waker` called on the sync thread each time a sync started by
    /// [`start_sync`](Self::start_sync) ends, so that a caller can wait for that (an event
    /// loop, instead of blocking in [`finish_sync`](Self::finish_sync)) and then take the
    /// outcome with [`try_finish_sync`](Self::try_finish_sync). Applies from the next sync
    /// thread started: the current one, if idle, is ended for that.
    pub(crate) fn set_sync_waker(&mut self, waker: SyncWaker) {
        self.sync_waker = Some(waker);
        if !self.syncing {
            self.syncer = None;
        }
    }

    /// Writes the appended records, and syncs the file if `sync`.
    fn write_staged(&mut self, sync: bool) -> Result<(), String> {
        self.finish_sync()?;
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut written = self.file.write_at(self.cursor, &self.staged);
        if sync {
            written = written.and_then(|()| self.file.sync_data());
        }
        self.wrote(written)
    }

    /// Moves past the staged records once written; a failure is kept.
    fn wrote(&mut self, written: io::Result<()>) -> Result<(), String> {
        self.failed_if(written)?;
        self.cursor += self.staged.len() as u64;
        self.staged.clear();
        Ok(())
    }

    /// Keeps a failed write's or sync's error: the journal refuses every later write.
    fn failed_if(&mut self, outcome: io::Result<()>) -> Result<(), String> {
        match outcome {
            Ok(()) => Ok(()),
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

    /// Whether the journal can switch regions now: no checkpoint runs, and every pending
    /// operation is of this round (none is left of a checkpoint that failed, whose records
    /// the other region still holds).
    pub(crate) fn can_switch(&self) -> bool {
        self.background.is_none() && self.pending.len() == self.this_round
    }

    /// Switches regions, for a checkpoint in the background: this round's records are written
    /// (not synced: what was synced stays synced, the rest waits for the next sync, as before),
    /// and the next records go to the other region in the next round ([`next_round`]), which
    /// replay finds after this one's. Returns what the checkpoint makes redb hold: the pending
    /// operations, and the round and region redb then names. The caller checked
    /// [`can_switch`](Self::can_switch), and hands the running checkpoint to
    /// [`checkpoint_started`](Self::checkpoint_started).
    pub(crate) fn switch(&mut self) -> Result<(Vec<JournalOp>, [u8; ROUND_LEN], Region), String> {
        self.write_staged(false)?;
        self.round = next_round(&self.key, &self.round);
        self.region = self.region.other();
        self.cursor = self.region.range().start;
        self.this_round = 0;
        Ok((self.pending.clone(), self.round, self.region))
    }

    /// The checkpoint of the operations [`switch`](Self::switch) returned runs in the
    /// background.
    pub(crate) fn checkpoint_started(&mut self, thread: Background) {
        self.background = Some(thread);
    }

    /// Why the last checkpoint in the background failed, if one did since the last call.
    pub(crate) fn take_background_failure(&mut self) -> Option<String> {
        self.background_failure.take()
    }

    /// Whether a checkpoint runs in the background.
    pub(crate) fn checkpoint_running(&self) -> bool {
        self.background.is_some()
    }

    /// Takes the background checkpoint, if one runs and (unless `wait`) it has ended, with
    /// how many operations it applies; the caller joins it and reports the outcome to
    /// [`checkpoint_applied`](Self::checkpoint_applied) or
    /// [`checkpoint_failed`](Self::checkpoint_failed).
    pub(crate) fn take_background(&mut self, wait: bool) -> Option<Background> {
        match &self.background {
            Some(b) if wait || b.thread.is_finished() => self.background.take(),
            _ => None,
        }
    }

    /// The checkpoint of a switch failed in the background: its operations stay pending, so
    /// the next checkpoint is made in the foreground, since the other region still holds their
    /// records ([`can_switch`](Self::can_switch)); `error` waits for
    /// [`take_background_failure`](Self::take_background_failure).
    pub(crate) fn checkpoint_failed(&mut self, error: String) {
        self.background_failure = Some(error);
    }

    /// The checkpoint of a switch applied the first `ops` pending operations: redb holds them,
    /// durably, and they leave the pending ones. (One that failed leaves them where they are.)
    pub(crate) fn checkpoint_applied(&mut self, ops: usize) {
        let ops = ops.min(self.pending.len() - self.this_round);
        self.pending.drain(..ops);
        self.pending_admissions.clear();
        for op in &self.pending {
            for (row, _) in &op.admissions {
                self.pending_admissions.insert(row.key(), row.session);
            }
        }
    }

    /// redb holds every operation appended so far, durably, with `round` and `region` as the
    /// journal's (a checkpoint in the foreground): the journal starts again at the region's
    /// beginning. Records left behind are of older rounds: they no longer verify. The caller
    /// has ended any background checkpoint first.
    pub(crate) fn restart(&mut self, round: [u8; ROUND_LEN], region: Region) {
        self.round = round;
        self.region = region;
        self.cursor = region.range().start;
        self.staged.clear();
        self.pending.clear();
        self.this_round = 0;
        self.next_entry = None;
        self.pending_admissions.clear();
    }

    /// Puts `file` in the place of the journal's file: for tests that make it fail.
    #[cfg(test)]
    pub(crate) fn replace_file(&mut self, file: Box<dyn JournalFile>) {
        self.file = file;
    }

    /// Whether `bytes` (a journal file) holds a record that verifies at the start of this
    /// journal's region, in its round: if not, there is nothing to replay.
    pub(crate) fn begins_with_record(&self, bytes: &[u8]) -> bool {
        read_record(&self.key, &self.round, region_bytes(bytes, self.region)).is_some()
    }

    /// The operations of `bytes` (a journal file) to replay on a store whose next audit entry
    /// is `next_entry`, in order: this journal's region in its round, then (if the journal
    /// switched regions before the checkpoint that would have named the next round reached
    /// redb) the other region in the next round. See the module documentation for the rule.
    /// An error names a record that verifies but does not decode.
    pub(crate) fn replayable(
        &self,
        bytes: &[u8],
        next_entry: u64,
    ) -> Result<Vec<JournalOp>, String> {
        let mut ops = Vec::new();
        let mut next_entry = next_entry;
        let ended = replay_region(
            &self.key,
            &self.round,
            region_bytes(bytes, self.region),
            &mut next_entry,
            &mut ops,
        )?;
        if ended && self.region != Region::Whole {
            replay_region(
                &self.key,
                &next_round(&self.key, &self.round),
                region_bytes(bytes, self.region.other()),
                &mut next_entry,
                &mut ops,
            )?;
        }
        Ok(ops)
    }
}

/// The bytes of `region` in `bytes` (a journal file; shorter in tests).
fn region_bytes(bytes: &[u8], region: Region) -> &[u8] {
    let range = region.range();
    let end = (range.end as usize).min(bytes.len());
    bytes.get(range.start as usize..end).unwrap_or_default()
}

/// Reads the records of one region of `round` into `ops`, from `next_entry` on. Returns
/// whether the region ended without a gap (at a record that does not verify, zeros or the
/// region's end), after which the next region may continue.
fn replay_region(
    key: &MacKey,
    round: &[u8; ROUND_LEN],
    bytes: &[u8],
    next_entry: &mut u64,
    ops: &mut Vec<JournalOp>,
) -> Result<bool, String> {
    let mut rest = bytes;
    while let Some((first, payload, next)) = read_record(key, round, rest) {
        let op = JournalOp::decode(payload).ok_or_else(|| {
            format!("the journal's record of audit entry {first} verifies but does not decode")
        })?;
        let end = first.saturating_add(op.entries());
        if first == *next_entry {
            *next_entry = end;
            ops.push(op);
        } else if end > *next_entry {
            // A gap, or entries only partly held: nothing after it follows what redb holds.
            return Ok(false);
        }
        rest = next;
    }
    Ok(true)
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
        /// No thread can sync it: [`Journal::start_sync`] syncs in the foreground.
        pub no_sync_thread: bool,
        /// A sync waits while this is set (the disk is slow).
        pub hold_sync: bool,
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
            while self.state().hold_sync {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let mut state = self.state();
            if state.fail_sync {
                return Err(io::Error::other("input/output error (test)"));
            }
            state.syncs += 1;
            Ok(())
        }
        fn sync_handle(&self) -> io::Result<Box<dyn JournalFile>> {
            if self.state().no_sync_thread {
                return Err(io::Error::other("no second handle (test)"));
            }
            Ok(Box::new(self.clone()))
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
        let journal = Journal::new(Box::new(file.clone()), key(), ROUND, Region::Half(0));
        (journal, file)
    }

    /// Appends `op(n)` for each of `ns`, numbering entries on from `first` (three an op).
    fn append(journal: &mut Journal, first: u64, ns: impl IntoIterator<Item = u8>) {
        journal.numbered_from(first);
        for n in ns {
            journal.append(op(n), &op(n).encode());
        }
    }

    /// What a journal of `key` and `round` in region 0 replays of `bytes`.
    fn replay_as(
        key: MacKey,
        round: [u8; ROUND_LEN],
        bytes: &[u8],
        next_entry: u64,
    ) -> Result<Vec<JournalOp>, String> {
        replay_in(key, round, Region::Half(0), bytes, next_entry)
    }

    fn replay_in(
        key: MacKey,
        round: [u8; ROUND_LEN],
        region: Region,
        bytes: &[u8],
        next_entry: u64,
    ) -> Result<Vec<JournalOp>, String> {
        Journal::new(Box::new(MemoryFile::default()), key, round, region)
            .replayable(bytes, next_entry)
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
        journal.restart([6; ROUND_LEN], Region::Half(0));
        journal.numbered_from(4);
        journal.append(op(4), &op(4).encode());
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
        journal.numbered_from(7);
        journal.append(op(1), b"not an operation");
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
            journal.restart([7; ROUND_LEN], Region::Half(1));
            assert_eq!(journal.sync().unwrap_err(), error);
        }
    }

    /// A sync started on the journal's thread: the records are written at once and synced by
    /// the time it is waited for; a failure there is kept as a foreground one is, also when a
    /// later write is what waits for it; without a thread, it syncs in the foreground.
    #[test]
    fn a_started_sync_is_waited_for_and_its_failure_kept() {
        let (mut journal, file) = journal();
        append(&mut journal, 1, [1]);
        journal.start_sync().unwrap();
        assert!(!file.state().bytes.is_empty(), "written before it returns");
        journal.finish_sync().unwrap();
        assert_eq!(file.state().syncs, 1);
        journal.finish_sync().unwrap();
        assert_eq!(file.state().syncs, 1, "waited for once");
        assert_eq!(replay(&file.state().bytes, 1), vec![op(1)]);

        // Fails on the thread: the next write waits for it and is refused.
        file.state().fail_sync = true;
        append(&mut journal, 4, [2]);
        journal.start_sync().unwrap();
        append(&mut journal, 7, [3]);
        let error = journal.sync().unwrap_err();
        assert!(error.contains("restart the node"), "{error}");
        file.state().fail_sync = false;
        assert_eq!(journal.finish_sync().unwrap_err(), error);
        assert_eq!(journal.start_sync().unwrap_err(), error);

        // No thread can be started: it syncs before it returns.
        let (mut alone, file) = super::tests::journal();
        file.state().no_sync_thread = true;
        append(&mut alone, 1, [1]);
        alone.start_sync().unwrap();
        assert_eq!(file.state().syncs, 1);
        alone.finish_sync().unwrap();
        assert_eq!(file.state().syncs, 1);
    }

    /// A caller that does not wait for a sync: `try_finish_sync` says it still runs, the
    /// waker is called on the sync thread when it ends, and `try_finish_sync` then gives its
    /// outcome, a failure kept as when waited for.
    #[test]
    fn a_started_sync_wakes_its_caller_when_it_ends() {
        let (mut journal, file) = journal();
        let (woken, wakes) = std::sync::mpsc::channel();
        let woken = std::sync::Mutex::new(woken);
        journal.set_sync_waker(Arc::new(move || {
            let _ = woken.lock().map(|w| w.send(()));
        }));
        let wait = || wakes.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(journal.try_finish_sync(), Some(Ok(())), "none runs");

        file.state().hold_sync = true;
        append(&mut journal, 1, [1]);
        journal.start_sync().unwrap();
        assert_eq!(
            journal.try_finish_sync(),
            None,
            "ended while the disk is held"
        );
        assert!(wakes.try_recv().is_err(), "woken before the sync ended");
        file.state().hold_sync = false;
        wait().unwrap();
        assert_eq!(journal.try_finish_sync(), Some(Ok(())));
        assert_eq!(file.state().syncs, 1);
        assert_eq!(replay(&file.state().bytes, 1), vec![op(1)]);

        // It fails on the thread: the caller is woken, and told.
        file.state().fail_sync = true;
        append(&mut journal, 4, [2]);
        journal.start_sync().unwrap();
        wait().unwrap();
        let error = journal.try_finish_sync().unwrap().unwrap_err();
        assert!(error.contains("restart the node"), "{error}");
        assert_eq!(journal.try_finish_sync(), Some(Err(error.clone())));
        assert_eq!(journal.sync().unwrap_err(), error);
    }

    #[test]
    fn a_checkpoint_is_due_after_its_count_or_a_full_region() {
        let (mut journal, _) = journal();
        journal.numbered_from(1);
        let small = op(1).encode();
        for _ in 0..CHECKPOINT_EVERY {
            assert!(journal.has_room_for(small.len()));
            journal.append(op(1), &small);
        }
        assert!(!journal.has_room_for(small.len()));
        assert!(journal.fits(small.len()), "past the count, it still fits");
        assert_eq!(journal.next_entry(), Some(1 + 3 * CHECKPOINT_EVERY));
        journal.restart(ROUND, Region::Half(1));
        assert!(journal.has_room_for(small.len()));
        assert!(journal.pending().is_empty());
        assert_eq!(
            journal.next_entry(),
            None,
            "read from redb before the next record"
        );
        let big = (REGION_BYTES as usize) - HEADER_LEN - MAC_LEN;
        assert!(journal.has_room_for(big));
        assert!(Journal::can_hold(big));
        assert!(!Journal::can_hold(big + 1));
        journal.append(op(1), &small);
        assert!(!journal.has_room_for(big));
        assert!(!journal.fits(big));
    }

    /// The journal of a node signing: rounds in region 0, switches, checkpoints that end or
    /// fail, and what a crash at each point replays.
    #[test]
    fn a_switch_continues_in_the_other_region_and_replay_follows_it() {
        let (mut journal, file) = journal();
        append(&mut journal, 1, [1, 2]);
        journal.sync().unwrap();
        assert!(journal.can_switch());
        let (ops, round, region) = journal.switch().unwrap();
        assert_eq!(
            ops,
            vec![op(1), op(2)],
            "the checkpoint applies what is pending"
        );
        assert_eq!(region, Region::Half(1));
        assert_eq!(round, next_round(&key(), &ROUND));
        // A thread would apply `ops` now; the journal goes on in region 1.
        journal.append(op(3), &op(3).encode());
        journal.sync().unwrap();
        assert_eq!(journal.pending(), &[op(1), op(2), op(3)]);
        let bytes = file.state().bytes.clone();
        // A crash before the checkpoint's commit: redb names round and region 0 and holds
        // none of them; replay reads region 0, then region 1 in the next round.
        assert_eq!(replay(&bytes, 1), vec![op(1), op(2), op(3)]);
        // After the commit: redb names region 1 and holds entries 1 to 6.
        assert_eq!(
            replay_in(key(), round, Region::Half(1), &bytes, 7).unwrap(),
            vec![op(3)]
        );
        // The checkpoint ended: what it applied leaves the pending operations, with its
        // admissions; the next switch goes back to region 0 and overwrites its start.
        journal.checkpoint_applied(2);
        assert_eq!(journal.pending(), &[op(3)]);
        assert_eq!(
            journal.pending_admission(&op(1).admissions[0].0.key()),
            None
        );
        assert!(journal
            .pending_admission(&op(3).admissions[0].0.key())
            .is_some());
        let (_, round2, region2) = journal.switch().unwrap();
        assert_eq!(region2, Region::Half(0));
        journal.append(op(4), &op(4).encode());
        journal.sync().unwrap();
        let bytes = file.state().bytes.clone();
        assert_eq!(
            replay_in(key(), round, Region::Half(1), &bytes, 7).unwrap(),
            vec![op(3), op(4)],
            "region 1, then region 0 in the round after"
        );
        assert_eq!(
            replay_in(key(), round2, Region::Half(0), &bytes, 10).unwrap(),
            vec![op(4)]
        );
        // Region 0's older round (op 2, left behind op 4) is never read again: not in round
        // 0 (op 4 overwrote op 1 and op 2 follows no record of it), not in the rounds after.
        assert_eq!(replay(&bytes, 1), Vec::<JournalOp>::new());
        // A checkpoint that failed: its operations stay, and no switch until one in the
        // foreground.
        journal.checkpoint_failed("disk full".into());
        assert_eq!(journal.pending(), &[op(3), op(4)]);
        assert_eq!(
            journal.take_background_failure().as_deref(),
            Some("disk full")
        );
        assert_eq!(journal.take_background_failure(), None);
        assert!(!journal.can_switch());
        journal.restart([8; ROUND_LEN], Region::Half(0));
        assert!(journal.can_switch());
    }

    #[test]
    fn a_store_from_before_the_regions_replays_the_whole_file() {
        let big = vec![7; 400 * 1024];
        let op_big = |n: u8| JournalOp {
            now_unix_ms: 1,
            admissions: vec![],
            audits: vec![big.clone(), vec![n]],
        };
        // Two records of one round that cross the middle of the file, as a build before the
        // regions wrote them (its journal was one region: the whole file).
        let file = MemoryFile::default();
        let mut journal = Journal::new(Box::new(file.clone()), key(), ROUND, Region::Whole);
        journal.numbered_from(1);
        for n in [1, 2] {
            assert!(journal.fits(op_big(n).encode().len()));
            journal.append(op_big(n), &op_big(n).encode());
        }
        journal.sync().unwrap();
        let bytes = file.state().bytes.clone();
        assert!(bytes.len() as u64 > REGION_BYTES);
        assert_eq!(
            replay_in(key(), ROUND, Region::Whole, &bytes, 1).unwrap(),
            vec![op_big(1), op_big(2)]
        );
        assert_eq!(
            replay(&bytes, 1),
            vec![op_big(1)],
            "region 0 alone stops at its end"
        );
    }
}
