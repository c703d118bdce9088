//! Admission of a key's life-cycle actions: a DKG or reshare open is joined only within this
//! node's floors and on a valid approval from an operator key it lists; the approval's request
//! id and its audit entry are written, then the session's own record (a DKG's concluded
//! session, a reshare's record) makes them durable with it in one synced write, before
//! anything of the session happens.

use std::time::Duration;

use permafrost_keystore::{AuditKind, ClientRequestRow, KeystoreError};
use permafrost_protocol::lifecycle::{self, ApprovedAction};
use permafrost_protocol::{ProtocolError, Refusal, Timestamp};
use permafrost_wire::{
    LifecycleAction, LifecycleKind, NodeId, OperatorApproval, ReshareProposal, SessionId,
};

use super::store::{AuditDurability, StoreError};
use super::{audit, NodeCore, NodeNotice, NodeStore};
use crate::any;

impl<St: NodeStore> NodeCore<St> {
    /// Decides on joining `session`, which asks for `action`, carried with `approvals` by
    /// `coordinator`. On an approval, writes its admission, then runs `record_session`, the
    /// session's own durable write, which makes the admission durable with it: when this returns
    /// `Ok`, both are on disk (one sync, not two). A refusal is audited.
    pub(super) fn approve_lifecycle(
        &mut self,
        coordinator: &NodeId,
        session: SessionId,
        action: &LifecycleAction,
        approvals: &[OperatorApproval],
        now: Timestamp,
        record_session: impl FnOnce(&mut St) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let decision = self
            .operators
            .check(session, action, approvals, now)
            .and_then(|approved| {
                self.admit_approval(coordinator, action, &approved, now)?;
                Ok(approved.operator.to_string())
            });
        self.settle_approval(coordinator, session, action, decision, now, record_session)
    }

    /// Ends the decision on joining `session`: a refusal is audited and returned; an approval
    /// (by `operator`), already written, is made durable by `record_session`, the session's own
    /// durable write, and only then reported.
    fn settle_approval(
        &mut self,
        coordinator: &NodeId,
        session: SessionId,
        action: &LifecycleAction,
        decision: Result<String, Refusal>,
        now: Timestamp,
        record_session: impl FnOnce(&mut St) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let operator = match decision {
            Ok(operator) => operator,
            Err(refusal) => {
                self.refuse_lifecycle(coordinator, session, action, refusal.clone(), now);
                return Err(refusal.into());
            }
        };
        record_session(&mut self.store)?;
        self.notice(NodeNotice::LifecycleApproved {
            key_id: action.key_id.clone(),
            session,
            operator,
        });
        Ok(())
    }

