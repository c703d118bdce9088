//! Scheduled share rotation: a key's standing policy, approved once by operators, that the
//! coordinator runs on schedule. Each run is an ordinary reshare to the same committee and
//! threshold that carries the policy's approvals; every member checks it against them
//! (`OperatorGate::check_standing`), so the policy gives the coordinator no power to change a
//! committee or a threshold. A run that was due while the coordinator was down runs once when
//! it is back, and the next is due an interval later.

use std::time::Duration;

use permafrost_protocol::{lifecycle, ProtocolError, Timestamp};
use permafrost_wire::{KeyId, OperatorApproval, MIN_ROTATION_SECS};
use rand_core::CryptoRngCore;

use super::{CoordinatorCore, CoordinatorNotice, MetadataStore, RequestId, RotationPolicy};

/// The request id scheduled rotations run under: no caller waits for them (callers' ids
/// count up from 0).
pub const ROTATION_REQUEST: RequestId = RequestId::MAX;

impl<M: MetadataStore> CoordinatorCore<M> {
    /// Sets the rotation policy of `key_id`: refresh every `every_secs`, keeping the key's
    /// current committee and threshold, approved by `approvals` (operators' approvals of
    /// [`lifecycle::rotation_policy_action`]; none: the gateway operator key approves). The
    /// first run is due `every_secs` from `now`. The coordinator only refuses approvals that do
    /// not verify over this policy; whose keys count is for every member to judge, at every run.
    pub fn set_rotation(
        &mut self,
        key_id: &KeyId,
        every_secs: u64,
        approvals: Vec<OperatorApproval>,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<RotationPolicy, ProtocolError> {
        self.now = self.now.max(now);
        if every_secs < MIN_ROTATION_SECS {
            return Err(ProtocolError::InvalidParameters(format!(
                "a rotation every {every_secs} s is more often than every {MIN_ROTATION_SECS} s"
            )));
        }
        let meta = self.known_key(key_id)?;
        let mut committee = meta.committee.clone();
        committee.sort();
        let action = lifecycle::rotation_policy_action(
            key_id,
            meta.curve,
            &meta.public_key,
            committee.clone(),
            meta.threshold,
            every_secs,
        );
        let approvals = self.approvals(&action, approvals, now, rng)?;
        // Which operator keys count is each member's business; an approval that does not even
        // verify over this policy is the caller's mistake, refused now rather than at every run.
        if let Some(why) = approvals
            .iter()
            .find_map(|a| a.verify(&self.setup.network_id, &action).err())
        {
            return Err(ProtocolError::InvalidParameters(format!(
                "not an approval of this rotation policy: {why}"
            )));
        }
        let policy = RotationPolicy {
            key_id: key_id.clone(),
            every_secs,
            committee,
            threshold: meta.threshold,
            approvals,
            last_ms: None,
            next_ms: now.after(Duration::from_secs(every_secs)).0,
        };
        self.store
            .put_rotation(&policy)
            .map_err(|e| ProtocolError::Frost(format!("cannot record the rotation policy: {e}")))?;
        self.rotation_due = self.next_rotation();
        Ok(policy)
    }

    /// Removes the rotation policy of `key_id`; whether it had one. A run already started
    /// goes on to its end.
    pub fn clear_rotation(&mut self, key_id: &KeyId) -> Result<bool, ProtocolError> {
        let removed = self
            .store
            .delete_rotation(key_id)
            .map_err(|e| ProtocolError::Frost(format!("cannot remove the rotation policy: {e}")))?;
        self.rotation_due = self.next_rotation();
        Ok(removed)
    }

    /// The rotation policy of `key_id`, if it has one.
    pub fn rotation(&self, key_id: &KeyId) -> Result<Option<RotationPolicy>, ProtocolError> {
        Ok(self
            .rotation_policies()?
            .into_iter()
            .find(|p| p.key_id == *key_id))
    }

    fn rotation_policies(&self) -> Result<Vec<RotationPolicy>, ProtocolError> {
        self.store
            .rotations()
            .map_err(|e| ProtocolError::Frost(format!("cannot read the rotation policies: {e}")))
    }

    /// When the next scheduled rotation is due, if any.
    pub(super) fn next_rotation(&self) -> Option<Timestamp> {
        self.rotation_policies()
            .ok()?
            .iter()
            .map(|p| Timestamp(p.next_ms))
            .min()
    }

    /// Starts every rotation due at `now` whose key has no reshare running. Its next run is
    /// due an interval from now, whatever this one comes to (a failed run is retried then;
    /// runs missed while the coordinator was down run once). A policy whose key's committee
    /// or threshold changed since it was approved is not run (every member would refuse it).
    pub(super) fn run_due_rotations(&mut self, now: Timestamp) {
        let Ok(policies) = self.rotation_policies() else {
            return;
        };
        for mut policy in policies {
            if now.0 < policy.next_ms || self.running_reshare(&policy.key_id).is_some() {
                continue;
            }
            policy.next_ms = now.after(Duration::from_secs(policy.every_secs)).0;
            if let Err(e) = self.store.put_rotation(&policy) {
                self.notice(CoordinatorNotice::RotationFailed {
                    key_id: policy.key_id.clone(),
                    error: ProtocolError::Frost(format!("cannot record the next run: {e}")),
                });
                continue;
            }
            let started = self
                .proposal(&policy.key_id, policy.committee.clone(), policy.threshold)
                .and_then(|proposal| {
                    let meta = self.known_key(&policy.key_id)?;
                    let mut committee = meta.committee.clone();
                    committee.sort();
                    if committee != policy.committee || meta.threshold != policy.threshold {
                        return Err(ProtocolError::InvalidParameters(format!(
                            "the key is now {} of {} members, not the {} of {} its rotation policy was approved for: set a new policy",
                            meta.threshold,
                            committee.len(),
                            policy.threshold,
                            policy.committee.len()
                        )));
                    }
                    self.start_reshare(
                        ROTATION_REQUEST,
                        proposal,
                        policy.approvals.clone(),
                        Some(policy.every_secs),
                        now,
                    )
                });
            match started {
                Ok(session) => {
                    self.rotating.insert(session, policy.key_id.clone());
                    self.notice(CoordinatorNotice::RotationStarted {
                        key_id: policy.key_id.clone(),
                        session,
                    });
                }
                Err(error) => self.notice(CoordinatorNotice::RotationFailed {
                    key_id: policy.key_id.clone(),
                    error,
                }),
            }
        }
    }
}
