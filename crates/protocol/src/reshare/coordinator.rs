use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use frost_core::keys::{PublicKeyPackage, VerifiableSecretSharingCommitment};
use permafrost_wire::{
    Digest, Epoch, Message, MessageKind, NodeId, OperatorApproval, ReshareAbort, ReshareCommit,
    ReshareConfirm, ReshareDealerSet, ReshareDealing, ReshareDealingSet, ReshareOpen,
    ReshareProposal, ReshareReport, SessionId,
};
use rand_core::CryptoRngCore;

use super::proposal::{
    check_open, dealer_set, package_digest, report_payload, session_id, test_message,
    test_session_id, Checked, CONFIRM, DEALING, REPORT,
};
use super::public_key_package_from_dealings;
use crate::identity::statement;
use crate::sign::{SigningCoordinator, DEFAULT_SIGN_TIMEOUT};
use crate::{
    Event, IdentityVerifier, OpenFailure, Output, ProtocolError, Refusal, Session, Suite, Timestamp,
};

/// The coordinator's side of a reshare: relay the dealings that pass the public checks, relay
/// the members' reports, check every confirmation against the public key package it derives
/// itself, get a test signature from the new shares, and send the commit certificate.
pub struct ReshareCoordinator<S: Suite> {
    open: ReshareOpen,
    checked: Checked<S>,
    verifier: Arc<dyn IdentityVerifier>,
    /// The first signed commitment of every dealer heard, whatever its verdict: a second,
    /// different one is proof of equivocation.
    seen: BTreeMap<NodeId, Vec<u8>>,
    dealings: BTreeMap<NodeId, (ReshareDealing, VerifiableSecretSharingCommitment<S>)>,
    excluded: BTreeMap<NodeId, String>,
    relayed: bool,
    reports: BTreeMap<NodeId, ReshareReport>,
    expected: Option<(PublicKeyPackage<S>, Digest)>,
    confirms: BTreeMap<NodeId, ReshareConfirm>,
    test: Option<SigningCoordinator<S>>,
    finished: bool,
    /// When to relay the dealings received so far without waiting for silent dealers; `None`
    /// once it has passed.
    relay_deadline: Option<Timestamp>,
    deadline: Timestamp,
    outputs: VecDeque<Output<S>>,
}

impl<S: Suite> ReshareCoordinator<S> {
    /// Opens a reshare; queues a `ReshareOpen` for every old and new member. `rotation` is
    /// `Some(every_secs)` for a scheduled refresh under a standing rotation policy, whose
    /// approvals `approvals` then are.
    pub fn new(
        proposal: ReshareProposal,
        approvals: Vec<OperatorApproval>,
        rotation: Option<u64>,
        verifier: Arc<dyn IdentityVerifier>,
        now: Timestamp,
        timeout: Duration,
    ) -> Result<Self, ProtocolError> {
        let open = ReshareOpen {
            session: session_id(&proposal),
            proposal,
            approvals,
            rotation,
        };
        let checked = check_open::<S>(&open)?;
        let everyone: BTreeSet<NodeId> = checked
            .old
            .members()
            .iter()
            .chain(checked.new.members())
            .cloned()
            .collect();
        let outputs = everyone
            .into_iter()
            .map(|to| Output::Send {
                to,
                message: Message::ReshareOpen(open.clone()),
            })
            .collect();
        Ok(ReshareCoordinator {
            open,
            checked,
            verifier,
            seen: BTreeMap::new(),
            dealings: BTreeMap::new(),
            excluded: BTreeMap::new(),
            relayed: false,
            reports: BTreeMap::new(),
            expected: None,
            confirms: BTreeMap::new(),
            test: None,
            finished: false,
            relay_deadline: Some(now.after(timeout / 3)),
            deadline: now.after(timeout),
            outputs,
        })
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.open.session
    }

    /// The test signature's session id (its messages are routed here too).
    pub fn test_session(&self) -> SessionId {
        test_session_id(&self.open.session)
    }

    fn everyone(&self) -> BTreeSet<NodeId> {
        self.checked
            .old
            .members()
            .iter()
            .chain(self.checked.new.members())
            .cloned()
            .collect()
    }