    /// Decides on joining the scheduled refresh `proposal` in `session`, carried by
    /// `coordinator` with the approvals of a standing rotation policy of every `every_secs`
    /// seconds: a refresh that keeps the committee and threshold, approved by an operator key
    /// this node lists, and at least half an interval after the last scheduled refresh of the
    /// key this node joined. The audit entry is written, then `record_session` (the session's
    /// durable write) makes it durable with it before this returns `Ok`; a refusal is audited.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn approve_rotation(
        &mut self,
        coordinator: &NodeId,
        session: SessionId,
        proposal: &ReshareProposal,
        every_secs: u64,
        approvals: &[OperatorApproval],
        now: Timestamp,
        record_session: impl FnOnce(&mut St) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let (group_key, old_threshold) =
            any::package_facts(proposal.curve, &proposal.old_public_key_package)?;
        let action = lifecycle::rotation_action(proposal, &group_key, every_secs);
        let decision = self
            .operators
            .check_standing(proposal, old_threshold, &action, approvals, now)
            .and_then(|(operator, approved_at)| {
                let spacing = Duration::from_secs(every_secs / 2);
                if let Some(last) = self.rotations.get(&proposal.key_id) {
                    if now < last.after(spacing) {
                        return Err(Refusal::NotApproved(format!(
                            "the last scheduled refresh of key {} joined here was {} ms ago; the policy of every {every_secs} s allows the next after {} ms",
                            proposal.key_id,
                            now.0.saturating_sub(last.0),
                            spacing.as_millis()
                        )));
                    }
                }
                self.write_rotation_approval(coordinator, session, &action, operator, approved_at, now)?;
                Ok(operator.to_string())
            });
        self.settle_approval(coordinator, session, &action, decision, now, record_session)?;
        self.rotations.insert(proposal.key_id.clone(), now);
        Ok(())
    }

    /// Writes the audit entry of a scheduled refresh's approval, not synced: durable with the
    /// session's record.
    fn write_rotation_approval(
        &mut self,
        coordinator: &NodeId,
        session: SessionId,
        action: &LifecycleAction,
        operator: permafrost_protocol::lifecycle::OperatorKey,
        approved_at: u64,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let LifecycleKind::Rotation { every_secs } = action.kind else {
            return Err(Refusal::NotApproved("not a rotation policy".into()));
        };
        let committee: Vec<String> = action.committee.iter().map(ToString::to_string).collect();
        let entry = audit::entry(
            now,
            AuditKind::Reshare,
            Some(&action.key_id),
            action.epoch,
            None,
            (self.setup.peer_name)(coordinator),
            format!(
                "scheduled refresh of session {session} approved by the standing rotation policy of operator {operator} (every {every_secs} s, approved at {approved_at}): threshold {} of [{}]",
                action.threshold,
                committee.join(", ")
            ),
        );
        // Durable with the session's record, before the node deals anything of the session.
        match self.store.append_audit(&entry, AuditDurability::Lazy) {
            Ok(()) => Ok(()),
            Err(error) => {
                let refusal = Refusal::Limit(format!("cannot record the approval: {error}"));
                self.notice(NodeNotice::StoreFailed {
                    operation: "recording a rotation policy's approval",
                    key_id: Some(action.key_id.clone()),
                    error,
                });
                Err(refusal)
            }
        }
    }

    /// Audits (lazily) and reports an open refused for `action`.
    pub(super) fn refuse_lifecycle(
        &mut self,
        coordinator: &NodeId,
        session: SessionId,
        action: &LifecycleAction,
        refusal: Refusal,
        now: Timestamp,
    ) {
        let entry = audit::entry(
            now,
            AuditKind::Refused,
            Some(&action.key_id),
            action.epoch,
            None,
            (self.setup.peer_name)(coordinator),
            format!(
                "{} open of session {session} refused: {refusal}",
                action.kind.as_str()
            ),
        );
        if let Err(error) = self.append_refusal(&entry, self.now) {
            self.notice(NodeNotice::StoreFailed {
                operation: "auditing a refused open",
                key_id: Some(action.key_id.clone()),
                error,
            });
        }
        self.notice(NodeNotice::LifecycleRefused {
            key_id: action.key_id.clone(),
            session,
            refusal,
        });
    }

    /// Writes an approval's admission (its request id, held by the gate from now on, and its
    /// audit entry), not synced: durable with the session's record.
    fn admit_approval(
        &mut self,
        coordinator: &NodeId,
        action: &LifecycleAction,
        approved: &ApprovedAction,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let row = ClientRequestRow {
            client: approved.operator.0,
            request_id: approved.request_id,
            session: approved.session.0,
            expires_unix_ms: approved.expires_ms,
        };
        let kind = match action.kind {
            LifecycleKind::Dkg => AuditKind::Dkg,
            LifecycleKind::Reshare | LifecycleKind::Rotation { .. } => AuditKind::Reshare,
        };
        let committee: Vec<String> = action.committee.iter().map(ToString::to_string).collect();
        let entry = audit::entry(
            now,
            kind,
            Some(&action.key_id),
            action.epoch,
            None,
            (self.setup.peer_name)(coordinator),
            format!(
                "{} of session {} approved by operator {} (request {}, timestamp {}): threshold {} of [{}]",
                action.kind.as_str(),
                approved.session,
                approved.operator,
                hex::encode(approved.request_id),
                approved.timestamp_ms,
                action.threshold,
                committee.join(", ")
            ),
        );
        // Durable with the session's record, before the node deals or stores anything of the
        // session.
        let admitted = self.store.admit_client_request(&row, &entry, now.0);
        if admitted.is_ok() {
            // Written (if not yet synced): the gate holds the id from now on, as the store
            // does, also if the session's record fails and the open is refused.
            self.operators.record(approved, now);
        }
        match admitted {
            Ok(()) => Ok(()),
            Err(StoreError::Keystore(KeystoreError::Conflict(why))) => {
                Err(Refusal::NotApproved(why))
            }
            Err(error) => {
                let refusal = Refusal::Limit(format!("cannot record the approval: {error}"));
                self.notice(NodeNotice::StoreFailed {
                    operation: "recording an operator approval",
                    key_id: Some(action.key_id.clone()),
                    error,
                });
                Err(refusal)
            }
        }
    }
}
