//! Reshare: move a key to a new committee and threshold (epoch e → e+1) without ever
//! reconstructing it, keeping the group public key. Desmedt–Jajodia redistribution with
//! Feldman checks, as in Wong–Wang–Wing verifiable secret redistribution.
//!
//! - [`deal`], [`check_dealing`], [`combine`], [`public_key_package_from_dealings`]: the
//!   arithmetic.
//! - [`ResharePeer`]: a node's side (dealer, new member, or both); [`ReshareCoordinator`]: the
//!   coordinator's, with the test signature that makes the commit certificate.

mod coordinator;
mod math;
mod participant;
mod proposal;

pub use coordinator::ReshareCoordinator;
pub use math::{
    check_dealing, combine, deal, public_key_package_from_dealings, Dealing, DealingFault,
};
pub use participant::{Identities, IdentityVerifierAndKey, ResharePeer, DEFAULT_RESHARE_TIMEOUT};
pub use proposal::{
    session_id, test_message, test_session_id, verify_certificate, CONFIRM, DEALING, REPORT, SHARE,
    TEST_MESSAGE_PREFIX,
};
