//! # permafrost-protocol
//!
//! Sans-IO state machines for Permafrost: distributed key generation and threshold signing over
//! FROST (RFC 9591), generic over the ciphersuite (Ed25519, secp256k1, secp256k1 with taproot).
//!
//! Nothing here touches a socket, a file, a thread or the system clock. Every session has the
//! same shape (see [`Session`]): messages go in through `handle_message(from, message, now,
//! rng)`, the passing of time through `handle_timeout(now)`, and what the session wants done
//! comes out of `poll_output()` as [`Output`]s — messages to send and [`Event`]s to act on, in
//! the order they must be carried out. A driver (the node core and the coordinator in
//! `permafrost-engine`, and its in-memory simulator) moves bytes and persists what it is told to persist.
//!
//! Input that is wrong (bad signature, wrong session, wrong epoch, a peer outside the committee,
//! a replay) is refused with an error and changes nothing. Faults that end a session (a proven
//! cheater, a deadline) end it with an [`Event::Failed`] whose error names the nodes
//! responsible.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cache;
mod committee;
pub mod derive;
pub mod dkg;
mod error;
mod hash;
mod identity;
pub mod lifecycle;
mod output;
pub mod request_ids;
pub mod reshare;
mod secp256k1_msm;
mod serialized;
pub mod sign;
mod suite;
mod time;
pub mod vss;

pub use committee::{Committee, MAX_COMMITTEE};
pub use error::{OpenFailure, ProtocolError, Refusal};
pub use hash::digest_bytes;
pub use identity::{statement, IdentityVerifier, NodeIdentity};
pub use output::{Event, KeyShare, Output};
pub use permafrost_wire as wire;
pub use suite::Suite;
pub use time::{Timestamp, MAX_STATUS_RETRY, STATUS_RETRY};

use permafrost_wire::{Message, NodeId};
use rand_core::CryptoRngCore;

/// The common shape of every protocol session (and of the signer service).
pub trait Session<S: Suite> {
    /// Feeds one message from the authenticated peer `from`. `Err` means the message was
    /// refused and the session is unchanged.
    fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError>;

    /// Tells the session the time is `now`; deadlines that have passed take effect.
    fn handle_timeout(&mut self, now: Timestamp);

    /// Hands back the result of an [`Output::Aggregate`] this session made, run by the
    /// driver. The default ignores it: only a ROAST coordinator hands aggregations over.
    fn handle_aggregated(&mut self, done: sign::Aggregated<S>, now: Timestamp) {
        let _ = (done, now);
    }

    /// Tells a coordinator's session that `from` did not take the session's open: it refused
    /// it, or the open could not reach it. The default ignores it (the session's deadline deals
    /// with silence); a DKG or reshare coordinator ends the session at once when a member it
    /// cannot do without did not take it.
    fn handle_open_failed(&mut self, from: &NodeId, failure: OpenFailure<'_>) {
        let _ = (from, failure);
    }

    /// The next thing to do, in order. A [`Event::KeyPending`] must be durable before the
    /// outputs after it are carried out.
    fn poll_output(&mut self) -> Option<Output<S>>;

    /// When `handle_timeout` should next be called, if ever.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Whether the session has reached its end (success or failure).
    fn is_finished(&self) -> bool;

    /// How many secret nonces the session holds in memory for signing sessions (a signer's
    /// open commitments).
    fn live_nonces(&self) -> usize {
        0
    }

    /// How many secret nonces the session holds in memory ahead of time, for one-round signing
    /// (a signer's pooled commitments).
    fn pooled_nonces(&self) -> usize {
        0
    }

    /// Whether the one-round `request` of `from` would find the pooled nonce it names here,
    /// for a session not open yet (a signer; others hold none). A hint, for work done before
    /// the request is handled: the request itself is checked in full when it is.
    fn holds_pooled_nonce(
        &self,
        _from: &NodeId,
        _request: &permafrost_wire::SignWithCommitment,
    ) -> bool {
        false
    }
}
