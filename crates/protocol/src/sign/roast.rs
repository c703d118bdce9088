use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use frost_core::keys::PublicKeyPackage;
use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::{aggregate, verify_signature_share, Identifier, SigningPackage};
use permafrost_wire::{
    ClientAuthorization, Digest, Epoch, KeyId, Message, MessageKind, NodeId, SessionId,
    SignPackage, SignRequest,
};
use rand_core::CryptoRngCore;

use super::{check_key, check_signing_parameters, package_digest};
use crate::hash::Transcript;
use crate::{Committee, Event, Output, ProtocolError, Refusal, Session, Suite, Timestamp};

/// Longest serialized commitment accepted before it is parsed (two points and a header).
const MAX_COMMITMENT_LEN: usize = 256;
/// Longest serialized signature share accepted before it is parsed (one scalar).
const MAX_SHARE_LEN: usize = 128;

/// The coordinator's side of one signature with ROAST (Ruffing et al., CCS 2022): robust
/// asynchronous retries over FROST.
///
/// Every committee member is asked for a commitment. Members holding one fresh commitment are
/// *ready*; as soon as `t` are ready, an attempt starts with those `t` (a signing package to
/// each). Each share is verified on arrival: a bad one makes its sender a culprit, out for good
/// (and its attempt can no longer complete); a valid one makes its sender ready again once it
/// has sent a fresh commitment (the coordinator asks it again, in the same request, right
/// away). A member that refuses is out; a silent one simply never becomes ready again. So
/// every failed attempt holds a member that is silent, refused or cheated, each such member
/// spoils at most one attempt, and with at most `n − t` of them a signature comes out after at
/// most `n − t + 1` attempts.
///
/// On the wire every message of the request carries the request's session id (so a driver
/// routes them all here), and a share names the package it was computed on by its digest
/// ([`super::package_digest`]); each attempt also has its own id derived from the request id
/// and its number ([`RoastCoordinator::attempt_ids`]), for logs.
pub struct RoastCoordinator<S: Suite> {
    request: SessionId,
    key_id: KeyId,
    epoch: Epoch,
    message: Vec<u8>,
    client: Option<ClientAuthorization>,
    public_key_package: PublicKeyPackage<S>,
    committee: Committee<S>,
    threshold: usize,
    members: BTreeMap<Identifier<S>, Member<S>>,
    /// Ready members, in the order they became ready.
    ready: VecDeque<Identifier<S>>,
    attempts: Vec<Attempt<S>>,
    refused: BTreeMap<NodeId, String>,
    /// Members that refused the client's authorization.
    unauthorized: BTreeSet<NodeId>,
    culprits: BTreeMap<NodeId, String>,
    disputed: BTreeSet<NodeId>,
    /// Members that let an attempt's deadline pass without answering.
    stalled: BTreeSet<NodeId>,
    attempt_timeout: Duration,
    deadline: Timestamp,
    finished: bool,
    outputs: VecDeque<Output<S>>,
}

struct Member<S: Suite> {
    node: NodeId,
    state: MemberState<S>,
    /// Commitments already put in a package; a copy arriving again is a stale duplicate.
    used: Vec<SigningCommitments<S>>,
    /// Package digests of the attempts this member gave a valid share in.
    answered: Vec<Digest>,
}

enum MemberState<S: Suite> {
    /// Asked for a commitment; none has arrived.
    Asked,
    /// Holds one fresh commitment (and is in the ready queue).
    Ready(SigningCommitments<S>),
    /// In attempt `attempt`, its share awaited; `next` is a fresh commitment that arrived first.
    Signing {
        attempt: usize,
        next: Option<SigningCommitments<S>>,
    },
    /// Refused, proven to cheat, or disputed: never asked again in this request.
    Excluded,
}

