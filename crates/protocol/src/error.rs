use std::fmt;

use permafrost_wire::{Epoch, MessageKind, NodeId, WireError};
use thiserror::Error;

/// Why one input message was refused. A refused message changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The message belongs to another session.
    WrongSession,
    /// The message names a key this party does not hold.
    WrongKey,
    /// The message names another epoch of the key.
    WrongEpoch {
        /// The epoch held.
        expected: Epoch,
        /// The epoch named.
        got: Epoch,
    },
    /// The sender is not a member of the committee.
    NotInCommittee(NodeId),
    /// Only the session's coordinator may send this.
    NotFromCoordinator(NodeId),
    /// The claimed originator is not the authenticated sender (for direct messages) or the
    /// message is addressed to someone else.
    SenderMismatch,
    /// The originator's identity signature does not verify.
    BadSignature(NodeId),
    /// This kind of message is not expected now.
    Unexpected(MessageKind),
    /// A signing package for a session this signer has no commitment in.
    UnknownSession,
    /// The nonce of this session was already used: a replay or a second package.
    NonceConsumed,
    /// A one-round signing message names a pooled commitment this signer does not hold (it
    /// restarted since, the batch expired or was evicted, or the commitment was named before).
    UnknownCommitment,
    /// A signing request reuses a session id this signer has already seen.
    SessionExists,
    /// The signing package's message is not the one approved at commitment time.
    MessageNotApproved,
    /// The signing package does not hold this signer's current commitment.
    CommitmentMismatch,
    /// The signing package has too few or too many commitments, or ones from non-members.
    CommitmentSet(String),
    /// A signature share names a signing package this coordinator did not send its signer.
    PackageMismatch,
    /// The message or a package inside it does not parse.
    Malformed(String),
    /// A limit (sessions in flight, message length) would be exceeded.
    Limit(String),
    /// The session has already ended.
    Finished,
    /// The signing request's client authorization is missing, not from an accepted client
    /// key, does not verify, is stale, or reuses a request id (see `sign::client`).
    ClientNotAuthorized(String),
    /// A committee names a party that is not a signer node of the network (a coordinator
    /// identity, or anyone else the network file does not list under `[[nodes]]`).
    NotASignerNode(NodeId),
    /// An open for a session this node already took part in and concluded (a replay).
    SessionConcluded,
    /// An abort of a session this node confirmed: once it confirmed, only the session's
    /// certificate concludes it (promoting the pending share), or an operator discarding the
    /// pending share; an unsigned word from the coordinator deletes nothing.
    AwaitingCertificate,
    /// A DKG or reshare open without a valid approval from an operator key this node lists,
    /// or below this node's floors (minimum threshold, minimum committee size); see
    /// `lifecycle`. Its text starts with [`Refusal::NOT_APPROVED`].
    NotApproved(String),
}

impl Refusal {
    /// How the text of a [`Refusal::NotApproved`] starts, so that a coordinator that only
    /// sees a refusal's text can tell it apart.
    pub const NOT_APPROVED: &'static str = "life-cycle action not approved";

    /// Every [`label`](Self::label), one per kind of refusal.
    pub const LABELS: [&'static str; 24] = [
        "wrong_session",
        "wrong_key",
        "wrong_epoch",
        "not_in_committee",
        "not_from_coordinator",
        "sender_mismatch",
        "bad_signature",
        "unexpected",
        "unknown_session",
        "nonce_consumed",
        "unknown_commitment",
        "session_exists",
        "message_not_approved",
        "commitment_mismatch",
        "commitment_set",
        "package_mismatch",
        "malformed",
        "limit",
        "finished",
        "client_not_authorized",
        "not_a_signer_node",
        "session_concluded",
        "awaiting_certificate",
        "not_approved",
    ];

