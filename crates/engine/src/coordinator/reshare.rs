//! The coordinator's part in reshares: the proposal, one reshare per key at a time, the reshare
//! recorded as running before it starts and its outcome recorded before it is sent, the
//! recorded outcome sent again to a member that asks, and reshares a previous run left
//! running recorded as aborted.

use permafrost_protocol::{lifecycle, ProtocolError, Timestamp};
use permafrost_wire::{
    Epoch, KeyId, Message, NodeId, OperatorApproval, ReshareAbort, ReshareProposal, SessionId,
};
use rand_core::CryptoRngCore;

use super::{
    names, CoordinatorCore, CoordinatorNotice, CoordinatorOutput, CoordinatorSetup, KeyMeta,
    MetadataError, MetadataStore, RequestId, ReshareEntry, ReshareState, Running,
};
use crate::any::{self, AnyEvent};

/// A reshare in flight: the key as it was, and the entry recorded for it.
pub(super) struct RunningReshare {
    pub(super) meta: KeyMeta,
    pub(super) entry: ReshareEntry,
}

impl<M: MetadataStore> CoordinatorCore<M> {
    /// Reshares `key_id` to `committee` with `threshold`. The dealers are the old members that
    /// stay (so an evicted node does not deal), or every old member still listed as a signer
    /// node when fewer than the old threshold stay.
    #[allow(clippy::too_many_arguments)]
    pub fn reshare(
        &mut self,
        request: RequestId,
        key_id: &KeyId,
        committee: Vec<NodeId>,
        threshold: u16,
        approvals: Vec<OperatorApproval>,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) {
        let proposal = self.proposal(key_id, committee, threshold);
        match proposal {
            Ok(proposal) => {
                self.reshare_with(request, proposal, approvals, now, rng);
            }
            Err(e) => self.done(request, Err(e)),
        }
    }

