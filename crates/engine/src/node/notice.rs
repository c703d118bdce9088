//! What a node core reports as it goes, for the operator's log (and for tests to observe).

use permafrost_protocol::{ProtocolError, Refusal};
use permafrost_wire::{Curve, Epoch, KeyId, SessionId};

use super::StoreError;
use crate::sessions::Route;

/// Something that happened on a node. The shell logs each at the level its meaning calls for
/// ([`NodeNotice::is_error`], [`NodeNotice::is_warning`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeNotice {
    /// Client request ids admitted before a restart were reloaded.
    ClientRequestsReloaded {
        /// How many.
        count: usize,
    },
    /// A PENDING share found at start, kept until its DKG or reshare is concluded.
    PendingShareKept {
        /// The key.
        key_id: KeyId,
        /// The epoch.
        epoch: Epoch,
    },
    /// Two ACTIVE epochs of one key were found; the newer signs.
    TwoActiveEpochs {
        /// The key.
        key_id: KeyId,
        /// The older epoch.
        older: Epoch,
    },
    /// A signer runs for this key.
    SignerReady {
        /// The key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
        /// Its curve.
        curve: Curve,
    },
    /// A signer could not be started.
    SignerNotStarted {
        /// The key.
        key_id: KeyId,
        /// The epoch.
        epoch: Epoch,
        /// Why.
        error: ProtocolError,
    },
    /// This node no longer holds the key: its signer stopped.
    SignerStopped {
        /// The key.
        key_id: KeyId,
    },
    /// A new share was stored as PENDING.
    SharePending {
        /// The key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// A PENDING share was not stored because an ACTIVE share holds its epoch.
    PendingOverActiveRefused {
        /// The key.
        key_id: KeyId,
        /// The epoch.
        epoch: Epoch,
    },
    /// A DKG's key is active.
    KeyActivated {
        /// The key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// A failed DKG's pending share was deleted.
    DkgShareDiscarded {
        /// The key.
        key_id: KeyId,
    },
    /// A DKG commit arrived, but the pending share on disk is not the committed one (or is
    /// missing): nothing is activated.
    ActivationRefused {
        /// The key.
        key_id: KeyId,
        /// The epoch.
        epoch: Epoch,
        /// Why.
        why: String,
    },
    /// A DKG's commit never arrived: its pending share is kept for an operator (the others
    /// may have activated the key).
    DkgShareKept {
        /// The key.
        key_id: KeyId,
    },
    /// This node joined a reshare.
    ReshareJoined {
        /// The key.
        key_id: KeyId,
        /// The epoch being reshared.
        epoch: Epoch,
        /// The session.
        session: SessionId,
    },
    /// An unconcluded reshare was resumed after a restart; it asks for its outcome.
    ReshareResumed {
        /// The key.
        key_id: KeyId,
        /// The epoch being reshared.
        epoch: Epoch,
        /// The session.
        session: SessionId,
        /// Whether the new share is stored.
        pending: bool,
    },
    /// A reshare record could not be resumed; it is kept for an operator.
    ReshareNotResumed {
        /// The session.
        session: SessionId,
        /// Why.
        error: String,
    },
    /// This node dealt in a reshare (recorded before the dealing left).
    Dealt {
        /// The key.
        key_id: KeyId,
        /// The session.
        session: SessionId,
    },
    /// A reshare committed: the new share is active, older epochs deleted.
    ReshareCommitted {
        /// The key.
        key_id: KeyId,
        /// The new epoch.
        epoch: Epoch,
    },
    /// A reshare committed without this node: its share is deleted.
    ShareRetired {
        /// The key.
        key_id: KeyId,
        /// The old epoch.
        epoch: Epoch,
    },
    /// A reshare ended without a commit: its pending share is deleted, the old epoch stays.
    ReshareAborted {
        /// The key.
        key_id: KeyId,
        /// The session.
        session: SessionId,
        /// Why it ended.
        error: ProtocolError,
    },
    /// A client's signing request was admitted (its request id and audit entry are durable).
    ClientRequestAdmitted {
        /// The key.
        key_id: KeyId,
        /// The signing session.
        session: SessionId,
    },
    /// A signature share was produced (its audit entry is durable).
    ShareProduced {
        /// The key.
        key_id: KeyId,
        /// The epoch.
        epoch: Epoch,
        /// The signing session.
        session: SessionId,
    },
    /// A session failed.
    SessionFailed {
        /// Which.
        route: Route,
        /// Why, naming the culprits.
        error: ProtocolError,
    },
    /// A signing request was refused (and audited, within the audit cap).
    SigningRefused {
        /// The key.
        key_id: KeyId,
        /// The session.
        session: SessionId,
        /// Why.
        refusal: Refusal,
    },
    /// A DKG or reshare open was admitted on an operator's approval (durable with its audit
    /// entry).
    LifecycleApproved {
        /// The key.
        key_id: KeyId,
        /// The session.
        session: SessionId,
        /// The operator whose approval was admitted, hex.
        operator: String,
    },
    /// A DKG or reshare open was refused: no valid approval, below a floor, or another rule.
    LifecycleRefused {
        /// The key.
        key_id: KeyId,
        /// The session.
        session: SessionId,
        /// Why.
        refusal: Refusal,
    },
    /// Refusals past the audit cap, written as one entry.
    RefusalsOverCap {
        /// How many.
        count: u64,
    },
    /// A write failed; what depended on it was not done (nothing was sent after it).
    StoreFailed {
        /// What was being written.
        operation: &'static str,
        /// The key concerned, if any.
        key_id: Option<KeyId>,
        /// The store's error.
        error: StoreError,
    },
}

impl NodeNotice {
    /// Whether an operator must act or look (a failed write, an unreadable record).
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            NodeNotice::StoreFailed { .. }
                | NodeNotice::TwoActiveEpochs { .. }
                | NodeNotice::ActivationRefused { .. }
                | NodeNotice::SignerNotStarted { .. }
                | NodeNotice::ReshareNotResumed { .. }
                | NodeNotice::DkgShareKept { .. }
                | NodeNotice::PendingOverActiveRefused { .. }
        )
    }

    /// Whether it is worth a warning (a refusal, a failure, a resumed reshare).
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            NodeNotice::PendingShareKept { .. }
                | NodeNotice::ReshareResumed { .. }
                | NodeNotice::ReshareAborted { .. }
                | NodeNotice::SessionFailed { .. }
                | NodeNotice::SigningRefused { .. }
                | NodeNotice::LifecycleRefused { .. }
                | NodeNotice::RefusalsOverCap { .. }
        )
    }

    /// Whether it is routine, once per signature (logged at DEBUG, not INFO).
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            NodeNotice::ShareProduced { .. } | NodeNotice::ClientRequestAdmitted { .. }
        )
    }
}

