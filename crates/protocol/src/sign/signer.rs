use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use frost_core::round1::SigningCommitments;

use permafrost_wire::{
    CommitmentBatch, CommitmentsRequest, DerivationPath, Epoch, KeyId, Message, NodeId, SessionId,
    SignCommitment, SignPackage, SignRequest, SignShare, SignWithCommitment,
};
use rand_core::CryptoRngCore;
use sha2::{Digest as _, Sha256};

use super::round2::SigningKey;
use super::{package_digest, Nonces, WirePackage, MAX_POOL_BATCH};
use crate::cache::BoundedCache;
use crate::derive::Derivation;
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
    /// Most pooled (ahead-of-time) nonces held at once, over all coordinators; a new batch
    /// beyond it evicts the oldest batches.
    pub max_pooled: usize,
    /// How long a pooled nonce stays usable.
    pub pool_lifetime: Duration,
}

impl Default for SignerLimits {
    fn default() -> Self {
        SignerLimits {
            session_timeout: super::DEFAULT_SIGN_TIMEOUT,
            max_open_sessions: 1024,
            max_pooled: DEFAULT_MAX_POOLED,
            pool_lifetime: DEFAULT_POOL_LIFETIME,
        }
    }
}

/// Default of [`SignerLimits::max_pooled`].
pub const DEFAULT_MAX_POOLED: usize = 1024;

/// Default of [`SignerLimits::pool_lifetime`]. A coordinator uses pooled commitments for less
/// time than this ([`POOL_USE_WITHIN`]), so it does not name one the signer already dropped.
pub const DEFAULT_POOL_LIFETIME: Duration = Duration::from_secs(300);

/// How long after asking for a batch a coordinator still uses its commitments.
pub const POOL_USE_WITHIN: Duration = Duration::from_secs(240);

/// A node's signing service for one key share at one epoch.
///
/// Nonces live in memory only: one per session id (two-round signing), and pooled ones made
/// ahead of time in batches for a coordinator (one-round signing), each named by its batch and
/// position. A nonce is taken out, or marked consumed, before the share is computed and is
/// never used again. A new `Signer` (after a restart) knows no session and no pool, so every
/// commitment handed out before is void.
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
    /// Pooled nonces by (coordinator, batch).
    pool: BTreeMap<(NodeId, SessionId), Batch<S>>,
    /// The batches in the order they were made (so also the order they expire).
    pool_order: VecDeque<(NodeId, SessionId)>,
    /// Pooled nonces not used yet.
    pooled: usize,
    /// The share as it signs with it (the key itself).
    signing: SigningKey<S>,
    /// Child keys already derived, by path, as they sign (at most [`CHILD_KEYS_KEPT`]; each is
    /// zeroized when forgotten, like the share it was derived from).
    children: BoundedCache<DerivationPath, SigningKey<S>>,
    outputs: VecDeque<Output<S>>,
}

/// Child key packages a signer keeps derived, so that signing again at a recent path costs no
/// derivation.
pub const CHILD_KEYS_KEPT: usize = 64;

/// One batch of pooled nonces; a used one is `None`.
struct Batch<S: Suite> {
    nonces: Vec<Option<Nonces<S>>>,
    left: usize,
    expires: Timestamp,
}

/// One session at this signer. A session holds at most one live nonce at a time; after it is
/// consumed, the same coordinator may ask again (ROAST's next attempt) for a fresh commitment,
/// up to the committee size in all.
struct Slot<S: Suite> {
    state: SlotState<S>,
    message: Vec<u8>,
    /// The child key approved (empty: the key itself); the session signs for no other.
    path: DerivationPath,
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
    Committed { nonces: Nonces<S> },
    /// The last nonce is gone; any package for this session is refused until a new request.
    Consumed,
}

