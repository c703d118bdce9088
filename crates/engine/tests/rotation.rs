//! Scheduled share rotation through the real node and coordinator cores, in virtual time: an
//! operator approves a key's rotation policy once, the coordinator runs each refresh on
//! schedule, and every member checks each run against the standing approval, which allows no
//! change of committee or threshold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use frost_core::keys::PublicKeyPackage;
use permafrost_engine::coordinator::CoordinatorNotice;
use permafrost_engine::node::NodeStore;
use permafrost_engine::sim::Network;
use permafrost_keystore::{AuditKind, ShareState};
use permafrost_protocol::derive::Derivation;
use permafrost_protocol::wire::{DerivationPath, Epoch, KeyId, NodeId, ReshareProposal};
use permafrost_protocol::Suite;

const HOUR: u64 = 3600;

fn rotations_started<S: Suite>(net: &Network<S>) -> usize {
    net.coordinator_notices
        .iter()
        .filter(|(_, n)| matches!(n, CoordinatorNotice::RotationStarted { .. }))
        .count()
}

fn reshares_committed<S: Suite>(net: &Network<S>) -> usize {
    net.coordinator_notices
        .iter()
        .filter(|(_, n)| matches!(n, CoordinatorNotice::ReshareCommitted { .. }))
        .count()
}

/// The child keys at a few paths: a rotation must change none of them.
fn child_keys<S: Suite>(key: &KeyId, pkp: &PublicKeyPackage<S>) -> Vec<Vec<u8>> {
    ["m", "m/0/1", "m/7"]
        .iter()
        .map(|p| {
            let path: DerivationPath = p.parse().unwrap();
            Derivation::of_key(key, pkp.verifying_key(), &path)
                .unwrap()
                .verifying_key()
                .serialize()
                .unwrap()
        })
        .collect()
}

/// Every share of `key` a node holds, by epoch and state.
fn shares_held<S: Suite>(net: &Network<S>, node: &NodeId, key: &KeyId) -> Vec<(Epoch, ShareState)> {
    net.node(node)
        .unwrap()
        .store()
        .unwrap()
        .share_summaries()
        .unwrap()
        .into_iter()
        .filter(|s| s.key_id == *key)
        .map(|s| (s.epoch, s.state))
        .collect()
}

/// A policy of every hour, over five simulated hours: five refreshes, each checked by every
/// member against the standing approval; the group key and the child keys unchanged; every
/// node holds only the last epoch's share; the key signs after.
fn an_hourly_policy_refreshes_five_times_in_five_hours<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(401, 3, 5);
    let before = child_keys(&key, &pkp);
    let policy = net
        .set_rotation(&coordinator, &key, HOUR, Vec::new())
        .unwrap();
    assert_eq!((policy.every_secs, policy.threshold), (HOUR, 3));
    assert_eq!(policy.last_ms, None);
    for hour in 1..=5 {
        net.advance(Duration::from_secs(HOUR));
        assert_eq!(rotations_started(&net), hour, "after hour {hour}");
    }
    // Let the fifth finish; the sixth is not due before the sixth hour.
    net.advance(Duration::from_secs(600));
    assert_eq!(rotations_started(&net), 5);
    assert_eq!(reshares_committed(&net), 5);
    let refreshed = net.node(&nodes[0]).unwrap().active_share(&key).unwrap();
    assert_eq!(refreshed.epoch, Epoch(5));
    assert_eq!(child_keys(&key, &refreshed.public_key_package), before);
    assert_ne!(
        refreshed.public_key_package.serialize().unwrap(),
        pkp.serialize().unwrap(),
        "the shares were refreshed"
    );
    for node in &nodes {
        assert_eq!(
            shares_held(&net, node, &key),
            vec![(Epoch(5), ShareState::Active)],
            "{node}: old shares must be gone"
        );
        let scheduled = net
            .node(node)
            .unwrap()
            .store()
            .unwrap()
            .audit_entries()
            .filter(|(e, _)| {
                e.kind == AuditKind::Reshare && e.detail.contains("standing rotation policy")
            })
            .count();
        assert_eq!(scheduled, 5, "{node}");
    }
    let policy = net
        .coordinator_core_policy(&coordinator, &key)
        .unwrap()
        .unwrap();
    assert!(policy.last_ms.is_some());
    signs(
        &mut net,
        &coordinator,
        &key,
        Epoch(5),
        &refreshed.public_key_package,
        &nodes,
        b"after five rotations",
    );
}

