//! The network file: who is in the network and where to reach them.
//!
//! ```toml
//! network_id = "custody-prod-1"
//!
//! [[nodes]]
//! name = "node1"
//! peer_id = "12D3KooW..."
//! addr = "/ip4/10.0.0.1/tcp/7000"
//!
//! [[coordinators]]
//! peer_id = "12D3KooW..."
//! addr = "/ip4/10.0.0.9/tcp/7100"
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use permafrost_net::{Multiaddr, PeerId, PeerInfo};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A problem with the network file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NetworkFileError {
    /// The file could not be read.
    #[error("cannot read network file {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid network file: {0}")]
    Invalid(String),
}

/// One signer node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// Its name in the API (`node1` …).
    pub name: String,
    /// Its libp2p PeerId.
    pub peer_id: String,
    /// Its listening multiaddr.
    pub addr: String,
}

/// One coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorEntry {
    /// Its libp2p PeerId.
    pub peer_id: String,
    /// Its listening multiaddr (nodes answer the coordinator there).
    pub addr: String,
}

/// The network file as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// Carried in every Noise handshake: two networks cannot talk.
    pub network_id: String,
    /// The signer nodes.
    pub nodes: Vec<NodeEntry>,
    /// The coordinators.
    #[serde(default)]
    pub coordinators: Vec<CoordinatorEntry>,
}

/// A validated member of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Name (`None` for coordinators).
    pub name: Option<String>,
    /// PeerId.
    pub peer_id: PeerId,
    /// Address.
    pub addr: Multiaddr,
}

/// The validated network: unique names, PeerIds and parseable addresses.
#[derive(Clone, Debug)]
pub struct Network {
    /// Carried in every Noise handshake.
    pub network_id: String,
    /// Signer nodes, in file order.
    pub nodes: Vec<Member>,
    /// Coordinators.
    pub coordinators: Vec<Member>,
}

impl NetworkFile {
    /// Reads and parses a network file.
    pub fn load(path: &Path) -> Result<Self, NetworkFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| NetworkFileError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| NetworkFileError::Invalid(e.to_string()))
    }

    /// Checks and converts the file.
    pub fn validate(&self) -> Result<Network, NetworkFileError> {
        let invalid = |m: String| NetworkFileError::Invalid(m);
        if self.network_id.trim().is_empty() {
            return Err(invalid("network_id is empty".into()));
        }
        if self.nodes.is_empty() {
            return Err(invalid("no nodes".into()));
        }
        let parse =
            |name: Option<&str>, peer_id: &str, addr: &str| -> Result<Member, NetworkFileError> {
                let who = name.unwrap_or("coordinator");
                let peer_id: PeerId = peer_id
                    .parse()
                    .map_err(|e| invalid(format!("{who}: bad peer_id {peer_id:?}: {e}")))?;
                let addr: Multiaddr = addr
                    .parse()
                    .map_err(|e| invalid(format!("{who}: bad addr {addr:?}: {e}")))?;
                crate::identity::node_id(&peer_id)
                    .map_err(|e| invalid(format!("{who}: unusable peer_id: {e}")))?;
                Ok(Member {
                    name: name.map(str::to_owned),
                    peer_id,
                    addr,
                })
            };
        let mut names = BTreeSet::new();
        let mut peers = BTreeSet::new();
        let mut nodes = Vec::new();
        for n in &self.nodes {
            if n.name.is_empty()
                || !n
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(format!(
                    "node name {:?} must be letters, digits, - or _",
                    n.name
                )));
            }
            if !names.insert(n.name.clone()) {
                return Err(invalid(format!("node name {} appears twice", n.name)));
            }
            let member = parse(Some(&n.name), &n.peer_id, &n.addr)?;
            if !peers.insert(member.peer_id) {
                return Err(invalid(format!("peer_id of {} appears twice", n.name)));
            }
            nodes.push(member);
        }
        let mut coordinators = Vec::new();
        for c in &self.coordinators {
            let member = parse(None, &c.peer_id, &c.addr)?;
            if !peers.insert(member.peer_id) {
                return Err(invalid(format!("coordinator {} appears twice", c.peer_id)));
            }
            coordinators.push(member);
        }
        Ok(Network {
            network_id: self.network_id.clone(),
            nodes,
            coordinators,
        })
    }
}

impl Network {
    /// Every member but `me`, with its static address: the allowlist for `permafrost-net`.
    pub fn peers_except(&self, me: &PeerId) -> Vec<PeerInfo> {
        self.nodes
            .iter()
            .chain(&self.coordinators)
            .filter(|m| m.peer_id != *me)
            .map(|m| PeerInfo {
                peer_id: m.peer_id,
                addrs: vec![m.addr.clone()],
            })
            .collect()
    }

    /// The node with this name.
    pub fn node_by_name(&self, name: &str) -> Option<&Member> {
        self.nodes.iter().find(|m| m.name.as_deref() == Some(name))
    }

    /// The name of the node with this PeerId.
    pub fn name_of(&self, peer: &PeerId) -> Option<&str> {
        self.nodes
            .iter()
            .find(|m| m.peer_id == *peer)
            .and_then(|m| m.name.as_deref())
    }

    /// Whether `peer` is a configured coordinator.
    pub fn is_coordinator(&self, peer: &PeerId) -> bool {
        self.coordinators.iter().any(|m| m.peer_id == *peer)
    }

    /// Whether `peer` is a configured node.
    pub fn is_node(&self, peer: &PeerId) -> bool {
        self.nodes.iter().any(|m| m.peer_id == *peer)
    }
}

/// The `[rate_limit]` table of a node's or coordinator's config: how many protocol messages
/// each peer may send (a token bucket per peer; messages over it are refused unread).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Messages a peer may send back to back after being quiet.
    pub burst: u32,
    /// Messages per second a peer may keep sending.
    pub per_second: u32,
}

impl RateLimitConfig {
    /// The network's limit: this one, or the default when the table is absent.
    pub fn or_default(config: Option<RateLimitConfig>) -> permafrost_net::RateLimit {
        match config {
            Some(c) => permafrost_net::RateLimit {
                burst: c.burst,
                per_second: c.per_second,
            },
            None => permafrost_net::RateLimit::DEFAULT,
        }
    }
}