impl<S: Suite> Signer<S> {
    /// A signer for `share`.
    pub fn new(share: KeyShare<S>, limits: SignerLimits) -> Result<Self, ProtocolError> {
        let committee = Committee::new(share.committee.iter().cloned())?;
        let signing = SigningKey::new(&share.key_package)
            .map_err(|e| ProtocolError::InvalidParameters(format!("the key share: {e}")))?;
        Ok(Signer {
            share,
            signing,
            committee,
            limits,
            reshare_test: false,
            sessions: BTreeMap::new(),
            expiries: BTreeSet::new(),
            live: 0,
            pool: BTreeMap::new(),
            pool_order: VecDeque::new(),
            pooled: 0,
            children: BoundedCache::new(CHILD_KEYS_KEPT),
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

    /// Nonces pooled ahead of time (one-round signing), not used yet.
    pub fn pooled_nonces(&self) -> usize {
        self.pooled
    }

    fn check_key(&self, key_id: &KeyId, epoch: Epoch) -> Result<(), Refusal> {
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
            // Only the session's coordinator may ask again, and only for the approved message
            // and child key.
            Some(slot)
                if slot.coordinator != *from
                    || slot.message != request.message
                    || slot.path != request.path =>
            {
                return Err(Refusal::SessionExists);
            }
            // Asked again while a nonce is live (a retransmitted or duplicated request): the
            // same commitment again, never a second live nonce.
            Some(Slot {
                state: SlotState::Committed { nonces },
                ..
            }) => {
                let commitment = nonces.serialized_commitments().to_vec();
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
        let nonces = Nonces::commit(self.share.key_package.signing_share(), &mut rng)
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        let commitment = nonces.serialized_commitments().to_vec();
        let expires = now.after(self.limits.session_timeout);
        let state = SlotState::Committed { nonces };
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
                        path: request.path.clone(),
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
        let SlotState::Committed { nonces } = &slot.state else {
            return Err(Refusal::NonceConsumed);
        };
        let signing_package = self.check_package(&package.package, &slot.message, nonces)?;
        let me = self.share.key_package.identifier();
        let mine = signing_package.package().signing_commitment(me);
        if mine.as_ref() != Some(nonces.commitments()) {
            if mine.is_some_and(|c| slot.consumed.contains(&c)) {
                // One of this session's spent commitments again: a replay, or a coordinator
                // putting one commitment in two packages.
                return Err(Refusal::NonceConsumed);
            }
            return Err(Refusal::CommitmentMismatch);
        }
        // Every check passed. Consume the nonce *before* signing: whatever happens next, it is
        // never used again.
        let Some(slot) = self.sessions.get_mut(&package.session) else {
            return Err(Refusal::UnknownSession);
        };
        let SlotState::Committed { nonces } =
            std::mem::replace(&mut slot.state, SlotState::Consumed)
        else {
            return Err(Refusal::NonceConsumed);
        };
        slot.consumed.push(*nonces.commitments());
        let message_digest: [u8; 32] = Sha256::digest(&slot.message).into();
        let path = slot.path.clone();
        self.live -= 1;
        let signed = Signed {
            session: package.session,
            package: &package.package,
            message_digest,
            path: &path,
        };
        self.produce_share(from, signed, &signing_package, nonces)
    }

    /// Checks a signing package for this signer: exactly `t` commitments, read from the count
    /// before any point is decoded, all of members, the approved `message`. `mine` is the
    /// commitment this signer expects to find for itself: it is not decoded again if it is
    /// there (the caller checks that it is).
    fn check_package(
        &self,
        bytes: &[u8],
        message: &[u8],
        mine: &Nonces<S>,
    ) -> Result<WirePackage<S>, Refusal> {
        let threshold = usize::from(*self.share.key_package.min_signers());
        let me = *self.share.key_package.identifier();
        let signing_package = super::package::parse_signing_package(
            bytes,
            Some(threshold),
            Some((me, mine.commitments(), mine.serialized_commitments())),
        )?;
        if signing_package.package().message() != message {
            return Err(Refusal::MessageNotApproved);
        }
        if let Some(stranger) = signing_package
            .package()
            .signing_commitments()
            .keys()
            .find(|id| self.committee.node(id).is_none())
        {
            return Err(Refusal::CommitmentSet(format!(
                "commitment from a non-member {stranger:?}"
            )));
        }
        Ok(signing_package)
    }

    /// Computes the share with `nonces` (already taken out of every slot and pool: they are
    /// dropped, zeroized, whatever happens) and queues its audit event and the share for `to`.
    fn produce_share(
        &mut self,
        to: &NodeId,
        signed: Signed<'_>,
        signing_package: &WirePackage<S>,
        nonces: Nonces<S>,
    ) -> Result<(), Refusal> {
        // A child share is derived here, from this node's own share and the approved path: a
        // coordinator cannot name another child key than the client approved. The key itself
        // (the common case) needs nothing derived.
        let key = if signed.path.is_root() {
            &self.signing
        } else {
            let share = &self.share;
            self.children.get_or_try_insert(signed.path, || {
                Derivation::of_key(
                    &share.key_id,
                    share.public_key_package.verifying_key(),
                    signed.path,
                )
                .map_err(|e| Refusal::Malformed(e.to_string()))
                .and_then(|derivation| {
                    SigningKey::new(&derivation.key_package(&share.key_package))
                        .map_err(|e| Refusal::Malformed(format!("the child key: {e}")))
                })
            })?
        };
        let (share, group_commitment) = super::round2::sign(signing_package, nonces, key)
            .map_err(|e| Refusal::Malformed(format!("cannot sign: {e}")))?;
        self.outputs.push_back(Output::Event(Event::ShareProduced {
            session: signed.session,
            key_id: self.share.key_id.clone(),
            epoch: self.share.epoch,
            message_digest: signed.message_digest,
            requester: to.clone(),
        }));
        self.outputs.push_back(Output::Send {
            to: to.clone(),
            message: Message::SignShare(SignShare {
                session: signed.session,
                key_id: self.share.key_id.clone(),
                epoch: self.share.epoch,
                share: share.serialize(),
                package: package_digest(signed.package),
                group_commitment: group_commitment.as_ref().to_vec(),
            }),
        });
        Ok(())
    }

    /// Makes a batch of pooled nonces for the coordinator `from` (one-round signing): at most
    /// [`MAX_POOL_BATCH`]; the oldest batches are evicted to stay within
    /// [`SignerLimits::max_pooled`].
    fn handle_commitments_request(
        &mut self,
        from: &NodeId,
        request: CommitmentsRequest,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), Refusal> {
        self.check_key(&request.key_id, request.epoch)?;
        if self.reshare_test {
            return Err(Refusal::Unexpected(
                permafrost_wire::MessageKind::CommitmentsRequest,
            ));
        }
        let count = usize::from(request.count);
        if count == 0 || request.count > MAX_POOL_BATCH || count > self.limits.max_pooled {
            return Err(Refusal::Limit(format!(
                "a batch of {count} commitments; 1 to {} are made at once",
                usize::from(MAX_POOL_BATCH).min(self.limits.max_pooled)
            )));
        }
        let name = (from.clone(), request.session);
        if self.pool.contains_key(&name) {
            return Err(Refusal::SessionExists);
        }
        self.expire_pool(now);
        while self.pooled + count > self.limits.max_pooled && self.drop_oldest_batch() {}
        let mut rng = rng;
        let mut nonces = Vec::with_capacity(count);
        let mut commitments = Vec::with_capacity(count);
        for _ in 0..count {
            let nonce = Nonces::commit(self.share.key_package.signing_share(), &mut rng)
                .map_err(|e| Refusal::Malformed(e.to_string()))?;
            commitments.push(nonce.serialized_commitments().to_vec());
            nonces.push(Some(nonce));
        }
        self.pool.insert(
            name.clone(),
            Batch {
                nonces,
                left: count,
                expires: now.after(self.limits.pool_lifetime),
            },
        );
        self.pool_order.push_back(name);
        self.pooled += count;
        self.outputs.push_back(Output::Send {
            to: from.clone(),
            message: Message::CommitmentBatch(CommitmentBatch {
                session: request.session,
                key_id: request.key_id,
                epoch: request.epoch,
                commitments,
            }),
        });
        Ok(())
    }

    /// One-round signing: the request and the package at once, on a pooled nonce. A session
    /// this signer already knows is refused without an answer and without touching the pool
    /// (a duplicated message: a one-round request only ever opens a session). Otherwise the
    /// nonce is taken out of the pool first (whatever happens next, it is never used again);
    /// then the request is checked as a [`SignRequest`] would be, the package as a
    /// [`SignPackage`] would be, and the package must hold exactly the pooled commitment. The
    /// session is then known with its nonce consumed, so the coordinator may ask again in it
    /// (two rounds).
    fn handle_with_commitment(
        &mut self,
        from: &NodeId,
        m: SignWithCommitment,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        self.check_key(&m.key_id, m.epoch)?;
        self.expire(now);
        self.expire_pool(now);
        if self.sessions.contains_key(&m.session) {
            return Err(Refusal::SessionExists);
        }
        let nonces = self.take_pooled(from, m.batch, m.index)?;
        super::check_requested_message(&m.message, self.reshare_test)?;
        let signing_package = self.check_package(&m.package, &m.message, &nonces)?;
        let me = self.share.key_package.identifier();
        let pooled = *nonces.commitments();
        if signing_package.package().signing_commitment(me).as_ref() != Some(&pooled) {
            return Err(Refusal::CommitmentMismatch);
        }
        let expires = now.after(self.limits.session_timeout);
        self.expiries.insert((expires, m.session));
        self.sessions.insert(
            m.session,
            Slot {
                state: SlotState::Consumed,
                message: m.message.clone(),
                path: m.path.clone(),
                coordinator: from.clone(),
                consumed: vec![pooled],
                issued: 1,
                expires,
            },
        );
        let signed = Signed {
            session: m.session,
            package: &m.package,
            message_digest: Sha256::digest(&m.message).into(),
            path: &m.path,
        };
        self.produce_share(from, signed, &signing_package, nonces)
    }

    /// Takes pooled nonce `(batch, index)` of coordinator `from` out of the pool.
    fn take_pooled(
        &mut self,
        from: &NodeId,
        batch: SessionId,
        index: u16,
    ) -> Result<Nonces<S>, Refusal> {
        let name = (from.clone(), batch);
        let held = self
            .pool
            .get_mut(&name)
            .and_then(|b| b.nonces.get_mut(usize::from(index)))
            .and_then(Option::take)
            .ok_or(Refusal::UnknownCommitment)?;
        self.pooled -= 1;
        if let Some(b) = self.pool.get_mut(&name) {
            b.left -= 1;
            if b.left == 0 {
                self.pool.remove(&name);
                self.pool_order.retain(|n| *n != name);
            }
        }
        Ok(held)
    }

    /// Drops pooled batches whose time is up; their nonces are zeroized as they drop.
    fn expire_pool(&mut self, now: Timestamp) {
        while self
            .pool_order
            .front()
            .is_some_and(|name| self.pool.get(name).is_none_or(|b| b.expires <= now))
        {
            self.drop_oldest_batch();
        }
    }

    /// Drops the oldest pooled batch, if any (its nonces are zeroized as they drop).
    fn drop_oldest_batch(&mut self) -> bool {
        let Some(oldest) = self.pool_order.pop_front() else {
            return false;
        };
        if let Some(batch) = self.pool.remove(&oldest) {
            self.pooled -= batch.left;
        }
        true
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

    /// The signing session a refusal of `message` is sent for (none for a batch request: its
    /// refusal is the answer to the request itself).
    fn session_of(message: &Message) -> Option<SessionId> {
        match message {
            Message::SignRequest(m) => Some(m.session),
            Message::SignPackage(m) => Some(m.session),
            Message::SignWithCommitment(m) => Some(m.session),
            _ => None,
        }
    }
}

/// What a share is computed for: its session, the package bytes (named by digest in the
/// share), and the message's digest (for the audit).
struct Signed<'a> {
    session: SessionId,
    package: &'a [u8],
    message_digest: [u8; 32],
    /// The child key approved.
    path: &'a DerivationPath,
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
            Message::SignWithCommitment(m) => self.handle_with_commitment(from, m, now),
            Message::CommitmentsRequest(m) => self.handle_commitments_request(from, m, now, rng),
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
        self.expire_pool(now);
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let pool = self
            .pool_order
            .front()
            .and_then(|name| self.pool.get(name))
            .map(|batch| batch.expires);
        self.expiries
            .first()
            .map(|(expires, _)| *expires)
            .into_iter()
            .chain(pool)
            .min()
    }

    fn is_finished(&self) -> bool {
        false
    }

    fn live_nonces(&self) -> usize {
        self.open_sessions()
    }

    fn pooled_nonces(&self) -> usize {
        Signer::pooled_nonces(self)
    }

    fn holds_pooled_nonce(&self, from: &NodeId, request: &SignWithCommitment) -> bool {
        !self.sessions.contains_key(&request.session)
            && self
                .pool
                .get(&(from.clone(), request.batch))
                .and_then(|b| b.nonces.get(usize::from(request.index)))
                .is_some_and(Option::is_some)
    }
}
