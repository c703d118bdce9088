//! A node's part in reshares: joining one (the record persisted before anything of the
//! session happens), resuming the unconcluded ones after a restart, the durable record of
//! each, and the messages that arrive before their session opens here.

use std::collections::VecDeque;
use std::time::Duration;

use permafrost_keystore::ShareState;
use permafrost_protocol::{lifecycle, ProtocolError, Refusal, Timestamp};
use permafrost_wire::{
    decode, encode, Epoch, KeyId, Message, NodeId, ReshareOpen, SessionId, SessionStatus,
};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::{NodeCore, NodeNotice, NodeStore, StoreError};
use crate::any;
use crate::sessions::Route;

/// A reshare this node joined and has not concluded, as stored in the keystore's reshare
/// table: written when the node joins (before it deals), and deleted in the same transaction
/// that concludes the reshare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReshareRecord {
    /// The coordinator that opened it (asked for the outcome after a restart).
    pub coordinator: NodeId,
    /// Whether this node deals in the session: a dealer's record says so from its first
    /// write, at the open, which is durable before the session starts and so before the
    /// dealing leaves. (A node never deals twice in one session: a session resumed after a
    /// restart never deals, and a recorded session is never joined again.)
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

impl<St: NodeStore> NodeCore<St> {
    /// Joins a reshare: checks the proposal against what this node holds, records the reshare
    /// durably, then starts its session (which may deal at once) and replays the messages that
    /// came before the open.
    pub(super) fn open_reshare(
        &mut self,
        coordinator: NodeId,
        open: ReshareOpen,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        let session = open.session;
        // Running here, or recorded on disk (also a record that could not be resumed and is
        // kept for an operator: joining again could deal twice).
        let recorded = self
            .store
            .reshares()
            .map_err(store_refusal)?
            .iter()
            .any(|(s, _)| *s == session);
        if self.sessions.contains(&Route::Session(session)) {
            // The same open again (a retransmission): this node already takes part.
            return Ok(());
        }
        if self.reshares.contains_key(&session) || recorded {
            return Err(Refusal::SessionExists.into());
        }
        self.refuse_concluded(&session)?;
        let p = &open.proposal;
        if p.epoch.0.checked_add(1).is_none() {
            return Err(ProtocolError::InvalidParameters(format!(
                "epoch {} has no next epoch",
                p.epoch
            )));
        }
        // Who receives shares and who deals must be signer nodes. The old committee need not
        // be: the old public key package binds it, and a key must stay resharable after one of
        // its holders left the network file.
        self.refuse_strangers(p.new_committee.iter().chain(&p.dealers))?;
        // One reshare of a key at a time on this node, including one resumed after a restart
        // and still waiting for its outcome: two would write the same next epoch.
        if let Some((other, record)) = self.reshares.iter().find(|(_, r)| r.key_id() == &p.key_id) {
            let other = *other;
            // Ask again now, so that the next attempt finds this one concluded.
            self.transmit(
                record.coordinator.clone(),
                Message::SessionStatus(SessionStatus { session: other }),
            );
            return Err(ProtocolError::InvalidParameters(format!(
                "reshare {other} of key {} is not concluded here yet",
                p.key_id
            )));
        }
        let me = self.node_id().clone();
        // The old share, if this node holds the epoch being reshared in force (a PENDING share
        // of it, one no certificate concluded, is not the key's).
        let old = match self
            .store
            .share(&p.key_id, p.epoch)
            .map_err(store_refusal)?
        {
            Some((ShareState::Active, share)) => Some(share),
            Some(_) if p.old_committee.contains(&me) => {
                return Err(ProtocolError::InvalidParameters(format!(
                    "this node's share of key {} epoch {} is not active (pending, kept for an operator)",
                    p.key_id, p.epoch
                )));
            }
            None if p.old_committee.contains(&me) => {
                return Err(Refusal::WrongEpoch {
                    expected: self.active_epoch(&p.key_id).unwrap_or(Epoch(0)),
                    got: p.epoch,
                }
                .into());
            }
            Some(_) | None => None,
        };
        if !p.old_committee.contains(&me) && self.holds_key(&p.key_id) {
            return Err(ProtocolError::InvalidParameters(format!(
                "key {} already exists on this node",
                p.key_id
            )));
        }
        let peer = any::reshare_peer(
            open.clone(),
            coordinator.clone(),
            self.identities(),
            old.as_ref(),
            false,
            now,
            crate::deadlines::RESHARE,
            rng,
        )?;
        let record = ReshareRecord {
            coordinator: coordinator.clone(),
            // A dealer deals as its session starts, right after this write: recorded here, the
            // dealing needs no synced write of its own.
            dealt: p.dealers.contains(&me),
            open: open.clone(),
        };
        // Persisted before anything of the session happens, in the write that makes the
        // approval durable.
        let record_session = |store: &mut St| {
            store
                .put_reshare(&record)
                .map_err(|e| ProtocolError::Frost(format!("cannot record the reshare: {e}")))
        };
        match open.rotation {
            None => self.approve_lifecycle(
                &coordinator,
                session,
                &lifecycle::reshare_action(p),
                &open.approvals,
                now,
                record_session,
            )?,
            Some(every_secs) => self.approve_rotation(
                &coordinator,
                session,
                p,
                every_secs,
                &open.approvals,
                now,
                record_session,
            )?,
        }
        self.notice(NodeNotice::ReshareJoined {
            key_id: record.key_id().clone(),
            epoch: record.epoch(),
            session,
        });
        self.insert_reshare(session, record, peer);
        self.deliver_early(session, now, rng);
        Ok(())
    }

