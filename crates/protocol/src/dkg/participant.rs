use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use frost_core::keys::dkg::{self, round1, round2};
use frost_core::{Error as FrostError, Identifier};
use permafrost_wire::{
    Digest, DkgComplaint, DkgConfirm, DkgOpen, DkgRound1, DkgRound1Set, DkgRound2, Epoch, Message,
    NodeId, SecretBytes, SessionId, SessionStatus,
};
use rand_core::CryptoRngCore;

use super::{
    confirm_payload, public_key_package_digest, round1_digest, validate_open,
    verify_confirm_signature, CONFIRM, ROUND1, ROUND2,
};
use crate::identity::statement;
use crate::{
    Committee, Event, IdentityVerifier, KeyShare, NodeIdentity, Output, ProtocolError, Refusal,
    Session, Suite, Timestamp,
};

/// One committee member's side of a DKG.
pub struct DkgParticipant<S: Suite> {
    open: DkgOpen,
    coordinator: NodeId,
    committee: Committee<S>,
    identity: Arc<dyn NodeIdentity>,
    verifier: Arc<dyn IdentityVerifier>,
    my_round1: Vec<u8>,
    /// This member's signature of `my_round1`, as sent.
    my_round1_signature: Vec<u8>,
    /// Signed round-2 shares addressed to this member, by sender; they may arrive before the
    /// round-1 set.
    round2_received: BTreeMap<NodeId, DkgRound2>,
    state: State<S>,
    deadline: Timestamp,
    /// Wait before the next status question, once the commit is overdue.
    status_retry: Duration,
    outputs: VecDeque<Output<S>>,
}

enum State<S: Suite> {
    AwaitRound1Set {
        secret: round1::SecretPackage<S>,
    },
    AwaitRound2 {
        secret: round2::SecretPackage<S>,
        round1: BTreeMap<Identifier<S>, round1::Package<S>>,
        round1_digests: Vec<Digest>,
    },
    AwaitCommit {
        confirm: DkgConfirm,
    },
    Done,
}

impl<S: Suite> DkgParticipant<S> {
    /// Joins the DKG `open` sent by `coordinator`: validates it, runs `part1`, and queues the
    /// signed round-1 package for the coordinator.
    pub fn new(
        open: DkgOpen,
        coordinator: NodeId,
        identity: Arc<dyn NodeIdentity>,
        verifier: Arc<dyn IdentityVerifier>,
        now: Timestamp,
        timeout: Duration,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Self, ProtocolError> {
        let committee = validate_open::<S>(&open)?;
        let me = identity.node_id().clone();
        let my_id = committee.identifier(&me).ok_or_else(|| {
            ProtocolError::InvalidParameters("this node is not in the committee".into())
        })?;
        let n = committee.len() as u16;
        let (secret, package) = dkg::part1::<S, _>(my_id, n, open.threshold, &mut *rng)
            .map_err(|e| ProtocolError::Frost(e.to_string()))?;
        let my_round1 = package
            .serialize()
            .map_err(|e| ProtocolError::Frost(e.to_string()))?;
        let signature = identity.sign(&statement(&open.session, ROUND1, &me, None, &my_round1).0);
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::Send {
            to: coordinator.clone(),
            message: Message::DkgRound1(DkgRound1 {
                session: open.session,
                from: me,
                package: my_round1.clone(),
                signature: signature.clone(),
            }),
        });
        Ok(DkgParticipant {
            open,
            coordinator,
            committee,
            identity,
            verifier,
            my_round1,
            my_round1_signature: signature,
            round2_received: BTreeMap::new(),
            state: State::AwaitRound1Set { secret },
            deadline: now.after(timeout),
            status_retry: crate::STATUS_RETRY,
            outputs,
        })
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.open.session
    }

    fn me(&self) -> &NodeId {
        self.identity.node_id()
    }

    fn fail(&mut self, error: ProtocolError) {
        self.state = State::Done;
        self.outputs.push_back(Output::Event(Event::Failed(error)));
    }

    fn check_session(&self, session: &SessionId) -> Result<(), Refusal> {
        if *session == self.open.session {
            Ok(())
        } else {
            Err(Refusal::WrongSession)
        }
    }