    fn abort(&mut self, error: ProtocolError) {
        self.finished = true;
        for to in self.everyone() {
            self.outputs.push_back(Output::Send {
                to,
                message: Message::ReshareAbort(ReshareAbort {
                    session: self.open.session,
                    culprits: error.culprits(),
                    reason: error.to_string(),
                }),
            });
        }
        self.outputs.push_back(Output::Event(Event::Failed(error)));
    }

    fn verify(
        &self,
        from: &NodeId,
        round: &str,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<(), Refusal> {
        let st = statement(&self.open.session, round, from, None, payload);
        if self.verifier.verify(from, &st.0, signature) {
            Ok(())
        } else {
            Err(Refusal::BadSignature(from.clone()))
        }
    }

    fn handle_dealing(
        &mut self,
        from: &NodeId,
        dealing: ReshareDealing,
    ) -> Result<(), ProtocolError> {
        if dealing.from != *from || !self.checked.dealers.contains(from) {
            return Err(Refusal::SenderMismatch.into());
        }
        if self.relayed {
            return Err(Refusal::Unexpected(MessageKind::ReshareDealing).into());
        }
        self.verify(from, DEALING, &dealing.commitment, &dealing.signature)?;
        if let Some(previous) = self.seen.get(from) {
            if *previous != dealing.commitment {
                self.abort(ProtocolError::misbehaviour(
                    from,
                    "signed two different reshare commitments",
                ));
            }
            return Ok(());
        }
        self.seen.insert(from.clone(), dealing.commitment.clone());
        // The public checks anyone can make: parse, degree, constant term = the dealer's
        // verifying share of the old epoch. A dealer failing them is named and left out.
        let t_new = usize::from(self.open.proposal.new_threshold);
        // Its length first: no point is decoded for a commitment of the wrong degree.
        let expected = crate::serialized::whole_commitment_len::<S>(t_new);
        let verdict = (dealing.commitment.len() == expected)
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "commitment of {} bytes; {t_new} coefficients are {expected} bytes",
                    dealing.commitment.len()
                )
            })
            .and_then(|()| {
                VerifiableSecretSharingCommitment::<S>::deserialize_whole(&dealing.commitment)
                    .map_err(|e| format!("unparsable commitment: {e}"))
            })
            .and_then(|c| {
                let id = self
                    .checked
                    .old
                    .identifier(from)
                    .ok_or("not an old member")?;
                let y = self
                    .checked
                    .old_package
                    .verifying_shares()
                    .get(&id)
                    .ok_or("no verifying share")?;
                if c.coefficients().len() != t_new {
                    return Err(format!(
                        "commitment has {} coefficients, the new threshold is {t_new}",
                        c.coefficients().len()
                    ));
                }
                if c.coefficients().first().map(|c0| c0.value()) != Some(y.to_element()) {
                    return Err("commitment's constant term is not its verifying share".into());
                }
                Ok(c)
            });
        match verdict {
            Ok(c) => {
                self.dealings.insert(from.clone(), (dealing, c));
            }
            Err(reason) => {
                self.excluded.insert(from.clone(), reason);
            }
        }
        let heard = self.dealings.len() + self.excluded.len();
        if heard == self.checked.dealers.len() {
            self.relay_dealings();
        }
        Ok(())
    }

    fn relay_dealings(&mut self) {
        if self.dealings.len() < usize::from(self.checked.old_threshold) {
            let culprits: Vec<NodeId> = self.excluded.keys().cloned().collect();
            let reasons: Vec<String> = self
                .excluded
                .iter()
                .map(|(n, r)| format!("{n}: {r}"))
                .collect();
            return self.abort(ProtocolError::Misbehaviour {
                culprits,
                reason: format!("fewer than t valid dealings: {}", reasons.join("; ")),
            });
        }
        self.relayed = true;
        let set = ReshareDealingSet {
            session: self.open.session,
            dealings: self.dealings.values().map(|(d, _)| d.clone()).collect(),
        };
        for to in self.checked.new.members() {
            self.outputs.push_back(Output::Send {
                to: to.clone(),
                message: Message::ReshareDealingSet(set.clone()),
            });
        }
    }

    fn handle_report(&mut self, from: &NodeId, report: ReshareReport) -> Result<(), ProtocolError> {
        if report.from != *from || !self.checked.new.contains(from) {
            return Err(Refusal::SenderMismatch.into());
        }
        if !self.relayed || self.expected.is_some() {
            return Err(Refusal::Unexpected(MessageKind::ReshareReport).into());
        }
        self.verify(from, REPORT, &report_payload(&report), &report.signature)?;
        self.reports.entry(from.clone()).or_insert(report);
        if self.reports.len() < self.checked.new.len() {
            return Ok(());
        }
        let reports: Vec<ReshareReport> = self.reports.values().cloned().collect();
        let h = match dealer_set(&self.checked, &reports) {
            Ok(h) => h,
            Err(rejected) => {
                return {
                    self.abort(ProtocolError::Misbehaviour {
                        culprits: rejected,
                        reason: "too few dealers accepted by every new member".into(),
                    });
                    Ok(())
                }
            }
        };
        for dealer in self.dealings.keys() {
            let accepted_by_all = reports.iter().all(|r| r.accepted.contains(dealer));
            if !accepted_by_all {
                self.excluded.insert(
                    dealer.clone(),
                    "a new member rejected its share, or did not receive it".into(),
                );
            }
        }
        let commitments = h
            .iter()
            .filter_map(|id| {
                let node = self.checked.old.node(id)?;
                Some((*id, self.dealings.get(node)?.1.clone()))
            })
            .collect();
        let package = match public_key_package_from_dealings::<S>(
            &commitments,
            self.checked.old_package.verifying_key(),
            &self.checked.new_identifiers(),
            self.open.proposal.new_threshold,
        ) {
            Ok(p) => p,
            Err(e) => {
                self.abort(e);
                return Ok(());
            }
        };
        let digest = package_digest(&package)?;
        self.expected = Some((package, digest));
        let set = ReshareDealerSet {
            session: self.open.session,
            reports: self
                .checked
                .new
                .members()
                .iter()
                .filter_map(|m| self.reports.get(m).cloned())
                .collect(),
        };
        for to in self.checked.new.members() {
            self.outputs.push_back(Output::Send {
                to: to.clone(),
                message: Message::ReshareDealerSet(set.clone()),
            });
        }
        Ok(())
    }

    fn handle_confirm(
        &mut self,
        from: &NodeId,
        confirm: ReshareConfirm,
        now: Timestamp,
    ) -> Result<(), ProtocolError> {
        if confirm.from != *from || !self.checked.new.contains(from) {
            return Err(Refusal::SenderMismatch.into());
        }
        let Some((package, digest)) = &self.expected else {
            return Err(Refusal::Unexpected(MessageKind::ReshareConfirm).into());
        };
        self.verify(
            from,
            CONFIRM,
            &confirm.public_key_package.0,
            &confirm.signature,
        )?;
        if confirm.public_key_package != *digest {
            self.abort(ProtocolError::ConfirmationMismatch {
                disagreeing: vec![from.clone()],
                packages: Vec::new(),
            });
            return Ok(());
        }
        self.confirms.entry(from.clone()).or_insert(confirm);
        if self.confirms.len() < self.checked.new.len() || self.test.is_some() {
            return Ok(());
        }
        // Every new member holds its share as PENDING: prove the new shares sign.
        let p = &self.open.proposal;
        let test = SigningCoordinator::<S>::new(
            self.test_session(),
            p.key_id.clone(),
            Epoch(p.epoch.0.saturating_add(1)),
            test_message(&self.open.session),
            // The test message needs no client: only the reshare's PENDING shares sign it.
            None,
            package.clone(),
            self.checked.new.members().to_vec(),
            now,
            DEFAULT_SIGN_TIMEOUT,
        )?;
        self.test = Some(test);
        self.pump_test();
        Ok(())
    }

    /// Moves the test signature's outputs out; commits or aborts on its result.
    fn pump_test(&mut self) {
        let mut result = None;
        if let Some(test) = &mut self.test {
            while let Some(output) = test.poll_output() {
                match output {
                    Output::Send { to, message } => {
                        self.outputs.push_back(Output::Send { to, message })
                    }
                    Output::Event(Event::SignatureReady { signature, .. }) => {
                        result = Some(Ok(signature))
                    }
                    Output::Event(Event::Failed(e)) => result = Some(Err(e)),
                    Output::Event(_) => {}
                    // A one-shot signing coordinator aggregates on its own step: it hands
                    // none over.
                    Output::Aggregate(_) => {}
                }
            }
        }
        match result {
            Some(Ok(signature)) => self.commit(signature),
            Some(Err(e)) => self.abort(e),
            None => {}
        }
    }

    fn commit(&mut self, signature: frost_core::Signature<S>) {
        let Some((package, _)) = &self.expected else {
            return;
        };
        let test_signature = match signature.serialize() {
            Ok(s) => s,
            Err(e) => return self.abort(ProtocolError::Frost(e.to_string())),
        };
        let commit = ReshareCommit {
            session: self.open.session,
            confirms: self
                .checked
                .new
                .members()
                .iter()
                .filter_map(|m| self.confirms.get(m).cloned())
                .collect(),
            test_signature,
        };
        self.finished = true;
        let p = &self.open.proposal;
        // Recorded first: once any member may promote its share, the coordinator must be able
        // to answer what the new epoch is (and re-send the certificate) after a crash.
        self.outputs.push_back(Output::Event(Event::KeyReshared {
            key_id: p.key_id.clone(),
            epoch: Epoch(p.epoch.0.saturating_add(1)),
            committee: self.checked.new.members().to_vec(),
            threshold: p.new_threshold,
            public_key_package: package.clone(),
            excluded: self.excluded.keys().cloned().collect(),
            certificate: commit.clone(),
        }));
        for to in self.everyone() {
            self.outputs.push_back(Output::Send {
                to,
                message: Message::ReshareCommit(commit.clone()),
            });
        }
    }
}

