//! Node-side approval of a key's life cycle: the coordinator is trusted for liveness only, so
//! every node that takes part in a DKG or a reshare checks on its own that an operator it
//! accepts approved exactly that action, and that the action keeps to its own floors.
//!
//! A [`DkgOpen`] or [`ReshareOpen`](permafrost_wire::ReshareOpen) carries [`OperatorApproval`]s: ed25519 signatures over the
//! network id and the [`LifecycleAction`] (what, which key and curve, which epoch and old public
//! key package, the committee and threshold afterwards), a request id and a timestamp. An
//! [`OperatorGate`] admits an open only if
//! - its threshold and committee size are at least the node's floors;
//! - one approval is from an operator key in the node's [`OperatorPolicy`] (for all keys or for
//!   this key), verifies over exactly this network and action, is within the clock skew, and its
//!   request id was not admitted before in another session.
//!
//! The gate is pure: [`OperatorGate::check`] decides, the caller makes the admission durable
//! before [`OperatorGate::record`] and before it deals or stores anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use permafrost_wire::{
    Digest, DkgOpen, Epoch, KeyId, LifecycleAction, LifecycleKind, OperatorApproval,
    ReshareProposal, SessionId, MAX_APPROVALS,
};
use sha2::{Digest as _, Sha256};

use crate::request_ids::{remembered_until, restored_until, RequestIds};
use crate::sign::client::{DEFAULT_MAX_CLOCK_SKEW, REQUEST_ID_RETENTION};
use crate::{Refusal, Timestamp};

/// The default floor on a key's threshold: no single node can sign alone.
pub const DEFAULT_MIN_THRESHOLD: u16 = 2;

/// The default floor on a key's committee size.
pub const DEFAULT_MIN_COMMITTEE: usize = 2;

/// An operator's ed25519 public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperatorKey(pub [u8; 32]);

impl fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorKey({self})")
    }
}

impl fmt::Display for OperatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Whose approval a node requires for a key's life-cycle actions, and its floors.
#[derive(Clone, Debug)]
pub struct OperatorPolicy {
    /// Accepted for every key.
    pub all_keys: BTreeSet<OperatorKey>,
    /// Accepted for one key only.
    pub per_key: BTreeMap<KeyId, BTreeSet<OperatorKey>>,
    /// Largest accepted difference between an approval's timestamp and the node's clock; at
    /// most [`REQUEST_ID_RETENTION`].
    pub max_clock_skew: Duration,
    /// The lowest threshold this node takes part in.
    pub min_threshold: u16,
    /// The smallest committee this node takes part in.
    pub min_committee: usize,
}

impl Default for OperatorPolicy {
    /// Accepts no operator: no DKG or reshare is joined until an operator key is listed.
    fn default() -> Self {
        OperatorPolicy {
            all_keys: BTreeSet::new(),
            per_key: BTreeMap::new(),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            min_threshold: DEFAULT_MIN_THRESHOLD,
            min_committee: DEFAULT_MIN_COMMITTEE,
        }
    }
}

impl OperatorPolicy {
    /// Whether `operator` may approve life-cycle actions of `key_id`.
    pub fn accepts(&self, operator: &OperatorKey, key_id: &KeyId) -> bool {
        self.all_keys.contains(operator)
            || self
                .per_key
                .get(key_id)
                .is_some_and(|keys| keys.contains(operator))
    }
}

/// The action a DKG open asks for.
pub fn dkg_action(open: &DkgOpen) -> LifecycleAction {
    LifecycleAction {
        kind: LifecycleKind::Dkg,
        key_id: open.key_id.clone(),
        curve: open.curve,
        epoch: Epoch(0),
        old_public_key_package: Digest([0; 32]),
        committee: open.committee.clone(),
        threshold: open.threshold,
    }
}

/// The action a reshare proposal asks for.
pub fn reshare_action(proposal: &ReshareProposal) -> LifecycleAction {
    LifecycleAction {
        kind: LifecycleKind::Reshare,
        key_id: proposal.key_id.clone(),
        curve: proposal.curve,
        epoch: proposal.epoch,
        old_public_key_package: public_key_package_digest(&proposal.old_public_key_package),
        committee: proposal.new_committee.clone(),
        threshold: proposal.new_threshold,
    }
}

/// The standing rotation policy a scheduled refresh `proposal` runs under: refresh key
/// `proposal.key_id` (group key `group_key`, `VerifyingKey::serialize()`) every `every_secs`,
/// keeping the committee and threshold the proposal gives. A member accepts the policy's
/// approvals for this proposal only if it is such a refresh (see
/// [`OperatorGate::check_standing`]).
pub fn rotation_action(
    proposal: &ReshareProposal,
    group_key: &[u8],
    every_secs: u64,
) -> LifecycleAction {
    rotation_policy_action(
        &proposal.key_id,
        proposal.curve,
        group_key,
        proposal.new_committee.clone(),
        proposal.new_threshold,
        every_secs,
    )
}

