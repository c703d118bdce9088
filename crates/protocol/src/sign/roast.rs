use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::{verify_signature_share, CheaterDetection, Element, Group, Identifier};
use permafrost_wire::{
    ClientAuthorization, Digest, Epoch, KeyId, Message, MessageKind, NodeId, SessionId,
    SignPackage, SignRefusal, SignRequest, SignShare, SignWithCommitment,
};
use rand_core::CryptoRngCore;

use super::{
    check_key, check_signing_parameters, package_digest, Aggregated, Aggregation,
    EncodedCommitment, PooledCommitment, WirePackage, MAX_COMMITMENT_LEN,
};
use crate::derive::KeyAtPath;
use crate::hash::Transcript;
use crate::{Committee, Event, Output, ProtocolError, Refusal, Session, Suite, Timestamp};

/// Longest serialized signature share accepted before it is parsed (one scalar).
const MAX_SHARE_LEN: usize = 128;

/// Longest group commitment accepted with a share (one point).
const MAX_GROUP_COMMITMENT_LEN: usize = 64;

/// The coordinator's side of one signature with ROAST (Ruffing et al., CCS 2022): robust
/// asynchronous retries over FROST, asking no more signers than it needs.
///
/// **Who is asked.** The first `t` members of the committee, in the order the caller gives it
/// (its preference), are asked for a commitment. Another member is asked only when fewer than
/// `t` could still complete a signature: one refused, cheated, could not be reached, let an
/// attempt's deadline pass, or left a request for a commitment unanswered for the attempt
/// timeout. So in the common case exactly `t` members are asked, and no commitment or share
/// arrives that nobody needs.
///
/// **Attempts.** Members holding one fresh commitment are *ready*; as soon as `t` are ready, an
/// attempt starts with those `t` (a signing package to each). Shares are collected and
/// aggregated when all `t` are in, by the driver, off its loop ([`Output::Aggregate`]); frost
/// verifies the aggregate signature and, only when it fails, each share, naming every member
/// whose share is invalid (a *culprit*, out for good). A share that cannot be parsed makes its
/// sender a culprit at once. An attempt that can no longer complete (one of its signers
/// refused, cheated or stalled) is *doomed*: the shares it holds are verified one by one (a
/// cheater there is named, so it cannot spoil a second attempt), and its members with a valid
/// share are asked for a fresh commitment and become ready again. So every
/// failed attempt holds a member that is silent, refused or cheated, each such member spoils at
/// most one attempt, and with at most `n − t` of them a signature comes out after at most
/// `n − t + 1` attempts.
///
/// **One round.** The caller may hand over commitments the signers made ahead of time
/// ([`PooledCommitment`]): a member holding one is ready at once, without being asked, and
/// its attempt sends it the request and the package in one [`SignWithCommitment`]. With `t` of
/// them the first attempt starts at once and the request takes one round trip. A member that
/// no longer holds the pooled nonce refuses with `commitment_unknown` (it restarted): its
/// attempt is given up and it is asked for a fresh commitment (a member is sent at most one
/// pooled commitment per request, so this happens at most once per member; the same word
/// again, once it moved on, is ignored); any other refusal, a silence or a bad share is dealt
/// with as in two rounds.
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
    /// The child key signed for (at `m`: the key itself) and its public key package.
    key: KeyAtPath<S>,
    committee: Committee<S>,
    threshold: usize,
    /// The members in the order they are asked.
    preference: Vec<Identifier<S>>,
    members: BTreeMap<Identifier<S>, Member<S>>,
    /// Ready members, in the order they became ready.
    ready: VecDeque<Identifier<S>>,
    attempts: Vec<Attempt<S>>,
    refused: BTreeMap<NodeId, String>,
    /// Members that refused the client's authorization.
    unauthorized: BTreeSet<NodeId>,
    culprits: BTreeMap<NodeId, String>,
    disputed: BTreeSet<NodeId>,
    /// Members that let an attempt's deadline, or a request for a commitment, pass without
    /// answering.
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
    /// Package digests of the attempts this member gave a share in.
    answered: Vec<Digest>,
    /// The pooled commitment its `Ready` commitment is (batch, index), until it is sent.
    pooled: Option<(SessionId, u16)>,
    /// The attempt it was sent its pooled commitment in (its first; at most one per request).
    pooled_in: Option<usize>,
}

