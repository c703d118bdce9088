//! Approvals' request ids a node has admitted, remembered until their timestamps are stale, so
//! that an approval is used in one session only.
//!
//! A node remembers every request id admitted in the last minutes (over 100,000 under load), so
//! each is kept small and once: a 16-byte fingerprint of (approver, request id), the session and
//! when to forget it, in a queue in the order recorded (56 bytes), found through an index of
//! 8-byte positions (9 bytes a slot, at most 7/8 of the slots used, and from half that after
//! the index doubles). That is 66–77 bytes an id, the queue growing a block of 4,096 at a
//! time. A map from fingerprint to (session, expiry) beside a queue of (expiry, fingerprint),
//! both growing by doubling, took about 90 bytes an id and up to twice that; the whole ids in
//! two ordered trees about 190.
//!
//! **How long, in memory and in the store.** An approval is refused once its timestamp is
//! further than the policy's clock skew from the node's clock, whatever its request id. So in
//! memory an id is kept only while its timestamp could still be accepted ([`remembered_until`]:
//! its timestamp plus the skew in force, 120 s by default), while the node's store keeps it for
//! [`REQUEST_ID_RETENTION`], the largest skew a node may be configured with. A gate whose skew
//! is widened (a restart with another configuration, or a new policy) records the store's ids
//! again. At 1,060 admissions a second (a node's share of 1,770 signatures a second), memory
//! then holds two minutes of ids, not ten: 127,000 ids in about 10 MB.
//!
//! **At most twice the skew.** Ids are forgotten from the front of the queue only, so an id
//! whose timestamp was ahead of the node's clock (by up to the skew, as an approver may date
//! it) keeps those recorded after it for up to twice the skew: an accepted approver can double
//! the ids held, not more. The index gives its room back once it holds under a quarter of it.
//!
//! [`REQUEST_ID_RETENTION`]: crate::sign::client::REQUEST_ID_RETENTION

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use permafrost_wire::SessionId;

use crate::Timestamp;

/// A request id as remembered: the first 16 bytes of
/// `digest_bytes("request-id", approver ‖ request id)`. Two different (approver, request id)
/// pairs share one with probability 2^-128; if they did, the second would be refused as
/// already used (never admitted twice).
type Fingerprint = [u8; 16];

/// One admitted request id.
struct Remembered {
    id: Fingerprint,
    /// The session it was admitted in.
    session: SessionId,
    /// When to forget it (milliseconds since the Unix epoch).
    expires_ms: u64,
}

/// (approver's ed25519 public key, request id) → (the session it was admitted in, when to
/// forget it).
#[derive(Default)]
pub struct RequestIds {
    /// Every id in the order it was recorded. Ids are forgotten from the front once expired;
    /// one recorded later that expires earlier waits behind it, so an id may be remembered
    /// longer than needed, never shorter. An id recorded again is queued again; only its
    /// latest entry counts.
    queue: BlockQueue,
    /// The position in `queue` of each id's latest entry, found by the id's hash.
    latest: HashTable<u64>,
    /// Keys the index's hash, as `HashMap`'s does, so that nobody can choose request ids that
    /// all land in one of its buckets.
    hasher: RandomState,
}

