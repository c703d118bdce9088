//! Network configuration.

use std::fmt;
use std::time::Duration;

use libp2p::{identity::Keypair, Multiaddr, PeerId};

use crate::RateLimit;

/// A peer this node may talk to, and where to dial it.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's identity.
    pub peer_id: PeerId,
    /// Static addresses to dial the peer at; may be empty for a peer that only dials in.
    pub addrs: Vec<Multiaddr>,
}

/// Everything [`start`](crate::start) needs.
#[derive(Clone)]
pub struct NetConfig {
    /// This node's identity key; its public half is the node's [`PeerId`].
    pub keypair: Keypair,
    /// Carried in the Noise prologue (`permafrost/v1/<network_id>`): peers configured with
    /// another network id cannot complete a handshake with this node.
    pub network_id: String,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. May be empty for a node that only
    /// dials out.
    pub listen: Vec<Multiaddr>,
    /// The allowlist and the static addresses: any peer not listed here is refused at
    /// connection time, and requests can only be sent to listed peers.
    pub peers: Vec<PeerInfo>,
    /// Cap for requests and responses in bytes, enforced by the codec before allocating.
    pub max_message_bytes: usize,
    /// How long a request may wait for its response once sent, including the remote's
    /// processing time. Establishing a connection first adds at most
    /// `min(request_timeout, 10 s)`.
    pub request_timeout: Duration,
    /// Capacity of the inbound request channel. When it is full, new inbound requests are
    /// refused (the requester gets an error) rather than queued.
    pub inbound_queue: usize,
    /// Per-peer limit on inbound requests: a token bucket for each peer. A request over its
    /// peer's limit is refused like one meeting a full queue (the requester gets an error at
    /// once) without reaching the application, and the refusals are logged with the peer id,
    /// at most once per 10 s per peer. `None` turns the limit off.
    ///
    /// The default, [`RateLimit::DEFAULT`] (a burst of 512, then 4096 requests per second),
    /// follows the throughput the network is built for: a signing session costs each link it
    /// uses two requests each way (request and package, or commitment and share), so it
    /// allows 256 signing sessions started at once and 2,048 per second sustained per peer,
    /// while a burst never fills more than half of the default inbound queue.
    pub inbound_rate_limit: Option<RateLimit>,
}

impl NetConfig {
    /// Default listen address: loopback, any free port.
    pub const DEFAULT_LISTEN: &'static str = "/ip4/127.0.0.1/tcp/0";
    /// Default message cap: 1 MiB + 64 KiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024 + 64 * 1024;
    /// Default request timeout: 30 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default inbound queue capacity: 1024 requests.
    pub const DEFAULT_INBOUND_QUEUE: usize = 1024;

    /// A configuration with the defaults: listen on `/ip4/127.0.0.1/tcp/0`, no peers,
    /// a 1 MiB + 64 KiB message cap, a 30 s request timeout, an inbound queue of 1024 and
    /// the default per-peer rate limit ([`RateLimit::DEFAULT`]).
    pub fn new(keypair: Keypair, network_id: impl Into<String>) -> Self {
        let listen = Self::DEFAULT_LISTEN
            .parse::<Multiaddr>()
            .map(|addr| vec![addr])
            .unwrap_or_default();
        Self {
            keypair,
            network_id: network_id.into(),
            listen,
            peers: Vec::new(),
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            inbound_queue: Self::DEFAULT_INBOUND_QUEUE,
            inbound_rate_limit: Some(RateLimit::DEFAULT),
        }
    }
}

impl fmt::Debug for NetConfig {
    /// Prints the local peer id instead of the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("local_peer_id", &self.keypair.public().to_peer_id())
            .field("network_id", &self.network_id)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("inbound_queue", &self.inbound_queue)
            .field("inbound_rate_limit", &self.inbound_rate_limit)
            .finish()
    }
}
