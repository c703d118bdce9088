//! The coordinator core's own rules, through the simulator (whose coordinators run the
//! production `CoordinatorCore` over an in-memory metadata store), on every suite: a key is
//! recorded before its commit goes out, a reshare's commit before its certificate, a restart
//! records every running reshare as aborted and members learn it by asking, one reshare per
//! key, and only signer nodes take part or are heard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use permafrost_engine::coordinator::{MemoryMetadataStore, MetadataStore, ReshareState};
use permafrost_engine::sim::Network;
use permafrost_protocol::wire::{Epoch, KeyId, Message, NodeId, SignRefusal};
use permafrost_protocol::{ProtocolError, Refusal, Suite};

fn metadata<'a, S: Suite>(net: &'a Network<S>, coordinator: &NodeId) -> &'a MemoryMetadataStore {
    net.coordinator(coordinator)
        .unwrap()
        .core()
        .unwrap()
        .store()
}

fn fail_next_write<S: Suite>(net: &mut Network<S>, coordinator: &NodeId) {
    net.coordinator_mut(coordinator)
        .unwrap()
        .core_mut()
        .unwrap()
        .store_mut()
        .fail_next_write();
}

/// The key's record fails: no commit goes out, so no member activates the key, and the answer
/// names the failed write.
fn a_key_is_recorded_before_its_commit<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(201, 3);
    fail_next_write(&mut net, &coordinator);
    let key = key_id("key-1");
    let error = net.run_dkg(&coordinator, &key, 2, &nodes).unwrap_err();
    assert!(
        error.to_string().contains("cannot record the key"),
        "{error}"
    );
    net.run(Duration::from_secs(120));
    assert!(!anyone_active(&net, &nodes, &key));
    let store = metadata(&net, &coordinator);
    assert!(store.key(&key).unwrap().is_none());
    // Every member kept its PENDING share: the commit never arrived (an operator decides).
    for node in &nodes {
        assert!(net.node(node).unwrap().pending_share(&key).is_some());
    }
}

/// The reshare's commit fails to be recorded: the certificate is not sent, the abort is
/// recorded. The members that confirmed keep their pending shares (an unsigned abort deletes
/// nothing) and the old epoch signs on; an operator then discards the pending shares.
fn a_reshare_commit_is_recorded_before_its_certificate<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(202, 2, 3);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let session = net.start_reshare(&coordinator, p).unwrap();
    // The running record is written; the next write is the commit's.
    fail_next_write(&mut net, &coordinator);
    net.run(Duration::from_secs(600));
    let outcome = net.coordinator(&coordinator).unwrap().outcome(&session);
    assert!(
        matches!(outcome, Some(Message::ReshareAbort(_))),
        "{outcome:?}"
    );
    for node in &nodes {
        let n = net.node(node).unwrap();
        assert!(n.has_reshare_record(&session), "{node} dropped the reshare");
        assert_eq!(n.active_share(&key).unwrap().epoch, Epoch(0));
        assert!(
            n.pending_share(&key).is_some(),
            "{node} lost its pending share"
        );
    }
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"old epoch")
        .unwrap();
    verify_independently(&pkp, b"old epoch", &outcome.signature);
    discard_everywhere(&mut net, &nodes, &key, Epoch(1));
    for node in &nodes {
        let n = net.node(node).unwrap();
        assert!(!n.has_reshare_record(&session));
        assert!(n.pending_share(&key).is_none());
        assert_eq!(n.active_share(&key).unwrap().epoch, Epoch(0));
    }
}

/// An operator discards `key`'s pending share of `epoch` on every node of `nodes`.
fn discard_everywhere<S: Suite>(net: &mut Network<S>, nodes: &[NodeId], key: &KeyId, epoch: Epoch) {
    for node in nodes {
        let discarded = discard_as_operator(net, node, key, epoch);
        assert_eq!((&discarded.key_id, discarded.epoch), (key, epoch));
        assert!(discarded.reshare.is_some());
    }
}

