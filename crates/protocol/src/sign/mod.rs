//! Threshold signing (FROST, RFC 9591): the [`Signer`] service a node runs for each key share
//! it holds, the coordinator's one-shot [`SigningCoordinator`] session, and the
//! [`RoastCoordinator`], which retries with other signers until a signature comes out (ROAST).
//!
//! The signer answers a [`SignRequest`](permafrost_wire::SignRequest) with a fresh commitment
//! bound to that session id and that message. On a signing package it checks the key, epoch,
//! committee, message and its own commitment, marks the nonce consumed, and only then computes
//! its share. The coordinators aggregate the shares and verify the signature; only if it is
//! invalid (or the session ends without it) do they verify each share, naming the culprits.

mod aggregation;
pub mod client;
mod coordinator;
mod package;
pub use package::{
    agrees_with_frost, outside_prime_order, parse_commitment, parse_commitment_of_any_order,
    parse_signing_package, EncodedCommitment, WirePackage,
};
mod roast;
pub mod round1;
pub mod round2;
mod signer;

pub use aggregation::{Aggregated, Aggregation};
pub use coordinator::SigningCoordinator;
pub use roast::RoastCoordinator;
pub use round1::Nonces;
pub use signer::{
    Signer, SignerLimits, CHILD_KEYS_KEPT, DEFAULT_MAX_POOLED, DEFAULT_POOL_LIFETIME,
    POOL_USE_WITHIN,
};

use std::time::Duration;

use frost_core::keys::PublicKeyPackage;
use permafrost_wire::{Digest, Epoch, KeyId, NodeId, SessionId, SignRefusal};

use crate::{Committee, ProtocolError, Refusal, Suite};

/// How long a ROAST attempt waits for its shares before its silent signers are reported as
/// stalled (they stay out of the ready set until they answer).
pub const DEFAULT_ROAST_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// The digest a [`SignShare`](permafrost_wire::SignShare) names the signing package it was
/// computed on by: over the exact `SignPackage::package` bytes.
pub fn package_digest(package: &[u8]) -> Digest {
    crate::hash::digest_bytes("sign/package", package)
}

/// Longest serialized commitment a coordinator accepts before it is parsed (two points and a
/// header), from a `SignCommitment` or in a `CommitmentBatch`.
pub const MAX_COMMITMENT_LEN: usize = 256;

/// Most commitments one [`CommitmentsRequest`](permafrost_wire::CommitmentsRequest) may ask
/// for.
pub const MAX_POOL_BATCH: u16 = 128;

/// A commitment a signer generated ahead of time (one-round signing), as the coordinator holds
/// it: where it came from and its bytes. It names a nonce in the signer's memory that the
/// signer uses once, on the first package that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PooledCommitment {
    /// The batch it came in.
    pub batch: SessionId,
    /// Its position in the batch.
    pub index: u16,
    /// `SigningCommitments::serialize()`.
    pub commitment: Vec<u8>,
}

/// How long a signing session may take before it fails naming the silent signers.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest message the signer will commit to sign.
pub const MAX_SIGN_MESSAGE_LEN: usize = 64 * 1024;

/// The answer telling a signing coordinator that this signer will not take part in `session`.
pub fn refusal_message(session: SessionId, refusal: &Refusal) -> SignRefusal {
    SignRefusal {
        session,
        reason: refusal.to_string(),
        unauthorized: matches!(refusal, Refusal::ClientNotAuthorized(_)),
        commitment_unknown: matches!(refusal, Refusal::UnknownCommitment),
    }
}

/// What a signer may be asked to sign: a reshare test message (starting with the reserved
/// prefix) only if it signs for a reshare (`reshare_test`), never otherwise, and at most
/// [`MAX_SIGN_MESSAGE_LEN`] bytes. Checked by the signer, and first by the node's client gate,
/// so that no client signature is verified and no request id spent on such a request.
pub(crate) fn check_requested_message(message: &[u8], reshare_test: bool) -> Result<(), Refusal> {
    if message.starts_with(crate::reshare::TEST_MESSAGE_PREFIX) != reshare_test {
        return Err(Refusal::MessageNotApproved);
    }
    if message.len() > MAX_SIGN_MESSAGE_LEN {
        return Err(Refusal::Limit(format!(
            "message of {} bytes exceeds {MAX_SIGN_MESSAGE_LEN}",
            message.len()
        )));
    }
    Ok(())
}

/// Refuses a message for another key or epoch than `(key_id, epoch)`, the ones a session or
/// signer is for.
pub(crate) fn check_key(
    key_id: &KeyId,
    epoch: Epoch,
    got_key: &KeyId,
    got_epoch: Epoch,
) -> Result<(), Refusal> {
    if got_key != key_id {
        return Err(Refusal::WrongKey);
    }
    if got_epoch != epoch {
        return Err(Refusal::WrongEpoch {
            expected: epoch,
            got: got_epoch,
        });
    }
    Ok(())
}

/// Checks what a signing coordinator is asked to do: a message within
/// [`MAX_SIGN_MESSAGE_LEN`], a committee whose every member has a verifying share in the
/// package, and a threshold the committee can meet. Returns the committee and the threshold.
pub(crate) fn check_signing_parameters<S: Suite>(
    committee: Vec<NodeId>,
    message: &[u8],
    public_key_package: &PublicKeyPackage<S>,
) -> Result<(Committee<S>, usize), ProtocolError> {
    let committee = Committee::<S>::new(committee)?;
    if message.len() > MAX_SIGN_MESSAGE_LEN {
        return Err(ProtocolError::InvalidParameters(format!(
            "message of {} bytes exceeds {MAX_SIGN_MESSAGE_LEN}",
            message.len()
        )));
    }
    let threshold = public_key_package
        .min_signers()
        .map(usize::from)
        .ok_or_else(|| {
            ProtocolError::InvalidParameters("public key package has no threshold".into())
        })?;
    if threshold == 0 || threshold > committee.len() {
        return Err(ProtocolError::InvalidParameters(format!(
            "threshold {threshold} does not fit a committee of {}",
            committee.len()
        )));
    }
    if committee
        .identifiers()
        .any(|id| !public_key_package.verifying_shares().contains_key(&id))
    {
        return Err(ProtocolError::InvalidParameters(
            "committee member without a verifying share".into(),
        ));
    }
    Ok((committee, threshold))
}
