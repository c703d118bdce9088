use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use frost_core::round1::{self, SigningCommitments, SigningNonces};
use frost_core::{round2, SigningPackage};
use permafrost_wire::{
    Message, NodeId, SessionId, SignCommitment, SignPackage, SignRefusal, SignRequest, SignShare,
};
use rand_core::CryptoRngCore;
use sha2::{Digest as _, Sha256};

use super::MAX_SIGN_MESSAGE_LEN;
use crate::reshare::TEST_MESSAGE_PREFIX;
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
    outputs: VecDeque<Output<S>>,
}

enum Slot<S: Suite> {
    Committed {
        nonces: SigningNonces<S>,
        commitments: SigningCommitments<S>,
        message: Vec<u8>,
        coordinator: NodeId,
        expires: Timestamp,
    },
    /// The nonce is gone; any further package for this session is refused.
    Consumed { expires: Timestamp },
}

impl<S: Suite> Slot<S> {
    fn expires(&self) -> Timestamp {
        match self {
            Slot::Committed { expires, .. } | Slot::Consumed { expires } => *expires,
        }
    }
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
            outputs: VecDeque::new(),
        })
    }

    /// A signer for a PENDING share inside a reshare: it signs the session's test message
    /// (messages starting with [`TEST_MESSAGE_PREFIX`]) and nothing else, while an ordinary
    /// signer never signs those.
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
        self.sessions
            .values()
            .filter(|s| matches!(s, Slot::Committed { .. }))
            .count()
    }

    fn check_key(
        &self,
        key_id: &permafrost_wire::KeyId,
        epoch: permafrost_wire::Epoch,
    ) -> Result<(), Refusal> {
        if *key_id != self.share.key_id {
            return Err(Refusal::WrongKey);
        }
        if epoch != self.share.epoch {
            return Err(Refusal::WrongEpoch {
                expected: self.share.epoch,
                got: epoch,
            });
        }
        Ok(())
    }

    fn handle_request(
        &mut self,
        from: &NodeId,
        request: SignRequest,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), Refusal> {
        self.check_key(&request.key_id, request.epoch)?;
        if request.message.starts_with(TEST_MESSAGE_PREFIX) != self.reshare_test {
            return Err(Refusal::MessageNotApproved);
        }
        if request.message.len() > MAX_SIGN_MESSAGE_LEN {
            return Err(Refusal::Limit(format!(
                "message of {} bytes exceeds {MAX_SIGN_MESSAGE_LEN}",
                request.message.len()
            )));
        }
        if self.sessions.contains_key(&request.session) {
            return Err(Refusal::SessionExists);
        }
        self.expire(now);
        if self.open_sessions() >= self.limits.max_open_sessions {
            return Err(Refusal::Limit("too many open signing sessions".into()));
        }
        let mut rng = rng;
        let (nonces, commitments) =
            round1::commit::<S, _>(self.share.key_package.signing_share(), &mut rng);
        let commitment = commitments
            .serialize()
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        self.sessions.insert(
            request.session,
            Slot::Committed {
                nonces,
                commitments,
                message: request.message,
                coordinator: from.clone(),
                expires: now.after(self.limits.session_timeout),
            },
        );
        self.outputs.push_back(Output::Send {
            to: from.clone(),
            message: Message::SignCommitment(SignCommitment {
                session: request.session,
                key_id: request.key_id,
                epoch: request.epoch,
                commitment,
            }),
        });
        Ok(())
    }

    fn handle_package(&mut self, from: &NodeId, package: SignPackage) -> Result<(), Refusal> {
        self.check_key(&package.key_id, package.epoch)?;
        let Some(slot) = self.sessions.get(&package.session) else {
            return Err(Refusal::UnknownSession);
        };
        let Slot::Committed {
            commitments,
            message,
            coordinator,
            expires,
            ..
        } = slot
        else {
            return Err(Refusal::NonceConsumed);
        };
        if from != coordinator {
            return Err(Refusal::NotFromCoordinator(from.clone()));
        }
        let signing_package = SigningPackage::<S>::deserialize(&package.package)
            .map_err(|e| Refusal::Malformed(format!("signing package: {e}")))?;
        if signing_package.message() != message {
            return Err(Refusal::MessageNotApproved);
        }
        let count = signing_package.signing_commitments().len();
        let min = usize::from(*self.share.key_package.min_signers());
        if count < min || count > self.committee.len() {
            return Err(Refusal::CommitmentSet(format!(
                "{count} commitments; need {min} to {}",
                self.committee.len()
            )));
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
        if signing_package.signing_commitment(me).as_ref() != Some(commitments) {
            return Err(Refusal::CommitmentMismatch);
        }
        // Every check passed. Consume the nonce *before* signing: whatever happens next, it is
        // never used again.
        let expires = *expires;
        let message_digest: [u8; 32] = Sha256::digest(message).into();
        let Some(Slot::Committed { nonces, .. }) = self
            .sessions
            .insert(package.session, Slot::Consumed { expires })
        else {
            return Err(Refusal::NonceConsumed);
        };
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
            }),
        });
        Ok(())
    }

    /// Forgets sessions whose time is up; their nonces are zeroized as they drop.
    fn expire(&mut self, now: Timestamp) {
        self.sessions.retain(|_, slot| slot.expires() > now);
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
                message: Message::SignRefusal(SignRefusal {
                    session,
                    reason: refusal.to_string(),
                }),
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
        self.sessions.values().map(Slot::expires).min()
    }

    fn is_finished(&self) -> bool {
        false
    }
}
