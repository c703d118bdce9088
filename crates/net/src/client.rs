//! The handles the rest of the process holds: [`Client`] to send, [`InboundRequest`] to answer.

use std::fmt;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::frame::Kind;
use crate::inbound::Answer;
use crate::outbound::Links;
use crate::NetError;

/// A command for the swarm task. Every command but `Dial` carries its reply channel.
pub(crate) enum Command {
    /// Dial `peer` at its static addresses unless connected or dialing already.
    Dial {
        peer: PeerId,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    DialAll {
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A cloneable handle on the swarm task.
///
/// The task runs until [`Client::shutdown`] is called, or until every `Client` clone and the
/// inbound request receiver have been dropped. Once it has stopped, every method returns
/// [`NetError::Shutdown`].
#[derive(Clone)]
pub struct Client {
    pub(crate) local_peer_id: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    /// The link to each configured peer.
    pub(crate) links: Arc<Links>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// This node's [`PeerId`].
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Sends `payload` to `peer` and waits for its response.
    ///
    /// The request travels on the link's long-lived stream to `peer`, opened by the first
    /// request; if no connection to `peer` is open, it is dialed at its static addresses from
    /// [`NetConfig::peers`](crate::NetConfig::peers) (every time, so a failed dial never loses
    /// them). It waits at most the connection timeout for a stream, then
    /// [`NetConfig::request_timeout`](crate::NetConfig::request_timeout) for the answer.
    ///
    /// # Errors
    ///
    /// [`NetError::UnknownPeer`] if `peer` is not configured, [`NetError::TooLarge`] if the
    /// request or the response exceeds the cap, [`NetError::Timeout`] if no response arrives
    /// within the request timeout, [`NetError::Unreachable`] if the peer cannot be dialed,
    /// [`NetError::Remote`] if the remote closes the stream or connection without a valid
    /// response (it refused the request, dropped it, or was not allowed to talk to us), and
    /// [`NetError::Shutdown`] once the task has stopped.
    pub async fn request(&self, peer: PeerId, payload: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.links.request(peer, payload).await
    }

    /// The addresses this node actually listens on (with port 0 resolved).
    ///
    /// # Errors
    ///
    /// [`NetError::Shutdown`] once the task has stopped.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (reply, addrs) = oneshot::channel();
        self.send(Command::ListenAddrs { reply }).await?;
        addrs.await.map_err(|_| NetError::Shutdown)
    }

    /// The peers with at least one established connection.
    ///
    /// # Errors
    ///
    /// [`NetError::Shutdown`] once the task has stopped.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetError> {
        let (reply, peers) = oneshot::channel();
        self.send(Command::ConnectedPeers { reply }).await?;
        peers.await.map_err(|_| NetError::Shutdown)
    }

    /// Starts dialing every configured peer that has addresses and is not yet connected.
    /// Returns without waiting for the connections; failures are logged.
    ///
    /// # Errors
    ///
    /// [`NetError::Shutdown`] once the task has stopped.
    pub async fn dial_all(&self) -> Result<(), NetError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::DialAll { reply }).await?;
        done.await.map_err(|_| NetError::Shutdown)
    }

    /// Stops the swarm task, closing the listeners and every connection, and waits until it
    /// has stopped. Pending requests fail with [`NetError::Shutdown`], the inbound request
    /// receiver yields `None` once drained, and later calls on any clone return
    /// [`NetError::Shutdown`]. Calling it again is harmless.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).await.is_ok() {
            // Resolves when the task has dropped the swarm (or the channel is gone).
            let _ = done.await;
        }
    }

    async fn send(&self, command: Command) -> Result<(), NetError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetError::Shutdown)
    }
}

/// A request received from an allowlisted peer. Answer it with [`InboundRequest::respond`].
///
/// Dropping it without responding makes the requester get an error at once; holding it past
/// the request timeout makes the requester time out (a later answer is dropped there).
pub struct InboundRequest {
    /// The authenticated sender (the Noise channel proves it).
    pub peer: PeerId,
    /// The request bytes, at most `max_message_bytes` long.
    pub payload: Vec<u8>,
    pub(crate) responder: Responder,
}

impl InboundRequest {
    /// Sends `payload` back to the requester. A response over `max_message_bytes` is refused
    /// instead (and logged), and the requester gets an error; one given after the requester
    /// gave up, or after the stream closed, is dropped.
    pub fn respond(self, payload: Vec<u8>) {
        self.responder.answer(payload);
    }
}

impl fmt::Debug for InboundRequest {
    /// Prints the sender and the payload length, never the payload.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundRequest")
            .field("peer", &self.peer)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// The way back to a request's stream: answers it once, and refuses it if dropped unanswered.
pub(crate) struct Responder {
    pub(crate) id: u64,
    pub(crate) answers: mpsc::UnboundedSender<Answer>,
    /// The request's place among its stream's unanswered ones; `None` once answered.
    pub(crate) slot: Option<OwnedSemaphorePermit>,
}

impl Responder {
    fn answer(mut self, body: Vec<u8>) {
        self.send(Kind::Answer, body);
    }

    /// Refuses the request with `reason`, which the requester sees.
    pub(crate) fn refuse(mut self, reason: String) {
        self.send(Kind::Refused, reason.into_bytes());
    }

    /// Refuses the request because this node is busy (rate limit, full queue).
    pub(crate) fn busy(mut self, reason: String) {
        self.send(Kind::Busy, reason.into_bytes());
    }

    fn send(&mut self, kind: Kind, body: Vec<u8>) {
        if let Some(slot) = self.slot.take() {
            // Fails only once the stream's writer has stopped: the requester has been told.
            let _ = self.answers.send(Answer {
                id: self.id,
                kind,
                body,
                _slot: slot,
            });
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.send(Kind::Refused, b"dropped without an answer".to_vec());
    }
}