impl std::fmt::Debug for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestIds")
            .field("remembered", &self.latest.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// Entries in a block of [`BlockQueue`]: 4,096 of 56 bytes, 224 KiB. Four in tests, so that
/// they cross blocks often.
#[cfg(not(test))]
const BLOCK: usize = 4096;
#[cfg(test)]
const BLOCK: usize = 4;

/// Slots below which the index is not shrunk.
const MIN_INDEX_CAPACITY: usize = 1024;

/// A queue in blocks of [`BLOCK`] entries, each entry at a position that never changes (the
/// count of entries pushed before it). It grows a block at a time and reuses the block it
/// empties, so its memory follows its length, within three blocks (672 KiB). A queue that
/// grows by reallocating (`VecDeque`) keeps up to as much room again as it holds, and each copy
/// it leaves behind stays in the process's memory while the allocator keeps it for reuse: after
/// ten minutes under load a node held 53.8 MiB with one, 45.3 MiB with this (BENCHMARKS.md).
#[derive(Default)]
struct BlockQueue {
    /// Full blocks, then the block being filled.
    blocks: VecDeque<Vec<Remembered>>,
    /// Entries of `blocks[0]` already taken from the front.
    head: usize,
    /// The position of `blocks[0][0]`.
    base: u64,
    /// The last block emptied, kept for the next one needed.
    spare: Option<Vec<Remembered>>,
}

impl BlockQueue {
    /// Entries in the queue.
    fn len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum::<usize>() - self.head
    }

    /// The entry at `position`, which must be in the queue.
    fn at(&self, position: u64) -> &Remembered {
        let index = (position - self.base) as usize;
        &self.blocks[index / BLOCK][index % BLOCK]
    }

    /// The entry at the front.
    fn front(&self) -> Option<&Remembered> {
        self.blocks.front().and_then(|block| block.get(self.head))
    }

    /// Adds `entry` at the back, returning its position.
    fn push_back(&mut self, entry: Remembered) -> u64 {
        if self.blocks.back().is_none_or(|block| block.len() == BLOCK) {
            let block = self
                .spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(BLOCK));
            self.blocks.push_back(block);
        }
        let filled = (self.blocks.len() - 1) * BLOCK;
        let Some(last) = self.blocks.back_mut() else {
            unreachable!("a block was added above")
        };
        let position = self.base + (filled + last.len()) as u64;
        last.push(entry);
        position
    }

    /// Takes the entry at the front: its position and id.
    fn pop_front(&mut self) -> Option<(u64, Fingerprint)> {
        let taken = (self.base + self.head as u64, self.front()?.id);
        self.head += 1;
        if self.head == BLOCK {
            if let Some(mut emptied) = self.blocks.pop_front() {
                emptied.clear();
                self.spare = Some(emptied);
            }
            self.head = 0;
            self.base += BLOCK as u64;
        }
        Some(taken)
    }

    /// Entries the queue's blocks have room for, the spare included.
    #[cfg(test)]
    fn room(&self) -> usize {
        self.blocks
            .iter()
            .chain(&self.spare)
            .map(Vec::capacity)
            .sum()
    }
}

fn fingerprint(approver: &[u8; 32], request_id: &[u8; 16]) -> Fingerprint {
    let mut bytes = [0u8; 48];
    bytes[..32].copy_from_slice(approver);
    bytes[32..].copy_from_slice(request_id);
    let digest = crate::hash::digest_bytes("request-id", &bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.0[..16]);
    out
}

/// Until when (milliseconds since the Unix epoch) a gate must remember an id admitted with
/// `timestamp_ms` and kept in the store until `expires_ms`, while it accepts timestamps within
/// `skew` of its clock: after that the gate refuses the timestamp as stale anyway.
pub fn remembered_until(timestamp_ms: u64, expires_ms: u64, skew: Duration) -> u64 {
    let skew_ms = u64::try_from(skew.as_millis()).unwrap_or(u64::MAX);
    timestamp_ms.saturating_add(skew_ms).min(expires_ms)
}

/// [`remembered_until`] for an id reloaded from the node's store, which keeps it until
/// `expires_ms`, its timestamp plus [`REQUEST_ID_RETENTION`].
///
/// [`REQUEST_ID_RETENTION`]: crate::sign::client::REQUEST_ID_RETENTION
pub fn restored_until(expires_ms: u64, skew: Duration) -> u64 {
    let retention = crate::sign::client::REQUEST_ID_RETENTION;
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    remembered_until(expires_ms.saturating_sub(retention_ms), expires_ms, skew)
}

impl RequestIds {
    /// The session `request_id` of `approver` was admitted in, if it is remembered.
    pub fn session_of(&self, approver: &[u8; 32], request_id: &[u8; 16]) -> Option<SessionId> {
        self.latest_of(&fingerprint(approver, request_id))
            .map(|r| r.session)
    }

