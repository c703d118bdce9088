//! Approvals' request ids a node has admitted, remembered until their timestamps are stale, so
//! that an approval is used in one session only.
//!
//! A node remembers every request id admitted in the last minutes (hundreds of thousands under
//! load), so each is kept small: a 16-byte fingerprint of (approver, request id), the session,
//! and when to forget it — about 90 bytes with the map's and the queue's share, where the
//! whole ids in two ordered trees took about 190.
//!
//! **How long, in memory and in the store.** An approval is refused once its timestamp is
//! further than the policy's clock skew from the node's clock, whatever its request id. So in
//! memory an id is kept only while its timestamp could still be accepted ([`remembered_until`]:
//! its timestamp plus the skew in force, 120 s by default), while the node's store keeps it for
//! [`REQUEST_ID_RETENTION`], the largest skew a node may be configured with. A gate whose skew
//! is widened (a restart with another configuration, or a new policy) records the store's ids
//! again. At 1,100 admissions a second, memory then holds two minutes of ids, not ten: about
//! 12 MB instead of 59.
//!
//! [`REQUEST_ID_RETENTION`]: crate::sign::client::REQUEST_ID_RETENTION

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use permafrost_wire::SessionId;

use crate::Timestamp;

/// A request id as remembered: the first 16 bytes of
/// `digest_bytes("request-id", approver ‖ request id)`. Two different (approver, request id)
/// pairs share one with probability 2^-128; if they did, the second would be refused as
/// already used (never admitted twice).
type Fingerprint = [u8; 16];

/// (approver's ed25519 public key, request id) → (the session it was admitted in, when to
/// forget it).
#[derive(Debug, Default)]
pub struct RequestIds {
    seen: HashMap<Fingerprint, (SessionId, u64)>,
    /// Every id in the order it was recorded, with its expiry. Ids are forgotten from the front
    /// once expired; one recorded later that expires earlier waits behind it, so an id may be
    /// remembered longer than needed, never shorter.
    order: VecDeque<(u64, Fingerprint)>,
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
        self.seen
            .get(&fingerprint(approver, request_id))
            .map(|(s, _)| *s)
    }

    /// How many are remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
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
        while let Some(&(expires, key)) = self.order.front() {
            if expires >= now.0 {
                break;
            }
            self.order.pop_front();
            // Only if it was not recorded again since, with a later expiry.
            if self.seen.get(&key).is_some_and(|(_, e)| *e == expires) {
                self.seen.remove(&key);
            }
        }
        if expires_ms < now.0 {
            return;
        }
        let key = fingerprint(&approver, &request_id);
        let expires_ms = match self.seen.get(&key) {
            Some((_, old)) => expires_ms.max(*old),
            None => expires_ms,
        };
        self.seen.insert(key, (session, expires_ms));
        self.order.push_back((expires_ms, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
