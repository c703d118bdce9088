use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use frost_core::keys::dkg::{round1, round2};
use frost_core::keys::{PublicKeyPackage, VerifiableSecretSharingCommitment};
use permafrost_wire::{
    Digest, DkgAbort, DkgCommit, DkgComplaint, DkgConfirm, DkgOpen, DkgRound1, DkgRound1Set, KeyId,
    Message, MessageKind, NodeId, OperatorApproval, SessionId,
};
use rand_core::CryptoRngCore;

use super::{
    public_key_package_digest, round1_digest, session_id, validate_open, verify_confirm_signature,
    ROUND1, ROUND2,
};
use crate::identity::statement;
use crate::{
    Committee, Event, IdentityVerifier, OpenFailure, Output, ProtocolError, Refusal, Session,
    Suite, Timestamp,
};

/// The coordinator's side of a DKG: it relays round-1 packages, checks every confirmation and
/// commits or aborts. It never sees a secret share (complaint evidence aside, which is revealed
/// only when the DKG is being aborted anyway).
pub struct DkgCoordinator<S: Suite> {
    open: DkgOpen,
    committee: Committee<S>,
    verifier: Arc<dyn IdentityVerifier>,
    round1: BTreeMap<NodeId, Round1Entry<S>>,
    confirms: BTreeMap<NodeId, DkgConfirm>,
    /// Set once the round-1 set is relayed: what every member must confirm.
    expected: Option<Expected<S>>,
    finished: bool,
    deadline: Timestamp,
    outputs: VecDeque<Output<S>>,
}

struct Round1Entry<S: Suite> {
    signed: DkgRound1,
    commitment: VerifiableSecretSharingCommitment<S>,
}

struct Expected<S: Suite> {
    round1_digests: Vec<Digest>,
    /// The public key package the coordinator computes itself to check every member's, and
    /// its digest. Computed when the first confirmation arrives rather than before the relay:
    /// it is needed only to check confirmations, and the round-1 set leaves sooner (the members
    /// compute theirs from it meanwhile).
    package: Option<(PublicKeyPackage<S>, Digest)>,
}

