//! Threshold signing (FROST, RFC 9591): the [`Signer`] service a node runs for each key share
//! it holds, the coordinator's one-shot [`SigningCoordinator`] session, and the
//! [`RoastCoordinator`], which retries with other signers until a signature comes out (ROAST).
//!
//! The signer answers a [`SignRequest`](permafrost_wire::SignRequest) with a fresh commitment
//! bound to that session id and that message. On a signing package it checks the key, epoch,
//! committee, message and its own commitment, marks the nonce consumed, and only then computes
//! its share. The coordinator verifies every share on arrival and names the culprits.

mod coordinator;
mod roast;
mod signer;

pub use coordinator::SigningCoordinator;
pub use roast::RoastCoordinator;
pub use signer::{Signer, SignerLimits};

use std::time::Duration;

use permafrost_wire::Digest;

/// How long a whole ROAST request may take before it fails naming the silent members.
pub const DEFAULT_ROAST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a ROAST attempt waits for its shares before its silent signers are reported as
/// stalled (they stay out of the ready set until they answer).
pub const DEFAULT_ROAST_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// The digest a [`SignShare`](permafrost_wire::SignShare) names the signing package it was
/// computed on by: over the exact `SignPackage::package` bytes.
pub fn package_digest(package: &[u8]) -> Digest {
    crate::hash::digest_bytes("sign/package", package)
}

/// How long a signing session may take before it fails naming the silent signers.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest message the signer will commit to sign.
pub const MAX_SIGN_MESSAGE_LEN: usize = 64 * 1024;
