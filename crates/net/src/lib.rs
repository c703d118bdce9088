//! # permafrost-net
//!
//! All libp2p code for Permafrost, and nothing about messages: it moves byte payloads between
//! configured peers as requests and responses.
//!
//! - Transport: TCP (every dial from a port of its own), Noise XX (with the prologue `permafrost/v1/<network_id>`, so nodes of two
//!   networks cannot complete a handshake), Yamux.
//! - Allowlist: only [`NetConfig::peers`] may connect; any other peer is refused when its
//!   connection is established, before a single request is read. Connection limits cap
//!   connections per peer, pending handshakes and the total.
//! - Requests and answers on `/permafrost/link/1`: one long-lived stream per peer and
//!   direction, opened by the first request, carrying many requests, each one frame (a `u32`
//!   big-endian length, a request id, a kind and the bytes) answered by id, in any order. A
//!   body longer than [`NetConfig::max_message_bytes`] is refused before any buffer is
//!   reserved. No stream is opened, and no protocol negotiated, per message.
//! - One tokio task owns the swarm (connections, dials, identify, ping); requests and answers
//!   do not pass through it. A cloneable [`Client`] writes requests on the links itself;
//!   inbound requests arrive on a bounded channel as [`InboundRequest`]s, and when it is full
//!   new requests are refused rather than queued.
//! - Per-peer rate limit on inbound requests ([`NetConfig::inbound_rate_limit`]): a token
//!   bucket per peer; a request over the limit is refused before it reaches the channel, so
//!   one flooding peer cannot crowd the others out.
//!
//! ```no_run
//! use permafrost_net::{start, Keypair, NetConfig, PeerInfo};
//!
//! # async fn example(server: PeerInfo) -> Result<(), permafrost_net::NetError> {
//! let mut config = NetConfig::new(Keypair::generate_ed25519(), "mainnet");
//! config.peers.push(server.clone());
//! let (client, mut inbound) = start(config).await?;
//!
//! tokio::spawn(async move {
//!     while let Some(request) = inbound.recv().await {
//!         let answer = request.payload.clone();
//!         request.respond(answer);
//!     }
//! });
//!
//! let response = client.request(server.peer_id, b"hello".to_vec()).await?;
//! # let _ = response;
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod addresses;
mod client;
mod config;
mod error;
mod event_loop;
mod frame;
mod inbound;
mod outbound;
mod rate_limit;
mod transport;

pub use client::{Client, InboundRequest};
pub use config::{NetConfig, PeerInfo};
pub use error::NetError;
pub use event_loop::start;
pub use libp2p::{
    identity::{Keypair, PublicKey},
    Multiaddr, PeerId,
};
pub use rate_limit::RateLimit;