    /// A stable short name of the refusal's kind (`wrong_epoch`, `client_not_authorized`, …),
    /// without its details: a metrics label, the same for every refusal of that kind.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::WrongSession => "wrong_session",
            Refusal::WrongKey => "wrong_key",
            Refusal::WrongEpoch { .. } => "wrong_epoch",
            Refusal::NotInCommittee(_) => "not_in_committee",
            Refusal::NotFromCoordinator(_) => "not_from_coordinator",
            Refusal::SenderMismatch => "sender_mismatch",
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::Unexpected(_) => "unexpected",
            Refusal::UnknownSession => "unknown_session",
            Refusal::NonceConsumed => "nonce_consumed",
            Refusal::UnknownCommitment => "unknown_commitment",
            Refusal::SessionExists => "session_exists",
            Refusal::MessageNotApproved => "message_not_approved",
            Refusal::CommitmentMismatch => "commitment_mismatch",
            Refusal::CommitmentSet(_) => "commitment_set",
            Refusal::PackageMismatch => "package_mismatch",
            Refusal::Malformed(_) => "malformed",
            Refusal::Limit(_) => "limit",
            Refusal::Finished => "finished",
            Refusal::ClientNotAuthorized(_) => "client_not_authorized",
            Refusal::NotASignerNode(_) => "not_a_signer_node",
            Refusal::SessionConcluded => "session_concluded",
            Refusal::AwaitingCertificate => "awaiting_certificate",
            Refusal::NotApproved(_) => "not_approved",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongSession => f.write_str("wrong session id"),
            Refusal::WrongKey => f.write_str("unknown key id"),
            Refusal::WrongEpoch { expected, got } => {
                write!(f, "wrong epoch {got}, this share is epoch {expected}")
            }
            Refusal::NotInCommittee(n) => write!(f, "sender {n} is not in the committee"),
            Refusal::NotFromCoordinator(n) => write!(f, "{n} is not this session's coordinator"),
            Refusal::SenderMismatch => f.write_str("originator does not match sender or recipient"),
            Refusal::BadSignature(n) => write!(f, "identity signature of {n} does not verify"),
            Refusal::Unexpected(k) => write!(f, "unexpected {} now", k.name()),
            Refusal::UnknownSession => f.write_str("no commitment for this session"),
            Refusal::NonceConsumed => f.write_str("nonce already consumed (replayed package)"),
            Refusal::UnknownCommitment => f.write_str(
                "no such pooled commitment (restarted, expired, evicted or already used)",
            ),
            Refusal::SessionExists => f.write_str("session id already used"),
            Refusal::MessageNotApproved => f.write_str("message differs from the approved one"),
            Refusal::CommitmentMismatch => f.write_str("package lacks this signer's commitment"),
            Refusal::CommitmentSet(why) => write!(f, "bad commitment set: {why}"),
            Refusal::PackageMismatch => {
                f.write_str("share computed on a signing package this coordinator did not send")
            }
            Refusal::Malformed(why) => write!(f, "malformed: {why}"),
            Refusal::Limit(why) => write!(f, "limit: {why}"),
            Refusal::Finished => f.write_str("session already finished"),
            Refusal::ClientNotAuthorized(why) => write!(f, "client not authorized: {why}"),
            Refusal::NotASignerNode(n) => {
                write!(f, "{n} is not a signer node of this network")
            }
            Refusal::SessionConcluded => {
                f.write_str("this session already concluded on this node (a replayed open)")
            }
            Refusal::NotApproved(why) => write!(f, "{}: {why}", Refusal::NOT_APPROVED),
            Refusal::AwaitingCertificate => f.write_str(
                "this node confirmed the session and keeps its pending share until the certificate (or an operator discards it): an abort does not conclude it",
            ),
        }
    }
}

/// Why a member did not take the open of a coordinator's DKG or reshare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure<'a> {
    /// It answered the open with this refusal.
    Refused(&'a str),
    /// The open never reached it (the dial failed), for this reason.
    Unreachable(&'a str),
}

impl OpenFailure<'_> {
    /// The error that ends a session because `node` did not take its open.
    pub fn error(self, node: &NodeId) -> ProtocolError {
        match self {
            OpenFailure::Refused(reason) => ProtocolError::OpenRefused {
                node: node.clone(),
                reason: reason.to_owned(),
                not_approved: reason.contains(Refusal::NOT_APPROVED),
            },
            OpenFailure::Unreachable(error) => ProtocolError::MemberUnreachable {
                node: node.clone(),
                error: error.to_owned(),
            },
        }
    }
}

