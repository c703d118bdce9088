//! The outbox over real loopback sockets: the messages of a DKG or reshare whose delivery fails
//! are sent again (a dealer's share, a member's report, the coordinator's relays), so a peer
//! that comes up a moment late still gets them; other messages are sent once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use permafrost_net::{start, Keypair, Multiaddr, NetConfig, PeerId, PeerInfo};
use permafrost_runtime::driver::Outbox;
use permafrost_runtime::identity::node_id;
use permafrost_tests::free_port;
use permafrost_wire::{
    decode, DkgRound1, DkgRound1Set, Message, Probe, ReshareReport, ReshareShare, SecretBytes,
    SessionId,
};

const NETWORK: &str = "permafrost-redelivery-test";
const WAIT: Duration = Duration::from_secs(8);

fn loopback(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

fn config(key: &Keypair, listen: Vec<Multiaddr>, peer: PeerId, at: Vec<Multiaddr>) -> NetConfig {
    let mut config = NetConfig::new(key.clone(), NETWORK);
    config.listen = listen;
    config.peers = vec![PeerInfo {
        peer_id: peer,
        addrs: at,
    }];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_messages_reach_a_peer_that_comes_up_late_and_a_probe_is_not_resent() {
    let (sender_key, receiver_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (sender_peer, receiver_peer) = (
        sender_key.public().to_peer_id(),
        receiver_key.public().to_peer_id(),
    );
    let port = free_port();
    let (sender, _sender_inbound) = start(config(
        &sender_key,
        vec![loopback(0)],
        receiver_peer,
        vec![loopback(port)],
    ))
    .await
    .unwrap();
    let outbox = Outbox::new(sender.clone());
    let (from, to) = (
        node_id(&sender_peer).unwrap(),
        node_id(&receiver_peer).unwrap(),
    );
    let session = SessionId([7; 32]);
    // A dealer's share, a member's report to the coordinator, a coordinator's relay: what the
    // receiver would wait for, and name the sender for, if it were lost.
    let resent = [
        Message::ReshareShare(ReshareShare {
            session,
            from: from.clone(),
            to: to.clone(),
            share: SecretBytes::new(vec![1; 32]),
            signature: vec![2; 64],
        }),
        Message::ReshareReport(ReshareReport {
            session,
            from: from.clone(),
            accepted: vec![from.clone(), to.clone()],
            signature: vec![3; 64],
        }),
        Message::DkgRound1Set(DkgRound1Set {
            session,
            packages: vec![DkgRound1 {
                session,
                from: from.clone(),
                package: vec![4; 40],
                signature: vec![5; 64],
            }],
        }),
    ];
    // Nothing listens at the receiver's address yet: every first delivery fails at once.
    let deliveries: Vec<_> = resent
        .iter()
        .map(|message| outbox.send(to.clone(), message.clone()).unwrap())
        .collect();
    let probe_delivery = outbox
        .send(
            to.clone(),
            Message::Probe(Probe {
                session: SessionId([9; 32]),
            }),
        )
        .unwrap();
    tokio::time::timeout(WAIT, probe_delivery)
        .await
        .unwrap()
        .unwrap();
    assert!(
        deliveries.iter().all(|d| !d.is_finished()),
        "each is sent again"
    );

    // The receiver comes up: each arrives, once, and the probe never does.
    let (_receiver, mut inbound) = start(config(
        &receiver_key,
        vec![loopback(port)],
        sender_peer,
        Vec::new(),
    ))
    .await
    .unwrap();
    let mut received = Vec::new();
    for _ in 0..resent.len() {
        let request = tokio::time::timeout(WAIT, inbound.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(request.peer, sender_peer);
        received.push(decode(&request.payload).unwrap());
        request.respond(Vec::new());
    }
    for message in &resent {
        assert_eq!(
            received.iter().filter(|r| *r == message).count(),
            1,
            "{:?} did not arrive once",
            message.kind()
        );
    }
    for delivery in deliveries {
        tokio::time::timeout(WAIT, delivery).await.unwrap().unwrap();
    }
    let more = tokio::time::timeout(Duration::from_millis(500), inbound.recv()).await;
    assert!(more.is_err(), "nothing else arrives: {more:?}");
}