    /// Asks what became of the session, of the coordinator and of every other member; asks
    /// again later (with backoff) if no commit comes.
    fn ask_status(&mut self, now: Timestamp) {
        let me = self.me().clone();
        let others: Vec<NodeId> = self
            .committee
            .members()
            .iter()
            .filter(|n| **n != me)
            .cloned()
            .collect();
        for to in std::iter::once(self.coordinator.clone()).chain(others) {
            self.outputs.push_back(Output::Send {
                to,
                message: Message::SessionStatus(SessionStatus {
                    session: self.open.session,
                }),
            });
        }
        self.deadline = now.after(self.status_retry);
        self.status_retry = (self.status_retry * 2).min(crate::MAX_STATUS_RETRY);
    }

    fn check_from_coordinator(&self, from: &NodeId) -> Result<(), Refusal> {
        if *from == self.coordinator {
            Ok(())
        } else {
            Err(Refusal::NotFromCoordinator(from.clone()))
        }
    }

    fn handle_round1_set(&mut self, set: DkgRound1Set) -> Result<(), ProtocolError> {
        let State::AwaitRound1Set { .. } = &self.state else {
            return Err(Refusal::Unexpected(permafrost_wire::MessageKind::DkgRound1Set).into());
        };
        if set.packages.len() != self.committee.len() {
            return Err(Refusal::Malformed(format!(
                "{} round-1 packages for {} members",
                set.packages.len(),
                self.committee.len()
            ))
            .into());
        }
        // Every package must come from the member at its position, carry that member's
        // signature, and ours must be exactly what we sent.
        let mut digests = Vec::with_capacity(set.packages.len());
        for (package, member) in set.packages.iter().zip(self.committee.members()) {
            if package.from != *member || package.session != self.open.session {
                return Err(Refusal::SenderMismatch.into());
            }
            if member == self.me()
                && package.package == self.my_round1
                && package.signature == self.my_round1_signature
            {
                // Ours, exactly as sent: no signature to check.
                digests.push(round1_digest(&package.package));
                continue;
            }
            let st = statement(&self.open.session, ROUND1, member, None, &package.package);
            if !self.verifier.verify(member, &st.0, &package.signature) {
                return Err(Refusal::BadSignature(member.clone()).into());
            }
            if member == self.me() && package.package != self.my_round1 {
                return Err(
                    Refusal::Malformed("our own round-1 package was altered".into()).into(),
                );
            }
            digests.push(round1_digest(&package.package));
        }
        // Signed by their originators from here on: a package that does not parse or whose
        // proof fails is the originator's fault.
        let mut round1_map = BTreeMap::new();
        for package in &set.packages {
            if package.from == *self.me() {
                continue;
            }
            // The coefficient count first, from the bytes: no point is decoded for a package
            // of the wrong shape.
            let claimed = crate::serialized::claimed_count(&package.package);
            if claimed != Some(u64::from(self.open.threshold)) {
                self.fail(ProtocolError::misbehaviour(
                    &package.from,
                    format!(
                        "signed a round-1 package claiming {claimed:?} coefficients, threshold is {}",
                        self.open.threshold
                    ),
                ));
                return Ok(());
            }
            let parsed = match round1::Package::<S>::deserialize(&package.package) {
                Ok(p) => p,
                Err(e) => {
                    self.fail(ProtocolError::misbehaviour(
                        &package.from,
                        format!("signed an unparsable round-1 package: {e}"),
                    ));
                    return Ok(());
                }
            };
            let id = self
                .committee
                .identifier(&package.from)
                .ok_or_else(|| Refusal::NotInCommittee(package.from.clone()))?;
            round1_map.insert(id, parsed);
        }
        let State::AwaitRound1Set { secret } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Ok(());
        };
        match crate::vss::dkg_part2(secret, &round1_map) {
            Ok((secret2, shares)) => {
                for (id, share) in shares {
                    let Some(to) = self.committee.node(&id).cloned() else {
                        continue;
                    };
                    let bytes = match share.serialize() {
                        Ok(b) => SecretBytes::new(b),
                        Err(e) => {
                            self.fail(ProtocolError::Frost(e.to_string()));
                            return Ok(());
                        }
                    };
                    let me = self.me().clone();
                    let st = statement(&self.open.session, ROUND2, &me, Some(&to), bytes.expose());
                    let signature = self.identity.sign(&st.0);
                    self.outputs.push_back(Output::Send {
                        to: to.clone(),
                        message: Message::DkgRound2(DkgRound2 {
                            session: self.open.session,
                            from: me,
                            to,
                            share: bytes,
                            signature,
                        }),
                    });
                }
                self.state = State::AwaitRound2 {
                    secret: secret2,
                    round1: round1_map,
                    round1_digests: digests,
                };
                self.try_finish_round2();
            }
            Err(e) => self.fail(self.blame(e, "round-1 package")),
        }
        Ok(())
    }

    /// Turns a frost error into a protocol error naming the culprit frost identified.
    fn blame(&self, error: FrostError<S>, what: &str) -> ProtocolError {
        match error.culprits().as_slice() {
            [] => ProtocolError::Frost(error.to_string()),
            culprits => ProtocolError::Misbehaviour {
                culprits: culprits
                    .iter()
                    .filter_map(|id| self.committee.node(id).cloned())
                    .collect(),
                reason: format!("invalid {what}: {error}"),
            },
        }
    }

    fn handle_round2(&mut self, from: &NodeId, share: DkgRound2) -> Result<(), ProtocolError> {
        if share.from != *from || share.to != *self.me() || share.from == *self.me() {
            return Err(Refusal::SenderMismatch.into());
        }
        if !self.committee.contains(from) {
            return Err(Refusal::NotInCommittee(from.clone()).into());
        }
        if matches!(self.state, State::AwaitCommit { .. } | State::Done) {
            return Err(Refusal::Unexpected(permafrost_wire::MessageKind::DkgRound2).into());
        }
        let st = statement(
            &self.open.session,
            ROUND2,
            from,
            Some(self.me()),
            share.share.expose(),
        );
        if !self.verifier.verify(from, &st.0, &share.signature) {
            return Err(Refusal::BadSignature(from.clone()).into());
        }
        match self.round2_received.get(from) {
            Some(previous) if previous.share == share.share => return Ok(()),
            Some(_) => {
                self.complain(
                    from.clone(),
                    Some(share),
                    "signed two different round-2 shares for the same recipient",
                );
                return Ok(());
            }
            None => {}
        }
        self.round2_received.insert(from.clone(), share);
        self.try_finish_round2();
        Ok(())
    }

    fn try_finish_round2(&mut self) {
        let State::AwaitRound2 {
            secret,
            round1,
            round1_digests,
        } = &self.state
        else {
            return;
        };
        if self.round2_received.len() + 1 < self.committee.len() {
            return;
        }
        let mut shares = BTreeMap::new();
        for (node, message) in &self.round2_received {
            let Some(id) = self.committee.identifier(node) else {
                continue;
            };
            match round2::Package::<S>::deserialize(message.share.expose()) {
                Ok(p) => {
                    shares.insert(id, p);
                }
                Err(_) => {
                    self.complain(node.clone(), None, "unparsable round-2 share");
                    return;
                }
            }
        }
        match crate::vss::dkg_part3(secret, round1, &shares) {
            Ok((key_package, public_key_package)) => {
                let pkp_digest = match public_key_package_digest(&public_key_package) {
                    Ok(d) => d,
                    Err(e) => return self.fail(e),
                };
                let me = self.me().clone();
                let mut confirm = DkgConfirm {
                    session: self.open.session,
                    from: me.clone(),
                    round1_digests: round1_digests.clone(),
                    public_key_package: pkp_digest,
                    signature: Vec::new(),
                };
                let st = statement(
                    &self.open.session,
                    CONFIRM,
                    &me,
                    None,
                    &confirm_payload(&confirm),
                );
                confirm.signature = self.identity.sign(&st.0);
                // Persist before acknowledging: the driver stores the pending share before it
                // sends the confirmation that follows.
                self.outputs
                    .push_back(Output::Event(Event::KeyPending(KeyShare {
                        key_id: self.open.key_id.clone(),
                        epoch: Epoch(0),
                        committee: self.committee.members().to_vec(),
                        key_package,
                        public_key_package,
                    })));
                self.outputs.push_back(Output::Send {
                    to: self.coordinator.clone(),
                    message: Message::DkgConfirm(confirm.clone()),
                });
                self.state = State::AwaitCommit { confirm };
            }
            Err(FrostError::InvalidSecretShare {
                culprit: Some(culprit),
            }) => {
                let Some(node) = self.committee.node(&culprit).cloned() else {
                    return self.fail(ProtocolError::Frost("unknown culprit".into()));
                };
                self.complain(node, None, "round-2 share inconsistent with its commitment");
            }
            Err(e) => {
                let error = self.blame(e, "round-2 share");
                self.fail(error);
            }
        }
    }

    /// Sends the coordinator a complaint against `accused` with its signed share (and a second,
    /// conflicting one if it signed two) as evidence, and ends the session.
    fn complain(&mut self, accused: NodeId, conflicting: Option<DkgRound2>, reason: &str) {
        if let Some(evidence) = self.round2_received.get(&accused).cloned() {
            self.outputs.push_back(Output::Send {
                to: self.coordinator.clone(),
                message: Message::DkgComplaint(DkgComplaint {
                    session: self.open.session,
                    from: self.me().clone(),
                    evidence,
                    conflicting,
                }),
            });
        }
        self.fail(ProtocolError::misbehaviour(&accused, reason));
    }

    fn handle_commit(&mut self, commit: permafrost_wire::DkgCommit) -> Result<(), ProtocolError> {
        let State::AwaitCommit { confirm } = &self.state else {
            return Err(Refusal::Unexpected(permafrost_wire::MessageKind::DkgCommit).into());
        };
        if commit.confirms.len() != self.committee.len() {
            return Err(Refusal::Malformed("commit lacks confirmations".into()).into());
        }
        for (c, member) in commit.confirms.iter().zip(self.committee.members()) {
            if c.from != *member || c.session != self.open.session {
                return Err(Refusal::SenderMismatch.into());
            }
            if c == confirm {
                continue; // ours, exactly as sent
            }
            verify_confirm_signature(self.verifier.as_ref(), c)?;
            if c.round1_digests != confirm.round1_digests
                || c.public_key_package != confirm.public_key_package
            {
                return Err(Refusal::Malformed(format!(
                    "commit carries a confirmation by {member} that differs from ours"
                ))
                .into());
            }
        }
        let public_key_package = confirm.public_key_package;
        self.state = State::Done;
        self.outputs.push_back(Output::Event(Event::KeyActivated {
            key_id: self.open.key_id.clone(),
            epoch: Epoch(0),
            public_key_package,
            certificate: commit,
        }));
        Ok(())
    }
}

