use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use frost_core::keys::{SigningShare, VerifiableSecretSharingCommitment};
use frost_core::Identifier;
use permafrost_wire::{
    Epoch, Message, MessageKind, NodeId, ReshareCommit, ReshareConfirm, ReshareDealerSet,
    ReshareDealing, ReshareDealingSet, ReshareOpen, ReshareReport, ReshareShare, SecretBytes,
    SessionId, SessionStatus,
};
use rand_core::CryptoRngCore;

use super::proposal::{
    check_open, dealer_set, package_digest, report_payload, test_message, test_session_id,
    verify_certificate, Checked, CONFIRM, DEALING, REPORT, SHARE,
};
use super::{check_dealing, combine, deal};
use crate::identity::statement;
use crate::sign::Signer;
use crate::{
    Event, IdentityVerifier, KeyShare, NodeIdentity, Output, ProtocolError, Refusal, Session,
    Suite, Timestamp,
};

/// How long a reshare may take before it fails naming the silent parties.
pub const DEFAULT_RESHARE_TIMEOUT: Duration = Duration::from_secs(60);

/// One node's side of a reshare: dealer (if it holds an old share and is in the dealer set),
/// new member (if it is in the new committee), or both; an old member outside both only waits
/// for the outcome to retire its share.
pub struct ResharePeer<S: Suite> {
    open: ReshareOpen,
    checked: Checked<S>,
    coordinator: NodeId,
    identity: Arc<dyn IdentityVerifierAndKey>,
    old_share: Option<KeyShare<S>>,
    member: Option<Member<S>>,
    finished: bool,
    deadline: Timestamp,
    /// Wait before the next status question, once waiting for the outcome.
    status_retry: Duration,
    outputs: VecDeque<Output<S>>,
}

/// The identity key and the verifier, together (a reshare peer needs both).
pub trait IdentityVerifierAndKey: Send + Sync {
    /// This node's key.
    fn key(&self) -> &dyn NodeIdentity;
    /// The verifier of other nodes' signatures.
    fn verifier(&self) -> &dyn IdentityVerifier;
}

/// A node identity and a verifier.
pub struct Identities {
    /// This node's key.
    pub key: Arc<dyn NodeIdentity>,
    /// The verifier.
    pub verifier: Arc<dyn IdentityVerifier>,
}

impl IdentityVerifierAndKey for Identities {
    fn key(&self) -> &dyn NodeIdentity {
        self.key.as_ref()
    }
    fn verifier(&self) -> &dyn IdentityVerifier {
        self.verifier.as_ref()
    }
}

struct Member<S: Suite> {
    me: Identifier<S>,
    shares: BTreeMap<NodeId, ReshareShare>,
    dealings: Option<BTreeMap<NodeId, VerifiableSecretSharingCommitment<S>>>,
    reported: bool,
    /// From then on the member reports without waiting for the shares still missing: their
    /// dealers are not accepted, so the coordinator leaves them out and names them, instead of
    /// naming this member as silent when the session times out. Half the session's time,
    /// after the coordinator's relay deadline (a third) and a dealer's redeliveries.
    report_by: Timestamp,
    /// Set once the new share is computed (and handed out as PENDING).
    pending: Option<PendingShare<S>>,
}

struct PendingShare<S: Suite> {
    digest: permafrost_wire::Digest,
    signer: Signer<S>,
}

