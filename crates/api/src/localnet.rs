//! `DIR/localnet.json`, written by `permafrost localnet up` once every process is up.

use serde::{Deserialize, Serialize};

/// The contents of `DIR/localnet.json`:
/// `{"api":"http://127.0.0.1:PORT","token":"…","coordinator":{"pid":…},"nodes":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalnetInfo {
    /// The coordinator's API base URL, e.g. `http://127.0.0.1:8700`.
    pub api: String,
    /// A bearer token the coordinator accepts.
    pub token: String,
    /// The coordinator process.
    pub coordinator: ProcessInfo,
    /// The node processes.
    pub nodes: Vec<LocalnetNode>,
}

/// A process started by the localnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its process id.
    pub pid: u32,
}

/// One node of a localnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalnetNode {
    /// Its name (`node1` … `nodeN`).
    pub name: String,
    /// Its libp2p PeerId (base58).
    pub peer_id: String,
    /// Its listen multiaddr.
    pub addr: String,
    /// Its process id.
    pub pid: u32,
}
