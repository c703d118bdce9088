//! permafrost-net over real loopback TCP: allowlist, network id, size caps, timeouts, restart,
//! per-peer rate limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use permafrost_net::{
    start, Client, InboundRequest, Keypair, Multiaddr, NetConfig, NetError, PeerId, PeerInfo,
    RateLimit,
};
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::time::timeout;

const NETWORK: &str = "permafrost-test";
/// Every wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(8);

/// Logs to the test output (shown for failing tests); `RUST_LOG` picks the level.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "permafrost_net=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    timeout(WAIT, future).await.expect("operation timed out")
}

/// A free loopback port for a node whose address others must know before it starts.
///
/// Picked below the kernel's ephemeral range, so no port-0 listener or outgoing connection
/// (of this or a concurrent test process) can take it between this check and the bind.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..100 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

fn loopback(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

fn peer(keypair: &Keypair, addrs: Vec<Multiaddr>) -> PeerInfo {
    PeerInfo {
        peer_id: keypair.public().to_peer_id(),
        addrs,
    }
}

fn config(keypair: &Keypair, peers: Vec<PeerInfo>) -> NetConfig {
    let mut config = NetConfig::new(keypair.clone(), NETWORK);
    config.peers = peers;
    config.request_timeout = Duration::from_secs(2);
    config
}

async fn start_node(config: NetConfig) -> (Client, mpsc::Receiver<InboundRequest>, Multiaddr) {
    init_tracing();
    let (client, inbound) = within(start(config)).await.unwrap();
    let addrs = within(client.listen_addrs()).await.unwrap();
    assert_eq!(addrs.len(), 1, "one listen address: {addrs:?}");
    (client, inbound, addrs[0].clone())
}

/// A server with default settings and a client that lists it: the server's handle, its
/// inbound requests and id, and the client.
async fn server_and_client() -> (Client, mpsc::Receiver<InboundRequest>, PeerId, Client) {
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (server, server_inbound, server_addr) =
        start_node(config(&server_key, vec![peer(&client_key, vec![])])).await;
    let (client, _client_inbound, _) = start_node(config(
        &client_key,
        vec![peer(&server_key, vec![server_addr])],
    ))
    .await;
    (
        server,
        server_inbound,
        server_key.public().to_peer_id(),
        client,
    )
}

/// `from` sends `payload` to `to`, which takes it from `inbound` (it must be that request) and
/// answers `answer`; returns what `from` got.
async fn round_trip(
    from: &Client,
    to: PeerId,
    inbound: &mut mpsc::Receiver<InboundRequest>,
    payload: &[u8],
    answer: Vec<u8>,
) -> Result<Vec<u8>, NetError> {
    let request = tokio::spawn({
        let (from, payload) = (from.clone(), payload.to_vec());
        async move { from.request(to, payload).await }
    });
    let received = within(inbound.recv()).await.unwrap();
    assert_eq!(received.payload, payload);
    received.respond(answer);
    within(request).await.unwrap()
}

/// Answers every request with `tag` followed by the request bytes.
fn echo(mut inbound: mpsc::Receiver<InboundRequest>, tag: &'static [u8]) {
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            let mut answer = tag.to_vec();
            answer.extend_from_slice(&request.payload);
            request.respond(answer);
        }
    });
}

