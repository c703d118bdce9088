//! Threshold signing (FROST, RFC 9591): the [`Signer`] service a node runs for each key share
//! it holds, and the coordinator's [`SigningCoordinator`] session.
//!
//! The signer answers a [`SignRequest`](permafrost_wire::SignRequest) with a fresh commitment
//! bound to that session id and that message. On a signing package it checks the key, epoch,
//! committee, message and its own commitment, marks the nonce consumed, and only then computes
//! its share. The coordinator verifies every share on arrival and names the culprits.

mod coordinator;
mod signer;

pub use coordinator::SigningCoordinator;
pub use signer::{Signer, SignerLimits};

use std::time::Duration;

/// How long a signing session may take before it fails naming the silent signers.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest message the signer will commit to sign.
pub const MAX_SIGN_MESSAGE_LEN: usize = 64 * 1024;