impl<S: Suite> ResharePeer<S> {
    /// Joins the reshare `open` sent by `coordinator`. `old_share` is this node's share of the
    /// epoch being reshared, if it has one; `already_dealt` is true if the node's disk records
    /// that it dealt in this session before (it then does not deal again).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        open: ReshareOpen,
        coordinator: NodeId,
        identity: Arc<dyn IdentityVerifierAndKey>,
        old_share: Option<KeyShare<S>>,
        already_dealt: bool,
        now: Timestamp,
        timeout: Duration,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Self, ProtocolError> {
        let checked = check_open::<S>(&open)?;
        let me = identity.key().node_id().clone();
        let p = &open.proposal;
        let in_old = checked.old.contains(&me);
        let in_new = checked.new.contains(&me);
        if !in_old && !in_new {
            return Err(ProtocolError::InvalidParameters(
                "this node is in neither committee".into(),
            ));
        }
        if let Some(share) = &old_share {
            if share.key_id != p.key_id || share.epoch != p.epoch {
                return Err(Refusal::WrongEpoch {
                    expected: share.epoch,
                    got: p.epoch,
                }
                .into());
            }
            if package_digest(&share.public_key_package)? != package_digest(&checked.old_package)? {
                return Err(ProtocolError::InvalidParameters(
                    "the proposal's old public key package is not ours".into(),
                ));
            }
        } else if in_old {
            return Err(ProtocolError::InvalidParameters(
                "an old member must bring its share".into(),
            ));
        }
        let member = match checked.new.identifier(&me) {
            Some(id) if in_new => Some(Member {
                me: id,
                shares: BTreeMap::new(),
                dealings: None,
                reported: false,
                report_by: now.after(timeout / 2),
                pending: None,
            }),
            _ => None,
        };
        let mut peer = ResharePeer {
            open,
            checked,
            coordinator,
            identity,
            old_share,
            member,
            finished: false,
            deadline: now.after(timeout),
            status_retry: crate::time::STATUS_RETRY,
            outputs: VecDeque::new(),
        };
        if peer.checked.dealers.contains(&me) && !already_dealt {
            peer.deal(rng)?;
        }
        Ok(peer)
    }

    /// Picks up reshare `open` after a restart, from what the node's disk holds: its share of
    /// the old epoch (if it has one) and its PENDING share of the new epoch (if it stored one).
    /// The in-memory state of the session is gone, so the node does not deal, report or
    /// confirm again; it asks the coordinator for the outcome at once (and again with backoff)
    /// and waits for the commit certificate (promote, or retire the old share) or the abort
    /// (discard the PENDING share). It can still sign the test signature with its PENDING share.
    pub fn resume(
        open: ReshareOpen,
        coordinator: NodeId,
        identity: Arc<dyn IdentityVerifierAndKey>,
        old_share: Option<KeyShare<S>>,
        pending: Option<KeyShare<S>>,
        now: Timestamp,
    ) -> Result<Self, ProtocolError> {
        let checked = check_open::<S>(&open)?;
        let me = identity.key().node_id().clone();
        let p = &open.proposal;
        if !checked.old.contains(&me) && !checked.new.contains(&me) {
            return Err(ProtocolError::InvalidParameters(
                "this node is in neither committee".into(),
            ));
        }
        let member = match checked.new.identifier(&me) {
            Some(id) => {
                let pending = match pending {
                    Some(share) => {
                        if share.key_id != p.key_id
                            || share.epoch != Epoch(p.epoch.0.saturating_add(1))
                        {
                            return Err(ProtocolError::InvalidParameters(
                                "the pending share is not of this reshare's new epoch".into(),
                            ));
                        }
                        Some(PendingShare {
                            digest: package_digest(&share.public_key_package)?,
                            signer: Signer::for_reshare_test(share)?,
                        })
                    }
                    None => None,
                };
                Some(Member {
                    me: id,
                    shares: BTreeMap::new(),
                    dealings: None,
                    reported: true,
                    report_by: now,
                    pending,
                })
            }
            None => None,
        };
        let mut peer = ResharePeer {
            open,
            checked,
            coordinator,
            identity,
            old_share,
            member,
            finished: false,
            deadline: now,
            status_retry: crate::time::STATUS_RETRY,
            outputs: VecDeque::new(),
        };
        peer.ask_status(now);
        Ok(peer)
    }

    /// Whether this node may already be bound by a commit it has not seen: it holds a PENDING
    /// share (so it confirmed, or was about to), or it is an old member only (a commit retires
    /// its share). Such a node never gives up on its own; it asks for the outcome instead.
    fn may_be_committed(&self) -> bool {
        match &self.member {
            Some(member) => member.pending.is_some(),
            None => true,
        }
    }