    /// How many are remembered now.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Remembers `request_id` of `approver`, admitted in `session`, until `expires_ms`; forgets
    /// those that expired before `now`.
    pub fn record(
        &mut self,
        approver: [u8; 32],
        request_id: [u8; 16],
        session: SessionId,
        expires_ms: u64,
        now: Timestamp,
    ) {
        self.forget_expired(now);
        if expires_ms < now.0 {
            return;
        }
        let id = fingerprint(&approver, &request_id);
        let Self {
            queue,
            latest,
            hasher,
        } = self;
        // One lookup: the entry found (or the slot for it) takes the new position.
        let entry = latest.entry(
            hasher.hash_one(id),
            |&p| queue.at(p).id == id,
            |&p| hasher.hash_one(queue.at(p).id),
        );
        let expires_ms = match &entry {
            Entry::Occupied(old) => expires_ms.max(queue.at(*old.get()).expires_ms),
            Entry::Vacant(_) => expires_ms,
        };
        let position = queue.push_back(Remembered {
            id,
            session,
            expires_ms,
        });
        match entry {
            Entry::Occupied(mut old) => *old.get_mut() = position,
            Entry::Vacant(slot) => {
                slot.insert(position);
            }
        }
    }

    /// The latest entry of `id`, if it is remembered.
    fn latest_of(&self, id: &Fingerprint) -> Option<&Remembered> {
        self.latest
            .find(self.hasher.hash_one(id), |&p| self.queue.at(p).id == *id)
            .map(|&p| self.queue.at(p))
    }

    /// Forgets, from the front of the queue, the entries that expired before `now`, and each
    /// id whose latest entry that was.
    fn forget_expired(&mut self, now: Timestamp) {
        while self.queue.front().is_some_and(|r| r.expires_ms < now.0) {
            let Some((position, id)) = self.queue.pop_front() else {
                break;
            };
            if let Ok(entry) = self
                .latest
                .find_entry(self.hasher.hash_one(id), |&p| p == position)
            {
                entry.remove();
            }
        }
        let len = self.latest.len();
        if self.latest.capacity() > (4 * len).max(MIN_INDEX_CAPACITY) {
            let Self {
                queue,
                latest,
                hasher,
            } = self;
            latest.shrink_to(2 * len, |&p| hasher.hash_one(queue.at(p).id));
        }
    }