    /// Runs the reshare `proposal` (of a key this coordinator holds), as built by
    /// [`reshare`](Self::reshare) or by a test. Returns its session, or `None` if it was
    /// refused (the refusal is the request's answer).
    pub fn reshare_with(
        &mut self,
        request: RequestId,
        proposal: ReshareProposal,
        approvals: Vec<OperatorApproval>,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Option<SessionId> {
        self.now = self.now.max(now);
        let started = self
            .approvals(&lifecycle::reshare_action(&proposal), approvals, now, rng)
            .and_then(|approvals| self.start_reshare(request, proposal, approvals, None, now));
        match started {
            Ok(session) => Some(session),
            Err(e) => {
                self.done(request, Err(e));
                None
            }
        }
    }

    /// The session of the running reshare of `key_id`, if any.
    pub fn running_reshare(&self, key_id: &KeyId) -> Option<SessionId> {
        self.running
            .iter()
            .find_map(|(session, (running, _))| match running {
                Running::Reshare(r) if r.meta.key_id == *key_id => Some(*session),
                _ => None,
            })
    }

    pub(super) fn proposal(
        &self,
        key_id: &KeyId,
        committee: Vec<NodeId>,
        threshold: u16,
    ) -> Result<ReshareProposal, ProtocolError> {
        let meta = self.known_key(key_id)?;
        let mut old_committee = meta.committee.clone();
        old_committee.sort();
        let mut new_committee = committee;
        new_committee.sort();
        let staying: Vec<NodeId> = old_committee
            .iter()
            .filter(|n| new_committee.contains(n))
            .cloned()
            .collect();
        // An old member no longer listed as a signer node (evicted from the network file)
        // never deals; the proposal's old package still names it, which binds the old epoch.
        let dealers = if staying.len() >= usize::from(meta.threshold) {
            staying
        } else {
            old_committee
                .iter()
                .filter(|n| self.setup.nodes.contains_key(*n))
                .cloned()
                .collect()
        };
        Ok(ReshareProposal {
            key_id: key_id.clone(),
            curve: meta.curve,
            epoch: meta.epoch,
            attempt: self.next_attempt(key_id, meta.epoch)?,
            old_committee,
            old_public_key_package: meta.public_key_package,
            new_committee,
            new_threshold: threshold,
            dealers,
        })
    }

    pub(super) fn known_key(&self, key_id: &KeyId) -> Result<KeyMeta, ProtocolError> {
        self.store
            .key(key_id)
            .map_err(|e| ProtocolError::Frost(e.to_string()))?
            .ok_or_else(|| ProtocolError::InvalidParameters(format!("unknown key {key_id}")))
    }

    /// The next attempt number for a reshare of `key_id` at `epoch`: one past every attempt
    /// recorded, so a new attempt never reuses a session id.
    fn next_attempt(&self, key_id: &KeyId, epoch: Epoch) -> Result<u32, ProtocolError> {
        self.store
            .next_reshare_attempt(key_id, epoch)
            .map_err(|e| ProtocolError::Frost(e.to_string()))
    }

    /// One reshare per key at a time, whatever the caller thinks (two sessions for the same
    /// epoch would race to write the same next epoch on the members); members are signer
    /// nodes; recorded as running (durably) before the session starts.
    pub(super) fn start_reshare(
        &mut self,
        request: RequestId,
        proposal: ReshareProposal,
        approvals: Vec<OperatorApproval>,
        rotation: Option<u64>,
        now: Timestamp,
    ) -> Result<SessionId, ProtocolError> {
        if let Some(other) = self.running_reshare(&proposal.key_id) {
            return Err(ProtocolError::InvalidParameters(format!(
                "a reshare of key {} is already running ({other})",
                proposal.key_id
            )));
        }
        // Who receives shares and who deals must be signer nodes. The old committee need not:
        // a key must stay resharable after one of its holders left the network file.
        self.members(&proposal.new_committee)?;
        self.members(&proposal.dealers)?;
        let meta = self.known_key(&proposal.key_id)?;
        let (key_id, epoch, attempt) = (proposal.key_id.clone(), proposal.epoch, proposal.attempt);
        let (session, test_session, reshare) = any::reshare_coordinator(
            proposal,
            approvals,
            rotation,
            self.setup.verifier.clone(),
            now,
            crate::deadlines::RESHARE,
        )?;
        let entry = ReshareEntry {
            session,
            key_id: key_id.clone(),
            epoch,
            attempt,
            state: ReshareState::Running,
        };
        self.store
            .put_reshare(&entry)
            .map_err(|e| ProtocolError::Frost(format!("cannot record the reshare: {e}")))?;
        self.notice(CoordinatorNotice::ReshareStarted {
            key_id,
            epoch,
            attempt,
            session,
        });
        self.aliases.insert(test_session, session);
        self.start(
            session,
            reshare,
            Running::Reshare(Box::new(RunningReshare { meta, entry })),
            request,
        );
        Ok(session)
    }

    /// A member asks what became of a reshare: it is sent the recorded commit or abort again.
    pub(super) fn answer_status(
        &mut self,
        from: &NodeId,
        session: SessionId,
    ) -> Result<(), ProtocolError> {
        let entry = self
            .store
            .reshare(&session)
            .map_err(|e| ProtocolError::Frost(e.to_string()))?
            .ok_or_else(|| {
                ProtocolError::InvalidParameters(format!(
                    "this coordinator recorded no reshare {session} (a DKG's commit is handed over by the members that activated it)"
                ))
            })?;
        let outcome = match entry.state {
            // It gets the outcome with everyone else.
            ReshareState::Running => return Ok(()),
            ReshareState::Committed(commit) => Message::ReshareCommit(commit),
            ReshareState::Aborted(abort) => Message::ReshareAbort(abort),
        };
        self.outputs.push_back(CoordinatorOutput::Transmit {
            to: from.clone(),
            message: outcome,
            session,
            tracked: false,
        });
        self.notice(CoordinatorNotice::ReshareOutcomeResent {
            to: from.clone(),
            session,
        });
        Ok(())
    }

    /// Records every reshare a previous run left running as aborted.
    pub(super) fn abort_unfinished_reshares(&mut self) -> Result<(), MetadataError> {
        for entry in self.store.running_reshares()? {
            let (key_id, session) = (entry.key_id.clone(), entry.session);
            let entry = aborted(
                entry,
                Vec::new(),
                "the coordinator restarted during the reshare".into(),
            );
            self.store.put_reshare(&entry)?;
            self.notice(CoordinatorNotice::ReshareAbortedAtStart { key_id, session });
        }
        Ok(())
    }
}

/// `entry` recorded as aborted, with the `ReshareAbort` a member asking is sent.
pub(super) fn aborted(entry: ReshareEntry, culprits: Vec<NodeId>, reason: String) -> ReshareEntry {
    ReshareEntry {
        state: ReshareState::Aborted(ReshareAbort {
            session: entry.session,
            culprits,
            reason,
        }),
        ..entry
    }
}

/// Records a committed reshare: the key's new epoch, committee and threshold, and the
/// certificate, in one step. The group key must be unchanged.
pub(super) fn record_commit<M: MetadataStore>(
    store: &mut M,
    setup: &CoordinatorSetup,
    running: &RunningReshare,
    event: &AnyEvent,
) -> Result<CoordinatorNotice, MetadataError> {
    let AnyEvent::KeyReshared {
        epoch,
        committee,
        threshold,
        public_key_package,
        public_key,
        certificate,
        ..
    } = event
    else {
        return Err(MetadataError::Unreadable("not a reshare commit".into()));
    };
    if *public_key != running.meta.public_key {
        return Err(MetadataError::Unreadable("the group key changed".into()));
    }
    let meta = KeyMeta {
        threshold: *threshold,
        nodes: names(setup, committee),
        committee: committee.clone(),
        public_key: public_key.clone(),
        public_key_package: public_key_package.clone(),
        epoch: *epoch,
        ..running.meta.clone()
    };
    let entry = ReshareEntry {
        state: ReshareState::Committed(certificate.clone()),
        ..running.entry.clone()
    };
    store.commit_reshare(&meta, &entry)?;
    Ok(CoordinatorNotice::ReshareCommitted {
        key_id: meta.key_id,
        epoch: meta.epoch,
        nodes: meta.nodes,
    })
}