struct Attempt<S: Suite> {
    id: SessionId,
    package: SigningPackage<S>,
    digest: Digest,
    signers: BTreeSet<Identifier<S>>,
    shares: BTreeMap<Identifier<S>, SignatureShare<S>>,
    deadline: Timestamp,
    /// Its deadline has been dealt with.
    stalled: bool,
}

impl<S: Suite> RoastCoordinator<S> {
    /// Starts a ROAST request signing `message` with key `key_id` at `epoch`, asking every
    /// member of `committee` with the client's authorization `client` (which every signer
    /// checks). `request` must be fresh randomness; it is the session id of every message of
    /// the request. The request fails at `now + timeout`; an attempt's signers that
    /// have not answered within `attempt_timeout` are reported as stalled.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request: SessionId,
        key_id: KeyId,
        epoch: Epoch,
        message: Vec<u8>,
        client: Option<ClientAuthorization>,
        public_key_package: PublicKeyPackage<S>,
        committee: Vec<NodeId>,
        now: Timestamp,
        timeout: Duration,
        attempt_timeout: Duration,
    ) -> Result<Self, ProtocolError> {
        let (committee, threshold) =
            check_signing_parameters(committee, &message, &public_key_package)?;
        let mut members = BTreeMap::new();
        for id in committee.identifiers() {
            if let Some(node) = committee.node(&id) {
                members.insert(
                    id,
                    Member {
                        node: node.clone(),
                        state: MemberState::Asked,
                        used: Vec::new(),
                        answered: Vec::new(),
                    },
                );
            }
        }
        let mut coordinator = RoastCoordinator {
            request,
            key_id,
            epoch,
            message,
            client,
            public_key_package,
            committee,
            threshold,
            members,
            ready: VecDeque::new(),
            attempts: Vec::new(),
            refused: BTreeMap::new(),
            unauthorized: BTreeSet::new(),
            culprits: BTreeMap::new(),
            disputed: BTreeSet::new(),
            stalled: BTreeSet::new(),
            attempt_timeout,
            deadline: now.after(timeout),
            finished: false,
            outputs: VecDeque::new(),
        };
        for node in coordinator.committee.members().to_vec() {
            coordinator.ask(node);
        }
        Ok(coordinator)
    }

    /// The request's session id (carried by every message of the request).
    pub fn session(&self) -> SessionId {
        self.request
    }

    /// The ids of the attempts started so far, in order: `H(request id, attempt number)`.
    pub fn attempt_ids(&self) -> Vec<SessionId> {
        self.attempts.iter().map(|a| a.id).collect()
    }

    /// Members proven to have sent a bad share so far, sorted.
    pub fn culprits(&self) -> Vec<NodeId> {
        self.culprits.keys().cloned().collect()
    }

    /// Members that let an attempt's deadline pass without answering, sorted.
    pub fn stalled(&self) -> Vec<NodeId> {
        self.stalled.iter().cloned().collect()
    }

    /// The id of attempt number `attempt` of `request`.
    pub fn attempt_id(request: &SessionId, attempt: u64) -> SessionId {
        let mut t = Transcript::new("sign/roast/attempt");
        t.put(&request.0).put_u64(attempt);
        SessionId(t.finish().0)
    }

    fn ask(&mut self, to: NodeId) {
        self.outputs.push_back(Output::Send {
            to,
            message: Message::SignRequest(SignRequest {
                session: self.request,
                key_id: self.key_id.clone(),
                epoch: self.epoch,
                message: self.message.clone(),
                client: self.client.clone(),
            }),
        });
    }

    fn fail(&mut self, error: ProtocolError) {
        self.finished = true;
        self.outputs.push_back(Output::Event(Event::Failed(error)));
    }

    fn check_key(&self, key_id: &KeyId, epoch: Epoch) -> Result<(), Refusal> {
        check_key(&self.key_id, self.epoch, key_id, epoch)
    }

    fn handle_commitment(
        &mut self,
        from: &NodeId,
        id: Identifier<S>,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        let member = self
            .members
            .get_mut(&id)
            .ok_or_else(|| Refusal::NotInCommittee(from.clone()))?;
        if matches!(member.state, MemberState::Excluded) {
            return Err(Refusal::Unexpected(MessageKind::SignCommitment).into());
        }
        if bytes.len() > MAX_COMMITMENT_LEN {
            return Err(Refusal::Limit(format!(
                "commitment of {} bytes exceeds {MAX_COMMITMENT_LEN}",
                bytes.len()
            ))
            .into());
        }
        let commitment = SigningCommitments::<S>::deserialize(bytes)
            .map_err(|e| Refusal::Malformed(format!("commitment: {e}")))?;
        if member.used.contains(&commitment) {
            return Ok(()); // a late copy of a commitment already used
        }
        match &mut member.state {
            MemberState::Asked => {
                member.state = MemberState::Ready(commitment);
                self.ready.push_back(id);
                self.start_attempts(now);
                Ok(())
            }
            MemberState::Ready(held)
            | MemberState::Signing {
                next: Some(held), ..
            } => {
                if *held == commitment {
                    Ok(())
                } else {
                    Err(Refusal::Malformed(format!(
                        "{} sent a second commitment while one is unused",
                        member.node
                    ))
                    .into())
                }
            }
            MemberState::Signing { next, .. } => {
                // Its next commitment overtook its share: keep it for when the share arrives.
                *next = Some(commitment);
                Ok(())
            }
            MemberState::Excluded => Err(Refusal::Unexpected(MessageKind::SignCommitment).into()),
        }
    }

    /// Starts attempts while `t` members are ready.
    fn start_attempts(&mut self, now: Timestamp) {
        while !self.finished && self.ready.len() >= self.threshold {
            self.start_attempt(now);
        }
    }

    fn start_attempt(&mut self, now: Timestamp) {
        let number = self.attempts.len();
        let mut chosen = BTreeMap::new();
        while chosen.len() < self.threshold {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            if let MemberState::Ready(commitment) = member.state {
                member.used.push(commitment);
                member.state = MemberState::Signing {
                    attempt: number,
                    next: None,
                };
                chosen.insert(id, commitment);
            }
        }
        let package = SigningPackage::new(chosen, &self.message);
        let bytes = match package.serialize() {
            Ok(b) => b,
            Err(e) => return self.fail(ProtocolError::Frost(e.to_string())),
        };
        let signers: BTreeSet<_> = package.signing_commitments().keys().copied().collect();
        for id in &signers {
            if let Some(to) = self.committee.node(id) {
                self.outputs.push_back(Output::Send {
                    to: to.clone(),
                    message: Message::SignPackage(SignPackage {
                        session: self.request,
                        key_id: self.key_id.clone(),
                        epoch: self.epoch,
                        package: bytes.clone(),
                    }),
                });
            }
        }
        self.attempts.push(Attempt {
            id: Self::attempt_id(&self.request, number as u64),
            package,
            digest: package_digest(&bytes),
            signers,
            shares: BTreeMap::new(),
            deadline: now.after(self.attempt_timeout),
            stalled: false,
        });
    }

    fn handle_share(
        &mut self,
        from: &NodeId,
        id: Identifier<S>,
        digest: Digest,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        let member = self
            .members
            .get(&id)
            .ok_or_else(|| Refusal::NotInCommittee(from.clone()))?;
        if member.answered.contains(&digest) {
            return Ok(()); // a copy of a share already verified
        }
        let MemberState::Signing { attempt, .. } = member.state else {
            return Err(Refusal::Unexpected(MessageKind::SignShare).into());
        };
        if bytes.len() > MAX_SHARE_LEN {
            return Err(Refusal::Limit(format!(
                "signature share of {} bytes exceeds {MAX_SHARE_LEN}",
                bytes.len()
            ))
            .into());
        }
        let Some(current) = self.attempts.get(attempt) else {
            return Err(Refusal::Unexpected(MessageKind::SignShare).into());
        };
        if current.digest != digest {
            // A share on a package this member was not sent: it lies, or its package was
            // altered on the way. Not proof against it, but its share is useless and it must
            // not spoil attempt after attempt: out, as disputed.
            self.exclude(id);
            self.disputed.insert(from.clone());
            self.check_enough();
            return Ok(());
        }
        let share = match SignatureShare::<S>::deserialize(bytes) {
            Ok(share) => share,
            Err(e) => {
                self.convict(id, format!("unparsable signature share: {e}"));
                return Ok(());
            }
        };
        let Some(verifying_share) = self.public_key_package.verifying_shares().get(&id) else {
            return Err(Refusal::Unexpected(MessageKind::SignShare).into());
        };
        if verify_signature_share(
            id,
            verifying_share,
            &share,
            &current.package,
            self.public_key_package.verifying_key(),
        )
        .is_err()
        {
            self.convict(id, "invalid signature share".into());
            return Ok(());
        }
        let complete = match self.attempts.get_mut(attempt) {
            Some(a) => {
                a.shares.insert(id, share);
                a.shares.len() == a.signers.len()
            }
            None => false,
        };
        if complete {
            self.aggregate(attempt);
            return Ok(());
        }
        // Ready again once it holds a fresh commitment.
        let Some(member) = self.members.get_mut(&id) else {
            return Ok(());
        };
        member.answered.push(digest);
        let next = match &mut member.state {
            MemberState::Signing { next, .. } => next.take(),
            _ => None,
        };
        match next {
            Some(commitment) => {
                member.state = MemberState::Ready(commitment);
                self.ready.push_back(id);
                self.start_attempts(now);
            }
            None => {
                member.state = MemberState::Asked;
                self.ask(from.clone());
            }
        }
        Ok(())
    }

    fn aggregate(&mut self, attempt: usize) {
        let Some(a) = self.attempts.get(attempt) else {
            return;
        };
        let result =
            aggregate(&a.package, &a.shares, &self.public_key_package).and_then(|signature| {
                self.public_key_package
                    .verifying_key()
                    .verify(&self.message, &signature)
                    .map(|()| signature)
            });
        match result {
            Ok(signature) => {
                let mut signers: Vec<NodeId> = a
                    .signers
                    .iter()
                    .filter_map(|id| self.committee.node(id).cloned())
                    .collect();
                signers.sort();
                self.finished = true;
                self.outputs.push_back(Output::Event(Event::SignatureReady {
                    signature,
                    signers,
                    culprits: self.culprits(),
                }));
            }
            // Every share verified, so this is a local fault, not any signer's.
            Err(e) => self.fail(ProtocolError::Frost(e.to_string())),
        }
    }

    /// Takes a member out for good; an attempt it was in can no longer complete.
    fn exclude(&mut self, id: Identifier<S>) {
        if let Some(member) = self.members.get_mut(&id) {
            member.state = MemberState::Excluded;
        }
        self.ready.retain(|r| *r != id);
    }

    fn convict(&mut self, id: Identifier<S>, reason: String) {
        if let Some(node) = self.committee.node(&id).cloned() {
            self.culprits.insert(node, reason);
        }
        self.exclude(id);
        self.check_enough();
    }

    fn handle_refusal(
        &mut self,
        from: &NodeId,
        id: Identifier<S>,
        reason: String,
        unauthorized: bool,
    ) {
        let excluded = self
            .members
            .get(&id)
            .is_none_or(|m| matches!(m.state, MemberState::Excluded));
        if excluded {
            return;
        }
        self.refused.insert(from.clone(), reason);
        if unauthorized {
            self.unauthorized.insert(from.clone());
        }
        self.exclude(id);
        self.check_enough();
    }

    /// Fails as soon as fewer than `t` members are left that could still sign.
    fn check_enough(&mut self) {
        if self.finished {
            return;
        }
        // A member still counts while it may sign, or while a valid share of its own sits in an
        // attempt (a member that refuses, or cannot be reached, after giving its share can
        // still complete that attempt).
        let possible = self
            .members
            .iter()
            .filter(|(id, m)| {
                !matches!(m.state, MemberState::Excluded)
                    || self.attempts.iter().any(|a| a.shares.contains_key(id))
            })
            .count();
        if possible >= self.threshold {
            return;
        }
        if self.committee.len() - self.unauthorized.len() < self.threshold {
            // The client's authorization alone makes a signature impossible.
            let reasons: Vec<String> = self
                .unauthorized
                .iter()
                .filter_map(|n| self.refused.get(n).map(|r| format!("{n}: {r}")))
                .collect();
            return self.fail(ProtocolError::ClientNotAuthorized {
                refused: self.unauthorized.iter().cloned().collect(),
                reason: reasons.join("; "),
            });
        }
        let reasons: Vec<String> = self
            .refused
            .iter()
            .chain(&self.culprits)
            .map(|(n, r)| format!("{n}: {r}"))
            .chain(
                self.disputed
                    .iter()
                    .map(|n| format!("{n}: share on a package it was not sent")),
            )
            .collect();
        self.fail(ProtocolError::TooFewSigners {
            threshold: self.threshold,
            refused: self.refused.keys().cloned().collect(),
            culprits: self.culprits(),
            disputed: self.disputed.iter().cloned().collect(),
            reason: format!(
                "{possible} of {} left after {} attempts; {}",
                self.committee.len(),
                self.attempts.len(),
                reasons.join("; ")
            ),
        });
    }

    /// Members that owe an answer: asked and silent, or in an attempt without a share.
    fn silent(&self) -> Vec<NodeId> {
        let mut silent: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| matches!(m.state, MemberState::Asked | MemberState::Signing { .. }))
            .map(|m| m.node.clone())
            .collect();
        silent.sort();
        silent
    }
}

