//! `DIR/localnet.json`, written by `permafrost localnet up` once every process is up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The contents of `DIR/localnet.json`:
/// `{"api":"http://127.0.0.1:PORT","token":"…","coordinator":{"pid":…},"nodes":[…],
/// "metrics":{…}}`.
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
    /// Where each process serves `GET /metrics` (absent in files written before metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<LocalnetMetrics>,
}

/// The metrics listeners of a localnet: base URLs, scraped at `{url}/metrics`, no token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalnetMetrics {
    /// The coordinator's, e.g. `http://127.0.0.1:9100`.
    pub coordinator: String,
    /// Each node's, by node name.
    pub nodes: BTreeMap<String, String>,
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