    /// Asks what became of the session, of the coordinator and of every other member (a
    /// certificate proves itself, so any member that holds it may hand it over: a coordinator
    /// that withholds it cannot strand this node); asks again later if no answer comes.
    fn ask_status(&mut self, now: Timestamp) {
        let me = self.me();
        let members: BTreeSet<NodeId> = self
            .checked
            .old
            .members()
            .iter()
            .chain(self.checked.new.members())
            .filter(|n| **n != me)
            .cloned()
            .collect();
        for to in std::iter::once(self.coordinator.clone()).chain(members) {
            self.outputs.push_back(Output::Send {
                to,
                message: Message::SessionStatus(SessionStatus {
                    session: self.open.session,
                }),
            });
        }
        self.deadline = now.after(self.status_retry);
        self.status_retry = (self.status_retry * 2).min(crate::time::MAX_STATUS_RETRY);
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.open.session
    }

    /// The session id of the test signature (its messages are routed here too).
    pub fn test_session(&self) -> SessionId {
        test_session_id(&self.open.session)
    }

    fn me(&self) -> NodeId {
        self.identity.key().node_id().clone()
    }

    fn sign_statement(&self, round: &str, to: Option<&NodeId>, payload: &[u8]) -> Vec<u8> {
        let me = self.me();
        self.identity
            .key()
            .sign(&statement(&self.open.session, round, &me, to, payload).0)
    }

    fn verify_statement(
        &self,
        from: &NodeId,
        round: &str,
        to: Option<&NodeId>,
        payload: &[u8],
        signature: &[u8],
    ) -> bool {
        let st = statement(&self.open.session, round, from, to, payload);
        self.identity.verifier().verify(from, &st.0, signature)
    }

    fn fail(&mut self, error: ProtocolError) {
        self.finished = true;
        self.outputs.push_back(Output::Event(Event::Failed(error)));
    }

    /// Deals: records `dealt` first, then sends the commitment to the coordinator and one
    /// share to each new member.
    fn deal(&mut self, rng: &mut dyn CryptoRngCore) -> Result<(), ProtocolError> {
        let Some(old) = &self.old_share else {
            return Ok(());
        };
        let p = &self.open.proposal;
        let recipients = self.checked.new_identifiers();
        let dealing = deal::<S>(
            old.key_package.signing_share(),
            p.new_threshold,
            &recipients,
            rng,
        )?;
        let commitment = dealing
            .commitment
            .serialize_whole()
            .map_err(|e| ProtocolError::Frost(e.to_string()))?;
        self.outputs.push_back(Output::Event(Event::Dealt {
            key_id: p.key_id.clone(),
            session: self.open.session,
        }));
        let me = self.me();
        let signature = self.sign_statement(DEALING, None, &commitment);
        self.outputs.push_back(Output::Send {
            to: self.coordinator.clone(),
            message: Message::ReshareDealing(ReshareDealing {
                session: self.open.session,
                from: me.clone(),
                commitment,
                signature,
            }),
        });
        for (id, share) in dealing.shares {
            let Some(to) = self.checked.new.node(&id).cloned() else {
                continue;
            };
            let bytes = SecretBytes::new(share.serialize());
            let signature = self.sign_statement(SHARE, Some(&to), bytes.expose());
            let message = ReshareShare {
                session: self.open.session,
                from: me.clone(),
                to: to.clone(),
                share: bytes,
                signature,
            };
            if to == me {
                // Our own share of our own dealing never leaves the node.
                if let Some(member) = &mut self.member {
                    member.shares.insert(me.clone(), message);
                }
                continue;
            }
            self.outputs.push_back(Output::Send {
                to,
                message: Message::ReshareShare(message),
            });
        }
        Ok(())
    }

