//! Approvals' request ids a node has admitted, remembered until their timestamps are stale, so
//! that an approval is used in one session only.

use std::collections::{BTreeMap, BTreeSet};

use permafrost_wire::SessionId;

use crate::Timestamp;

/// (approver's ed25519 public key, request id) → (the session it was admitted in, when to
/// forget it), forgotten in time order.
#[derive(Debug, Default)]
pub struct RequestIds {
    seen: BTreeMap<([u8; 32], [u8; 16]), (SessionId, u64)>,
    expiry: BTreeSet<(u64, [u8; 32], [u8; 16])>,
}

impl RequestIds {
    /// The session `request_id` of `approver` was admitted in, if it is remembered.
    pub fn session_of(&self, approver: &[u8; 32], request_id: &[u8; 16]) -> Option<SessionId> {
        self.seen.get(&(*approver, *request_id)).map(|(s, _)| *s)
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
        while let Some(&(expires, key, id)) = self.expiry.first() {
            if expires >= now.0 {
                break;
            }
            self.expiry.pop_first();
            self.seen.remove(&(key, id));
        }
        if expires_ms < now.0 {
            return;
        }
        if let Some((_, old)) = self
            .seen
            .insert((approver, request_id), (session, expires_ms))
        {
            self.expiry.remove(&(old, approver, request_id));
        }
        self.expiry.insert((expires_ms, approver, request_id));
    }
}
