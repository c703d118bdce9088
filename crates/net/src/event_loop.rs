//! The swarm task: builds the swarm, then owns it and serves commands and events.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{
    self, InboundFailure, OutboundFailure, OutboundRequestId, ProtocolSupport,
};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, identify, noise, ping, tcp, yamux, Multiaddr, PeerId,
    Swarm, SwarmBuilder,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

use crate::client::{Command, InboundRequest};
use crate::codec::{FrameCodec, FrameTooLarge, PROTOCOL};
use crate::rate_limit::{PeerRateLimits, Verdict, REFUSAL_LOG_INTERVAL};
use crate::{Client, NetConfig, NetError};

/// Prefix of the Noise prologue; the network id follows it.
const PROLOGUE_PREFIX: &[u8] = b"permafrost/v1/";
/// Identify protocol version advertised to peers.
const IDENTIFY_PROTOCOL: &str = "/permafrost/id/1";
/// Connections without open streams stay up this long before closing. Peers are a short,
/// fixed allowlist, so connections are kept (a day) rather than torn down between requests;
/// this keeps `connected_peers` (the API's health) meaningful on an idle network.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Upper bound for TCP connect + Noise + Yamux on one connection attempt.
const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`start`] waits for every listener to report its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack added to a request's deadline on the client side, beyond the swarm's own timeouts.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);
/// Capacity of the command channel between the clients and the task.
const COMMAND_QUEUE: usize = 256;
/// Established connections allowed per peer (one each way when both dial at once).
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Incoming connections allowed in the handshake phase at once.
const MAX_PENDING_INCOMING: u32 = 32;
/// Established connections allowed beyond two per configured peer.
const EXTRA_CONNECTIONS: u32 = 8;

#[derive(NetworkBehaviour)]
struct Behaviour {
    allowlist: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    request_response: request_response::Behaviour<FrameCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// The result of waiting for the application to answer an inbound request.
type PendingResponse = (
    PeerId,
    request_response::ResponseChannel<Vec<u8>>,
    Result<Result<Vec<u8>, oneshot::error::RecvError>, tokio::time::error::Elapsed>,
);

/// Starts the network: builds the swarm, listens on every [`NetConfig::listen`] address,
/// spawns the swarm task on the current tokio runtime and returns once every listener has
/// its address, with a [`Client`] and the receiver of inbound requests.
///
/// # Errors
///
/// [`NetError::Transport`] if the configuration is invalid (`inbound_queue`,
/// `request_timeout`, or either number of `inbound_rate_limit` zero), a listen address cannot
/// be used, or a listener fails to start within 10 s.
///
/// # Panics
///
/// Outside a tokio runtime (it spawns the swarm task).
pub async fn start(
    config: NetConfig,
) -> Result<(Client, mpsc::Receiver<InboundRequest>), NetError> {
    if config.inbound_queue == 0 {
        return Err(NetError::Transport(
            "inbound_queue must be at least 1".into(),
        ));
    }
    if config.request_timeout.is_zero() {
        return Err(NetError::Transport(
            "request_timeout must not be zero".into(),
        ));
    }
    if let Some(limit) = config.inbound_rate_limit {
        if limit.burst == 0 || limit.per_second == 0 {
            return Err(NetError::Transport(format!(
                "inbound_rate_limit needs a burst and a rate of at least 1 (got {limit:?}); \
                 use None for no limit"
            )));
        }
    }
    let local_peer_id = config.keypair.public().to_peer_id();

    let mut peers: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    for info in &config.peers {
        let addrs = peers.entry(info.peer_id).or_default();
        for addr in &info.addrs {
            if !addrs.contains(addr) {
                addrs.push(addr.clone());
            }
        }
    }
    let connection_timeout = config.request_timeout.min(MAX_CONNECTION_TIMEOUT);
    let mut swarm = build_swarm(&config, &peers, connection_timeout)?;

    let mut listeners = HashSet::new();
    for addr in &config.listen {
        ensure_port_free(addr)?;
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Transport(format!("cannot listen on {addr}: {e}")))?;
        listeners.insert(id);
    }

    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue);
    let mut event_loop = EventLoop {
        swarm,
        commands: command_rx,
        inbound: inbound_tx,
        local_peer_id,
        peers,
        max_message_bytes: config.max_message_bytes,
        request_timeout: config.request_timeout,
        rate_limits: PeerRateLimits::new(config.inbound_rate_limit),
        pending_requests: HashMap::new(),
        pending_responses: FuturesUnordered::new(),
        last_dial_error: HashMap::new(),
        commands_open: true,
        inbound_open: true,
    };
    event_loop.wait_listening(listeners).await?;
    info!(
        peer = %local_peer_id,
        network = %config.network_id,
        peers = event_loop.peers.len(),
        "network started"
    );
    tokio::spawn(event_loop.run());

    let client = Client {
        local_peer_id,
        commands: command_tx,
        max_message_bytes: config.max_message_bytes,
        request_deadline: connection_timeout + config.request_timeout + DEADLINE_MARGIN,
    };
    Ok((client, inbound_rx))
}

