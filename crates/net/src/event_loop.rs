//! The swarm task: builds the swarm, then owns it and serves commands and events.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::Transport as _;
use libp2p::{
    allow_block_list, connection_limits, identify, noise, ping, tcp, yamux, Multiaddr, PeerId,
    Swarm, SwarmBuilder,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, trace, warn, Instrument};

use crate::addresses::StaticAddresses;
use crate::client::{Command, InboundRequest};
use crate::frame::PROTOCOL;
use crate::inbound::{self, InboundContext};
use crate::outbound::{LinkContext, Links};
use crate::rate_limit::PeerRateLimits;
use crate::transport::FreshPortDials;
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
/// Every connection is pinged this often; a ping unanswered within [`PING_TIMEOUT`] closes
/// the connection (it may be dead without either side knowing), so a connection that died
/// silently is given up within 10 s.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// See [`PING_INTERVAL`].
const PING_TIMEOUT: Duration = Duration::from_secs(5);
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
    addresses: StaticAddresses,
    streams: libp2p_stream::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

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
    let streams = libp2p_stream::Behaviour::new();
    let mut control = streams.new_control();
    let incoming = control
        .accept(PROTOCOL)
        .map_err(|e| NetError::Transport(format!("cannot serve {PROTOCOL}: {e}")))?;
    let mut swarm = build_swarm(&config, &peers, connection_timeout, streams)?;

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
    let (stop_accepting, stop) = watch::channel(false);
    let mut event_loop = EventLoop {
        swarm,
        commands: command_rx,
        inbound: inbound_tx.clone(),
        local_peer_id,
        peers,
        _stop_accepting: stop_accepting,
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
    let inbound_context = InboundContext {
        peers: event_loop.peers.keys().copied().collect(),
        max_message_bytes: config.max_message_bytes,
        rate_limits: Mutex::new(PeerRateLimits::new(config.inbound_rate_limit)),
        queue: inbound_tx,
        streams: Mutex::new(HashMap::new()),
    };
    tokio::spawn(inbound::accept(incoming, Arc::new(inbound_context), stop).in_current_span());
    let links = Links::new(
        local_peer_id,
        event_loop.peers.keys().copied(),
        &control,
        LinkContext {
            max_message_bytes: config.max_message_bytes,
            request_timeout: config.request_timeout,
            open_timeout: connection_timeout,
            commands: command_tx.clone(),
        },
    );
    tokio::spawn(event_loop.run().in_current_span());

    let client = Client {
        local_peer_id,
        commands: command_tx,
        links: Arc::new(links),
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
    streams: libp2p_stream::Behaviour,
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
    let addresses = StaticAddresses::new(peers.clone());

    let swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?.with_prologue(prologue);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                FreshPortDials(tcp::tokio::Transport::new(
                    tcp::Config::default().nodelay(true),
                ))
                .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default()),
            )
        })
        .map_err(|e| NetError::Transport(format!("noise setup failed: {e}")))?
        .with_behaviour(|key| Behaviour {
            allowlist,
            limits: connection_limits::Behaviour::new(limits),
            addresses,
            streams,
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("permafrost-net/{}", env!("CARGO_PKG_VERSION")))
                    // Dial only the operator-configured addresses, never ones a peer advertises.
                    .with_cache_size(0),
            ),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
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
    /// Dropped with the loop: stops accepting inbound streams.
    _stop_accepting: watch::Sender<bool>,
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
            Command::Dial { peer } => self.dial(peer),
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

    /// Dials `peer` unless connected or dialing already (its static addresses come from
    /// [`StaticAddresses`]).
    fn dial(&mut self, peer: PeerId) {
        if peer == self.local_peer_id || !self.peers.contains_key(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(error) = self.swarm.dial(opts) {
            trace!(%peer, %error, "dial not started");
        }
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
                Err(ping::Failure::Timeout) => {
                    // A connection whose pings time out may be dead without either side
                    // knowing (a host gone without a reset): close it, so the links move to
                    // another connection or dial again instead of writing into it.
                    warn!(peer = %event.peer, "ping timed out; closing the connection");
                    self.swarm.close_connection(event.connection);
                }
                Err(error) => debug!(peer = %event.peer, %error, "ping failed"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Allowlist(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Addresses(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Streams(())) => {}
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
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
                warn!(peer = ?peer_id, %error, "outgoing connection failed")
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
}