enum MemberState<S: Suite> {
    /// Not asked yet: held in reserve until fewer than `t` others can complete a signature.
    Reserve,
    /// Asked for a commitment, none has arrived; `late` once the attempt timeout passed.
    Asked { late_at: Timestamp, late: bool },
    /// Holds one fresh commitment (and is in the ready queue).
    Ready(EncodedCommitment<S>),
    /// In attempt `attempt`, its share awaited.
    Signing { attempt: usize },
    /// Gave its share in attempt `attempt`, which has not completed yet.
    Answered { attempt: usize },
    /// Refused, proven to cheat, or disputed: never asked again in this request.
    Excluded,
}

struct Attempt<S: Suite> {
    id: SessionId,
    package: WirePackage<S>,
    digest: Digest,
    signers: BTreeSet<Identifier<S>>,
    /// Shares received, verified only if the aggregate fails or the attempt is doomed.
    shares: BTreeMap<Identifier<S>, SignatureShare<S>>,
    /// The group commitment R each signer sent with its share, as sent.
    group_commitments: BTreeMap<Identifier<S>, Vec<u8>>,
    deadline: Timestamp,
    /// Its deadline has been dealt with.
    stalled: bool,
    /// It can no longer complete: one of its signers refused, cheated or stalled.
    doomed: bool,
    /// Its aggregation was handed to the driver and has not come back.
    aggregating: bool,
    /// Whether its package holds a point outside the prime-order subgroup, once a refusal made
    /// the coordinator check (see [`RoastCoordinator::convict_points_outside_the_group`]).
    outside_the_group: Option<bool>,
}

