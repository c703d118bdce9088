use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use frost_core::keys::PublicKeyPackage;
use frost_core::round2::SignatureShare;
use frost_core::{verify_signature_share, CheaterDetection, Identifier};
use permafrost_wire::{
    ClientAuthorization, DerivationPath, Digest, Epoch, KeyId, Message, MessageKind, NodeId,
    SessionId, SignPackage, SignRequest,
};
use rand_core::CryptoRngCore;

use super::{check_key, check_signing_parameters, package_digest, EncodedCommitment, WirePackage};
use crate::{Committee, Event, Output, ProtocolError, Refusal, Session, Suite, Timestamp};

/// The coordinator's side of one signing session: ask the committee for commitments, send a
/// signing package to the first `t` that answer, aggregate their shares and verify the
/// signature (each share only if it is invalid, to name its sender).
pub struct SigningCoordinator<S: Suite> {
    session: SessionId,
    key_id: KeyId,
    epoch: Epoch,
    message: Vec<u8>,
    public_key_package: PublicKeyPackage<S>,
    committee: Committee<S>,
    threshold: usize,
    /// Commitments in order of arrival.
    commitments: Vec<(Identifier<S>, EncodedCommitment<S>)>,
    refused: BTreeMap<NodeId, String>,
    selected: Option<Selected<S>>,
    finished: bool,
    deadline: Timestamp,
    outputs: VecDeque<Output<S>>,
}

struct Selected<S: Suite> {
    package: WirePackage<S>,
    /// What the signers' shares must name (see [`super::package_digest`]).
    digest: Digest,
    signers: BTreeSet<Identifier<S>>,
    shares: BTreeMap<Identifier<S>, SignatureShare<S>>,
}