/// Refuses a fixed TCP port that another socket already listens on.
///
/// libp2p-tcp sets `SO_REUSEPORT` on its listeners, so on Linux a second node of the same
/// user could bind the same port without error and the kernel would split incoming
/// connections between the two. A plain bind (which has no `SO_REUSEPORT`) detects that.
fn ensure_port_free(addr: &Multiaddr) -> Result<(), NetError> {
    let mut ip = None;
    let mut port = None;
    for protocol in addr {
        match protocol {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(IpAddr::V6(v6)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) if port != 0 => std::net::TcpListener::bind((ip, port))
            .map(drop)
            .map_err(|e| NetError::Transport(format!("cannot listen on {addr}: {e}"))),
        _ => Ok(()),
    }
}

fn build_swarm(
    config: &NetConfig,
    peers: &HashMap<PeerId, Vec<Multiaddr>>,
    connection_timeout: Duration,
) -> Result<Swarm<Behaviour>, NetError> {
    let local_peer_id = config.keypair.public().to_peer_id();
    let prologue = [PROLOGUE_PREFIX, config.network_id.as_bytes()].concat();

    let mut allowlist = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for peer in peers.keys() {
        allowlist.allow_peer(*peer);
    }
    let remote_peers = peers.keys().filter(|p| **p != local_peer_id).count();
    let max_established = u32::try_from(remote_peers)
        .unwrap_or(u32::MAX)
        .saturating_mul(MAX_CONNECTIONS_PER_PEER)
        .saturating_add(EXTRA_CONNECTIONS);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
        .with_max_established(Some(max_established));
    let request_response = request_response::Behaviour::with_codec(
        FrameCodec::new(config.max_message_bytes),
        [(PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );

    let swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            move |key: &libp2p::identity::Keypair| {
                noise::Config::new(key).map(|noise| noise.with_prologue(prologue))
            },
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(format!("noise setup failed: {e}")))?
        .with_behaviour(|key| Behaviour {
            allowlist,
            limits: connection_limits::Behaviour::new(limits),
            request_response,
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("permafrost-net/{}", env!("CARGO_PKG_VERSION")))
                    // Dial only the operator-configured addresses, never ones a peer advertises.
                    .with_cache_size(0),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .map_err(|e| match e {})?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .with_connection_timeout(connection_timeout)
        .build();
    Ok(swarm)
}

/// The state of the swarm task.
struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundRequest>,
    local_peer_id: PeerId,
    /// The allowlist and the static addresses.
    peers: HashMap<PeerId, Vec<Multiaddr>>,
    max_message_bytes: usize,
    request_timeout: Duration,
    /// The per-peer token buckets on inbound requests.
    rate_limits: PeerRateLimits,
    /// Outbound requests waiting for their response or failure.
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    /// Inbound requests handed to the application, waiting for its answer.
    pending_responses: FuturesUnordered<BoxFuture<'static, PendingResponse>>,
    /// The last dial error per peer, to explain `OutboundFailure::DialFailure`.
    last_dial_error: HashMap<PeerId, String>,
    /// False once every `Client` is dropped.
    commands_open: bool,
    /// False once the inbound receiver is dropped.
    inbound_open: bool,
}

impl EventLoop {
    /// Drives the swarm until every listener in `pending` has reported an address.
    async fn wait_listening(
        &mut self,
        mut pending: HashSet<libp2p::core::transport::ListenerId>,
    ) -> Result<(), NetError> {
        let wait = async {
            while !pending.is_empty() {
                match self.swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr {
                        listener_id,
                        address,
                    } => {
                        info!(%address, "listening");
                        pending.remove(&listener_id);
                    }
                    SwarmEvent::ListenerClosed {
                        listener_id,
                        reason,
                        ..
                    } if pending.contains(&listener_id) => {
                        let reason = match reason {
                            Ok(()) => "closed".to_owned(),
                            Err(e) => e.to_string(),
                        };
                        return Err(NetError::Transport(format!("listener failed: {reason}")));
                    }
                    SwarmEvent::ListenerError { listener_id, error }
                        if pending.contains(&listener_id) =>
                    {
                        return Err(NetError::Transport(format!("listener failed: {error}")));
                    }
                    other => self.handle_swarm_event(other),
                }
            }
            Ok(())
        };
        tokio::time::timeout(LISTEN_TIMEOUT, wait)
            .await
            .map_err(|_| NetError::Transport("listeners did not start in time".into()))?
    }

    async fn run(mut self) {
        let shutdown = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => {
                        if let ControlFlow::Break(reply) = self.handle_command(command) {
                            break Some(reply);
                        }
                    }
                    None => self.commands_open = false,
                },
                Some(done) = self.pending_responses.next() => self.finish_response(done),
                () = self.inbound.closed(), if self.inbound_open => self.inbound_open = false,
            }
            if !self.commands_open && !self.inbound_open {
                break None;
            }
        };
        let local_peer_id = self.local_peer_id;
        // Dropping the swarm closes the listeners and every connection; dropping the pending
        // replies fails outstanding requests with `NetError::Shutdown`.
        drop(self);
        info!(peer = %local_peer_id, "network stopped");
        if let Some(reply) = shutdown {
            let _ = reply.send(());
        }
    }

    /// Serves one command; `Break` carries the reply of a shutdown request.
    fn handle_command(&mut self, command: Command) -> ControlFlow<oneshot::Sender<()>> {
        match command {
            Command::Request {
                peer,
                payload,
                reply,
            } => self.send_request(peer, payload, reply),
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::DialAll { reply } => {
                self.dial_all();
                let _ = reply.send(());
            }
            Command::Shutdown { reply } => return ControlFlow::Break(reply),
        }
        ControlFlow::Continue(())
    }

    fn send_request(
        &mut self,
        peer: PeerId,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    ) {
        let Some(addrs) = self.peers.get(&peer) else {
            let _ = reply.send(Err(NetError::UnknownPeer(peer)));
            return;
        };
        if peer == self.local_peer_id {
            let _ = reply.send(Err(NetError::Unreachable {
                peer,
                reason: "cannot send a request to the local peer".into(),
            }));
            return;
        }
        // The static addresses go with every request: a failed dial never loses them.
        let request_id = self
            .swarm
            .behaviour_mut()
            .request_response
            .send_request_with_addresses(&peer, payload, addrs.clone());
        trace!(%peer, %request_id, "request queued");
        self.pending_requests.insert(request_id, reply);
    }

    fn dial_all(&mut self) {
        for (peer, addrs) in &self.peers {
            if *peer == self.local_peer_id || addrs.is_empty() || self.swarm.is_connected(peer) {
                continue;
            }
            let opts = DialOpts::peer_id(*peer).addresses(addrs.clone()).build();
            if let Err(error) = self.swarm.dial(opts) {
                debug!(%peer, %error, "dial not started");
            }
        }
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::RequestResponse(event)) => {
                self.handle_request_response(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => match event {
                identify::Event::Received { peer_id, info, .. } => debug!(
                    peer = %peer_id,
                    protocol = %info.protocol_version,
                    agent = %info.agent_version,
                    "identified peer"
                ),
                identify::Event::Error { peer_id, error, .. } => {
                    debug!(peer = %peer_id, %error, "identify failed")
                }
                _ => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => match event.result {
                Ok(rtt) => trace!(peer = %event.peer, ?rtt, "ping"),
                Err(error) => debug!(peer = %event.peer, %error, "ping failed"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Allowlist(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                self.last_dial_error.remove(&peer_id);
                info!(
                    peer = %peer_id,
                    address = %endpoint.get_remote_address(),
                    dialer = endpoint.is_dialer(),
                    connections = num_established.get(),
                    "connection established"
                );
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                cause,
                ..
            } => info!(
                peer = %peer_id,
                address = %endpoint.get_remote_address(),
                connections = num_established,
                cause = cause.map(|c| c.to_string()).unwrap_or_else(|| "closed".into()),
                "connection closed"
            ),
            SwarmEvent::IncomingConnection { send_back_addr, .. } => {
                debug!(remote = %send_back_addr, "incoming connection")
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                peer_id,
                error,
                ..
            } => warn!(
                remote = %send_back_addr,
                peer = ?peer_id,
                %error,
                "incoming connection refused or failed"
            ),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                let reason = error.to_string();
                warn!(peer = ?peer_id, error = %reason, "outgoing connection failed");
                if let Some(peer) = peer_id {
                    self.last_dial_error.insert(peer, reason);
                }
            }
            SwarmEvent::Dialing { peer_id, .. } => debug!(peer = ?peer_id, "dialing"),
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "listening"),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                info!(%address, "listen address expired")
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => match reason {
                Ok(()) => info!(?addresses, "listener closed"),
                Err(error) => warn!(?addresses, %error, "listener closed with an error"),
            },
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            other => trace!(event = ?other, "swarm event"),
        }
    }

    fn handle_request_response(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_inbound_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    // The codec has already refused any response over the cap.
                    if let Some(reply) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %request_id, %error, "request failed");
                let error = self.outbound_error(peer, error);
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error: InboundFailure::ResponseOmission,
                ..
            } => {
                // A request refused here (rate limit, full queue, unanswered): already logged,
                // and at most once per interval for a flooding peer.
                trace!(%peer, %request_id, "inbound request refused without a response")
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => debug!(%peer, %request_id, %error, "inbound request failed"),
            request_response::Event::ResponseSent {
                peer, request_id, ..
            } => trace!(%peer, %request_id, "response sent"),
        }
    }

    fn outbound_error(&self, peer: PeerId, error: OutboundFailure) -> NetError {
        match error {
            OutboundFailure::DialFailure => NetError::Unreachable {
                peer,
                reason: self
                    .last_dial_error
                    .get(&peer)
                    .cloned()
                    .unwrap_or_else(|| "dial failed".into()),
            },
            OutboundFailure::Timeout => NetError::Timeout(peer),
            OutboundFailure::ConnectionClosed => NetError::Remote {
                peer,
                reason: "connection closed before a response was received".into(),
            },
            OutboundFailure::UnsupportedProtocols => NetError::Remote {
                peer,
                reason: format!("remote does not support {PROTOCOL}"),
            },
            OutboundFailure::Io(error) => match FrameTooLarge::find(&error) {
                Some(FrameTooLarge { len, cap }) => NetError::TooLarge { len, cap },
                None if error.kind() == std::io::ErrorKind::UnexpectedEof => NetError::Remote {
                    peer,
                    reason: "remote closed the stream without a response".into(),
                },
                None => NetError::Remote {
                    peer,
                    reason: error.to_string(),
                },
            },
        }
    }

    fn on_inbound_request(
        &mut self,
        peer: PeerId,
        payload: Vec<u8>,
        channel: request_response::ResponseChannel<Vec<u8>>,
    ) {
        // The allowlist refuses unknown peers at connection time; this is the second check.
        if !self.peers.contains_key(&peer) {
            warn!(%peer, "refusing a request from a peer outside the allowlist");
            return;
        }
        // Over the peer's rate limit: refused like a full queue, before the application sees
        // it. Logged at most once per interval per peer, with the count since the last line.
        if let Verdict::Refuse { log } = self.rate_limits.check(peer, Instant::now()) {
            if let Some(refused) = log {
                warn!(
                    %peer,
                    refused,
                    interval_secs = REFUSAL_LOG_INTERVAL.as_secs(),
                    "peer exceeds its inbound rate limit; refusing its requests"
                );
            }
            return;
        }
        let (responder, response) = oneshot::channel();
        let request = InboundRequest {
            peer,
            payload,
            responder,
        };
        // Never wait on the application here: a full queue refuses the request, and dropping
        // `channel` tells the requester at once.
        match self.inbound.try_send(request) {
            Ok(()) => {
                let timeout = self.request_timeout;
                self.pending_responses.push(Box::pin(async move {
                    let answer = tokio::time::timeout(timeout, response).await;
                    (peer, channel, answer)
                }));
            }
            Err(TrySendError::Full(_)) => warn!(
                %peer,
                capacity = self.inbound.max_capacity(),
                "inbound request queue full; refusing the request"
            ),
            Err(TrySendError::Closed(_)) => {
                debug!(%peer, "no inbound request receiver; refusing the request")
            }
        }
    }

    fn finish_response(&mut self, (peer, channel, answer): PendingResponse) {
        match answer {
            Ok(Ok(response)) if response.len() > self.max_message_bytes => warn!(
                %peer,
                len = response.len(),
                cap = self.max_message_bytes,
                "response exceeds the message cap; dropping it"
            ),
            Ok(Ok(response)) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .request_response
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!(%peer, "response came after the request timed out or its connection closed");
                }
            }
            Ok(Err(_)) => debug!(%peer, "inbound request dropped without a response"),
            Err(_) => debug!(%peer, "inbound request not answered within the request timeout"),
        }
    }
}