/// Starts a reshare carrying the standing policy's approvals (`every_secs` as it claims) for
/// `proposal`, as a coordinator that misuses the policy would, and runs it out.
fn misuse_policy<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    proposal: ReshareProposal,
    approvals: Vec<permafrost_protocol::wire::OperatorApproval>,
    every_secs: u64,
) -> usize {
    let mark = net.refused.len();
    rotation_run(net, coordinator, proposal, approvals, every_secs);
    mark
}

/// A coordinator that uses a refresh-only policy to change the committee or the threshold,
/// or claims another interval, or refreshes again at once, is refused by every member, and
/// every member keeps its share.
fn a_policy_approves_refreshes_only<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(402, 3, 5);
    // An approval of another policy (here, a reshare's) is refused when the policy is set.
    let proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let wrong = reshare_approvals(&mut net, &proposal);
    let refused = net
        .set_rotation(&coordinator, &key, HOUR, wrong)
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("not an approval of this rotation policy"),
        "{refused}"
    );
    assert!(net
        .coordinator_core_policy(&coordinator, &key)
        .unwrap()
        .is_none());
    let policy = net
        .set_rotation(&coordinator, &key, HOUR, Vec::new())
        .unwrap();
    let approvals = policy.approvals.clone();
    // Evict a node.
    let rest = &nodes[..4];
    let mut evict = reshare_proposal(&net, &key, &nodes[0], rest, 3, rest);
    evict.attempt = 10;
    let mark = misuse_policy(&mut net, &coordinator, evict, approvals.clone(), HOUR);
    not_approved_by_every(&net, mark, &nodes, "keeps the committee");
    // Lower the threshold.
    let mut lower = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    lower.attempt = 11;
    let mark = misuse_policy(&mut net, &coordinator, lower, approvals.clone(), HOUR);
    not_approved_by_every(&net, mark, &nodes, "keeps the threshold");
    // Claim a policy of every minute: the approval does not verify for it.
    let mut often = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    often.attempt = 12;
    let mark = misuse_policy(&mut net, &coordinator, often, approvals.clone(), 60);
    not_approved_by_every(&net, mark, &nodes, "does not verify");
    for node in &nodes {
        assert_eq!(
            shares_held(&net, node, &key),
            vec![(Epoch(0), ShareState::Active)],
            "{node}"
        );
    }
    // A true refresh under the policy is joined; a second one at once is refused (at most one
    // per half interval).
    let mut refresh = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    refresh.attempt = 13;
    misuse_policy(&mut net, &coordinator, refresh, approvals.clone(), HOUR);
    for node in &nodes {
        assert_eq!(
            net.node(node).unwrap().active_share(&key).unwrap().epoch,
            Epoch(1)
        );
    }
    net.advance(Duration::from_secs(60));
    let again = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let mark = misuse_policy(&mut net, &coordinator, again, approvals, HOUR);
    not_approved_by_every(&net, mark, &nodes, "allows the next after");
    for node in &nodes {
        assert_eq!(
            net.node(node).unwrap().active_share(&key).unwrap().epoch,
            Epoch(1)
        );
    }
}

/// A run missed while the coordinator was down runs once when it is back, and the next is
/// due an interval later.
fn a_missed_rotation_runs_once_when_the_coordinator_is_back<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(403, 3, 5);
    net.set_rotation(&coordinator, &key, HOUR, Vec::new())
        .unwrap();
    net.advance(Duration::from_secs(HOUR / 2));
    // Down from 0:30 to 3:30: the runs due at 1:00, 2:00 and 3:00 are missed.
    net.coordinator_down(&coordinator, Duration::from_secs(3 * HOUR));
    assert_eq!(rotations_started(&net), 0);
    net.advance(Duration::from_secs(300));
    assert_eq!(rotations_started(&net), 1, "the missed run, once");
    assert_eq!(reshares_committed(&net), 1);
    // The next is due at 4:30, not before.
    net.advance(Duration::from_secs(HOUR - 600));
    assert_eq!(rotations_started(&net), 1);
    net.advance(Duration::from_secs(600));
    assert_eq!(rotations_started(&net), 2);
    assert_eq!(
        net.node(&nodes[0])
            .unwrap()
            .active_share(&key)
            .unwrap()
            .epoch,
        Epoch(2)
    );
    // Cleared, it runs no more.
    assert!(net.clear_rotation(&coordinator, &key).unwrap());
    net.advance(Duration::from_secs(3 * HOUR));
    assert_eq!(rotations_started(&net), 2);
}

per_suite!(
    an_hourly_policy_refreshes_five_times_in_five_hours,
    a_policy_approves_refreshes_only,
    a_missed_rotation_runs_once_when_the_coordinator_is_back,
);