impl<S: Suite> RoastCoordinator<S> {
    /// Starts a ROAST request signing `message` with `key` (a child of key `key_id` at `epoch`,
    /// or the key itself at `m`), asking the first `t` members of `committee` (in the given order, then the others as needed) with the
    /// client's authorization `client` (which every signer checks). `request` must be fresh
    /// randomness; it is the session id of every message of the request. The request fails at
    /// `now + timeout`; an attempt's signers (or an asked member) that have not answered within
    /// `attempt_timeout` are reported as stalled and replaced. Members with a commitment in
    /// `pooled` are ready at once (one round); one that does not parse is ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request: SessionId,
        key_id: KeyId,
        epoch: Epoch,
        message: Vec<u8>,
        key: KeyAtPath<S>,
        client: Option<ClientAuthorization>,
        committee: Vec<NodeId>,
        pooled: BTreeMap<NodeId, PooledCommitment>,
        now: Timestamp,
        timeout: Duration,
        attempt_timeout: Duration,
    ) -> Result<Self, ProtocolError> {
        let order = committee.clone();
        let (committee, threshold) = check_signing_parameters(committee, &message, key.package())?;
        let mut members = BTreeMap::new();
        let mut preference = Vec::new();
        for node in &order {
            let Some(id) = committee.identifier(node) else {
                continue;
            };
            if members.contains_key(&id) {
                continue;
            }
            preference.push(id);
            members.insert(
                id,
                Member {
                    node: node.clone(),
                    state: MemberState::Reserve,
                    used: Vec::new(),
                    answered: Vec::new(),
                    pooled: None,
                    pooled_in: None,
                },
            );
        }
        let mut coordinator = RoastCoordinator {
            request,
            key_id,
            epoch,
            message,
            client,
            key,
            committee,
            threshold,
            preference,
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
        coordinator.take_pooled(pooled);
        coordinator.replenish(now);
        coordinator.start_attempts(now);
        Ok(coordinator)
    }

    /// Makes the members with a pooled commitment ready, in the order of preference, at most
    /// `t` of them (more would start several attempts at once).
    fn take_pooled(&mut self, mut pooled: BTreeMap<NodeId, PooledCommitment>) {
        for id in self.preference.clone() {
            if self.ready.len() >= self.threshold {
                break;
            }
            let Some(member) = self.members.get_mut(&id) else {
                continue;
            };
            let Some(p) = pooled.remove(&member.node) else {
                continue;
            };
            let Ok(commitment) = parse_commitment::<S>(&p.commitment) else {
                continue;
            };
            member.state = MemberState::Ready(commitment);
            member.pooled = Some((p.batch, p.index));
            self.ready.push_back(id);
        }
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

    /// Members that let an attempt's deadline, or a request for a commitment, pass without
    /// answering, sorted.
    pub fn stalled(&self) -> Vec<NodeId> {
        self.stalled.iter().cloned().collect()
    }

    /// Members ROAST went on without, sorted, each with why: it refused (its reason), let an
    /// attempt's deadline or a request for a commitment pass, or gave a share on a package it
    /// was not sent. Members in `signers` (a share of theirs made the signature) and culprits
    /// (named apart) are left out.
    pub fn passed_over(&self, signers: &[NodeId]) -> Vec<(NodeId, String)> {
        let mut named: BTreeMap<NodeId, String> = BTreeMap::new();
        for node in &self.stalled {
            named.insert(node.clone(), "did not answer in time".into());
        }
        for node in &self.disputed {
            named.insert(
                node.clone(),
                "gave a share on a package it was not sent".into(),
            );
        }
        for (node, reason) in &self.refused {
            named.insert(node.clone(), format!("refused: {reason}"));
        }
        named
            .into_iter()
            .filter(|(node, _)| !signers.contains(node) && !self.culprits.contains_key(node))
            .collect()
    }

    /// Members asked for a commitment so far (once or more), sorted.
    pub fn asked(&self) -> Vec<NodeId> {
        let mut asked: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| !matches!(m.state, MemberState::Reserve))
            .map(|m| m.node.clone())
            .collect();
        asked.sort();
        asked
    }

    /// The id of attempt number `attempt` of `request`.
    pub fn attempt_id(request: &SessionId, attempt: u64) -> SessionId {
        let mut t = Transcript::new("sign/roast/attempt");
        t.put(&request.0).put_u64(attempt);
        SessionId(t.finish().0)
    }

    /// Asks member `id` for a (fresh) commitment.
    fn ask(&mut self, id: Identifier<S>, now: Timestamp) {
        if self.finished {
            return;
        }
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        member.state = MemberState::Asked {
            late_at: now.after(self.attempt_timeout),
            late: false,
        };
        self.outputs.push_back(Output::Send {
            to: member.node.clone(),
            message: Message::SignRequest(SignRequest {
                session: self.request,
                key_id: self.key_id.clone(),
                epoch: self.epoch,
                message: self.message.clone(),
                path: self.key.path().clone(),
                client: self.client.clone(),
            }),
        });
    }

    /// Members that may still give a share without anyone else being asked: asked and not
    /// late, ready, or in (or answered in) an attempt that can still complete. A member sent
    /// a package holding another's point outside the group counts too until the attempt's
    /// deadline: its refusal, owed, makes it ready again ([`RoastCoordinator::excuse`]).
    fn prospective(&self) -> usize {
        self.members
            .values()
            .filter(|m| match m.state {
                MemberState::Asked { late, .. } => !late,
                MemberState::Ready(_) => true,
                MemberState::Signing { attempt } => self.attempts.get(attempt).is_some_and(|a| {
                    !a.doomed || (a.outside_the_group == Some(true) && !a.stalled)
                }),
                MemberState::Answered { attempt } => {
                    self.attempts.get(attempt).is_some_and(|a| !a.doomed)
                }
                MemberState::Reserve | MemberState::Excluded => false,
            })
            .count()
    }

    /// Asks members in reserve, in order of preference, until `t` may give a share (or none is
    /// left in reserve).
    fn replenish(&mut self, now: Timestamp) {
        if self.finished {
            return;
        }
        let mut missing = self.threshold.saturating_sub(self.prospective());
        let reserve: Vec<Identifier<S>> = self
            .preference
            .iter()
            .filter(|id| {
                self.members
                    .get(id)
                    .is_some_and(|m| matches!(m.state, MemberState::Reserve))
            })
            .copied()
            .collect();
        for id in reserve {
            if missing == 0 {
                break;
            }
            self.ask(id, now);
            missing -= 1;
        }
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
        if matches!(member.state, MemberState::Excluded | MemberState::Reserve) {
            return Err(Refusal::Unexpected(MessageKind::SignCommitment).into());
        }
        let commitment = parse_commitment::<S>(bytes)?;
        if member.used.contains(commitment.commitment()) {
            return Ok(()); // a late copy of a commitment already used
        }
        match &member.state {
            MemberState::Asked { .. } => {
                member.state = MemberState::Ready(commitment);
                self.ready.push_back(id);
                self.start_attempts(now);
                Ok(())
            }
            MemberState::Ready(held) if held.commitment() == commitment.commitment() => Ok(()),
            _ => Err(Refusal::Malformed(format!(
                "{} sent a commitment it was not asked for",
                member.node
            ))
            .into()),
        }
    }

    /// Starts attempts while `t` members are ready.
    fn start_attempts(&mut self, now: Timestamp) {
        // The queue may hold members excluded since they became ready: drop them first, so
        // that an attempt always gets t commitments.
        let members = &self.members;
        self.ready.retain(|id| {
            members
                .get(id)
                .is_some_and(|m| matches!(m.state, MemberState::Ready(_)))
        });
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
            if matches!(member.state, MemberState::Ready(_)) {
                let MemberState::Ready(commitment) =
                    std::mem::replace(&mut member.state, MemberState::Signing { attempt: number })
                else {
                    continue;
                };
                member.used.push(*commitment.commitment());
                chosen.insert(id, commitment);
            }
        }
        let (package, bytes) = WirePackage::write(chosen, &self.message);
        let signers = package.signers();
        for id in &signers {
            let Some(member) = self.members.get_mut(id) else {
                continue;
            };
            let message = match member.pooled.take() {
                // One round: the request and the package at once.
                Some((batch, index)) => {
                    member.pooled_in = Some(number);
                    Message::SignWithCommitment(SignWithCommitment {
                        session: self.request,
                        key_id: self.key_id.clone(),
                        epoch: self.epoch,
                        message: self.message.clone(),
                        path: self.key.path().clone(),
                        client: self.client.clone(),
                        batch,
                        index,
                        package: bytes.clone(),
                    })
                }
                None => Message::SignPackage(SignPackage {
                    session: self.request,
                    key_id: self.key_id.clone(),
                    epoch: self.epoch,
                    package: bytes.clone(),
                }),
            };
            self.outputs.push_back(Output::Send {
                to: member.node.clone(),
                message,
            });
        }
        self.attempts.push(Attempt {
            id: Self::attempt_id(&self.request, number as u64),
            package,
            digest: package_digest(&bytes),
            signers,
            shares: BTreeMap::new(),
            group_commitments: BTreeMap::new(),
            deadline: now.after(self.attempt_timeout),
            stalled: false,
            doomed: false,
            aggregating: false,
            outside_the_group: None,
        });
    }

    fn handle_share(
        &mut self,
        from: &NodeId,
        id: Identifier<S>,
        message: SignShare,
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        let member = self
            .members
            .get(&id)
            .ok_or_else(|| Refusal::NotInCommittee(from.clone()))?;
        let digest = message.package;
        if member.answered.contains(&digest) {
            return Ok(()); // a copy of a share already received
        }
        let MemberState::Signing { attempt } = member.state else {
            return Err(Refusal::Unexpected(MessageKind::SignShare).into());
        };
        if message.share.len() > MAX_SHARE_LEN {
            return Err(Refusal::Limit(format!(
                "signature share of {} bytes exceeds {MAX_SHARE_LEN}",
                message.share.len()
            ))
            .into());
        }
        if message.group_commitment.len() > MAX_GROUP_COMMITMENT_LEN {
            return Err(Refusal::Limit(format!(
                "group commitment of {} bytes exceeds {MAX_GROUP_COMMITMENT_LEN}",
                message.group_commitment.len()
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
            self.disputed.insert(from.clone());
            self.exclude(id, now);
            return Ok(());
        }
        let share = match SignatureShare::<S>::deserialize(&message.share) {
            Ok(share) => share,
            Err(e) => {
                self.convict(id, format!("unparsable signature share: {e}"), now);
                return Ok(());
            }
        };
        if let Some(member) = self.members.get_mut(&id) {
            member.answered.push(digest);
            member.state = MemberState::Answered { attempt };
        }
        let Some(a) = self.attempts.get_mut(attempt) else {
            return Ok(());
        };
        a.shares.insert(id, share);
        a.group_commitments.insert(id, message.group_commitment);
        if a.shares.len() == a.signers.len() {
            // Complete (even if it was given up for a late share: the signature still counts).
            self.aggregate(attempt);
        } else if a.doomed {
            // Its attempt was given up: judge the share alone, and make its sender ready for
            // the next attempt if it is valid.
            if self.judge_share(attempt, id, now) {
                self.ask(id, now);
            }
            self.replenish(now);
            self.check_enough();
        }
        Ok(())
    }

    /// Verifies the share of `id` in attempt `attempt` alone; an invalid one convicts its
    /// sender (also one already out for a refusal). Whether it is valid.
    fn judge_share(&mut self, attempt: usize, id: Identifier<S>, now: Timestamp) -> bool {
        let Some(a) = self.attempts.get(attempt) else {
            return false;
        };
        let (Some(share), Some(verifying_share)) = (
            a.shares.get(&id),
            self.key.package().verifying_shares().get(&id),
        ) else {
            return false;
        };
        let valid = verify_signature_share(
            id,
            verifying_share,
            share,
            a.package.package(),
            self.key.package().verifying_key(),
        )
        .is_ok();
        if !valid {
            self.convict(id, "invalid signature share".into(), now);
        }
        valid
    }

    /// All shares of `attempt` are in: hands their aggregation to the driver
    /// ([`Output::Aggregate`]; frost verifies the signature, and only if it is invalid, each
    /// share). Its result comes back through [`Self::aggregated`].
    fn aggregate(&mut self, attempt: usize) {
        let Some(a) = self.attempts.get_mut(attempt) else {
            return;
        };
        a.aggregating = true;
        let a = &*a;
        self.outputs.push_back(Output::Aggregate(Aggregation::new(
            attempt,
            self.key_id.clone(),
            a.package.clone(),
            a.shares.clone(),
            self.key.package().clone(),
            CheaterDetection::AllCheaters,
            a.claimed_group_commitment(),
        )));
    }

    /// The aggregation of an attempt ended: a verified signature ends the request; invalid
    /// shares convict their senders and doom the attempt. A result for a request that ended
    /// meanwhile (its deadline, another attempt's signature) changes nothing.
    fn aggregated(&mut self, done: Aggregated<S>, now: Timestamp) {
        if self.finished {
            return;
        }
        let attempt = done.attempt;
        let Some(a) = self.attempts.get_mut(attempt) else {
            return;
        };
        a.aggregating = false;
        let a = &*a;
        match done.result {
            Ok(signature) => {
                let mut signers: Vec<NodeId> = a
                    .signers
                    .iter()
                    .filter_map(|id| self.committee.node(id).cloned())
                    .collect();
                signers.sort();
                self.finished = true;
                let passed_over = self.passed_over(&signers);
                self.outputs.push_back(Output::Event(Event::SignatureReady {
                    signature,
                    signers,
                    culprits: self.culprits(),
                    passed_over,
                }));
            }
            Err(frost_core::Error::InvalidSignatureShare { culprits }) if !culprits.is_empty() => {
                // Every other share was verified and is valid: those members are ready again
                // once they hold a fresh commitment.
                let honest: Vec<Identifier<S>> = a
                    .signers
                    .iter()
                    .filter(|id| !culprits.contains(id))
                    .copied()
                    .collect();
                if let Some(a) = self.attempts.get_mut(attempt) {
                    a.doomed = true;
                }
                for id in &culprits {
                    self.convict(*id, "invalid signature share".into(), now);
                }
                for id in honest {
                    let answered_here = self.members.get(&id).is_some_and(
                        |m| matches!(m.state, MemberState::Answered { attempt: x } if x == attempt),
                    );
                    if answered_here {
                        self.ask(id, now);
                    }
                }
                self.replenish(now);
                self.check_enough();
            }
            // Every share is valid, yet no signature: a local fault, not any signer's.
            Err(e) => self.fail(ProtocolError::Frost(e.to_string())),
        }
    }

    /// `attempt` is given up (one of its signers is out or stalled): its shares are judged one
    /// by one — an invalid one convicts its sender, whatever its state — and members with a
    /// valid one that wait on this attempt are asked for a fresh commitment. (If the missing
    /// shares still arrive, the attempt completes all the same.)
    fn doom(&mut self, attempt: usize, now: Timestamp) {
        let Some(a) = self.attempts.get_mut(attempt) else {
            return;
        };
        if a.doomed {
            return;
        }
        a.doomed = true;
        let held: Vec<Identifier<S>> = a.shares.keys().copied().collect();
        for id in held {
            let convicted = self
                .committee
                .node(&id)
                .is_some_and(|node| self.culprits.contains_key(node));
            if convicted {
                continue;
            }
            let answered_here = self.members.get(&id).is_some_and(
                |m| matches!(m.state, MemberState::Answered { attempt: x } if x == attempt),
            );
            if self.judge_share(attempt, id, now) && answered_here {
                self.ask(id, now);
            }
        }
    }

    /// Takes a member out for good; an attempt it was signing in can no longer complete.
    fn exclude(&mut self, id: Identifier<S>, now: Timestamp) {
        let signing_in = match self.members.get(&id).map(|m| &m.state) {
            Some(MemberState::Signing { attempt }) => Some(*attempt),
            _ => None,
        };
        if let Some(member) = self.members.get_mut(&id) {
            member.state = MemberState::Excluded;
        }
        self.ready.retain(|r| *r != id);
        if let Some(attempt) = signing_in {
            self.doom(attempt, now);
        }
        self.replenish(now);
        self.check_enough();
    }

    /// Names `id` a culprit (also when it is already out, for a refusal) and takes it out.
    fn convict(&mut self, id: Identifier<S>, reason: String, now: Timestamp) {
        if let Some(node) = self.committee.node(&id).cloned() {
            self.culprits.insert(node, reason);
        }
        self.exclude(id, now);
    }

    /// Checks, once per attempt, that every point of `attempt`'s package lies in the
    /// prime-order subgroup (commitments are taken unchecked, [`parse_commitment`]); convicts
    /// each member whose commitment has a point outside it and gives the attempt up. Whether
    /// there was one.
    fn convict_points_outside_the_group(&mut self, attempt: usize, now: Timestamp) -> bool {
        let Some(a) = self.attempts.get_mut(attempt) else {
            return false;
        };
        if let Some(found) = a.outside_the_group {
            return found;
        }
        let outside: Vec<Identifier<S>> = a
            .package
            .package()
            .signing_commitments()
            .iter()
            .filter(|(_, c)| super::package::outside_prime_order(c))
            .map(|(id, _)| *id)
            .collect();
        a.outside_the_group = Some(!outside.is_empty());
        if outside.is_empty() {
            return false;
        }
        for id in outside {
            self.convict(id, "commitment outside the prime-order group".into(), now);
        }
        self.doom(attempt, now);
        true
    }

    /// Member `id` refused `attempt` for a reason not its own (another member's commitment):
    /// it is ready again. Its nonce is still live in two rounds (a refused package consumes
    /// none), so its commitment goes into the next attempt; a pooled one is gone with the
    /// refused message, so it is asked for a fresh one.
    fn excuse(&mut self, id: Identifier<S>, attempt: usize, now: Timestamp) {
        let commitment = self
            .attempts
            .get(attempt)
            .and_then(|a| a.package.encoded_commitment(&id));
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if !matches!(member.state, MemberState::Signing { attempt: a } if a == attempt) {
            return;
        }
        match commitment {
            Some(commitment) if member.pooled_in != Some(attempt) => {
                member.state = MemberState::Ready(commitment);
                self.ready.push_back(id);
                self.start_attempts(now);
            }
            _ => self.ask(id, now),
        }
        self.replenish(now);
        self.check_enough();
    }

    fn handle_refusal(
        &mut self,
        from: &NodeId,
        id: Identifier<S>,
        refusal: SignRefusal,
        now: Timestamp,
    ) {
        let SignRefusal {
            reason,
            unauthorized,
            commitment_unknown,
            ..
        } = refusal;
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if matches!(member.state, MemberState::Excluded) {
            return;
        }
        if let (true, Some(pooled_in)) = (commitment_unknown, member.pooled_in) {
            match member.state {
                // Its pooled nonce is gone (it restarted): that attempt cannot complete, but a
                // fresh commitment may.
                MemberState::Signing { attempt } if attempt == pooled_in => {
                    self.ask(id, now);
                    self.doom(attempt, now);
                    self.replenish(now);
                    self.check_enough();
                }
                // A late or duplicated word about the one pooled attempt, which the member has
                // moved on from (it answered, or was asked again): nothing to do.
                _ => {}
            }
            return;
        }
        if let MemberState::Signing { attempt } = member.state {
            if self.convict_points_outside_the_group(attempt, now) {
                // The package held another member's point outside the group: a refusal every
                // honest signer owes it, so the refuser stays in.
                self.excuse(id, attempt, now);
                return;
            }
        }
        self.refused.insert(from.clone(), reason);
        if unauthorized {
            self.unauthorized.insert(from.clone());
        }
        // A member that refuses after giving its share still completes that attempt: the share
        // stays in it.
        self.exclude(id, now);
    }

    /// Fails as soon as fewer than `t` members are left that could still sign.
    fn check_enough(&mut self) {
        if self.finished {
            return;
        }
        // A member still counts while it may sign, or while a share of its own sits in an
        // attempt that may complete (a member that refuses, or cannot be reached, after giving
        // its share can still complete that attempt).
        let possible =
            self.members
                .iter()
                .filter(|(id, m)| {
                    !matches!(m.state, MemberState::Excluded)
                        || self.attempts.iter().enumerate().any(|(number, a)| {
                            a.shares.contains_key(id) && self.may_complete(number)
                        })
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

    /// Whether attempt `number` can still complete: each of its signers has given its share or
    /// still owes it (is *Signing* in it). A given-up attempt can, if its late shares arrive.
    fn may_complete(&self, number: usize) -> bool {
        self.attempts.get(number).is_some_and(|a| {
            a.signers.iter().all(|id| {
                a.shares.contains_key(id)
                    || self.members.get(id).is_some_and(
                        |m| matches!(m.state, MemberState::Signing { attempt } if attempt == number),
                    )
            })
        })
    }

    /// Members that owe an answer: asked and silent, or in an attempt without a share.
    fn silent(&self) -> Vec<NodeId> {
        let mut silent: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| {
                matches!(
                    m.state,
                    MemberState::Asked { .. } | MemberState::Signing { .. }
                )
            })
            .map(|m| m.node.clone())
            .collect();
        silent.sort();
        silent
    }
}

impl<S: Suite> Attempt<S> {
    /// The group commitment R its signers sent with their shares, if they all sent the same
    /// one and it decodes: the aggregate signature is tried with it first
    /// ([`super::round2::aggregate`]). A signer that sent another R makes the coordinator
    /// compute R, as it would without one; it is not named (the signature still comes out, and
    /// nothing is judged against a claimed R).
    fn claimed_group_commitment(&self) -> Option<Element<S>> {
        let mut claims = self.group_commitments.values();
        let first = claims.next()?;
        if claims.any(|claim| claim != first) {
            return None;
        }
        let bytes = <S::Group as Group>::Serialization::try_from(first.as_slice()).ok()?;
        S::decode_public_element_of_any_order(&bytes).ok()
    }
}

/// A member's commitment, refused before it is parsed if it is longer than
/// [`MAX_COMMITMENT_LEN`]. Its points are not checked to lie in the prime-order subgroup here:
/// every signer checks every point of a package and refuses one outside it, and that refusal
/// makes the coordinator check and name the member
/// ([`RoastCoordinator::convict_points_outside_the_group`]).
fn parse_commitment<S: Suite>(bytes: &[u8]) -> Result<EncodedCommitment<S>, Refusal> {
    if bytes.len() > MAX_COMMITMENT_LEN {
        return Err(Refusal::Limit(format!(
            "commitment of {} bytes exceeds {MAX_COMMITMENT_LEN}",
            bytes.len()
        )));
    }
    EncodedCommitment::parse_of_any_order(bytes)
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
                self.handle_share(from, id, m, now)
            }
            Message::SignRefusal(m) => {
                self.handle_refusal(from, id, m, now);
                Ok(())
            }
            other => Err(Refusal::Unexpected(other.kind()).into()),
        }
    }

    fn handle_aggregated(&mut self, done: Aggregated<S>, now: Timestamp) {
        self.aggregated(done, now);
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.finished {
            return;
        }
        if now >= self.deadline {
            // An aggregation that has not come back is the coordinator's own delay.
            let phase = if self.attempts.iter().any(|a| a.aggregating) {
                "ROAST signing, the coordinator's own aggregation unfinished"
            } else {
                "ROAST signing"
            };
            let error = ProtocolError::Timeout {
                phase,
                silent: self.silent(),
            };
            return self.fail(error);
        }
        let mut doomed = Vec::new();
        for (number, attempt) in self.attempts.iter_mut().enumerate() {
            if attempt.stalled || now < attempt.deadline {
                continue;
            }
            attempt.stalled = true;
            for id in &attempt.signers {
                let owes = self.members.get(id).is_some_and(
                    |m| matches!(m.state, MemberState::Signing { attempt: a } if a == number),
                );
                if let (true, Some(node)) = (owes, self.committee.node(id)) {
                    self.stalled.insert(node.clone());
                    doomed.push(number);
                }
            }
        }
        for member in self.members.values_mut() {
            if let MemberState::Asked { late_at, late } = &mut member.state {
                if !*late && now >= *late_at {
                    *late = true;
                    self.stalled.insert(member.node.clone());
                }
            }
        }
        for attempt in doomed {
            self.doom(attempt, now);
        }
        self.replenish(now);
        self.check_enough();
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        if self.finished {
            return None;
        }
        let asked = self.members.values().filter_map(|m| match m.state {
            MemberState::Asked {
                late_at,
                late: false,
            } => Some(late_at),
            _ => None,
        });
        self.attempts
            .iter()
            .filter(|a| !a.stalled)
            .map(|a| a.deadline)
            .chain(asked)
            .chain(std::iter::once(self.deadline))
            .min()
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}