    /// Delivers to `session`, just opened here, the messages kept for it because they came
    /// before its open.
    pub(super) fn deliver_early(
        &mut self,
        session: SessionId,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) {
        for (from, message) in self.early.take(&session) {
            let _ = self.deliver(&Route::Session(session), &from, message, now, rng);
        }
    }

    /// Picks up every reshare the store records as unconcluded: each asks its coordinator for
    /// the outcome and waits for the certificate or the abort, keeping both epochs meanwhile.
    /// A record that cannot be resumed is kept for an operator.
    pub(super) fn resume_reshares(&mut self, now: Timestamp) -> Result<(), StoreError> {
        for (session, record) in self.store.reshares()? {
            let record = match record {
                Ok(record) => record,
                Err(error) => {
                    self.notice(NodeNotice::ReshareNotResumed { session, error });
                    continue;
                }
            };
            let (key_id, epoch) = (record.key_id().clone(), record.epoch());
            // A share that cannot be read keeps this reshare for an operator; the node still
            // starts for every other key.
            let shares = self.store.share(&key_id, epoch).and_then(|old| {
                let pending = match epoch.0.checked_add(1) {
                    Some(next) => self
                        .store
                        .share(&key_id, Epoch(next))?
                        .filter(|(state, _)| *state == ShareState::Pending)
                        .map(|(_, share)| share),
                    None => None,
                };
                Ok((old.map(|(_, share)| share), pending))
            });
            let (old, pending) = match shares {
                Ok(shares) => shares,
                Err(error) => {
                    self.notice(NodeNotice::ReshareNotResumed {
                        session,
                        error: error.to_string(),
                    });
                    continue;
                }
            };
            let resumed = any::resume_reshare_peer(
                record.open.clone(),
                record.coordinator.clone(),
                self.identities(),
                old.as_ref(),
                pending.as_ref(),
                now,
            );
            match resumed {
                Ok(peer) => {
                    self.notice(NodeNotice::ReshareResumed {
                        key_id,
                        epoch,
                        session,
                        pending: pending.is_some(),
                    });
                    self.insert_reshare(session, record, peer);
                }
                Err(error) => self.notice(NodeNotice::ReshareNotResumed {
                    session,
                    error: error.to_string(),
                }),
            }
        }
        Ok(())
    }

    fn insert_reshare(
        &mut self,
        session: SessionId,
        record: ReshareRecord,
        peer: Box<dyn any::AnySession>,
    ) {
        self.aliases.insert(
            permafrost_protocol::reshare::test_session_id(&session),
            session,
        );
        self.reshares.insert(session, record);
        self.drive(|sessions, handler| sessions.insert(Route::Session(session), peer, handler));
    }

    /// A reshare message, or a DKG's abort, whose session is not open here: kept for its open,
    /// which may still be on the way. Only a dealer's share comes from another node; what only
    /// a coordinator sends is kept only from a coordinator.
    pub(super) fn keep_early(
        &mut self,
        from: NodeId,
        message: Message,
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        let from_coordinator = self.setup.coordinators.contains(&from);
        if !from_coordinator && !matches!(message, Message::ReshareShare(_)) {
            return Err(Refusal::NotFromCoordinator(from).into());
        }
        let len = encode(&message).map(|frame| frame.len())?;
        if self.early.keep(now, from, message, len) {
            Ok(())
        } else {
            Err(Refusal::Limit("too many messages for reshares not open here".into()).into())
        }
    }
}

/// A store failure while deciding on a message: the message is refused, naming it.
pub(super) fn store_refusal(error: StoreError) -> ProtocolError {
    ProtocolError::Frost(format!("cannot read the keystore: {error}"))
}