impl<S: Suite> SigningCoordinator<S> {
    /// Starts a session signing `message` with key `key_id` at `epoch`, asking every member of
    /// `committee`, with the client's authorization `client` (which every signer checks; `None`
    /// only for a reshare's test signature). `session` must be fresh randomness.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session: SessionId,
        key_id: KeyId,
        epoch: Epoch,
        message: Vec<u8>,
        client: Option<ClientAuthorization>,
        public_key_package: PublicKeyPackage<S>,
        committee: Vec<NodeId>,
        now: Timestamp,
        timeout: Duration,
    ) -> Result<Self, ProtocolError> {
        let (committee, threshold) =
            check_signing_parameters(committee, &message, &public_key_package)?;
        let request = SignRequest {
            session,
            key_id: key_id.clone(),
            epoch,
            message: message.clone(),
            path: DerivationPath::ROOT,
            client,
        };
        let outputs = committee
            .members()
            .iter()
            .map(|to| Output::Send {
                to: to.clone(),
                message: Message::SignRequest(request.clone()),
            })
            .collect();
        Ok(SigningCoordinator {
            session,
            key_id,
            epoch,
            message,
            public_key_package,
            committee,
            threshold,
            commitments: Vec::new(),
            refused: BTreeMap::new(),
            selected: None,
            finished: false,
            deadline: now.after(timeout),
            outputs,
        })
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.session
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
    ) -> Result<(), ProtocolError> {
        if self.selected.is_some() {
            return Err(Refusal::Unexpected(MessageKind::SignCommitment).into());
        }
        let commitment = EncodedCommitment::parse(bytes)?;
        if let Some((_, previous)) = self.commitments.iter().find(|(i, _)| *i == id) {
            if previous.commitment() == commitment.commitment() {
                return Ok(());
            }
            return Err(Refusal::Malformed(format!("{from} sent a second commitment")).into());
        }
        self.commitments.push((id, commitment));
        if self.commitments.len() >= self.threshold {
            self.select();
        }
        Ok(())
    }

    /// Sends the signing package to the first `t` signers that committed.
    fn select(&mut self) {
        let chosen: BTreeMap<_, _> = self
            .commitments
            .iter()
            .take(self.threshold)
            .map(|(id, c)| (*id, c.clone()))
            .collect();
        let (package, bytes) = WirePackage::write(chosen, &self.message);
        let signers = package.signers();
        for id in &signers {
            if let Some(to) = self.committee.node(id) {
                self.outputs.push_back(Output::Send {
                    to: to.clone(),
                    message: Message::SignPackage(SignPackage {
                        session: self.session,
                        key_id: self.key_id.clone(),
                        epoch: self.epoch,
                        package: bytes.clone(),
                    }),
                });
            }
        }
        self.selected = Some(Selected {
            package,
            digest: package_digest(&bytes),
            signers,
            shares: BTreeMap::new(),
        });
    }

    fn handle_share(
        &mut self,
        from: &NodeId,
        id: Identifier<S>,
        package: Digest,
        bytes: &[u8],
    ) -> Result<(), ProtocolError> {
        let Some(selected) = &mut self.selected else {
            return Err(Refusal::Unexpected(MessageKind::SignShare).into());
        };
        if !selected.signers.contains(&id) {
            return Err(Refusal::Unexpected(MessageKind::SignShare).into());
        }
        if package != selected.digest {
            // Computed on a package this session did not send: not a share of this session,
            // and no proof against the signer either.
            return Err(Refusal::PackageMismatch.into());
        }
        if selected.shares.contains_key(&id) {
            return Ok(()); // a copy of a share already held: the first one counts
        }
        let share = match SignatureShare::<S>::deserialize(bytes) {
            Ok(s) => s,
            Err(e) => {
                let error =
                    ProtocolError::misbehaviour(from, format!("unparsable signature share: {e}"));
                self.fail(error);
                return Ok(());
            }
        };
        if !self.public_key_package.verifying_shares().contains_key(&id) {
            return Err(Refusal::NotInCommittee(from.clone()).into());
        }
        // Verified with the others: the aggregate first, each share only if it is invalid
        // (or, at the deadline, the shares held, before blaming the silent).
        selected.shares.insert(id, share);
        if selected.shares.len() == selected.signers.len() {
            self.aggregate();
        }
        Ok(())
    }

    fn aggregate(&mut self) {
        let Some(selected) = &self.selected else {
            return;
        };
        // The aggregate is verified; only if it is invalid are the shares, to name the first
        // invalid one.
        let result = super::round2::aggregate(
            &selected.package,
            &selected.shares,
            &self.public_key_package,
            CheaterDetection::FirstCheater,
            None,
        );
        match result {
            Ok(signature) => {
                let mut signers: Vec<NodeId> = selected
                    .signers
                    .iter()
                    .filter_map(|id| self.committee.node(id).cloned())
                    .collect();
                signers.sort();
                self.finished = true;
                self.outputs.push_back(Output::Event(Event::SignatureReady {
                    signature,
                    signers,
                    culprits: Vec::new(),
                    passed_over: Vec::new(),
                }));
            }
            Err(frost_core::Error::InvalidSignatureShare { culprits }) if !culprits.is_empty() => {
                let error = self.invalid_share(&culprits);
                self.fail(error);
            }
            Err(e) => self.fail(ProtocolError::Frost(e.to_string())),
        }
    }

    /// The shares held that do not verify, in identifier order.
    fn invalid_shares(&self) -> Vec<Identifier<S>> {
        let Some(selected) = &self.selected else {
            return Vec::new();
        };
        selected
            .shares
            .iter()
            .filter(|(id, share)| {
                self.public_key_package
                    .verifying_shares()
                    .get(id)
                    .is_none_or(|verifying_share| {
                        verify_signature_share(
                            **id,
                            verifying_share,
                            share,
                            selected.package.package(),
                            self.public_key_package.verifying_key(),
                        )
                        .is_err()
                    })
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The failure that names the first of `culprits` for an invalid signature share.
    fn invalid_share(&self, culprits: &[Identifier<S>]) -> ProtocolError {
        match culprits.first().and_then(|id| self.committee.node(id)) {
            Some(node) => ProtocolError::misbehaviour(node, "invalid signature share"),
            None => ProtocolError::Frost("an invalid signature share from no member".into()),
        }
    }

    fn handle_refusal(&mut self, from: &NodeId, id: Identifier<S>, reason: String) {
        let already_answered = match &self.selected {
            Some(s) => s.shares.contains_key(&id),
            None => self.commitments.iter().any(|(i, _)| *i == id),
        };
        if already_answered {
            // A late refusal (e.g. of a retransmitted request) changes nothing we hold.
            return;
        }
        self.refused.insert(from.clone(), reason);
        let selected_refused = self
            .selected
            .as_ref()
            .zip(self.committee.identifier(from))
            .is_some_and(|(s, id)| s.signers.contains(&id));
        let committed = self.commitments.len();
        let possible = self.committee.len() - self.refused.len();
        if selected_refused {
            // A share held that does not verify names its sender, rather than the refuser.
            let invalid = self.invalid_shares();
            if !invalid.is_empty() {
                let error = self.invalid_share(&invalid);
                self.fail(error);
                return;
            }
        }
        if selected_refused || (self.selected.is_none() && possible < self.threshold) {
            let culprits: Vec<NodeId> = self.refused.keys().cloned().collect();
            let reasons: Vec<String> = self
                .refused
                .iter()
                .map(|(n, r)| format!("{n}: {r}"))
                .collect();
            self.fail(ProtocolError::SignersRefused {
                refused: culprits,
                reason: format!(
                    "signers refused ({committed} commitments, threshold {}): {}",
                    self.threshold,
                    reasons.join("; ")
                ),
            });
        }
    }
}

impl<S: Suite> Session<S> for SigningCoordinator<S> {
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
        let id = self
            .committee
            .identifier(from)
            .ok_or_else(|| Refusal::NotInCommittee(from.clone()))?;
        match message {
            Message::SignCommitment(m) => {
                if m.session != self.session {
                    return Err(Refusal::WrongSession.into());
                }
                self.check_key(&m.key_id, m.epoch)?;
                self.handle_commitment(from, id, &m.commitment)
            }
            Message::SignShare(m) => {
                if m.session != self.session {
                    return Err(Refusal::WrongSession.into());
                }
                self.check_key(&m.key_id, m.epoch)?;
                self.handle_share(from, id, m.package, &m.share)
            }
            Message::SignRefusal(m) => {
                if m.session != self.session {
                    return Err(Refusal::WrongSession.into());
                }
                self.handle_refusal(from, id, m.reason);
                Ok(())
            }
            other => Err(Refusal::Unexpected(other.kind()).into()),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.finished || now < self.deadline {
            return;
        }
        // A share held that does not verify names its sender, rather than the silent.
        let invalid = self.invalid_shares();
        let error = match &self.selected {
            None => {
                let answered: BTreeSet<_> = self.commitments.iter().map(|(id, _)| *id).collect();
                let committee = &self.committee;
                let refused = &self.refused;
                ProtocolError::Timeout {
                    phase: "signing commitments",
                    silent: committee.missing(|n| {
                        refused.contains_key(n)
                            || committee
                                .identifier(n)
                                .is_some_and(|id| answered.contains(&id))
                    }),
                }
            }
            Some(_) if !invalid.is_empty() => self.invalid_share(&invalid),
            Some(selected) => ProtocolError::Timeout {
                phase: "signature shares",
                silent: selected
                    .signers
                    .iter()
                    .filter(|id| !selected.shares.contains_key(id))
                    .filter_map(|id| self.committee.node(id).cloned())
                    .collect(),
            },
        };
        self.fail(error);
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