/// The action an operator signs to approve a standing rotation policy: refresh key `key_id`
/// on `curve` (group key `group_key`) every `every_secs`, keeping `committee` (sorted) and
/// `threshold`.
pub fn rotation_policy_action(
    key_id: &KeyId,
    curve: permafrost_wire::Curve,
    group_key: &[u8],
    committee: Vec<permafrost_wire::NodeId>,
    threshold: u16,
    every_secs: u64,
) -> LifecycleAction {
    LifecycleAction {
        kind: LifecycleKind::Rotation { every_secs },
        key_id: key_id.clone(),
        curve,
        epoch: Epoch(0),
        old_public_key_package: Digest(Sha256::digest(group_key).into()),
        committee,
        threshold,
    }
}

/// The digest an approval names a public key package by: SHA-256 of its serialized bytes.
pub fn public_key_package_digest(package: &[u8]) -> Digest {
    Digest(Sha256::digest(package).into())
}

/// An approval the gate admitted: make it durable, then [`OperatorGate::record`] it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovedAction {
    /// The operator whose approval was admitted.
    pub operator: OperatorKey,
    /// Its request id.
    pub request_id: [u8; 16],
    /// The session it was admitted in.
    pub session: SessionId,
    /// Its timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Forget its request id after this (its timestamp plus [`REQUEST_ID_RETENTION`]).
    pub expires_ms: u64,
}

/// The node's admission check for DKG and reshare opens; see the [module documentation](self).
#[derive(Debug)]
pub struct OperatorGate {
    network_id: String,
    policy: OperatorPolicy,
    seen: RequestIds,
}

impl OperatorGate {
    /// A gate applying `policy` on network `network_id`, remembering nothing yet. A skew over
    /// [`REQUEST_ID_RETENTION`] is lowered to it.
    pub fn new(network_id: impl Into<String>, policy: OperatorPolicy) -> Self {
        let mut gate = OperatorGate {
            network_id: network_id.into(),
            policy: OperatorPolicy::default(),
            seen: RequestIds::default(),
        };
        gate.set_policy(policy);
        gate
    }

    /// Applies `policy` from now on, remembering every request id it remembers now. A skew over
    /// [`REQUEST_ID_RETENTION`] is lowered to it. A wider skew than before makes ids this gate
    /// has forgotten acceptable again: the caller must then [`restore`](Self::restore) the ids
    /// its store kept.
    pub fn set_policy(&mut self, mut policy: OperatorPolicy) {
        policy.max_clock_skew = policy.max_clock_skew.min(REQUEST_ID_RETENTION);
        self.policy = policy;
    }

    /// The policy applied.
    pub fn policy(&self) -> &OperatorPolicy {
        &self.policy
    }