impl<S: Suite> Session<S> for DkgParticipant<S> {
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        _now: Timestamp,
        _rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        if matches!(self.state, State::Done) {
            return Err(Refusal::Finished.into());
        }
        match message {
            Message::DkgRound1Set(set) => {
                self.check_from_coordinator(from)?;
                self.check_session(&set.session)?;
                self.handle_round1_set(set)
            }
            Message::DkgRound2(share) => {
                self.check_session(&share.session)?;
                self.handle_round2(from, share)
            }
            Message::DkgCommit(commit) => {
                // A commit proves itself (every member's signed confirmation, all equal to
                // this member's): the coordinator or any member that holds it may hand it over.
                if self.committee.identifier(from).is_none() {
                    self.check_from_coordinator(from)?;
                }
                self.check_session(&commit.session)?;
                self.handle_commit(commit)
            }
            Message::DkgAbort(abort) => {
                self.check_from_coordinator(from)?;
                self.check_session(&abort.session)?;
                if matches!(self.state, State::AwaitCommit { .. }) {
                    // Confirmed: the other members may have activated the key on its commit,
                    // so an unsigned abort deletes nothing; the pending share is kept until
                    // the commit, or until an operator discards it.
                    return Err(Refusal::AwaitingCertificate.into());
                }
                self.fail(ProtocolError::Aborted {
                    coordinator: from.clone(),
                    culprits: abort.culprits,
                    reason: abort.reason,
                });
                Ok(())
            }
            other => Err(Refusal::Unexpected(other.kind()).into()),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if now < self.deadline {
            return;
        }
        if let State::AwaitCommit { .. } = self.state {
            // Confirmed: the others may activate on a commit this member has not seen, so it
            // never gives up on its own; it asks the coordinator and every other member.
            self.ask_status(now);
            return;
        }
        let (phase, silent) = match &self.state {
            State::Done => return,
            State::AwaitRound1Set { .. } => ("DKG round-1 relay", vec![self.coordinator.clone()]),
            State::AwaitRound2 { .. } => {
                let me = self.me().clone();
                let received = &self.round2_received;
                let silent = self
                    .committee
                    .missing(|n| *n == me || received.contains_key(n));
                ("DKG round-2 shares", silent)
            }
            State::AwaitCommit { .. } => return,
        };
        self.fail(ProtocolError::Timeout { phase, silent });
    }

    fn poll_output(&mut self) -> Option<Output<S>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match self.state {
            State::Done => None,
            _ => Some(self.deadline),
        }
    }

    fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