    fn handle_share(
        &mut self,
        from: &NodeId,
        share: ReshareShare,
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        let me = self.me();
        if share.from != *from || share.to != me || !self.checked.dealers.contains(from) {
            return Err(Refusal::SenderMismatch.into());
        }
        if !self.verify_statement(
            from,
            SHARE,
            Some(&me),
            share.share.expose(),
            &share.signature,
        ) {
            return Err(Refusal::BadSignature(from.clone()).into());
        }
        let Some(member) = &mut self.member else {
            return Err(Refusal::Unexpected(MessageKind::ReshareShare).into());
        };
        if let Some(previous) = member.shares.get(from) {
            if previous.share != share.share {
                let error =
                    ProtocolError::misbehaviour(from, "signed two different reshare shares");
                self.fail(error);
            }
            return Ok(());
        }
        member.shares.insert(from.clone(), share);
        self.try_report(now);
        Ok(())
    }

    fn handle_dealing_set(
        &mut self,
        set: ReshareDealingSet,
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        if self.member.as_ref().is_none_or(|m| m.dealings.is_some()) {
            return Err(Refusal::Unexpected(MessageKind::ReshareDealingSet).into());
        }
        let mut dealings = BTreeMap::new();
        for d in &set.dealings {
            if d.session != self.open.session || !self.checked.dealers.contains(&d.from) {
                return Err(Refusal::SenderMismatch.into());
            }
            if !self.verify_statement(&d.from, DEALING, None, &d.commitment, &d.signature) {
                return Err(Refusal::BadSignature(d.from.clone()).into());
            }
            if dealings.contains_key(&d.from) {
                return Err(Refusal::Malformed("a dealer appears twice".into()).into());
            }
            // Signed by the dealer: a commitment of the wrong length (checked before any point
            // is decoded) or an unparsable one is its fault; it is simply not accepted below.
            let expected = crate::serialized::whole_commitment_len::<S>(usize::from(
                self.open.proposal.new_threshold,
            ));
            if d.commitment.len() != expected {
                continue;
            }
            if let Ok(c) = VerifiableSecretSharingCommitment::<S>::deserialize_whole(&d.commitment)
            {
                dealings.insert(d.from.clone(), c);
            }
        }
        // At least t old members vouch for the old public key package with their signatures
        // (the session id commits to it).
        if set.dealings.len() < usize::from(self.checked.old_threshold) {
            return Err(Refusal::Malformed(format!(
                "{} dealings, at least {} needed",
                set.dealings.len(),
                self.checked.old_threshold
            ))
            .into());
        }
        if let Some(member) = &mut self.member {
            member.dealings = Some(dealings);
        }
        self.try_report(now);
        Ok(())
    }

    /// Once the dealing set and a share from each of its dealers are in (or, past `report_by`
    /// at `now`, the shares that came): check every dealing and report the accepted ones. A
    /// dealer whose share did not come is not accepted.
    fn try_report(&mut self, now: Timestamp) {
        let p = &self.open.proposal;
        let Some(member) = &self.member else { return };
        let Some(dealings) = &member.dealings else {
            return;
        };
        let complete = dealings.keys().all(|d| member.shares.contains_key(d));
        if member.reported || !(complete || now >= member.report_by) {
            return;
        }
        let mut accepted = Vec::new();
        for (dealer, commitment) in dealings {
            let (Some(id), Some(share)) = (
                self.checked.old.identifier(dealer),
                member.shares.get(dealer),
            ) else {
                continue;
            };
            let Some(verifying) = self.checked.old_package.verifying_shares().get(&id) else {
                continue;
            };
            let Ok(share) = SigningShare::<S>::deserialize(share.share.expose()) else {
                continue;
            };
            if check_dealing::<S>(verifying, commitment, p.new_threshold, member.me, &share).is_ok()
            {
                accepted.push(dealer.clone());
            }
        }
        let me = self.me();
        let mut report = ReshareReport {
            session: self.open.session,
            from: me,
            accepted,
            signature: Vec::new(),
        };
        report.signature = self.sign_statement(REPORT, None, &report_payload(&report));
        if let Some(member) = &mut self.member {
            member.reported = true;
        }
        self.outputs.push_back(Output::Send {
            to: self.coordinator.clone(),
            message: Message::ReshareReport(report),
        });
    }

