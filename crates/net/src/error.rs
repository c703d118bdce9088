//! The one error type of this crate.

use libp2p::PeerId;

/// Why a network operation failed. Every variant that concerns a remote names the peer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetError {
    /// The peer is not in [`NetConfig::peers`](crate::NetConfig::peers): nothing was sent.
    #[error("peer {0} is not a configured peer")]
    UnknownPeer(PeerId),
    /// A message is larger than [`NetConfig::max_message_bytes`](crate::NetConfig::max_message_bytes).
    #[error("message of {len} bytes exceeds the cap of {cap} bytes")]
    TooLarge {
        /// The length of the message, in bytes.
        len: usize,
        /// The cap it exceeds, in bytes.
        cap: usize,
    },
    /// No response arrived within the request deadline. The remote may or may not have
    /// processed the request.
    #[error("request to peer {0} timed out")]
    Timeout(PeerId),
    /// No connection to the peer could be established (refused, handshake failed, wrong
    /// network id, no usable address, ...).
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable {
        /// The peer that could not be reached.
        peer: PeerId,
        /// What the dial reported.
        reason: String,
    },
    /// The request reached a connection to the peer but no valid response came back: the
    /// connection closed, the remote refused or dropped the request (other than for being
    /// busy: [`NetError::Busy`]), or a frame was malformed.
    #[error("request to peer {peer} failed: {reason}")]
    Remote {
        /// The peer that did not answer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The peer refused the request unread because it is busy: its rate limit for this node,
    /// or its inbound queue, is full. Its process is up; the request was not handed on.
    #[error("peer {peer} is busy: {reason}")]
    Busy {
        /// The busy peer.
        peer: PeerId,
        /// Its reason.
        reason: String,
    },
    /// The network task has stopped (after [`Client::shutdown`](crate::Client::shutdown)).
    #[error("the network task has shut down")]
    Shutdown,
    /// The transport could not be set up (bad listen address, port in use, invalid
    /// configuration, ...).
    #[error("transport error: {0}")]
    Transport(String),
}