/// Asserts that nothing arrives on `inbound` for `window`.
async fn assert_nothing_received(inbound: &mut mpsc::Receiver<InboundRequest>, window: Duration) {
    if let Ok(received) = timeout(window, inbound.recv()).await {
        panic!("nothing should have been received, got {received:?}");
    }
    assert!(matches!(inbound.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlisted_peers_exchange_requests_both_ways() {
    let started = Instant::now();
    let (a_key, b_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (a_port, b_port) = (free_port(), free_port());
    let (a_id, b_id) = (a_key.public().to_peer_id(), b_key.public().to_peer_id());

    let mut a_config = config(&a_key, vec![peer(&b_key, vec![loopback(b_port)])]);
    a_config.listen = vec![loopback(a_port)];
    let mut b_config = config(&b_key, vec![peer(&a_key, vec![loopback(a_port)])]);
    b_config.listen = vec![loopback(b_port)];

    let (a, a_inbound, a_addr) = start_node(a_config).await;
    let (b, b_inbound, b_addr) = start_node(b_config).await;
    assert_eq!((a_addr, b_addr), (loopback(a_port), loopback(b_port)));
    assert_eq!((a.local_peer_id(), b.local_peer_id()), (a_id, b_id));
    echo(a_inbound, b"a:");
    echo(b_inbound, b"b:");

    // a dials b, then b answers over its own request the other way.
    assert_eq!(
        within(a.request(b_id, b"hello".to_vec())).await.unwrap(),
        b"b:hello"
    );
    assert_eq!(
        within(b.request(a_id, b"world".to_vec())).await.unwrap(),
        b"a:world"
    );
    assert!(within(a.connected_peers()).await.unwrap().contains(&b_id));
    assert!(within(b.connected_peers()).await.unwrap().contains(&a_id));

    // Many concurrent requests each way, including an empty one and one at the cap.
    let cap = NetConfig::DEFAULT_MAX_MESSAGE_BYTES - 2;
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let (from, to) = if i % 2 == 0 {
            (a.clone(), b_id)
        } else {
            (b.clone(), a_id)
        };
        tasks.push(tokio::spawn(async move {
            let payload = match i {
                0 => Vec::new(),
                1 => vec![i; cap],
                _ => vec![i; 100 * usize::from(i)],
            };
            let response = from.request(to, payload.clone()).await.unwrap();
            assert_eq!(&response[2..], &payload[..]);
        }));
    }
    for task in tasks {
        within(task).await.unwrap();
    }

    // dial_all returns at once and is harmless when already connected.
    within(a.dial_all()).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    eprintln!("both_ways: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peers_opening_links_at_once_lose_no_request() {
    const PEERS: usize = 8;
    const REQUESTS: usize = 20;
    let server_key = Keypair::generate_ed25519();
    let server_id = server_key.public().to_peer_id();
    let keys: Vec<Keypair> = (0..PEERS).map(|_| Keypair::generate_ed25519()).collect();
    let (_server, server_inbound, server_addr) = start_node(config(
        &server_key,
        keys.iter().map(|key| peer(key, vec![])).collect(),
    ))
    .await;
    echo(server_inbound, b"s:");
    let mut clients = Vec::new();
    for key in &keys {
        let (client, _inbound, _) = start_node(config(
            key,
            vec![peer(&server_key, vec![server_addr.clone()])],
        ))
        .await;
        clients.push(client);
    }
    // Connected first, so that every peer's first requests open their streams together and
    // they reach the server in the same instant; each request must be answered all the same.
    for client in &clients {
        within(client.dial_all()).await.unwrap();
    }
    for client in &clients {
        within(async {
            while client.connected_peers().await.unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
    let tasks: Vec<_> = clients
        .iter()
        .flat_map(|client| {
            (0..REQUESTS).map(move |i| {
                let client = client.clone();
                tokio::spawn(async move { client.request(server_id, vec![i as u8]).await })
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let i = (n % REQUESTS) as u8;
        assert_eq!(within(task).await.unwrap(), Ok(vec![b's', b':', i]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_in_any_order_reach_their_own_requests() {
    const REQUESTS: usize = 200;
    let (_server, mut server_inbound, server_id, client) = server_and_client().await;

    // Every request is in flight at once; the server holds them all, then answers them in
    // reverse order of arrival, each with its own payload doubled.
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let payload = format!("request {i}").into_bytes();
                (payload.clone(), client.request(server_id, payload).await)
            })
        })
        .collect();
    let mut held = Vec::new();
    while held.len() < REQUESTS {
        held.push(within(server_inbound.recv()).await.unwrap());
    }
    let distinct: HashSet<Vec<u8>> = held.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(distinct.len(), REQUESTS, "every request arrived once");
    for request in held.into_iter().rev() {
        let answer = [request.payload.clone(), request.payload.clone()].concat();
        request.respond(answer);
    }
    for task in tasks {
        let (payload, answer) = within(task).await.unwrap();
        assert_eq!(answer.unwrap(), [payload.clone(), payload].concat());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_peer_that_goes_away_fail_at_once() {
    let (server, mut server_inbound, server_id, client) = server_and_client().await;

    // Three requests are held by the server; then it stops. With the default 30 s request
    // timeout, only the end of the link can fail them this soon.
    let tasks: Vec<_> = (0..3u8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.request(server_id, vec![i]).await })
        })
        .collect();
    let mut held = Vec::new();
    while held.len() < 3 {
        held.push(within(server_inbound.recv()).await.unwrap());
    }
    let stopped = Instant::now();
    within(server.shutdown()).await;
    for task in tasks {
        let error = within(task).await.unwrap().unwrap_err();
        assert!(
            matches!(&error, NetError::Remote { peer, .. } if *peer == server_id),
            "{error:?}"
        );
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    drop(held);
    // The next request finds the peer gone: nothing listens at its address any more.
    let error = within(client.request(server_id, b"anyone?".to_vec()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, NetError::Unreachable { peer, .. } if *peer == server_id),
        "{error:?}"
    );
}

/// A peer that speaks the link protocol by hand: it opens streams and writes frames as it
/// pleases (here: never reading its answers).
async fn raw_peer(key: &Keypair, server: PeerId, addr: Multiaddr) -> libp2p_stream::Control {
    use futures::StreamExt;
    use libp2p::swarm::dial_opts::DialOpts;
    let prologue = format!("permafrost/v1/{NETWORK}").into_bytes();
    let streams = libp2p_stream::Behaviour::new();
    let control = streams.new_control();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            move |key: &Keypair| libp2p::noise::Config::new(key).map(|n| n.with_prologue(prologue)),
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| streams)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT))
        .build();
    swarm
        .dial(DialOpts::peer_id(server).addresses(vec![addr]).build())
        .unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    control
}

/// `count` request frames of the link protocol, ids from `first`, each with a one-byte body.
fn request_frames(first: u64, count: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for id in first..first + count {
        bytes.extend_from_slice(&10u32.to_be_bytes());
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.push(0); // a request
        bytes.push(7);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_its_answers_stalls_only_itself() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    const UNANSWERED: usize = 1024;
    const STREAMS: usize = 4;
    let (server_key, raw_key, other_key) = (
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
    );
    let (server_id, raw_id) = (
        server_key.public().to_peer_id(),
        raw_key.public().to_peer_id(),
    );
    let mut server_config = config(
        &server_key,
        vec![peer(&raw_key, vec![]), peer(&other_key, vec![])],
    );
    server_config.inbound_queue = 8192;
    server_config.inbound_rate_limit = None;
    let (_server, mut server_inbound, server_addr) = start_node(server_config).await;
    // The application holds the raw peer's requests and answers everyone else's at once.
    let (held_tx, mut held) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(request) = server_inbound.recv().await {
            if request.peer == raw_id {
                let _ = held_tx.send(request);
            } else {
                request.respond(b"ok".to_vec());
            }
        }
    });
    let (other, _other_inbound, _) = start_node(config(
        &other_key,
        vec![peer(&server_key, vec![server_addr.clone()])],
    ))
    .await;

    // 1,500 requests on one stream, none of whose answers is ever read.
    let mut control = raw_peer(&raw_key, server_id, server_addr).await;
    let protocol = libp2p::StreamProtocol::new("/permafrost/link/1");
    let mut first = within(control.open_stream(server_id, protocol.clone()))
        .await
        .unwrap();
    within(first.write_all(&request_frames(0, 1500)))
        .await
        .unwrap();
    within(first.flush()).await.unwrap();
    let mut requests = Vec::new();
    while requests.len() < UNANSWERED {
        requests.push(within(held.recv()).await.unwrap());
    }
    // The stream is read no further while they are unanswered; the other peer is served.
    assert_eq!(
        within(other.request(server_id, b"me?".to_vec())).await,
        Ok(b"ok".to_vec())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(held.is_empty(), "nothing past the bound is read");
    // Each answer frees one place: ten answers let exactly ten more in.
    for request in requests.drain(..10) {
        request.respond(b"answer".to_vec());
    }
    for _ in 0..10 {
        requests.push(within(held.recv()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(held.is_empty());

    // Five more streams, one request each: three fit beside the first, two are closed.
    let mut extra = Vec::new();
    for i in 0..5 {
        let mut stream = within(control.open_stream(server_id, protocol.clone()))
            .await
            .unwrap();
        // A refused stream may be closed before the write: that is checked below.
        let _ = within(stream.write_all(&request_frames(10_000 + i, 1))).await;
        let _ = within(stream.flush()).await;
        extra.push(stream);
    }
    for _ in 0..STREAMS - 1 {
        requests.push(within(held.recv()).await.unwrap());
    }
    let mut closed = 0;
    for stream in &mut extra {
        // An accepted stream begins with the server's ready frame (kind 3), then stays silent
        // (its request is held); a refused one ends without it.
        let mut ready = [0u8; 13];
        match within(stream.read_exact(&mut ready)).await {
            Ok(()) => assert_eq!(ready[12], 3, "a ready frame"),
            Err(_) => closed += 1,
        }
    }
    assert_eq!(
        closed,
        5 - (STREAMS - 1),
        "streams beyond the bound are closed"
    );
    assert!(held.is_empty());
    drop(requests);
}

/// A caller that gives up on a request while its frame waits for the peer's credit (the probe
/// does, after 3 s) takes nothing down with it: the requests written before it on the same
/// stream are all answered once the peer answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_given_up_during_its_write_leaves_the_others_answered() {
    const HELD: usize = 1024;
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server_id = server_key.public().to_peer_id();
    let mut server_config = config(&server_key, vec![peer(&client_key, vec![])]);
    server_config.inbound_queue = 8192;
    server_config.inbound_rate_limit = None;
    let (_server, mut server_inbound, server_addr) = start_node(server_config).await;
    let mut client_config = config(&client_key, vec![peer(&server_key, vec![server_addr])]);
    client_config.request_timeout = Duration::from_secs(20);
    let (client, _client_inbound, _) = start_node(client_config).await;

    // 1,024 requests held by the server: it reads the stream no further.
    let tasks: Vec<_> = (0..HELD)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .request(server_id, (i as u32).to_be_bytes().to_vec())
                    .await
            })
        })
        .collect();
    let mut held = Vec::new();
    while held.len() < HELD {
        held.push(within(server_inbound.recv()).await.unwrap());
    }
    // A large request now waits for credit; its caller gives up after 500 ms.
    let given_up = timeout(
        Duration::from_millis(500),
        client.request(server_id, vec![0u8; 1 << 20]),
    )
    .await;
    assert!(
        given_up.is_err(),
        "the write was still waiting: {given_up:?}"
    );
    for request in held.drain(..) {
        let answer = [b"answer ".as_slice(), &request.payload].concat();
        request.respond(answer);
    }
    // Every one of the 1,024 is answered, well before its 20 s timeout.
    let started = Instant::now();
    for (i, task) in tasks.into_iter().enumerate() {
        let answer = timeout(Duration::from_secs(5), task)
            .await
            .expect("still waiting")
            .unwrap()
            .unwrap();
        assert_eq!(
            answer,
            [b"answer ".as_slice(), &(i as u32).to_be_bytes()].concat()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A peer whose host accepts TCP but never speaks: one open is tried for all the requests
/// queued meanwhile, and when it fails every one of them is reported unreachable (nothing of
/// it was sent) at once, not one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_behind_a_failing_open_are_all_reported_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let (silent_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let silent_id = silent_key.public().to_peer_id();
    let mut client_config = config(&client_key, vec![peer(&silent_key, vec![loopback(port)])]);
    // Opening a stream (the dial included) may take min(request_timeout, 10 s) = 1 s.
    client_config.request_timeout = Duration::from_secs(1);
    let (client, _inbound, _) = start_node(client_config).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..6u8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.request(silent_id, vec![i]).await })
        })
        .collect();
    for task in tasks {
        let error = within(task).await.unwrap().unwrap_err();
        assert!(
            matches!(&error, NetError::Unreachable { peer, .. } if *peer == silent_id),
            "{error:?}"
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1800), "{took:?}");
}

/// A TCP relay to `to` that can be frozen: it then forwards nothing more, either way, and
/// closes nothing (a host that vanished, a partition, a NAT that forgot the mapping).
async fn freezable_relay(
    to: std::net::SocketAddr,
) -> (Multiaddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let frozen = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let flag = Arc::clone(&frozen);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let (inbound_read, inbound_write) = inbound.into_split();
            let (outbound_read, outbound_write) = outbound.into_split();
            tokio::spawn(forward(inbound_read, outbound_write, Arc::clone(&flag)));
            tokio::spawn(forward(outbound_read, inbound_write, Arc::clone(&flag)));
        }
    });
    (loopback(port), frozen)
}