impl<S: Suite> Session<S> for ReshareCoordinator<S> {
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
            let Some(test) = &mut self.test else {
                return Err(Refusal::Unexpected(message.kind()).into());
            };
            let result = test.handle_message(from, message, now, rng);
            self.pump_test();
            return result;
        }
        if session != self.open.session {
            return Err(Refusal::WrongSession.into());
        }
        match message {
            Message::ReshareDealing(m) => self.handle_dealing(from, m),
            Message::ReshareReport(m) => self.handle_report(from, m),
            Message::ReshareConfirm(m) => self.handle_confirm(from, m, now),
            other => Err(Refusal::Unexpected(other.kind()).into()),
        }
    }

    fn handle_open_failed(&mut self, from: &NodeId, failure: OpenFailure<'_>) {
        // Every new member is needed; a dealer that refuses or cannot be reached is one that
        // does not deal (the relay deadline goes on without it, as without a silent one).
        if self.finished || !self.checked.new.members().contains(from) || self.expected.is_some() {
            return;
        }
        self.abort(failure.error(from));
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.finished {
            return;
        }
        if let Some(test) = &mut self.test {
            test.handle_timeout(now);
            self.pump_test();
            return;
        }
        if self.relay_deadline.is_some_and(|t| now >= t) {
            self.relay_deadline = None;
            // Go on without the dealers that stayed silent, if enough have dealt.
            if !self.relayed && self.dealings.len() >= usize::from(self.checked.old_threshold) {
                self.relay_dealings();
                return;
            }
        }
        if now < self.deadline {
            return;
        }
        let (phase, silent) = if !self.relayed {
            let heard = |n: &NodeId| self.dealings.contains_key(n) || self.excluded.contains_key(n);
            (
                "reshare dealings",
                self.checked
                    .dealers
                    .iter()
                    .filter(|n| !heard(n))
                    .cloned()
                    .collect(),
            )
        } else if self.expected.is_none() {
            let reports = &self.reports;
            (
                "reshare reports",
                self.checked.new.missing(|n| reports.contains_key(n)),
            )
        } else {
            let confirms = &self.confirms;
            (
                "reshare confirmations",
                self.checked.new.missing(|n| confirms.contains_key(n)),
            )
        };
        self.abort(ProtocolError::Timeout { phase, silent });
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        if self.finished {
            return None;
        }
        let test = self.test.as_ref().and_then(|t| t.poll_timeout());
        let relay = self.relay_deadline.filter(|_| !self.relayed);
        [Some(self.deadline), test, relay]
            .into_iter()
            .flatten()
            .min()
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}
