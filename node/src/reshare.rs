//! What a node keeps about the reshares it takes part in: the durable record of each (so a
//! restart resumes it), and the messages that arrive before their session opens here.

use std::collections::VecDeque;
use std::time::Duration;

use permafrost_protocol::Timestamp;
use permafrost_wire::{decode, encode, Epoch, KeyId, Message, NodeId, ReshareOpen, SessionId};
use serde::{Deserialize, Serialize};

/// A reshare this node joined and has not concluded, as stored in the keystore's reshare
/// table: written when the node joins (before it deals), updated when it has dealt, and
/// deleted in the same transaction that concludes the reshare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReshareRecord {
    /// The coordinator that opened it (asked for the outcome after a restart).
    pub coordinator: NodeId,
    /// Whether this node dealt (it never deals twice in one session).
    pub dealt: bool,
    /// The proposal, as received.
    pub open: ReshareOpen,
}

/// The stored form: JSON with the open message as a hex wire frame.
#[derive(Serialize, Deserialize)]
struct Stored {
    coordinator: String,
    dealt: bool,
    open: String,
}

impl ReshareRecord {
    /// The key being reshared.
    pub fn key_id(&self) -> &KeyId {
        &self.open.proposal.key_id
    }

    /// The epoch being reshared (the new one is the next).
    pub fn epoch(&self) -> Epoch {
        self.open.proposal.epoch
    }

    /// Encodes the record for the keystore.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let frame = encode(&Message::ReshareOpen(self.open.clone())).map_err(|e| e.to_string())?;
        serde_json::to_vec(&Stored {
            coordinator: hex::encode(self.coordinator.as_bytes()),
            dealt: self.dealt,
            open: hex::encode(frame),
        })
        .map_err(|e| e.to_string())
    }

    /// Decodes a record read from the keystore, checking it belongs to `session`.
    pub fn decode(session: &SessionId, bytes: &[u8]) -> Result<Self, String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let coordinator = hex::decode(&stored.coordinator)
            .map_err(|e| e.to_string())
            .and_then(|b| NodeId::new(b).map_err(|e| e.to_string()))?;
        let frame = hex::decode(&stored.open).map_err(|e| e.to_string())?;
        let Message::ReshareOpen(open) = decode(&frame).map_err(|e| e.to_string())? else {
            return Err("the stored message is not a ReshareOpen".into());
        };
        if open.session != *session {
            return Err("the record is stored under another session id".into());
        }
        Ok(ReshareRecord {
            coordinator,
            dealt: stored.dealt,
            open,
        })
    }
}

/// Reshare messages that arrived before their session opened on this node (a dealer may deal
/// as soon as its own open arrives, before this node's open does). Bounded in count and age.
pub struct EarlyMessages {
    queue: VecDeque<(Timestamp, NodeId, Message)>,
    capacity: usize,
    max_age: Duration,
}

impl EarlyMessages {
    /// A buffer of at most `capacity` messages, each kept at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        EarlyMessages {
            queue: VecDeque::new(),
            capacity,
            max_age,
        }
    }

    /// Keeps `message` for later; `false` (and nothing kept) when the buffer is full.
    pub fn keep(&mut self, now: Timestamp, from: NodeId, message: Message) -> bool {
        self.expire(now);
        if self.queue.len() >= self.capacity {
            return false;
        }
        self.queue.push_back((now, from, message));
        true
    }

    /// Takes out every message of `session`, in arrival order.
    pub fn take(&mut self, session: &SessionId) -> Vec<(NodeId, Message)> {
        let (taken, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|(_, _, m)| m.session() == *session);
        self.queue = kept;
        taken.into_iter().map(|(_, from, m)| (from, m)).collect()
    }

    /// Drops messages older than the maximum age.
    pub fn expire(&mut self, now: Timestamp) {
        let max_age = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        self.queue
            .retain(|(at, _, _)| now.0.saturating_sub(at.0) <= max_age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use permafrost_wire::{Curve, ReshareAbort, ReshareProposal};

    fn node(b: u8) -> NodeId {
        NodeId::new(vec![b; 38]).unwrap()
    }

    fn open() -> ReshareOpen {
        ReshareOpen {
            session: SessionId([3; 32]),
            proposal: ReshareProposal {
                key_id: KeyId::new("k").unwrap(),
                curve: Curve::Ed25519,
                epoch: Epoch(4),
                attempt: 1,
                old_committee: vec![node(1), node(2)],
                old_public_key_package: vec![1, 2, 3],
                new_committee: vec![node(1), node(2)],
                new_threshold: 2,
                dealers: vec![node(1), node(2)],
            },
        }
    }

    #[test]
    fn records_round_trip_and_are_bound_to_their_session() {
        let record = ReshareRecord {
            coordinator: node(9),
            dealt: true,
            open: open(),
        };
        let bytes = record.encode().unwrap();
        assert_eq!(
            ReshareRecord::decode(&SessionId([3; 32]), &bytes).unwrap(),
            record
        );
        assert!(ReshareRecord::decode(&SessionId([4; 32]), &bytes).is_err());
        assert!(ReshareRecord::decode(&SessionId([3; 32]), b"{}").is_err());
        assert!(ReshareRecord::decode(&SessionId([3; 32]), b"\xff").is_err());
    }

    #[test]
    fn early_messages_are_bounded_expire_and_come_out_by_session() {
        let mut early = EarlyMessages::new(2, Duration::from_secs(10));
        let abort = |s: u8| {
            Message::ReshareAbort(ReshareAbort {
                session: SessionId([s; 32]),
                culprits: vec![],
                reason: String::new(),
            })
        };
        assert!(early.keep(Timestamp(0), node(1), abort(1)));
        assert!(early.keep(Timestamp(0), node(2), abort(2)));
        assert!(
            !early.keep(Timestamp(0), node(3), abort(1)),
            "over capacity"
        );
        assert_eq!(early.take(&SessionId([1; 32])).len(), 1);
        assert!(early.take(&SessionId([1; 32])).is_empty());
        // Past the maximum age the rest is gone, and room is made.
        assert!(early.keep(Timestamp(20_000), node(1), abort(1)));
        assert!(early.take(&SessionId([2; 32])).is_empty());
    }
}
