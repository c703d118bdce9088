//! The curve arithmetic that ends a signing attempt, handed to the session's driver to run off
//! its loop ([`crate::Output::Aggregate`]): the aggregate signature, its verification and, only
//! when it does not verify, every share's (frost's `aggregate_custom`, naming the cheaters).
//! It is a third of a signature's CPU on the coordinator, and the one part that grows with `t`;
//! a driver that runs it on a worker pool keeps one busy key from stalling the others.
//!
//! An [`Aggregation`] owns copies of what it needs (the package, the shares, the public key
//! package), so it runs on any thread; its [`Aggregated`] result goes back to the session that
//! made it ([`crate::Session::handle_aggregated`]), which acts on it as it would have inline.
//! Until then the attempt waits, like an attempt waiting for a share: the request's deadline
//! still runs, and a result for a session that has ended is ignored.

use std::collections::BTreeMap;
use std::fmt;

use frost_core::keys::PublicKeyPackage;
use frost_core::round2::SignatureShare;
use frost_core::{CheaterDetection, Element, Error, Identifier, Signature};
use permafrost_wire::KeyId;

use super::WirePackage;
use crate::Suite;

/// An attempt's aggregation, to be run once with [`Aggregation::run`].
pub struct Aggregation<S: Suite> {
    attempt: usize,
    key_id: KeyId,
    package: WirePackage<S>,
    shares: BTreeMap<Identifier<S>, SignatureShare<S>>,
    public_key_package: PublicKeyPackage<S>,
    detection: CheaterDetection,
    claimed: Option<Element<S>>,
}

/// The result of an [`Aggregation`], for the session that made it.
pub struct Aggregated<S: Suite> {
    /// The attempt aggregated (its number within the session).
    pub attempt: usize,
    /// The verified signature, or frost's error (the cheaters, for invalid shares).
    pub result: Result<Signature<S>, Error<S>>,
}

impl<S: Suite> Aggregation<S> {
    /// The aggregation of attempt `attempt` of a signature with key `key_id`: `shares` on
    /// `package`, under `public_key_package`, trying the group commitment the signers
    /// `claimed` first (see [`super::round2::aggregate`]).
    pub(crate) fn new(
        attempt: usize,
        key_id: KeyId,
        package: WirePackage<S>,
        shares: BTreeMap<Identifier<S>, SignatureShare<S>>,
        public_key_package: PublicKeyPackage<S>,
        detection: CheaterDetection,
        claimed: Option<Element<S>>,
    ) -> Self {
        Aggregation {
            attempt,
            key_id,
            package,
            shares,
            public_key_package,
            detection,
            claimed,
        }
    }

    /// The key signed with: a driver's worker pool takes the keys in turn.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Aggregates and verifies (pure arithmetic on public values; no IO).
    pub fn run(self) -> Aggregated<S> {
        let result = super::round2::aggregate(
            &self.package,
            &self.shares,
            &self.public_key_package,
            self.detection,
            self.claimed.as_ref(),
        );
        Aggregated {
            attempt: self.attempt,
            result,
        }
    }
}

impl<S: Suite> fmt::Debug for Aggregation<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregation")
            .field("key_id", &self.key_id)
            .field("attempt", &self.attempt)
            .field("shares", &self.shares.len())
            .finish()
    }
}

impl<S: Suite> fmt::Debug for Aggregated<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregated")
            .field("attempt", &self.attempt)
            .field("verified", &self.result.is_ok())
            .finish()
    }
}
