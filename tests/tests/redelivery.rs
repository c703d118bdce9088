//! The outbox over real loopback sockets: a dealer's share whose delivery fails is sent again,
//! so a peer that comes up a moment late still gets it; other messages are sent once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use permafrost_net::{start, Keypair, Multiaddr, NetConfig, PeerId, PeerInfo};
use permafrost_runtime::driver::Outbox;
use permafrost_runtime::identity::node_id;
use permafrost_tests::free_port;
use permafrost_wire::{decode, Message, Probe, ReshareShare, SecretBytes, SessionId};

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
async fn a_dealers_share_reaches_a_peer_that_comes_up_late_and_nothing_else_is_resent() {
    let (dealer_key, member_key) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (dealer_peer, member_peer) = (
        dealer_key.public().to_peer_id(),
        member_key.public().to_peer_id(),
    );
    let port = free_port();
    let (dealer, _dealer_inbound) = start(config(
        &dealer_key,
        vec![loopback(0)],
        member_peer,
        vec![loopback(port)],
    ))
    .await
    .unwrap();
    let outbox = Outbox::new(dealer.clone());
    let member = node_id(&member_peer).unwrap();
    let share = ReshareShare {
        session: SessionId([7; 32]),
        from: node_id(&dealer_peer).unwrap(),
        to: member.clone(),
        share: SecretBytes::new(vec![1; 32]),
        signature: vec![2; 64],
    };
    // Nothing listens at the member's address yet: both first deliveries fail at once.
    let share_delivery = outbox
        .send(member.clone(), Message::ReshareShare(share.clone()))
        .unwrap();
    let probe_delivery = outbox
        .send(
            member.clone(),
            Message::Probe(Probe {
                session: SessionId([9; 32]),
            }),
        )
        .unwrap();
    tokio::time::timeout(WAIT, probe_delivery)
        .await
        .unwrap()
        .unwrap();
    assert!(!share_delivery.is_finished(), "the share is sent again");

    // The member comes up: the share arrives, once, and the probe never does.
    let (_member, mut inbound) = start(config(
        &member_key,
        vec![loopback(port)],
        dealer_peer,
        Vec::new(),
    ))
    .await
    .unwrap();
    let request = tokio::time::timeout(WAIT, inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.peer, dealer_peer);
    match decode(&request.payload).unwrap() {
        Message::ReshareShare(received) => assert_eq!(received, share),
        other => panic!("expected the share, got {other:?}"),
    }
    request.respond(Vec::new());
    tokio::time::timeout(WAIT, share_delivery)
        .await
        .unwrap()
        .unwrap();
    let more = tokio::time::timeout(Duration::from_millis(500), inbound.recv()).await;
    assert!(more.is_err(), "nothing else arrives: {more:?}");
}