/// One error enum for the protocol crate. Variants that end a session name the nodes
/// responsible; see [`ProtocolError::culprits`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Session parameters are unusable (threshold, committee, curve, session id).
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// One input message was refused; the session is unchanged.
    #[error("message refused: {0}")]
    Refused(Refusal),
    /// A deadline passed; `silent` are the parties that had not answered.
    #[error("{phase}: deadline passed waiting for {}", names(silent))]
    Timeout {
        /// What the session was waiting for.
        phase: &'static str,
        /// Who had not answered.
        silent: Vec<NodeId>,
    },
    /// Provable misbehaviour (a bad share, an invalid proof, two signed versions of a message).
    #[error("misbehaviour by {}: {reason}", names(culprits))]
    Misbehaviour {
        /// The nodes proven at fault.
        culprits: Vec<NodeId>,
        /// What they did.
        reason: String,
    },
    /// DKG confirmations disagree with what the coordinator relayed and computed. The
    /// coordinator relays exactly one signed round-1 package per member, so a member that
    /// confirms other digests is the one at fault.
    #[error(
        "DKG confirmations of {} disagree with the relayed round-1 packages (those of {}) or the public key package",
        names(disagreeing),
        names(packages)
    )]
    ConfirmationMismatch {
        /// Members whose signed confirmation differs from what was relayed: the culprits.
        disagreeing: Vec<NodeId>,
        /// Originators of the round-1 packages those members claim to have seen differently.
        packages: Vec<NodeId>,
    },
    /// Signers declined to take part (wrong epoch, unknown key, a restart voided their
    /// commitment, policy): not misbehaviour, but the reason the session could not complete.
    #[error("signers {} refused: {reason}", names(refused))]
    SignersRefused {
        /// The signers that refused.
        refused: Vec<NodeId>,
        /// Their reasons.
        reason: String,
    },
    /// Fewer than `threshold` committee members can still sign: the others refused, were proven
    /// to cheat, or disputed the signing package (their share names a package the coordinator
    /// did not send them: they lie, or the package was altered on its way, so it is no proof
    /// against them and they are not among [`ProtocolError::culprits`]).
    #[error(
        "fewer than {threshold} members reachable (refused: {}; culprits: {}; disputed: {}): {reason}",
        names(refused),
        names(culprits),
        names(disputed)
    )]
    TooFewSigners {
        /// Signers needed.
        threshold: usize,
        /// Members that declined.
        refused: Vec<NodeId>,
        /// Members proven to have sent a bad share.
        culprits: Vec<NodeId>,
        /// Members whose share named a package they were not sent.
        disputed: Vec<NodeId>,
        /// The refusals' and faults' reasons.
        reason: String,
    },
    /// Enough signers refused the request's client authorization that no signature can come
    /// out: the client key is not accepted, the signature does not cover this key and message,
    /// the timestamp is stale, or the request id was used before. The signers behaved correctly,
    /// so nobody is blamed; asking again with the same authorization will not help.
    #[error(
        "signers {} refused the client authorization: {reason}",
        names(refused)
    )]
    ClientNotAuthorized {
        /// The signers that refused.
        refused: Vec<NodeId>,
        /// Their reasons.
        reason: String,
    },
    /// A member refused to join a DKG or reshare (its answer to the open), so the session
    /// ended before anything was dealt. `not_approved`: the refusal was the node's life-cycle
    /// policy (no valid operator approval it accepts, or below its floors); asking again
    /// without another approval will not help.
    #[error("{node} refused to join: {reason}")]
    OpenRefused {
        /// The member that refused.
        node: NodeId,
        /// Its answer.
        reason: String,
        /// Whether it was refused for lack of an operator approval or under a floor.
        not_approved: bool,
    },
    /// A member the session cannot do without could not be reached with the open of a DKG or
    /// reshare (the dial failed, so it never saw it): the session ended at once, before
    /// anything was dealt, rather than at its deadline. Asking again once the member is up can
    /// succeed.
    #[error("{node} could not be reached to join: {error}")]
    MemberUnreachable {
        /// The member.
        node: NodeId,
        /// Why the open did not reach it.
        error: String,
    },
    /// The coordinator aborted the session.
    #[error(
        "aborted by coordinator {coordinator}: {reason} (culprits: {})",
        names(culprits)
    )]
    Aborted {
        /// Who sent the abort.
        coordinator: NodeId,
        /// Whom it blamed.
        culprits: Vec<NodeId>,
        /// Its reason.
        reason: String,
    },
    /// A local frost operation failed on input that had passed every check.
    #[error("frost: {0}")]
    Frost(String),
    /// The wire codec refused a message.
    #[error("wire: {0}")]
    Wire(#[from] WireError),
}

