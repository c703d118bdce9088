//! # permafrost-runtime
//!
//! The pieces the signer node and the coordinator both need, kept in one place:
//!
//! - [`network`]: the network file (every node's name, PeerId and address; the coordinators).
//! - [`identity`]: libp2p ed25519 identities as the protocol's [`NodeIdentity`] and
//!   [`IdentityVerifier`]; the identity key file.
//! - [`any`]: curve dispatch — protocol sessions of any ciphersuite behind one object-safe
//!   trait, with their outputs in curve-neutral bytes.
//! - [`driver`]: the IO between a core and the network: sends what the core queued over
//!   `permafrost-net`, reports failed dials, answers inbound requests.
//! - [`credentials`]: where a secret file named in a config is found (systemd's credentials
//!   directory), and the refusal of one that others can read.
//! - [`metrics`]: the Prometheus registry, the `GET /metrics` listener and the shared labels.
//! - [`workers`]: threads for a loop's curve arithmetic, taking the keys' jobs in turn.
//!
//! [`NodeIdentity`]: permafrost_protocol::NodeIdentity
//! [`IdentityVerifier`]: permafrost_protocol::IdentityVerifier
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use permafrost_engine::any;
pub mod credentials;
pub mod driver;
pub mod identity;
pub mod metrics;
pub mod network;
pub mod process;
pub mod workers;

use std::time::{SystemTime, UNIX_EPOCH};

use permafrost_protocol::Timestamp;

/// Wall-clock time as a protocol [`Timestamp`] (milliseconds since the Unix epoch).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}