impl std::fmt::Display for NodeNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeNotice::ClientRequestsReloaded { count } => {
                write!(f, "{count} client request ids reloaded")
            }
            NodeNotice::PendingShareKept { key_id, epoch } => write!(f, "key {key_id} epoch {epoch}: pending share kept until its DKG or reshare is concluded; not used for signing"),
            NodeNotice::TwoActiveEpochs { key_id, older } => write!(f, "key {key_id}: two active epochs; signing with the newer, not {older}"),
            NodeNotice::SignerReady { key_id, epoch, curve } => write!(f, "key {key_id} epoch {epoch} ({curve}): signer ready"),
            NodeNotice::SignerNotStarted { key_id, epoch, error } => write!(f, "key {key_id} epoch {epoch}: cannot start its signer: {error}"),
            NodeNotice::SignerStopped { key_id } => write!(f, "key {key_id}: signer stopped, this node no longer holds the key"),
            NodeNotice::SharePending { key_id, epoch } => write!(f, "key {key_id} epoch {epoch}: share stored as pending"),
            NodeNotice::PendingOverActiveRefused { key_id, epoch } => write!(f, "key {key_id} epoch {epoch}: refusing to store a pending share over the active share of the same epoch"),
            NodeNotice::ActivationRefused { key_id, epoch, why } => write!(f, "key {key_id} epoch {epoch}: commit not activated: {why}"),
            NodeNotice::KeyActivated { key_id, epoch } => write!(f, "key {key_id} epoch {epoch}: active"),
            NodeNotice::DkgShareDiscarded { key_id } => write!(f, "key {key_id}: DKG failed, its pending share deleted"),
            NodeNotice::DkgShareKept { key_id } => write!(f, "key {key_id}: DKG commit never arrived; the pending share is kept"),
            NodeNotice::ReshareJoined { key_id, epoch, session } => write!(f, "key {key_id} epoch {epoch}: reshare {session} joined"),
            NodeNotice::ReshareResumed { key_id, epoch, session, pending } => write!(f, "key {key_id} epoch {epoch}: resuming unconcluded reshare {session} (new share stored: {pending}); asking the coordinator for its outcome"),
            NodeNotice::ReshareNotResumed { session, error } => write!(f, "reshare {session}: cannot resume, record kept for an operator: {error}"),
            NodeNotice::Dealt { key_id, session } => write!(f, "key {key_id}: dealt in reshare {session}"),
            NodeNotice::ReshareCommitted { key_id, epoch } => write!(f, "key {key_id}: reshare committed, epoch {epoch} active, older epochs deleted"),
            NodeNotice::ShareRetired { key_id, epoch } => write!(f, "key {key_id}: left the committee, epoch {epoch} share deleted"),
            NodeNotice::ReshareAborted { key_id, session, error } => write!(f, "key {key_id}: reshare {session} aborted before this node stored a new share; old epoch kept: {error}"),
            NodeNotice::ClientRequestAdmitted { key_id, session } => write!(f, "key {key_id}: client request admitted in session {session}"),
            NodeNotice::ShareProduced { key_id, epoch, .. } => write!(f, "key {key_id} epoch {epoch}: signature share produced"),
            NodeNotice::SessionFailed { route, error } => write!(f, "session {route:?} failed: {error}"),
            NodeNotice::SigningRefused { key_id, session, refusal } => write!(f, "key {key_id}: signing request of session {session} refused: {refusal}"),
            NodeNotice::LifecycleApproved { key_id, session, operator } => write!(f, "key {key_id}: session {session} approved by operator {operator}"),
            NodeNotice::LifecycleRefused { key_id, session, refusal } => write!(f, "key {key_id}: open of session {session} refused: {refusal}"),
            NodeNotice::RefusalsOverCap { count } => write!(f, "{count} further signing requests refused beyond the audit cap"),
            NodeNotice::StoreFailed { operation, key_id: Some(key_id), error } => write!(f, "key {key_id}: cannot write ({operation}): {error}"),
            NodeNotice::StoreFailed { operation, key_id: None, error } => write!(f, "cannot write ({operation}): {error}"),
        }
    }
}