/// A coordinator that restarts during a reshare records it as aborted; a member that asks is
/// told so and keeps its PENDING share (no certificate, no deletion) while the old epoch
/// signs; once an operator discarded the pending shares, the next attempt commits.
fn a_restart_records_running_reshares_as_aborted<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(203, 2, 3);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let session = net.start_reshare(&coordinator, p).unwrap();
    net.run_until(Duration::from_secs(5), |net| {
        nodes
            .iter()
            .all(|n| net.node(n).unwrap().pending_share(&key).is_some())
    });
    net.restart_coordinator(&coordinator);
    let store = metadata(&net, &coordinator);
    let entry = store.reshare(&session).unwrap().unwrap();
    assert!(
        matches!(&entry.state, ReshareState::Aborted(abort) if abort.reason.contains("restarted")),
        "{entry:?}"
    );
    net.run(Duration::from_secs(600));
    for node in &nodes {
        let n = net.node(node).unwrap();
        assert!(n.has_reshare_record(&session), "{node} dropped the reshare");
        assert!(
            n.pending_share(&key).is_some(),
            "{node} lost its pending share"
        );
    }
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"old epoch")
        .unwrap();
    verify_independently(&pkp, b"old epoch", &outcome.signature);
    discard_everywhere(&mut net, &nodes, &key, Epoch(1));
    // The next attempt gets a new session and commits.
    let mut p = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    p.attempt = 1;
    let package = net.run_reshare(&coordinator, p).unwrap();
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
}

/// One reshare of a key at a time: a second is refused while the first runs.
fn one_reshare_per_key<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(204, 2, 3);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let first = net.start_reshare(&coordinator, p.clone()).unwrap();
    let mut second = p;
    second.attempt = 1;
    let error = net.start_reshare(&coordinator, second).unwrap_err();
    assert!(error.to_string().contains("already running"), "{error}");
    assert!(error.to_string().contains(&first.to_string()), "{error}");
}

/// Committees are signer nodes: a DKG or a reshare naming anyone else (here, the coordinator
/// itself) is refused before anything is sent; and the coordinator hears only signer nodes.
fn only_signer_nodes_take_part_or_are_heard<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(205, 2, 3);
    let mut committee = nodes[..2].to_vec();
    committee.push(coordinator.clone());
    let error = net
        .run_dkg(&coordinator, &key_id("key-2"), 2, &committee)
        .unwrap_err();
    assert!(error.to_string().contains("not a signer node"), "{error}");
    let p = reshare_proposal(&net, &key, &nodes[0], &committee, 2, &nodes);
    let error = net.start_reshare(&coordinator, p).unwrap_err();
    assert!(error.to_string().contains("not a signer node"), "{error}");

    let stranger = net.add_coordinator();
    let before = net.refused.len();
    let refusal = Message::SignRefusal(SignRefusal {
        session: permafrost_protocol::wire::SessionId([7; 32]),
        reason: "spoofed".into(),
        unauthorized: false,
        commitment_unknown: false,
    });
    net.inject(&stranger, &coordinator, refusal);
    net.run(Duration::from_millis(100));
    assert!(net.refused[before..].iter().any(|r| r.at == coordinator
        && matches!(&r.error, ProtocolError::Refused(Refusal::NotInCommittee(n)) if *n == stranger)));
}

/// A holder removed from the network file (a dead or compromised node) does not block the
/// reshare that moves its keys away: the old committee need not be signer nodes, and the
/// coordinator leaves the removed holder out of the dealers.
fn a_key_stays_resharable_after_a_holder_left_the_network<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(206, 3, 4);
    let gone = nodes[3].clone();
    net.delist(&gone);
    let remaining = nodes[..3].to_vec();
    let now = net.now();
    let mark = net.events.len();
    let request = 1_000;
    net.coordinator_mut(&coordinator)
        .unwrap()
        .core_mut()
        .unwrap()
        .reshare(
            request,
            &key,
            remaining.clone(),
            2,
            Vec::new(),
            now,
            &mut rand_core::OsRng,
        );
    net.run(Duration::from_secs(130));
    let package = net.events[mark..]
        .iter()
        .find_map(|(_, e)| match e {
            permafrost_protocol::Event::KeyReshared {
                public_key_package, ..
            } => Some(public_key_package.clone()),
            permafrost_protocol::Event::Failed(e) => panic!("{e}"),
            _ => None,
        })
        .expect("the reshare ended");
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(1), &package, &remaining, b"moved")
        .unwrap();
    verify_independently(&package, b"moved", &outcome.signature);
}

per_suite!(
    a_key_stays_resharable_after_a_holder_left_the_network,
    a_key_is_recorded_before_its_commit,
    a_reshare_commit_is_recorded_before_its_certificate,
    a_restart_records_running_reshares_as_aborted,
    one_reshare_per_key,
    only_signer_nodes_take_part_or_are_heard,
);