    /// Checks that every position in the index is in the queue and holds the id it is found
    /// by, and that the queue holds no more room than three blocks beyond its length.
    #[cfg(test)]
    fn check(&self) {
        let end = self.queue.base + (self.queue.head + self.queue.len()) as u64;
        for &p in self.latest.iter() {
            assert!(p >= self.queue.base + self.queue.head as u64 && p < end);
            let id = self.queue.at(p).id;
            assert!(self
                .latest
                .find(self.hasher.hash_one(id), |&q| q == p)
                .is_some());
        }
        assert!(self.queue.room() <= self.queue.len() + 3 * BLOCK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Against a plain map of each id's latest session and latest expiry: an id is
        /// remembered, with its latest session, at least until its expiry, across ids recorded
        /// again, out of order and forgotten; and nothing is remembered that was not recorded.
        #[test]
        fn remembers_each_id_with_its_latest_session_at_least_until_it_expires(
            ops in proptest::collection::vec((0u8..6, 0u8..4, 0u64..4_000, 0u64..1_500), 1..200)
        ) {
            let mut ids = RequestIds::default();
            let mut model: HashMap<u8, (SessionId, u64)> = HashMap::new();
            let mut now = 0u64;
            for (id, session, lifetime, step) in ops {
                now += step;
                let (approver, request_id) = ([id; 32], [id; 16]);
                let session = SessionId([session; 32]);
                // A lifetime under 500 ms is already expired when recorded.
                let expires = (now + lifetime).saturating_sub(500);
                ids.record(approver, request_id, session, expires, Timestamp(now));
                if expires >= now {
                    let kept = model.get(&id).map_or(expires, |&(_, e)| e.max(expires));
                    model.insert(id, (session, kept));
                }
                for probe in 0u8..6 {
                    let remembered = ids.session_of(&[probe; 32], &[probe; 16]);
                    match model.get(&probe) {
                        Some(&(session, expires)) if expires >= now => {
                            prop_assert_eq!(remembered, Some(session));
                        }
                        Some(&(session, _)) => {
                            prop_assert!(remembered.is_none() || remembered == Some(session));
                        }
                        None => prop_assert_eq!(remembered, None),
                    }
                }
                prop_assert!(ids.len() <= model.len());
                ids.check();
            }
            // Long after every expiry, one more record forgets all the others.
            ids.record([9; 32], [9; 16], SessionId([9; 32]), u64::MAX, Timestamp(now + 10_000));
            prop_assert_eq!(ids.len(), 1);
            prop_assert_eq!(ids.queue.len(), 1);
        }
    }

    #[test]
    fn the_queue_and_the_index_hold_memory_for_their_length() {
        let mut ids = RequestIds::default();
        let record = |ids: &mut RequestIds, i: u64, now: u64| {
            let mut request_id = [0u8; 16];
            request_id[..8].copy_from_slice(&i.to_le_bytes());
            ids.record([1; 32], request_id, SessionId([2; 32]), i, Timestamp(now));
        };
        // Growing to 100,000 ids, then a window of 10,000 sliding over 100,000 more.
        for i in 0..100_000 {
            record(&mut ids, 1_000_000 + i, 0);
            assert!(ids.queue.room() <= ids.queue.len() + BLOCK);
        }
        for i in 100_000..200_000 {
            record(&mut ids, 1_000_000 + i, 1_000_000 + i - 10_000);
            assert!(ids.queue.room() <= ids.queue.len() + 3 * BLOCK);
        }
        assert_eq!((ids.len(), ids.queue.len()), (10_001, 10_001));
        // The index gave back the room it grew into for 100,000.
        assert!(ids.latest.capacity() <= 4 * ids.len());
        ids.check();
        let first_kept = |i: u64| {
            let mut request_id = [0u8; 16];
            request_id[..8].copy_from_slice(&(1_000_000 + i).to_le_bytes());
            ids.session_of(&[1; 32], &request_id)
        };
        assert_eq!(first_kept(189_999), Some(SessionId([2; 32])));
        assert_eq!(first_kept(189_998), None);
    }

    #[test]
    fn an_id_is_remembered_until_it_expires_also_behind_a_later_one() {
        let mut ids = RequestIds::default();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let s = |i: u8| SessionId([i; 32]);
        // Recorded first but expiring last: the one behind it waits.
        ids.record(a, [1; 16], s(1), 5_000, Timestamp(0));
        ids.record(b, [1; 16], s(2), 2_000, Timestamp(0));
        assert_eq!(ids.session_of(&a, &[1; 16]), Some(s(1)));
        assert_eq!(ids.session_of(&b, &[1; 16]), Some(s(2)));
        assert_eq!(ids.session_of(&b, &[2; 16]), None);
        ids.record(a, [9; 16], s(3), 9_000, Timestamp(3_000));
        assert_eq!(
            ids.session_of(&b, &[1; 16]),
            Some(s(2)),
            "kept longer, not shorter"
        );
        ids.record(a, [8; 16], s(4), 9_000, Timestamp(6_000));
        assert_eq!(ids.session_of(&a, &[1; 16]), None);
        assert_eq!(ids.session_of(&b, &[1; 16]), None);
        assert_eq!(ids.len(), 2);
        // Recorded again with a later expiry: the earlier queue entry does not forget it.
        ids.record(a, [9; 16], s(3), 12_000, Timestamp(6_000));
        ids.record(a, [7; 16], s(5), 20_000, Timestamp(10_000));
        assert_eq!(ids.session_of(&a, &[9; 16]), Some(s(3)));
        // Already expired: not recorded.
        ids.record(b, [3; 16], s(6), 1_000, Timestamp(10_000));
        assert_eq!(ids.session_of(&b, &[3; 16]), None);
    }
}