impl<S: Suite> DkgCoordinator<S> {
    /// Opens a DKG of `key_id` with threshold `threshold` over `committee`; queues a
    /// [`DkgOpen`] for every member. `nonce` must be fresh randomness; `approvals` are
    /// carried to the members, which check them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key_id: KeyId,
        threshold: u16,
        committee: Vec<NodeId>,
        nonce: [u8; 32],
        approvals: Vec<OperatorApproval>,
        verifier: Arc<dyn IdentityVerifier>,
        now: Timestamp,
        timeout: Duration,
    ) -> Result<Self, ProtocolError> {
        let mut committee = committee;
        committee.sort();
        let session = session_id(&key_id, S::CURVE, threshold, &committee, &nonce);
        let open = DkgOpen {
            session,
            key_id,
            curve: S::CURVE,
            threshold,
            committee,
            nonce,
            approvals,
        };
        let committee = validate_open::<S>(&open)?;
        let outputs = committee
            .members()
            .iter()
            .map(|to| Output::Send {
                to: to.clone(),
                message: Message::DkgOpen(open.clone()),
            })
            .collect();
        Ok(DkgCoordinator {
            open,
            committee,
            verifier,
            round1: BTreeMap::new(),
            confirms: BTreeMap::new(),
            expected: None,
            finished: false,
            deadline: now.after(timeout),
            outputs,
        })
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.open.session
    }

    fn abort(&mut self, error: ProtocolError) {
        self.finished = true;
        for to in self.committee.members() {
            self.outputs.push_back(Output::Send {
                to: to.clone(),
                message: Message::DkgAbort(DkgAbort {
                    session: self.open.session,
                    culprits: error.culprits(),
                    reason: error.to_string(),
                }),
            });
        }
        self.outputs.push_back(Output::Event(Event::Failed(error)));
    }

    fn member(&self, from: &NodeId) -> Result<frost_core::Identifier<S>, Refusal> {
        self.committee
            .identifier(from)
            .ok_or_else(|| Refusal::NotInCommittee(from.clone()))
    }

    fn handle_round1(&mut self, from: &NodeId, package: DkgRound1) -> Result<(), ProtocolError> {
        if package.from != *from {
            return Err(Refusal::SenderMismatch.into());
        }
        let id = self.member(from)?;
        if self.expected.is_some() {
            return Err(Refusal::Unexpected(MessageKind::DkgRound1).into());
        }
        let st = statement(&self.open.session, ROUND1, from, None, &package.package);
        if !self.verifier.verify(from, &st.0, &package.signature) {
            return Err(Refusal::BadSignature(from.clone()).into());
        }
        if let Some(previous) = self.round1.get(from) {
            if previous.signed.package == package.package {
                return Ok(()); // a duplicate
            }
            self.abort(ProtocolError::misbehaviour(
                from,
                "signed two different round-1 packages",
            ));
            return Ok(());
        }
        // From here the package is signed by `from`: anything wrong with it is its fault.
        // Its coefficient count first, from the bytes: no point is decoded for the wrong shape.
        let claimed = crate::serialized::claimed_count(&package.package);
        if claimed != Some(u64::from(self.open.threshold)) {
            self.abort(ProtocolError::misbehaviour(
                from,
                format!(
                    "round-1 package claims {claimed:?} coefficients, threshold is {}",
                    self.open.threshold
                ),
            ));
            return Ok(());
        }
        let parsed = match round1::Package::<S>::deserialize(&package.package) {
            Ok(p) => p,
            Err(e) => {
                self.abort(ProtocolError::misbehaviour(
                    from,
                    format!("unparsable round-1 package: {e}"),
                ));
                return Ok(());
            }
        };
        let commitment = parsed.commitment().clone();
        if commitment.coefficients().len() != usize::from(self.open.threshold) {
            self.abort(ProtocolError::misbehaviour(
                from,
                format!(
                    "round-1 commitment has {} coefficients, threshold is {}",
                    commitment.coefficients().len(),
                    self.open.threshold
                ),
            ));
            return Ok(());
        }
        if crate::vss::verify_proof_of_knowledge(id, &commitment, parsed.proof_of_knowledge())
            .is_err()
        {
            self.abort(ProtocolError::misbehaviour(
                from,
                "invalid proof of knowledge in round-1 package",
            ));
            return Ok(());
        }
        self.round1.insert(
            from.clone(),
            Round1Entry {
                signed: package,
                commitment,
            },
        );
        if self.round1.len() == self.committee.len() {
            self.relay_round1();
        }
        Ok(())
    }

    fn relay_round1(&mut self) {
        let mut packages = Vec::with_capacity(self.committee.len());
        for member in self.committee.members() {
            let Some(entry) = self.round1.get(member) else {
                return;
            };
            packages.push(entry.signed.clone());
        }
        self.expected = Some(Expected {
            round1_digests: packages.iter().map(|p| round1_digest(&p.package)).collect(),
            package: None,
        });
        let set = DkgRound1Set {
            session: self.open.session,
            packages,
        };
        for to in self.committee.members() {
            self.outputs.push_back(Output::Send {
                to: to.clone(),
                message: Message::DkgRound1Set(set.clone()),
            });
        }
    }

    /// The public key package of the relayed commitments, computed here to check every
    /// member's (once, at the first confirmation) and its digest.
    fn expected_package(&mut self) -> Result<(), ProtocolError> {
        let Some(expected) = &mut self.expected else {
            return Err(Refusal::Unexpected(MessageKind::DkgConfirm).into());
        };
        if expected.package.is_some() {
            return Ok(());
        }
        let mut commitments = BTreeMap::new();
        for member in self.committee.members() {
            let (Some(entry), Some(id)) =
                (self.round1.get(member), self.committee.identifier(member))
            else {
                return Err(ProtocolError::Frost("a relayed package is missing".into()));
            };
            commitments.insert(id, &entry.commitment);
        }
        let package = crate::vss::dkg_public_key_package(&commitments)
            .map(S::finish_dkg_public_key_package)
            .map_err(|e| ProtocolError::Frost(e.to_string()))?;
        let digest = public_key_package_digest(&package)?;
        expected.package = Some((package, digest));
        Ok(())
    }

    fn handle_confirm(&mut self, from: &NodeId, confirm: DkgConfirm) -> Result<(), ProtocolError> {
        if confirm.from != *from {
            return Err(Refusal::SenderMismatch.into());
        }
        self.member(from)?;
        if self.expected.is_none() {
            return Err(Refusal::Unexpected(MessageKind::DkgConfirm).into());
        }
        if confirm.round1_digests.len() != self.committee.len() {
            return Err(
                Refusal::Malformed("confirmation has the wrong digest count".into()).into(),
            );
        }
        verify_confirm_signature(self.verifier.as_ref(), &confirm)?;
        if let Some(previous) = self.confirms.get(from) {
            if *previous == confirm {
                return Ok(());
            }
            self.abort(ProtocolError::misbehaviour(
                from,
                "signed two different confirmations",
            ));
            return Ok(());
        }
        self.confirms.insert(from.clone(), confirm);
        if let Err(e) = self.expected_package() {
            self.abort(e);
            return Ok(());
        }
        if self.confirms.len() == self.committee.len() {
            self.decide();
        }
        Ok(())
    }

    /// All confirmations are in: commit if each matches what was relayed and the public key
    /// package computed here; otherwise abort naming who disagreed.
    fn decide(&mut self) {
        let Some(Expected {
            round1_digests,
            package: Some((public_key_package, public_key_package_digest)),
        }) = &self.expected
        else {
            return;
        };
        let mut packages = Vec::new();
        let mut disagreeing = Vec::new();
        for (member, confirm) in &self.confirms {
            let mut differs = false;
            for (k, (seen, relayed)) in confirm
                .round1_digests
                .iter()
                .zip(round1_digests)
                .enumerate()
            {
                if seen != relayed {
                    differs = true;
                    if let Some(originator) = self.committee.members().get(k) {
                        packages.push(originator.clone());
                    }
                }
            }
            if confirm.public_key_package != *public_key_package_digest {
                differs = true;
            }
            if differs {
                disagreeing.push(member.clone());
            }
        }
        if !disagreeing.is_empty() {
            packages.sort();
            packages.dedup();
            return self.abort(ProtocolError::ConfirmationMismatch {
                disagreeing,
                packages,
            });
        }
        let confirms: Vec<DkgConfirm> = self
            .committee
            .members()
            .iter()
            .filter_map(|m| self.confirms.get(m).cloned())
            .collect();
        let commit = DkgCommit {
            session: self.open.session,
            confirms,
        };
        self.finished = true;
        // The key is recorded before any member is told to activate it.
        self.outputs.push_back(Output::Event(Event::KeyCreated {
            key_id: self.open.key_id.clone(),
            committee: self.committee.members().to_vec(),
            public_key_package: public_key_package.clone(),
        }));
        for to in self.committee.members() {
            self.outputs.push_back(Output::Send {
                to: to.clone(),
                message: Message::DkgCommit(commit.clone()),
            });
        }
    }

    /// A member says a round-2 share does not verify. The evidence is checked here: a share
    /// signed by the accused that fails against its round-1 commitment convicts the accused;
    /// a share that verifies convicts the complainer.
    fn handle_complaint(
        &mut self,
        from: &NodeId,
        complaint: DkgComplaint,
    ) -> Result<(), ProtocolError> {
        let evidence = &complaint.evidence;
        if complaint.from != *from || evidence.to != *from || evidence.session != self.open.session
        {
            return Err(Refusal::SenderMismatch.into());
        }
        let complainer = self.member(from)?;
        let accused = evidence.from.clone();
        self.member(&accused)?;
        let st = statement(
            &self.open.session,
            ROUND2,
            &accused,
            Some(from),
            evidence.share.expose(),
        );
        if !self.verifier.verify(&accused, &st.0, &evidence.signature) {
            return Err(Refusal::BadSignature(accused).into());
        }
        if let Some(conflicting) = &complaint.conflicting {
            // Two different shares, both signed by the accused for this member: equivocation,
            // proven by the accused's own signatures.
            let st = statement(
                &self.open.session,
                ROUND2,
                &accused,
                Some(from),
                conflicting.share.expose(),
            );
            if conflicting.from != accused
                || conflicting.to != *from
                || conflicting.session != self.open.session
                || !self
                    .verifier
                    .verify(&accused, &st.0, &conflicting.signature)
            {
                return Err(Refusal::BadSignature(accused).into());
            }
            if conflicting.share != evidence.share {
                self.abort(ProtocolError::misbehaviour(
                    &accused,
                    "signed two different round-2 shares for the same member",
                ));
                return Ok(());
            }
        }
        let Some(entry) = self.round1.get(&accused) else {
            return Err(Refusal::Unexpected(MessageKind::DkgComplaint).into());
        };
        let guilty = match round2::Package::<S>::deserialize(evidence.share.expose()) {
            Err(_) => accused.clone(),
            Ok(share) => {
                if !crate::vss::share_matches(complainer, share.signing_share(), &entry.commitment)
                {
                    accused.clone()
                } else {
                    from.clone()
                }
            }
        };
        let reason = if guilty == accused {
            "sent a round-2 share inconsistent with its commitment"
        } else {
            "complained about a valid round-2 share"
        };
        self.abort(ProtocolError::misbehaviour(&guilty, reason));
        Ok(())
    }
}