    fn handle_dealer_set(&mut self, set: ReshareDealerSet) -> Result<(), ProtocolError> {
        let Some(member) = &self.member else {
            return Err(Refusal::Unexpected(MessageKind::ReshareDealerSet).into());
        };
        if !member.reported || member.pending.is_some() {
            return Err(Refusal::Unexpected(MessageKind::ReshareDealerSet).into());
        }
        if set.reports.len() != self.checked.new.len() {
            return Err(Refusal::Malformed("a report per new member is needed".into()).into());
        }
        for (report, expected) in set.reports.iter().zip(self.checked.new.members()) {
            if report.from != *expected || report.session != self.open.session {
                return Err(Refusal::SenderMismatch.into());
            }
            if !self.verify_statement(
                &report.from,
                REPORT,
                None,
                &report_payload(report),
                &report.signature,
            ) {
                return Err(Refusal::BadSignature(report.from.clone()).into());
            }
        }
        let h = match dealer_set(&self.checked, &set.reports) {
            Ok(h) => h,
            Err(rejected) => {
                self.fail(ProtocolError::Misbehaviour {
                    culprits: rejected,
                    reason: "too few dealers accepted by every new member".into(),
                });
                return Ok(());
            }
        };
        self.combine(h)
    }

    fn combine(&mut self, h: BTreeSet<Identifier<S>>) -> Result<(), ProtocolError> {
        let p = self.open.proposal.clone();
        let Some(member) = &self.member else {
            return Ok(());
        };
        let Some(dealings) = &member.dealings else {
            return Ok(());
        };
        let mut inputs = BTreeMap::new();
        for id in &h {
            let Some(dealer) = self.checked.old.node(id) else {
                continue;
            };
            let (Some(commitment), Some(share)) = (dealings.get(dealer), member.shares.get(dealer))
            else {
                return Err(Refusal::Malformed(
                    "H names a dealer this member did not accept".into(),
                )
                .into());
            };
            let share = SigningShare::<S>::deserialize(share.share.expose())
                .map_err(|e| Refusal::Malformed(e.to_string()))?;
            inputs.insert(*id, (commitment.clone(), share));
        }
        let (key_package, package) = match combine::<S>(
            &inputs,
            self.checked.old_package.verifying_key(),
            &self.checked.new_identifiers(),
            p.new_threshold,
            member.me,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.fail(e);
                return Ok(());
            }
        };
        let digest = package_digest(&package)?;
        let share = KeyShare {
            key_id: p.key_id.clone(),
            epoch: Epoch(p.epoch.0.saturating_add(1)),
            committee: self.checked.new.members().to_vec(),
            key_package,
            public_key_package: package,
        };
        let signer = Signer::for_reshare_test(share.clone())?;
        // Persist before acknowledging: PENDING first, then the confirmation.
        self.outputs
            .push_back(Output::Event(Event::KeyPending(share)));
        let me = self.me();
        let confirm = ReshareConfirm {
            session: self.open.session,
            from: me,
            public_key_package: digest,
            signature: self.sign_statement(CONFIRM, None, &digest.0),
        };
        self.outputs.push_back(Output::Send {
            to: self.coordinator.clone(),
            message: Message::ReshareConfirm(confirm),
        });
        if let Some(member) = &mut self.member {
            member.pending = Some(PendingShare { digest, signer });
        }
        Ok(())
    }

    fn handle_commit(&mut self, commit: ReshareCommit) -> Result<(), ProtocolError> {
        let digest =
            verify_certificate(&self.open, &self.checked, &commit, self.identity.verifier())?;
        if let Some(member) = &self.member {
            match &member.pending {
                Some(pending) if pending.digest == digest => {}
                Some(_) => {
                    return Err(
                        Refusal::Malformed("commit certifies another key package".into()).into(),
                    )
                }
                // A new member without its new share cannot take part in the new epoch.
                None => return Err(Refusal::Unexpected(MessageKind::ReshareCommit).into()),
            }
        }
        let p = &self.open.proposal;
        self.finished = true;
        let event = if self.member.is_some() {
            Event::ReshareCommitted {
                key_id: p.key_id.clone(),
                epoch: Epoch(p.epoch.0.saturating_add(1)),
                certificate: commit,
            }
        } else {
            Event::ShareRetired {
                key_id: p.key_id.clone(),
                epoch: p.epoch,
                certificate: commit,
            }
        };
        self.outputs.push_back(Output::Event(event));
        Ok(())
    }

    fn handle_test_signing(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        if *from != self.coordinator {
            return Err(Refusal::NotFromCoordinator(from.clone()).into());
        }
        if let Message::SignRequest(r) = &message {
            if r.message != test_message(&self.open.session) {
                return Err(Refusal::MessageNotApproved.into());
            }
        }
        let Some(pending) = self.member.as_mut().and_then(|m| m.pending.as_mut()) else {
            return Err(Refusal::UnknownSession.into());
        };
        let result = pending.signer.handle_message(from, message, now, rng);
        while let Some(output) = pending.signer.poll_output() {
            self.outputs.push_back(output);
        }
        result
    }
}