    /// Decides on `action` in `session`, carried with `approvals`, at `now`, without changing
    /// anything. A refusal is always [`Refusal::NotApproved`], saying why.
    pub fn check(
        &self,
        session: SessionId,
        action: &LifecycleAction,
        approvals: &[OperatorApproval],
        now: Timestamp,
    ) -> Result<ApprovedAction, Refusal> {
        let refuse = |why: String| Err(Refusal::NotApproved(why));
        if action.threshold < self.policy.min_threshold {
            return refuse(format!(
                "threshold {} is below this node's floor of {}",
                action.threshold, self.policy.min_threshold
            ));
        }
        if action.committee.len() < self.policy.min_committee {
            return refuse(format!(
                "a committee of {} is below this node's floor of {}",
                action.committee.len(),
                self.policy.min_committee
            ));
        }
        if approvals.len() > MAX_APPROVALS {
            return refuse(format!(
                "{} approvals, at most {MAX_APPROVALS} are accepted",
                approvals.len()
            ));
        }
        let skew = u64::try_from(self.policy.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        let retention = u64::try_from(REQUEST_ID_RETENTION.as_millis()).unwrap_or(u64::MAX);
        let mut reasons = Vec::new();
        for approval in approvals {
            let operator = OperatorKey(approval.public_key);
            if !self.policy.accepts(&operator, &action.key_id) {
                continue;
            }
            let distance = now.0.abs_diff(approval.timestamp_ms);
            if distance > skew {
                reasons.push(format!(
                    "the approval of operator {operator} has timestamp {}, {distance} ms from this node's clock (at most {skew} ms accepted)",
                    approval.timestamp_ms
                ));
                continue;
            }
            if let Err(why) = approval.verify(&self.network_id, action) {
                reasons.push(why);
                continue;
            }
            match self
                .seen
                .session_of(&approval.public_key, &approval.request_id)
            {
                Some(other) if other != session => reasons.push(format!(
                    "request id {} of operator {operator} was already used in session {other}",
                    hex::encode(approval.request_id)
                )),
                _ => {
                    return Ok(ApprovedAction {
                        operator,
                        request_id: approval.request_id,
                        session,
                        timestamp_ms: approval.timestamp_ms,
                        expires_ms: approval.timestamp_ms.saturating_add(retention),
                    })
                }
            }
        }
        if reasons.is_empty() {
            return refuse(format!(
                "no approval of this {} of key {} from an operator key this node lists ({} carried)",
                action.kind.as_str(),
                action.key_id,
                approvals.len()
            ));
        }
        refuse(reasons.join("; "))
    }

    /// Decides on a scheduled refresh `proposal` (old threshold `old_threshold`) carried with
    /// the approvals of the standing rotation policy `action` (see [`rotation_action`]): the
    /// refresh must keep the committee (same members, and every old member deals) and the
    /// threshold, keep to this node's floors, and one approval must be from an operator key
    /// this node lists, verify over exactly this network and policy, and not be dated in the
    /// future beyond the clock skew. A standing approval is used again at every run, so no
    /// request id is spent and its age does not matter. Returns the approving operator and the
    /// approval's timestamp.
    pub fn check_standing(
        &self,
        proposal: &ReshareProposal,
        old_threshold: u16,
        action: &LifecycleAction,
        approvals: &[OperatorApproval],
        now: Timestamp,
    ) -> Result<(OperatorKey, u64), Refusal> {
        let refuse = |why: String| Err(Refusal::NotApproved(why));
        let LifecycleKind::Rotation { every_secs } = action.kind else {
            return refuse("not a rotation policy".into());
        };
        if proposal.new_committee != proposal.old_committee {
            return refuse(
                "a rotation under a standing policy keeps the committee; this reshare changes it"
                    .into(),
            );
        }
        if proposal.dealers != proposal.old_committee {
            return refuse(
                "a rotation under a standing policy is dealt by every member of the committee"
                    .into(),
            );
        }
        if proposal.new_threshold != old_threshold {
            return refuse(format!(
                "a rotation under a standing policy keeps the threshold; this reshare changes it from {old_threshold} to {}",
                proposal.new_threshold
            ));
        }
        if every_secs < permafrost_wire::MIN_ROTATION_SECS {
            return refuse(format!(
                "a rotation every {every_secs} s is more often than every {} s",
                permafrost_wire::MIN_ROTATION_SECS
            ));
        }
        if action.threshold < self.policy.min_threshold
            || action.committee.len() < self.policy.min_committee
        {
            return refuse(format!(
                "threshold {} of {} is below this node's floors ({} of {})",
                action.threshold,
                action.committee.len(),
                self.policy.min_threshold,
                self.policy.min_committee
            ));
        }
        if approvals.len() > MAX_APPROVALS {
            return refuse(format!(
                "{} approvals, at most {MAX_APPROVALS} are accepted",
                approvals.len()
            ));
        }
        let skew = u64::try_from(self.policy.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        let mut reasons = Vec::new();
        for approval in approvals {
            let operator = OperatorKey(approval.public_key);
            if !self.policy.accepts(&operator, &action.key_id) {
                continue;
            }
            if approval.timestamp_ms > now.0.saturating_add(skew) {
                reasons.push(format!(
                    "the rotation policy of operator {operator} is dated {} ms ahead of this node's clock",
                    approval.timestamp_ms - now.0
                ));
                continue;
            }
            match approval.verify(&self.network_id, action) {
                Ok(()) => return Ok((operator, approval.timestamp_ms)),
                Err(why) => reasons.push(why),
            }
        }
        if reasons.is_empty() {
            return refuse(format!(
                "no rotation policy of key {} from an operator key this node lists ({} carried)",
                action.key_id,
                approvals.len()
            ));
        }
        refuse(reasons.join("; "))
    }

    /// Remembers an admitted approval's request id (once the caller wrote it), while its
    /// timestamp could be accepted under this gate's skew ([`remembered_until`]).
    pub fn record(&mut self, approved: &ApprovedAction, now: Timestamp) {
        let until = remembered_until(
            approved.timestamp_ms,
            approved.expires_ms,
            self.policy.max_clock_skew,
        );
        self.seen.record(
            approved.operator.0,
            approved.request_id,
            approved.session,
            until,
            now,
        );
    }

    /// Remembers a request id admitted before (reloaded from the node's store, which keeps it
    /// until `expires_ms`, its timestamp plus [`REQUEST_ID_RETENTION`]), as
    /// [`record`](Self::record) does.
    pub fn restore(
        &mut self,
        operator: [u8; 32],
        request_id: [u8; 16],
        session: SessionId,
        expires_ms: u64,
        now: Timestamp,
    ) {
        let until = restored_until(expires_ms, self.policy.max_clock_skew);
        self.seen.record(operator, request_id, session, until, now);
    }
}