impl<S: Suite> Session<S> for RoastCoordinator<S> {
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        _rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        if self.finished {
            return Err(Refusal::Finished.into());
        }
        let id = self
            .committee
            .identifier(from)
            .ok_or_else(|| Refusal::NotInCommittee(from.clone()))?;
        if message.session() != self.request {
            return Err(Refusal::WrongSession.into());
        }
        match message {
            Message::SignCommitment(m) => {
                self.check_key(&m.key_id, m.epoch)?;
                self.handle_commitment(from, id, &m.commitment, now)
            }
            Message::SignShare(m) => {
                self.check_key(&m.key_id, m.epoch)?;
                self.handle_share(from, id, m.package, &m.share, now)
            }
            Message::SignRefusal(m) => {
                self.handle_refusal(from, id, m.reason, m.unauthorized);
                Ok(())
            }
            other => Err(Refusal::Unexpected(other.kind()).into()),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.finished {
            return;
        }
        if now >= self.deadline {
            let error = ProtocolError::Timeout {
                phase: "ROAST signing",
                silent: self.silent(),
            };
            return self.fail(error);
        }
        for (number, attempt) in self.attempts.iter_mut().enumerate() {
            if attempt.stalled || now < attempt.deadline {
                continue;
            }
            attempt.stalled = true;
            for id in &attempt.signers {
                let owes = self.members.get(id).is_some_and(
                    |m| matches!(m.state, MemberState::Signing { attempt: a, .. } if a == number),
                );
                if let (true, Some(node)) = (owes, self.committee.node(id)) {
                    self.stalled.insert(node.clone());
                }
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        if self.finished {
            return None;
        }
        self.attempts
            .iter()
            .filter(|a| !a.stalled)
            .map(|a| a.deadline)
            .chain(std::iter::once(self.deadline))
            .min()
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}
