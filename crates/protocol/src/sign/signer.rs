use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use frost_core::round1::{self, SigningCommitments, SigningNonces};
use frost_core::{round2, SigningPackage};
use permafrost_wire::{
    Message, NodeId, SessionId, SignCommitment, SignPackage, SignRequest, SignShare,
};
use rand_core::CryptoRngCore;
use sha2::{Digest as _, Sha256};

use super::package_digest;
use crate::{
    Committee, Event, KeyShare, Output, ProtocolError, Refusal, Session, Suite, Timestamp,
};

/// Bounds on what a coordinator can make a signer hold.
#[derive(Clone, Copy, Debug)]
pub struct SignerLimits {
    /// How long a commitment stays usable.
    pub session_timeout: Duration,
    /// Most sessions with a live nonce at once.
    pub max_open_sessions: usize,
}

impl Default for SignerLimits {
    fn default() -> Self {
        SignerLimits {
            session_timeout: super::DEFAULT_SIGN_TIMEOUT,
            max_open_sessions: 1024,
        }
    }
}

/// A node's signing service for one key share at one epoch.
///
/// Nonces live in memory only, one per session id; a nonce is marked consumed before the share
/// is computed and is never used again. A new `Signer` (after a restart) knows no session, so
/// every commitment handed out before is void.
pub struct Signer<S: Suite> {
    share: KeyShare<S>,
    committee: Committee<S>,
    limits: SignerLimits,
    /// Signs only reshare test messages (a PENDING share inside a reshare) instead of never.
    reshare_test: bool,
    sessions: BTreeMap<SessionId, Slot<S>>,
    /// Every session by the time it expires, so expiry costs nothing per message.
    expiries: BTreeSet<(Timestamp, SessionId)>,
    /// Sessions holding a live nonce.
    live: usize,
    outputs: VecDeque<Output<S>>,
}

/// One session at this signer. A session holds at most one live nonce at a time; after it is
/// consumed, the same coordinator may ask again (ROAST's next attempt) for a fresh commitment,
/// up to the committee size in all.
struct Slot<S: Suite> {
    state: SlotState<S>,
    message: Vec<u8>,
    coordinator: NodeId,
    /// Commitments whose nonces were consumed in this session; a package holding one again is
    /// a replay and is refused without an answer.
    consumed: Vec<SigningCommitments<S>>,
    /// Commitments handed out in this session, consumed or not.
    issued: usize,
    expires: Timestamp,
}

enum SlotState<S: Suite> {
    /// A live nonce and its commitment.
    Committed {
        nonces: SigningNonces<S>,
        commitments: SigningCommitments<S>,
    },
    /// The last nonce is gone; any package for this session is refused until a new request.
    Consumed,
}

impl<S: Suite> Signer<S> {
    /// A signer for `share`.
    pub fn new(share: KeyShare<S>, limits: SignerLimits) -> Result<Self, ProtocolError> {
        let committee = Committee::new(share.committee.iter().cloned())?;
        Ok(Signer {
            share,
            committee,
            limits,
            reshare_test: false,
            sessions: BTreeMap::new(),
            expiries: BTreeSet::new(),
            live: 0,
            outputs: VecDeque::new(),
        })
    }

    /// A signer for a PENDING share inside a reshare: it signs the session's test message
    /// (messages starting with
    /// [`TEST_MESSAGE_PREFIX`](crate::reshare::TEST_MESSAGE_PREFIX)) and nothing else, while an
    /// ordinary signer never signs those.
    pub(crate) fn for_reshare_test(share: KeyShare<S>) -> Result<Self, ProtocolError> {
        let mut signer = Self::new(share, SignerLimits::default())?;
        signer.reshare_test = true;
        Ok(signer)
    }

    /// The share this signer signs with.
    pub fn share(&self) -> &KeyShare<S> {
        &self.share
    }

    /// Sessions holding a live (unused, unexpired) nonce.
    pub fn open_sessions(&self) -> usize {
        self.live
    }

    fn check_key(
        &self,
        key_id: &permafrost_wire::KeyId,
        epoch: permafrost_wire::Epoch,
    ) -> Result<(), Refusal> {
        super::check_key(&self.share.key_id, self.share.epoch, key_id, epoch)
    }