impl<S: Suite> Session<S> for ResharePeer<S> {
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        if self.finished {
            return Err(Refusal::Finished.into());
        }
        let session = message.session();
        if session == self.test_session() {
            return match message {
                Message::SignRequest(_) | Message::SignPackage(_) => {
                    self.handle_test_signing(from, message, now, rng)
                }
                other => Err(Refusal::Unexpected(other.kind()).into()),
            };
        }
        if session != self.open.session {
            return Err(Refusal::WrongSession.into());
        }
        let from_coordinator = *from == self.coordinator;
        let from_member = self.checked.old.contains(from) || self.checked.new.contains(from);
        match message {
            Message::ReshareShare(m) => self.handle_share(from, m, now),
            Message::ReshareDealingSet(m) if from_coordinator => self.handle_dealing_set(m, now),
            Message::ReshareDealerSet(m) if from_coordinator => self.handle_dealer_set(m),
            // A certificate proves itself: a member that holds it may hand it over.
            Message::ReshareCommit(m) if from_coordinator || from_member => self.handle_commit(m),
            Message::ReshareAbort(_)
                if from_coordinator
                    && self.member.as_ref().is_some_and(|m| m.pending.is_some()) =>
            {
                // This node stored its new share and confirmed (or was about to): a certificate
                // may exist, and the old-only members may have retired the old epoch on it, so
                // an unsigned abort deletes nothing. Only the certificate, or an operator
                // discarding the pending share, concludes the session here.
                Err(Refusal::AwaitingCertificate.into())
            }
            Message::ReshareAbort(m) if from_coordinator => {
                self.fail(ProtocolError::Aborted {
                    coordinator: from.clone(),
                    culprits: m.culprits,
                    reason: m.reason,
                });
                Ok(())
            }
            Message::ReshareDealingSet(_)
            | Message::ReshareDealerSet(_)
            | Message::ReshareCommit(_)
            | Message::ReshareAbort(_) => Err(Refusal::NotFromCoordinator(from.clone()).into()),
            other => Err(Refusal::Unexpected(other.kind()).into()),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(pending) = self.member.as_mut().and_then(|m| m.pending.as_mut()) {
            pending.signer.handle_timeout(now);
        }
        if !self.finished {
            self.try_report(now);
        }
        if self.finished || now < self.deadline {
            return;
        }
        if self.may_be_committed() {
            self.ask_status(now);
            return;
        }
        // Waiting for shares names the dealers that did not send one; anything else is the
        // coordinator's to deliver.
        let silent = match &self.member {
            Some(m) if m.dealings.is_some() && !m.reported => m
                .dealings
                .iter()
                .flat_map(|d| d.keys())
                .filter(|d| !m.shares.contains_key(*d))
                .cloned()
                .collect(),
            _ => vec![self.coordinator.clone()],
        };
        self.fail(ProtocolError::Timeout {
            phase: "reshare",
            silent,
        });
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let report_by = self
            .member
            .as_ref()
            .filter(|m| !m.reported && m.dealings.is_some())
            .map(|m| m.report_by);
        (!self.finished).then(|| report_by.map_or(self.deadline, |r| r.min(self.deadline)))
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}