impl<S: Suite> Session<S> for DkgCoordinator<S> {
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        _now: Timestamp,
        _rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        if self.finished {
            return Err(Refusal::Finished.into());
        }
        let session = match &message {
            Message::DkgRound1(m) => m.session,
            Message::DkgConfirm(m) => m.session,
            Message::DkgComplaint(m) => m.session,
            other => return Err(Refusal::Unexpected(other.kind()).into()),
        };
        if session != self.open.session {
            return Err(Refusal::WrongSession.into());
        }
        match message {
            Message::DkgRound1(m) => self.handle_round1(from, m),
            Message::DkgConfirm(m) => self.handle_confirm(from, m),
            Message::DkgComplaint(m) => self.handle_complaint(from, m),
            other => Err(Refusal::Unexpected(other.kind()).into()),
        }
    }

    fn handle_open_failed(&mut self, from: &NodeId, failure: OpenFailure<'_>) {
        // Every member is needed: a refusal, or an open that could not reach it, ends the DKG
        // before anything is confirmed.
        if self.finished || self.committee.identifier(from).is_none() || self.expected.is_some() {
            return;
        }
        self.abort(failure.error(from));
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.finished || now < self.deadline {
            return;
        }
        let error = if self.expected.is_none() {
            let round1 = &self.round1;
            ProtocolError::Timeout {
                phase: "DKG round 1",
                silent: self.committee.missing(|n| round1.contains_key(n)),
            }
        } else {
            let confirms = &self.confirms;
            ProtocolError::Timeout {
                phase: "DKG confirmation",
                silent: self.committee.missing(|n| confirms.contains_key(n)),
            }
        };
        self.abort(error);
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        (!self.finished).then_some(self.deadline)
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}