    fn handle_request(
        &mut self,
        from: &NodeId,
        request: SignRequest,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), Refusal> {
        self.check_key(&request.key_id, request.epoch)?;
        super::check_requested_message(&request.message, self.reshare_test)?;
        self.expire(now);
        let issued = match self.sessions.get(&request.session) {
            None => 0,
            // Only the session's coordinator may ask again, and only for the approved message.
            Some(slot) if slot.coordinator != *from || slot.message != request.message => {
                return Err(Refusal::SessionExists);
            }
            // Asked again while a nonce is live (a retransmitted or duplicated request): the
            // same commitment again, never a second live nonce.
            Some(Slot {
                state: SlotState::Committed { commitments, .. },
                ..
            }) => {
                let commitment = commitments
                    .serialize()
                    .map_err(|e| Refusal::Malformed(e.to_string()))?;
                self.send_commitment(from, request, commitment);
                return Ok(());
            }
            // The last nonce was consumed: a fresh one for the coordinator's next attempt, up to
            // one per committee member in all (ROAST needs at most n − t + 1).
            Some(slot) if slot.issued >= self.committee.len() => {
                return Err(Refusal::Limit(format!(
                    "{} commitments already issued in this session",
                    slot.issued
                )));
            }
            Some(slot) => slot.issued,
        };
        if issued == 0 && self.open_sessions() >= self.limits.max_open_sessions {
            return Err(Refusal::Limit("too many open signing sessions".into()));
        }
        let mut rng = rng;
        let (nonces, commitments) =
            round1::commit::<S, _>(self.share.key_package.signing_share(), &mut rng);
        let commitment = commitments
            .serialize()
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        let expires = now.after(self.limits.session_timeout);
        let state = SlotState::Committed {
            nonces,
            commitments,
        };
        self.live += 1;
        match self.sessions.get_mut(&request.session) {
            Some(slot) => {
                // Only a consumed slot gets a fresh nonce (a live one is answered above). Its
                // old expiry goes before the new one is indexed: both may be the same instant.
                self.expiries.remove(&(slot.expires, request.session));
                self.expiries.insert((expires, request.session));
                slot.state = state;
                slot.issued += 1;
                slot.expires = expires;
            }
            None => {
                self.expiries.insert((expires, request.session));
                self.sessions.insert(
                    request.session,
                    Slot {
                        state,
                        message: request.message.clone(),
                        coordinator: from.clone(),
                        consumed: Vec::new(),
                        issued: 1,
                        expires,
                    },
                );
            }
        }
        self.send_commitment(from, request, commitment);
        Ok(())
    }

    fn send_commitment(&mut self, to: &NodeId, request: SignRequest, commitment: Vec<u8>) {
        self.outputs.push_back(Output::Send {
            to: to.clone(),
            message: Message::SignCommitment(SignCommitment {
                session: request.session,
                key_id: request.key_id,
                epoch: request.epoch,
                commitment,
            }),
        });
    }