/// Reshare messages that arrived before their session opened on this node (a dealer may deal
/// as soon as its own open arrives, before this node's open does). Bounded in count and bytes,
/// in all and per sender, and in age: one peer flooding it fills only its own quota, so the
/// early dealings of the others are still kept.
pub struct EarlyMessages {
    /// (arrival, sender, message, encoded length)
    queue: VecDeque<(Timestamp, NodeId, Message, usize)>,
    limits: EarlyLimits,
    max_age: Duration,
}

/// The bounds of [`EarlyMessages`].
#[derive(Clone, Copy, Debug)]
pub struct EarlyLimits {
    /// Messages kept in all.
    pub messages: usize,
    /// Bytes (encoded) kept in all.
    pub bytes: usize,
    /// Messages kept from one sender.
    pub messages_per_peer: usize,
    /// Bytes kept from one sender.
    pub bytes_per_peer: usize,
}

impl Default for EarlyLimits {
    /// 256 messages and 32 MiB in all; 16 messages and 2 MiB per sender (a dealer sends one
    /// share per session to each member).
    fn default() -> Self {
        EarlyLimits {
            messages: 256,
            bytes: 32 << 20,
            messages_per_peer: 16,
            bytes_per_peer: 2 << 20,
        }
    }
}

impl EarlyMessages {
    /// A buffer within `limits`, each message kept at most `max_age`.
    pub fn new(limits: EarlyLimits, max_age: Duration) -> Self {
        EarlyMessages {
            queue: VecDeque::new(),
            limits,
            max_age,
        }
    }

    /// Keeps `message` (`len` bytes encoded) for later; `false` (and nothing kept) when that
    /// would pass a bound, in all or for `from`.
    pub fn keep(&mut self, now: Timestamp, from: NodeId, message: Message, len: usize) -> bool {
        self.expire(now);
        let (mut peer_messages, mut peer_bytes, mut bytes) = (0, 0, 0);
        for (_, sender, _, l) in &self.queue {
            bytes += l;
            if *sender == from {
                peer_messages += 1;
                peer_bytes += l;
            }
        }
        let l = &self.limits;
        if self.queue.len() >= l.messages
            || bytes.saturating_add(len) > l.bytes
            || peer_messages >= l.messages_per_peer
            || peer_bytes.saturating_add(len) > l.bytes_per_peer
        {
            return false;
        }
        self.queue.push_back((now, from, message, len));
        true
    }

    /// Takes out every message of `session`, in arrival order.
    pub fn take(&mut self, session: &SessionId) -> Vec<(NodeId, Message)> {
        let (taken, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|(_, _, m, _)| m.session() == *session);
        self.queue = kept;
        taken.into_iter().map(|(_, from, m, _)| (from, m)).collect()
    }

    /// When the oldest message expires.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        let max_age = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        self.queue
            .front()
            .map(|(at, _, _, _)| Timestamp(at.0.saturating_add(max_age).saturating_add(1)))
    }

    /// Drops messages older than the maximum age.
    pub fn expire(&mut self, now: Timestamp) {
        let max_age = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        self.queue
            .retain(|(at, _, _, _)| now.0.saturating_sub(at.0) <= max_age);
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
            rotation: None,
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
            approvals: Vec::new(),
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
        let limits = EarlyLimits {
            messages: 3,
            bytes: 1000,
            messages_per_peer: 2,
            bytes_per_peer: 500,
        };
        let mut early = EarlyMessages::new(limits, Duration::from_secs(10));
        let abort = |s: u8| {
            Message::ReshareAbort(ReshareAbort {
                session: SessionId([s; 32]),
                culprits: vec![],
                reason: String::new(),
            })
        };
        assert!(early.keep(Timestamp(0), node(1), abort(1), 100));
        assert!(early.keep(Timestamp(0), node(1), abort(2), 100));
        assert!(
            !early.keep(Timestamp(0), node(1), abort(3), 100),
            "over the sender's quota"
        );
        assert!(
            !early.keep(Timestamp(0), node(2), abort(3), 501),
            "over the sender's bytes"
        );
        assert!(early.keep(Timestamp(0), node(2), abort(3), 100));
        assert!(
            !early.keep(Timestamp(0), node(3), abort(4), 100),
            "over capacity"
        );
        assert_eq!(early.take(&SessionId([1; 32])).len(), 1);
        assert!(early.take(&SessionId([1; 32])).is_empty());
        // Past the maximum age the rest is gone, and room is made.
        assert!(early.keep(Timestamp(20_000), node(1), abort(1), 100));
        assert!(early.take(&SessionId([2; 32])).is_empty());
    }
}