/// Copies `from` to `to` until either ends, or forever nothing once `frozen` is set.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buf).await;
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The listen address of a node as a socket address.
fn socket_addr(addr: &Multiaddr) -> std::net::SocketAddr {
    use libp2p::multiaddr::Protocol;
    let (mut ip, mut port) = (None, None);
    for protocol in addr {
        match protocol {
            Protocol::Ip4(v4) => ip = Some(std::net::IpAddr::V4(v4)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    (ip.unwrap(), port.unwrap()).into()
}

/// A connection that dies silently (no FIN, no RST) is given up: a request that gets no
/// answer while nothing at all is read on its stream retires the stream, and failed pings close
/// the connection, so once the peer is back (on a new connection) requests reach it again
/// within seconds, not after TCP's own give-up (about 15 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_connection_is_given_up_once_the_peer_is_back() {
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (server_id, client_id) = (
        server_key.public().to_peer_id(),
        client_key.public().to_peer_id(),
    );
    let (server1, server1_inbound, server1_addr) =
        start_node(config(&server_key, vec![peer(&client_key, vec![])])).await;
    echo(server1_inbound, b"");
    let (relay, frozen) = freezable_relay(socket_addr(&server1_addr)).await;
    let mut client_config = config(&client_key, vec![peer(&server_key, vec![relay])]);
    client_config.request_timeout = Duration::from_secs(1);
    let (client, mut client_inbound, client_addr) = start_node(client_config).await;
    assert_eq!(
        within(client.request(server_id, b"one".to_vec())).await,
        Ok(b"one".to_vec())
    );

    // The path dies silently; the server restarts and dials the client: it is back.
    frozen.store(true, std::sync::atomic::Ordering::Relaxed);
    within(server1.shutdown()).await;
    let (server2, server2_inbound, _) = start_node(config(
        &server_key,
        vec![peer(&client_key, vec![client_addr])],
    ))
    .await;
    echo(server2_inbound, b"");
    within(server2.dial_all()).await.unwrap();
    within(async {
        while !server2
            .connected_peers()
            .await
            .unwrap()
            .contains(&client_id)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        round_trip(
            &server2,
            client_id,
            &mut client_inbound,
            b"hi",
            b"hello".to_vec()
        )
        .await,
        Ok(b"hello".to_vec())
    );
    // The client's requests reach the server again within the ping's 10 s, whichever
    // connection its next stream goes on.
    let started = Instant::now();
    let mut errors = Vec::new();
    loop {
        match timeout(WAIT, client.request(server_id, b"again".to_vec())).await {
            Ok(Ok(answer)) => {
                assert_eq!(answer, b"again");
                break;
            }
            Ok(Err(e)) => errors.push(e),
            Err(_) => panic!("a request outlived its deadline"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the peer is back, but {} requests in a row failed: {errors:?}",
            errors.len()
        );
    }
    eprintln!(
        "reached again after {:?} and {} failed requests",
        started.elapsed(),
        errors.len()
    );
}

/// Dropping every handle stops the network, links and all: the node's listen port is free
/// again soon after, also when the node has a peer (whose link has tasks of its own) and has
/// sent it requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_stops_the_network() {
    // The client's inbound receiver is dropped already; it sends the server a request, so its
    // link to the server has a stream, a writing task and a reader.
    let (_server, mut server_inbound, server_id, client) = server_and_client().await;
    assert_eq!(
        round_trip(
            &client,
            server_id,
            &mut server_inbound,
            b"hi",
            b"hello".to_vec()
        )
        .await,
        Ok(b"hello".to_vec())
    );
    let addr = within(client.listen_addrs()).await.unwrap()[0].clone();
    drop(client);
    let started = Instant::now();
    while std::net::TcpListener::bind(socket_addr(&addr)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the network still listens 5 s after every handle was dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_all_connects_configured_peers() {
    let (a_key, b_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (_b, _b_inbound, b_addr) = start_node(config(&b_key, vec![peer(&a_key, vec![])])).await;
    let (a, _a_inbound, _) = start_node(config(&a_key, vec![peer(&b_key, vec![b_addr])])).await;
    let b_id = b_key.public().to_peer_id();

    // dial_all does not wait; poll until connected (re-dialing is a no-op while a dial runs).
    within(async {
        loop {
            a.dial_all().await.unwrap();
            if a.connected_peers().await.unwrap().contains(&b_id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_outside_the_allowlist_gets_nothing_processed() {
    let started = Instant::now();
    let (server_key, friend_key, intruder_key) = (
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
    );
    let server_id = server_key.public().to_peer_id();
    // The server knows `friend` only; the intruder knows the server's address.
    let (server, mut server_inbound, server_addr) =
        start_node(config(&server_key, vec![peer(&friend_key, vec![])])).await;
    let (intruder, _intruder_inbound, _) = start_node(config(
        &intruder_key,
        vec![peer(&server_key, vec![server_addr])],
    ))
    .await;

    let error = within(intruder.request(server_id, b"let me in".to_vec()))
        .await
        .unwrap_err();
    eprintln!("intruder's request: {error}");
    assert!(
        matches!(
            error,
            NetError::Remote { peer, .. } | NetError::Unreachable { peer, .. } if peer == server_id
        ),
        "{error:?}"
    );
    // A second attempt fails the same way, and the server never sees either.
    assert!(within(intruder.request(server_id, b"again".to_vec()))
        .await
        .is_err());
    assert_nothing_received(&mut server_inbound, Duration::from_millis(1500)).await;
    assert!(!within(server.connected_peers())
        .await
        .unwrap()
        .contains(&intruder_key.public().to_peer_id()));
    eprintln!("allowlist: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_with_another_network_id_cannot_connect() {
    let started = Instant::now();
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server_id = server_key.public().to_peer_id();
    // Both allowlist each other; only the network id differs.
    let (server, mut server_inbound, server_addr) =
        start_node(config(&server_key, vec![peer(&client_key, vec![])])).await;
    let mut client_config = config(&client_key, vec![peer(&server_key, vec![server_addr])]);
    client_config.network_id = "another-network".into();
    let (client, _client_inbound, _) = start_node(client_config).await;

    let error = within(client.request(server_id, b"hello".to_vec()))
        .await
        .unwrap_err();
    eprintln!("other network's request: {error}");
    assert!(
        matches!(error, NetError::Unreachable { peer, .. } if peer == server_id),
        "{error:?}"
    );
    assert_nothing_received(&mut server_inbound, Duration::from_millis(1000)).await;
    assert!(within(server.connected_peers()).await.unwrap().is_empty());
    assert!(within(client.connected_peers()).await.unwrap().is_empty());
    eprintln!("network_id: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_and_responses_are_refused() {
    let started = Instant::now();
    let [capped_key, roomy_key, small_key, big_key] = [(); 4].map(|()| Keypair::generate_ed25519());
    let (capped_id, roomy_id) = (
        capped_key.public().to_peer_id(),
        roomy_key.public().to_peer_id(),
    );
    let with_cap = |mut config: NetConfig, cap: usize| {
        config.max_message_bytes = cap;
        config
    };
    // `capped` accepts 1 KiB, `roomy` 1 MiB; `small` accepts 1 KiB, `big` 1 MiB.
    let (_capped, mut capped_inbound, capped_addr) = start_node(with_cap(
        config(
            &capped_key,
            vec![peer(&small_key, vec![]), peer(&big_key, vec![])],
        ),
        1024,
    ))
    .await;
    let (_roomy, mut roomy_inbound, roomy_addr) = start_node(with_cap(
        config(&roomy_key, vec![peer(&small_key, vec![])]),
        1 << 20,
    ))
    .await;
    let (small, _small_inbound, _) = start_node(with_cap(
        config(
            &small_key,
            vec![
                peer(&capped_key, vec![capped_addr.clone()]),
                peer(&roomy_key, vec![roomy_addr]),
            ],
        ),
        1024,
    ))
    .await;
    let (big, _big_inbound, _) = start_node(with_cap(
        config(&big_key, vec![peer(&capped_key, vec![capped_addr])]),
        1 << 20,
    ))
    .await;

    // Over the sender's own cap: refused before anything is sent.
    assert_eq!(
        within(small.request(capped_id, vec![0; 1025])).await,
        Err(NetError::TooLarge {
            len: 1025,
            cap: 1024
        })
    );
    // Under the sender's cap, over the receiver's: the receiving codec refuses the frame.
    let error = within(big.request(capped_id, vec![0; 4096]))
        .await
        .unwrap_err();
    eprintln!("request over the receiver's cap: {error}");
    assert!(
        matches!(error, NetError::Remote { peer, .. } if peer == capped_id),
        "{error:?}"
    );
    assert_nothing_received(&mut capped_inbound, Duration::from_millis(200)).await;

    // A response over the requester's cap: its codec refuses the frame.
    let error = round_trip(
        &small,
        roomy_id,
        &mut roomy_inbound,
        b"big answer please",
        vec![7; 2000],
    )
    .await
    .unwrap_err();
    eprintln!("response over the requester's cap: {error}");
    assert_eq!(
        error,
        NetError::TooLarge {
            len: 2000,
            cap: 1024
        }
    );

    // A response over the responder's own cap: it is dropped and the requester errors.
    let error = round_trip(&big, capped_id, &mut capped_inbound, b"x", vec![7; 2000])
        .await
        .unwrap_err();
    eprintln!("response over the responder's cap: {error}");
    assert!(
        matches!(error, NetError::Remote { peer, .. } if peer == capped_id),
        "{error:?}"
    );

    // Every connection still works for messages within the caps.
    assert_eq!(
        round_trip(
            &big,
            capped_id,
            &mut capped_inbound,
            &[1; 1024],
            vec![2; 1024]
        )
        .await,
        Ok(vec![2; 1024])
    );
    eprintln!("size caps: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_fail_within_the_timeout() {
    let started = Instant::now();
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server_id = server_key.public().to_peer_id();
    let mut server_config = config(&server_key, vec![peer(&client_key, vec![])]);
    server_config.request_timeout = Duration::from_secs(1);
    let (_server, mut server_inbound, server_addr) = start_node(server_config).await;
    let mut client_config = config(&client_key, vec![peer(&server_key, vec![server_addr])]);
    client_config.request_timeout = Duration::from_secs(1);
    let (client, _client_inbound, _) = start_node(client_config).await;

    // Held, never answered: the requester times out after about request_timeout.
    let sent = Instant::now();
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.request(server_id, b"hold me".to_vec()).await }
    });
    let held = within(server_inbound.recv()).await.unwrap();
    let error = within(request).await.unwrap().unwrap_err();
    let waited = sent.elapsed();
    eprintln!("held request: {error} after {waited:?}");
    // Both ends give up after request_timeout: the requester's timer (Timeout) or the
    // server closing the stream (Remote), whichever fires first.
    assert!(
        matches!(
            error,
            NetError::Timeout(peer) | NetError::Remote { peer, .. } if peer == server_id
        ),
        "{error:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Answering after the deadline is harmless.
    held.respond(b"too late".to_vec());

    // Dropped after a delay: the requester hears at once, well before the timeout.
    let sent = Instant::now();
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.request(server_id, b"drop me".to_vec()).await }
    });
    let dropped = within(server_inbound.recv()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(dropped);
    let error = within(request).await.unwrap().unwrap_err();
    let waited = sent.elapsed();
    eprintln!("dropped request: {error} after {waited:?}");
    assert!(
        matches!(error, NetError::Remote { peer, .. } if peer == server_id),
        "{error:?}"
    );
    assert!(waited < Duration::from_millis(900), "{waited:?}");

    // The connection is still good afterwards.
    let result = round_trip(
        &client,
        server_id,
        &mut server_inbound,
        b"answer me",
        b"ok".to_vec(),
    )
    .await;
    assert_eq!(result, Ok(b"ok".to_vec()));
    eprintln!("timeouts: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbound_queue_refuses_new_requests() {
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server_id = server_key.public().to_peer_id();
    let mut server_config = config(&server_key, vec![peer(&client_key, vec![])]);
    server_config.inbound_queue = 1;
    let (_server, mut server_inbound, server_addr) = start_node(server_config).await;
    let (client, _client_inbound, _) = start_node(config(
        &client_key,
        vec![peer(&server_key, vec![server_addr])],
    ))
    .await;

    // The first request fills the queue (nobody reads it yet).
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.request(server_id, b"first".to_vec()).await }
    });
    within(async {
        while server_inbound.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The second is refused at once instead of waiting.
    let sent = Instant::now();
    let error = within(client.request(server_id, b"second".to_vec()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, NetError::Busy { peer, .. } if peer == server_id),
        "{error:?}"
    );
    assert!(sent.elapsed() < Duration::from_secs(1));
    // The queued one is still served.
    let queued = within(server_inbound.recv()).await.unwrap();
    assert_eq!(queued.payload, b"first");
    queued.respond(b"served".to_vec());
    assert_eq!(within(first).await.unwrap().unwrap(), b"served");
    assert_nothing_received(&mut server_inbound, Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_peer_is_unknown() {
    let key = Keypair::generate_ed25519();
    // A node listing itself (as every node of a network file does).
    let own = key.public().to_peer_id();
    let (client, _inbound, addr) = start_node(config(&key, vec![])).await;
    client.shutdown().await;
    let (client, _inbound, _) = start_node(config(&key, vec![peer(&key, vec![addr])])).await;
    let stranger = PeerId::random();
    assert_eq!(
        within(client.request(stranger, b"hi".to_vec())).await,
        Err(NetError::UnknownPeer(stranger))
    );
    // Requests to oneself are refused without dialing.
    assert!(matches!(
        within(client.request(own, b"hi".to_vec())).await,
        Err(NetError::Unreachable { peer, .. }) if peer == own
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_server_is_reached_at_its_static_address() {
    let started = Instant::now();
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server_id = server_key.public().to_peer_id();
    let server_config = config(&server_key, vec![peer(&client_key, vec![])]);
    let (server, server_inbound, server_addr) = start_node(server_config.clone()).await;
    echo(server_inbound, b"v1:");
    let (client, _client_inbound, _) = start_node(config(
        &client_key,
        vec![peer(&server_key, vec![server_addr.clone()])],
    ))
    .await;
    assert_eq!(
        within(client.request(server_id, b"x".to_vec()))
            .await
            .unwrap(),
        b"v1:x"
    );

    // Shut down: every handle of the server reports Shutdown from now on.
    let server_clone = server.clone();
    within(server.shutdown()).await;
    within(server.shutdown()).await;
    assert_eq!(
        within(server_clone.listen_addrs()).await,
        Err(NetError::Shutdown)
    );
    assert_eq!(
        within(server_clone.connected_peers()).await,
        Err(NetError::Shutdown)
    );
    assert_eq!(
        within(server_clone.dial_all()).await,
        Err(NetError::Shutdown)
    );
    assert_eq!(
        within(server_clone.request(client.local_peer_id(), b"x".to_vec())).await,
        Err(NetError::Shutdown)
    );

    // The client sees the connection go, then fails to dial the stopped server.
    within(async {
        while client.connected_peers().await.unwrap().contains(&server_id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let error = within(client.request(server_id, b"y".to_vec()))
        .await
        .unwrap_err();
    eprintln!("server down: {error}");
    assert!(
        matches!(error, NetError::Unreachable { peer, .. } if peer == server_id),
        "{error:?}"
    );

    // Same identity, same port: the client reaches it again with the same static address.
    let mut restarted_config = server_config;
    restarted_config.listen = vec![server_addr.clone()];
    let (restarted, restarted_inbound, restarted_addr) = start_node(restarted_config).await;
    assert_eq!(restarted_addr, server_addr);
    echo(restarted_inbound, b"v2:");
    assert_eq!(
        within(client.request(server_id, b"z".to_vec()))
            .await
            .unwrap(),
        b"v2:z"
    );
    restarted.shutdown().await;
    client.shutdown().await;
    eprintln!("restart: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configurations_are_refused() {
    let key = Keypair::generate_ed25519();
    let mut zero_queue = config(&key, vec![]);
    zero_queue.inbound_queue = 0;
    assert!(matches!(
        within(start(zero_queue)).await,
        Err(NetError::Transport(_))
    ));
    for (burst, per_second) in [(0, 1), (1, 0)] {
        let mut zero_limit = config(&key, vec![]);
        zero_limit.inbound_rate_limit = Some(RateLimit { burst, per_second });
        let result = within(start(zero_limit)).await;
        assert!(matches!(result, Err(NetError::Transport(_))), "{result:?}");
    }
    let mut bad_listen = config(&key, vec![]);
    bad_listen.listen = vec!["/ip4/127.0.0.1/udp/0".parse().unwrap()];
    assert!(matches!(
        within(start(bad_listen)).await,
        Err(NetError::Transport(_))
    ));
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut in_use = config(&key, vec![]);
    in_use.listen = vec![loopback(taken.local_addr().unwrap().port())];
    let result = within(start(in_use)).await;
    assert!(matches!(result, Err(NetError::Transport(_))), "{result:?}");
    drop(taken);

    // A port held by another node (whose listener has SO_REUSEPORT) is refused too.
    let (first, _inbound, first_addr) = start_node(config(&key, vec![])).await;
    let mut second = config(&Keypair::generate_ed25519(), vec![]);
    second.listen = vec![first_addr];
    let result = within(start(second)).await;
    assert!(matches!(result, Err(NetError::Transport(_))), "{result:?}");
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_is_cut_while_another_peer_is_served() {
    const LIMIT: RateLimit = RateLimit {
        burst: 10,
        per_second: 5,
    };
    const FLOOD: Duration = Duration::from_millis(1500);
    let started = Instant::now();
    let server_key = Keypair::generate_ed25519();
    let (flooder_key, other_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server_id = server_key.public().to_peer_id();
    let (flooder_id, other_id) = (
        flooder_key.public().to_peer_id(),
        other_key.public().to_peer_id(),
    );
    let mut server_config = config(
        &server_key,
        vec![peer(&flooder_key, vec![]), peer(&other_key, vec![])],
    );
    server_config.inbound_rate_limit = Some(LIMIT);
    let (_server, mut server_inbound, server_addr) = start_node(server_config).await;
    // The application answers everything and reports who reached it.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(request) = server_inbound.recv().await {
            let _ = seen_tx.send(request.peer);
            request.respond(b"ok".to_vec());
        }
    });
    let server = vec![peer(&server_key, vec![server_addr])];
    let (flooder, _flooder_inbound, _) = start_node(config(&flooder_key, server.clone())).await;
    let (other, _other_inbound, _) = start_node(config(&other_key, server)).await;

    // The flooder sends waves of 50 concurrent requests for 1.5 s; meanwhile the other peer
    // sends one request every 100 ms.
    let flood = tokio::spawn({
        let flooder = flooder.clone();
        async move {
            let (mut served, mut refused) = (0usize, 0usize);
            let begin = Instant::now();
            while begin.elapsed() < FLOOD {
                let wave = (0..50).map(|i| flooder.request(server_id, vec![i; 64]));
                for result in futures::future::join_all(wave).await {
                    match result {
                        Ok(answer) => {
                            assert_eq!(answer, b"ok");
                            served += 1;
                        }
                        Err(NetError::Busy { peer, .. }) if peer == server_id => refused += 1,
                        Err(other) => panic!("unexpected error for the flooder: {other:?}"),
                    }
                }
            }
            (served, refused, begin.elapsed())
        }
    });
    let mut other_served = 0;
    while !flood.is_finished() {
        assert_eq!(
            within(other.request(server_id, b"still there?".to_vec())).await,
            Ok(b"ok".to_vec()),
            "the other peer must be served during the flood"
        );
        other_served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (served, refused, flood_time) = within(flood).await.unwrap();
    eprintln!(
        "flood: {served} served, {refused} refused in {flood_time:?}; other peer: \
         {other_served} served"
    );
    // At most the burst plus what the rate earned while the flood lasted (and one for
    // rounding): without the limit every one of the flood's requests would be served.
    let earned = (flood_time.as_secs_f64() * f64::from(LIMIT.per_second)).ceil() as usize;
    let allowance = LIMIT.burst as usize + earned + 1;
    assert!(
        served >= LIMIT.burst as usize,
        "the burst is served: {served}"
    );
    assert!(
        served <= allowance,
        "{served} served, over the {allowance} allowed"
    );
    assert!(refused >= 5 * served, "{refused} refused, {served} served");
    assert!(other_served >= 5, "{other_served}");

    // Refused requests never reached the application.
    let mut reached = HashMap::new();
    while let Ok(peer) = seen.try_recv() {
        *reached.entry(peer).or_insert(0usize) += 1;
    }
    assert_eq!(reached.get(&flooder_id), Some(&served));
    assert_eq!(reached.get(&other_id), Some(&other_served));

    // A limit, not a ban: after a quiet second the flooder is served again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        within(flooder.request(server_id, b"sorry".to_vec())).await,
        Ok(b"ok".to_vec())
    );
    eprintln!("rate limit: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_request_is_refused_by_the_default_cap() {
    const SIXTEEN_MIB: usize = 16 << 20;
    let (server_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server_id = server_key.public().to_peer_id();
    // The server keeps every default, the 1 MiB + 64 KiB cap included.
    let (_server, mut server_inbound, server_addr) =
        start_node(config(&server_key, vec![peer(&client_key, vec![])])).await;
    const { assert!(NetConfig::DEFAULT_MAX_MESSAGE_BYTES < SIXTEEN_MIB) };

    // A default client refuses to send it at all.
    let (polite, _polite_inbound, _) = start_node(config(
        &client_key,
        vec![peer(&server_key, vec![server_addr.clone()])],
    ))
    .await;
    assert_eq!(
        within(polite.request(server_id, vec![0; SIXTEEN_MIB])).await,
        Err(NetError::TooLarge {
            len: SIXTEEN_MIB,
            cap: NetConfig::DEFAULT_MAX_MESSAGE_BYTES
        })
    );
    polite.shutdown().await;

    // A peer with a larger cap sends it: the server's codec refuses the frame on its length
    // prefix, and nothing reaches the application.
    let mut hostile_config = config(&client_key, vec![peer(&server_key, vec![server_addr])]);
    hostile_config.max_message_bytes = 32 << 20;
    hostile_config.request_timeout = Duration::from_secs(5);
    let (hostile, _hostile_inbound, _) = start_node(hostile_config).await;
    let result = within(hostile.request(server_id, vec![0; SIXTEEN_MIB])).await;
    assert!(
        matches!(result, Err(NetError::Remote { peer, .. }) if peer == server_id),
        "{result:?}"
    );
    assert_nothing_received(&mut server_inbound, Duration::from_millis(200)).await;

    // The server still serves requests within the cap from the same peer.
    assert_eq!(
        round_trip(
            &hostile,
            server_id,
            &mut server_inbound,
            b"small",
            b"ok".to_vec()
        )
        .await,
        Ok(b"ok".to_vec())
    );
}

/// Every dial leaves from a port of its own, never from the listening port: two nodes dialing
/// each other at the same moment from their listening ports would open one TCP connection from
/// both ends (a simultaneous open), on which both Noise handshakes fail as initiators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_never_leave_from_the_listening_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sources_tx, sources) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = sources_tx.send(stream.peer_addr().map(|a| a.port()));
        }
    });
    let (silent_key, client_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let mut client_config = config(&client_key, vec![peer(&silent_key, vec![loopback(port)])]);
    client_config.request_timeout = Duration::from_secs(1);
    let (client, _inbound, listening) = start_node(client_config).await;
    let listening_port = socket_addr(&listening).port();
    let silent_id = silent_key.public().to_peer_id();
    // The "peer" never completes a handshake: the request fails, the dial is what counts.
    let _ = within(client.request(silent_id, b"hello".to_vec())).await;
    let source = sources.recv_timeout(WAIT).unwrap().unwrap();
    assert_ne!(
        source, listening_port,
        "the dial left from the listening port {listening_port}"
    );
}
