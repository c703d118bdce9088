//! Reshare: move a key to a new committee and threshold (epoch e → e+1) without ever
//! reconstructing it, keeping the group public key. Desmedt–Jajodia redistribution with
//! Feldman checks, as in Wong–Wang–Wing verifiable secret redistribution.
//!
//! This module holds the arithmetic ([`deal`], [`check_dealing`], [`combine`],
//! [`public_key_package_from_dealings`]); the sessions that run it over the network come with
//! the reshare issue's remaining work.

mod math;

pub use math::{
    check_dealing, combine, deal, public_key_package_from_dealings, Dealing, DealingFault,
};