    fn handle_package(&mut self, from: &NodeId, package: SignPackage) -> Result<(), Refusal> {
        self.check_key(&package.key_id, package.epoch)?;
        let Some(slot) = self.sessions.get(&package.session) else {
            return Err(Refusal::UnknownSession);
        };
        if *from != slot.coordinator {
            return Err(Refusal::NotFromCoordinator(from.clone()));
        }
        if matches!(slot.state, SlotState::Consumed) {
            return Err(Refusal::NonceConsumed);
        }
        // Sizes first, from the raw bytes: no point is decoded for a package of the wrong shape.
        let threshold = usize::from(*self.share.key_package.min_signers());
        let claimed = crate::serialized::claimed_count(&package.package)
            .ok_or_else(|| Refusal::Malformed("signing package header".into()))?;
        if claimed > self.committee.len() as u64 || claimed != threshold as u64 {
            return Err(Refusal::CommitmentSet(format!(
                "{claimed} commitments; the coordinator selects exactly {threshold} of {}",
                self.committee.len()
            )));
        }
        let signing_package = SigningPackage::<S>::deserialize(&package.package)
            .map_err(|e| Refusal::Malformed(format!("signing package: {e}")))?;
        if signing_package.signing_commitments().len() as u64 != claimed {
            return Err(Refusal::CommitmentSet(
                "a member's commitment is listed twice".into(),
            ));
        }
        if *signing_package.message() != slot.message {
            return Err(Refusal::MessageNotApproved);
        }
        if let Some(stranger) = signing_package
            .signing_commitments()
            .keys()
            .find(|id| self.committee.node(id).is_none())
        {
            return Err(Refusal::CommitmentSet(format!(
                "commitment from a non-member {stranger:?}"
            )));
        }
        let me = self.share.key_package.identifier();
        let mine = signing_package.signing_commitment(me);
        let SlotState::Committed { commitments, .. } = &slot.state else {
            return Err(Refusal::NonceConsumed);
        };
        if mine.as_ref() != Some(commitments) {
            if mine.is_some_and(|c| slot.consumed.contains(&c)) {
                // One of this session's spent commitments again: a replay, or a coordinator
                // putting one commitment in two packages.
                return Err(Refusal::NonceConsumed);
            }
            return Err(Refusal::CommitmentMismatch);
        }
        // Every check passed. Consume the nonce *before* signing: whatever happens next, it is
        // never used again.
        let message_digest: [u8; 32] = Sha256::digest(&slot.message).into();
        let Some(slot) = self.sessions.get_mut(&package.session) else {
            return Err(Refusal::UnknownSession);
        };
        let SlotState::Committed {
            nonces,
            commitments,
        } = std::mem::replace(&mut slot.state, SlotState::Consumed)
        else {
            return Err(Refusal::NonceConsumed);
        };
        self.live -= 1;
        slot.consumed.push(commitments);
        let share = round2::sign(&signing_package, &nonces, &self.share.key_package)
            .map_err(|e| Refusal::Malformed(format!("cannot sign: {e}")))?;
        drop(nonces);
        self.outputs.push_back(Output::Event(Event::ShareProduced {
            key_id: self.share.key_id.clone(),
            epoch: self.share.epoch,
            message_digest,
            requester: from.clone(),
        }));
        self.outputs.push_back(Output::Send {
            to: from.clone(),
            message: Message::SignShare(SignShare {
                session: package.session,
                key_id: package.key_id,
                epoch: package.epoch,
                share: share.serialize(),
                package: package_digest(&package.package),
            }),
        });
        Ok(())
    }

    /// Forgets sessions whose time is up; their nonces are zeroized as they drop.
    fn expire(&mut self, now: Timestamp) {
        while let Some(&(expires, session)) = self.expiries.first() {
            if expires > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(slot) = self.sessions.remove(&session) {
                if matches!(slot.state, SlotState::Committed { .. }) {
                    self.live -= 1;
                }
            }
        }
    }

    fn session_of(message: &Message) -> Option<SessionId> {
        match message {
            Message::SignRequest(m) => Some(m.session),
            Message::SignPackage(m) => Some(m.session),
            _ => None,
        }
    }
}

impl<S: Suite> Session<S> for Signer<S> {
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        let session = Self::session_of(&message);
        let result = match message {
            Message::SignRequest(m) => self.handle_request(from, m, now, rng),
            Message::SignPackage(m) => {
                self.expire(now);
                self.handle_package(from, m)
            }
            other => Err(Refusal::Unexpected(other.kind())),
        };
        let tell_coordinator = !matches!(
            result,
            Err(Refusal::NonceConsumed | Refusal::SessionExists) | Ok(())
        );
        if let (Err(refusal), Some(session), true) = (&result, session, tell_coordinator) {
            // Tell the coordinator at once, so it can move on without waiting for a deadline.
            // A replay of a session already answered gets no answer: the coordinator already
            // has what it asked for, and an attacker learns nothing.
            self.outputs.push_back(Output::Send {
                to: from.clone(),
                message: Message::SignRefusal(super::refusal_message(session, refusal)),
            });
        }
        result.map_err(ProtocolError::Refused)
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.expire(now);
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(expires, _)| *expires)
    }

    fn is_finished(&self) -> bool {
        false
    }

    fn live_nonces(&self) -> usize {
        self.open_sessions()
    }
}
