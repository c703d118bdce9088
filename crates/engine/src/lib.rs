//! # permafrost-engine
//!
//! The rules above the protocol sessions, written once and run everywhere: the signer node's
//! core ([`node::NodeCore`]) holds every rule a node applies — routing, client admission and
//! its audit, the persistence order of DKG and reshare, resuming after a restart, refusals,
//! the early-message buffer — over a storage trait of domain operations
//! ([`node::NodeStore`]), implemented by the redb keystore and by an in-memory store that can
//! fail a write and survive a simulated crash.
//!
//! Like `permafrost-protocol` it is sans-IO: no tokio, no libp2p, no sockets, no clock. Time
//! and randomness come in as arguments; what to send and what happened come out of
//! `poll_output()`. The node process is a thin shell that moves bytes between the network and
//! the core; the in-memory simulator (`sim`, feature `sim`) drives the very same core.
//!
//! - [`any`]: curve dispatch — sessions of any ciphersuite behind one object-safe trait.
//! - [`sessions`]: the table of running sessions and the order their outputs are carried out in.
//! - [`deadlines`]: every deadline, in one place.
//! - [`node`]: the node core and its storage.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod any;
pub mod coordinator;
pub mod deadlines;
pub mod node;
pub mod sessions;
#[cfg(feature = "sim")]
pub mod sim;