fn names(nodes: &[NodeId]) -> String {
    if nodes.is_empty() {
        return "nobody".into();
    }
    nodes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ProtocolError {
    /// The nodes this error holds responsible (empty where nobody is named).
    pub fn culprits(&self) -> Vec<NodeId> {
        match self {
            ProtocolError::Timeout { silent, .. } => silent.clone(),
            ProtocolError::Misbehaviour { culprits, .. } => culprits.clone(),
            ProtocolError::Aborted { culprits, .. } => culprits.clone(),
            ProtocolError::SignersRefused { refused, .. } => refused.clone(),
            ProtocolError::ConfirmationMismatch { disagreeing, .. } => disagreeing.clone(),
            ProtocolError::MemberUnreachable { node, .. } => vec![node.clone()],
            ProtocolError::TooFewSigners {
                refused, culprits, ..
            } => {
                let mut named: Vec<NodeId> = refused.iter().chain(culprits).cloned().collect();
                named.sort();
                named.dedup();
                named
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn misbehaviour(culprit: &NodeId, reason: impl Into<String>) -> Self {
        ProtocolError::Misbehaviour {
            culprits: vec![culprit.clone()],
            reason: reason.into(),
        }
    }
}

impl From<Refusal> for ProtocolError {
    fn from(r: Refusal) -> Self {
        ProtocolError::Refused(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Every kind of refusal has its own label, in snake case, whatever its details say.
    #[test]
    fn refusal_labels_are_distinct_and_detail_free() {
        let node = NodeId::new([7u8; 4]).unwrap();
        let every = [
            Refusal::WrongSession,
            Refusal::WrongKey,
            Refusal::WrongEpoch {
                expected: Epoch(1),
                got: Epoch(2),
            },
            Refusal::NotInCommittee(node.clone()),
            Refusal::NotFromCoordinator(node.clone()),
            Refusal::SenderMismatch,
            Refusal::BadSignature(node.clone()),
            Refusal::Unexpected(MessageKind::Probe),
            Refusal::UnknownSession,
            Refusal::NonceConsumed,
            Refusal::UnknownCommitment,
            Refusal::SessionExists,
            Refusal::MessageNotApproved,
            Refusal::CommitmentMismatch,
            Refusal::CommitmentSet("x".into()),
            Refusal::PackageMismatch,
            Refusal::Malformed("x".into()),
            Refusal::Limit("x".into()),
            Refusal::Finished,
            Refusal::ClientNotAuthorized("x".into()),
            Refusal::NotASignerNode(node),
            Refusal::SessionConcluded,
            Refusal::AwaitingCertificate,
            Refusal::NotApproved("x".into()),
        ];
        let labels: std::collections::BTreeSet<&str> = every.iter().map(Refusal::label).collect();
        assert_eq!(labels.len(), every.len(), "{labels:?}");
        assert_eq!(labels, Refusal::LABELS.into_iter().collect());
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert_eq!(
            Refusal::Limit("one".into()).label(),
            Refusal::Limit("two".into()).label()
        );
    }
}
