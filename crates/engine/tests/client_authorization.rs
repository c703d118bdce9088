//! Node-side client authorization: a malicious coordinator (here, one that builds its requests
//! itself) cannot get anything signed that an accepted client did not approve, for exactly
//! this key and message, once, recently. Every honest node refuses, says it is the client's
//! authorization that fails, and produces no share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use ed25519_dalek::SigningKey;
use permafrost_engine::node::{NodeNotice, REFUSAL_SYNC_WITHIN};
use permafrost_engine::sim::{sim_client, sim_client_policy, Network, SignOutcome, SIM_NETWORK_ID};
use permafrost_keystore::AuditKind;
use permafrost_protocol::sign::client::{ClientKey, ClientPolicy};
use permafrost_protocol::wire::{
    ApprovalTarget, ClientAuthorization, DerivationPath, Epoch, NodeId,
};
use permafrost_protocol::{ProtocolError, Refusal, Suite};

/// Client-authorization refusals each node made.
fn client_refusals<S: Suite>(net: &Network<S>, nodes: &[NodeId]) -> Vec<(NodeId, String)> {
    net.refused
        .iter()
        .filter(|r| nodes.contains(&r.at))
        .filter_map(|r| match &r.error {
            ProtocolError::Refused(Refusal::ClientNotAuthorized(why)) => {
                Some((r.at.clone(), why.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The nodes of `nodes` that admitted a client request since notice `mark`.
fn admitted_since<S: Suite>(net: &Network<S>, nodes: &[NodeId], mark: usize) -> Vec<NodeId> {
    nodes
        .iter()
        .filter(|node| {
            net.notices[mark..].iter().any(|(n, notice)| {
                n == *node && matches!(notice, NodeNotice::ClientRequestAdmitted { .. })
            })
        })
        .cloned()
        .collect()
}

/// Asserts that the request failed as a client refusal as soon as enough nodes refused that no
/// `t` could sign (3 of 5 here), that every node of `nodes` refused saying `why`, and that none
/// of them made a share. (A node outside `nodes` that admits the request may make a share when
/// it is asked in one round, request and package at once; no `t` can, so no signature.)
fn refused_by_all<S: Suite>(
    net: &mut Network<S>,
    result: Result<SignOutcome<S>, ProtocolError>,
    nodes: &[NodeId],
    why: &str,
    shares_before: usize,
) {
    // `shares_before`: the shares made so far by the nodes of `nodes`.
    match result {
        Err(ProtocolError::ClientNotAuthorized { refused, reason }) => {
            assert!(refused.len() >= 3, "{refused:?}");
            assert!(refused.iter().all(|n| nodes.contains(n)));
            assert!(reason.contains(why), "{reason:?} should say {why:?}");
        }
        other => panic!("expected a client refusal saying {why:?}, got {other:?}"),
    }
    // The requests still on their way reach the other nodes, which refuse them too.
    net.run(Duration::from_secs(1));
    let refusals = client_refusals(net, nodes);
    for node in nodes {
        assert!(
            refusals.iter().any(|(at, r)| at == node && r.contains(why)),
            "{node} did not refuse with {why:?}: {refusals:?}"
        );
    }
    let shares: usize = nodes.iter().map(|n| net.shares_produced(Some(n))).sum();
    assert_eq!(shares, shares_before, "a share was produced");
    for node in nodes {
        assert_eq!(net.node(node).unwrap().open_signing_sessions(), 0);
    }
}

/// A coordinator that takes a client's approval of one message and asks for another: every
/// honest node refuses, and nothing is signed.
fn a_message_the_client_did_not_approve_is_refused_by_every_node<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(60, 3, 5);
    let before = net.shares_produced(None);
    let approved = net.authorize(&key, &pkp, b"pay 10 to alice");
    let result = net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"pay 10000 to mallory",
        approved.clone(),
    );
    refused_by_all(&mut net, result, &nodes, "does not verify", before);
    // A coordinator that alters the approval's timestamp (to dodge staleness) breaks it too.
    let mut altered = net.authorize(&key, &pkp, b"pay 10 to alice");
    altered.timestamp_ms += 1;
    let result = net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"pay 10 to alice",
        altered,
    );
    refused_by_all(&mut net, result, &nodes, "does not verify", before);
    // The approved message itself signs.
    let approved = net.authorize(&key, &pkp, b"pay 10 to alice");
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            b"pay 10 to alice",
            approved,
        )
        .unwrap();
    verify_independently(&pkp, b"pay 10 to alice", &outcome.signature);
}

/// A client key no node lists (the coordinator's own, say) gets nothing signed, however well
/// it signs.
fn an_unknown_client_key_is_refused_by_every_node<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(61, 3, 5);
    let before = net.shares_produced(None);
    let stranger = SigningKey::from_bytes(&[0x5e; 32]);
    let now = net.now().0;
    let group_key = pkp.verifying_key().serialize().unwrap();
    let target = ApprovalTarget {
        network_id: SIM_NETWORK_ID,
        group_key: &group_key,
        key_id: &key,
        path: &DerivationPath::ROOT,
    };
    let auth = ClientAuthorization::sign(&stranger, &target, b"m", [1; 16], now);
    let result = net.sign_roast_as(&coordinator, &key, Epoch(0), &pkp, &nodes, b"m", auth);
    refused_by_all(&mut net, result, &nodes, "is not accepted", before);
}

/// What every node says of an approval made for another network, group key or domain.
const NOT_FOR_THIS_KEY: &str =
    "does not verify over this network id, group key, key id, path and message";

/// The same client key is accepted on another network too: an approval it made there (right
/// key id, right group key, right message) is refused on this one by every node; the same
/// approval made for this network signs.
fn an_approval_for_another_network_is_refused_by_every_node<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(64, 3, 5);
    let before = net.shares_produced(None);
    let group_key = pkp.verifying_key().serialize().unwrap();
    let elsewhere = ApprovalTarget {
        network_id: "permafrost-sim-2",
        group_key: &group_key,
        key_id: &key,
        path: &DerivationPath::ROOT,
    };
    let approval = net.authorize_for(&elsewhere, b"pay 10 to alice");
    let result = net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"pay 10 to alice",
        approval,
    );
    refused_by_all(&mut net, result, &nodes, NOT_FOR_THIS_KEY, before);

    let here = ApprovalTarget {
        network_id: SIM_NETWORK_ID,
        ..elsewhere
    };
    let approval = net.authorize_for(&here, b"pay 10 to alice");
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            b"pay 10 to alice",
            approval,
        )
        .unwrap();
    verify_independently(&pkp, b"pay 10 to alice", &outcome.signature);
}

/// An approval for the same key id under another group key is refused by every node: one
/// made on another network (same network id, same key id, another DKG), and one made for
/// another key of this network with the other key's group key.
fn an_approval_for_another_group_key_is_refused_by_every_node<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(65, 3, 5);
    // Another network with a key of the same id: another group key.
    let (mut other_net, _, _, other_key, other_pkp) = network_with_key::<S>(66, 3, 5);
    assert_eq!(other_key, key);
    assert_ne!(other_pkp.verifying_key(), pkp.verifying_key());
    let replayed = other_net.authorize(&other_key, &other_pkp, b"pay 10 to alice");
    let before = net.shares_produced(None);
    let result = net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"pay 10 to alice",
        replayed,
    );
    refused_by_all(&mut net, result, &nodes, NOT_FOR_THIS_KEY, before);

    // A second key here: an approval for its key id with the first key's group key.
    let second = key_id("key-2");
    let second_pkp = net.run_dkg(&coordinator, &second, 3, &nodes).unwrap();
    let group_key = pkp.verifying_key().serialize().unwrap();
    let mixed = ApprovalTarget {
        network_id: SIM_NETWORK_ID,
        group_key: &group_key,
        key_id: &second,
        path: &DerivationPath::ROOT,
    };
    let approval = net.authorize_for(&mixed, b"m");
    let before = net.shares_produced(None);
    let result = net.sign_roast_as(
        &coordinator,
        &second,
        Epoch(0),
        &second_pkp,
        &nodes,
        b"m",
        approval,
    );
    refused_by_all(&mut net, result, &nodes, NOT_FOR_THIS_KEY, before);

    // Made for the second key's own group key, it signs.
    let approval = net.authorize(&second, &second_pkp, b"m");
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &second,
            Epoch(0),
            &second_pkp,
            &nodes,
            b"m",
            approval,
        )
        .unwrap();
    verify_independently(&second_pkp, b"m", &outcome.signature);
}

/// An approval made the version-1 way (domain `permafrost/client-authorization/v1`, not bound
/// to a network or group key) by an accepted client is refused by every node.
fn an_approval_of_the_v1_domain_is_refused_by_every_node<S: Suite>() {
    use ed25519_dalek::Signer as _;
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(67, 3, 5);
    let before = net.shares_produced(None);
    let (message, request_id, timestamp_ms) = (b"pay 10 to alice", [3u8; 16], net.now().0);
    let mut v1 = b"permafrost/client-authorization/v1".to_vec();
    for part in [key.as_str().as_bytes(), &message[..]] {
        v1.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        v1.extend_from_slice(part);
    }
    v1.extend_from_slice(&request_id);
    v1.extend_from_slice(&timestamp_ms.to_be_bytes());
    let approval = ClientAuthorization {
        public_key: sim_client().verifying_key().to_bytes(),
        request_id,
        timestamp_ms,
        signature: sim_client().sign(&v1).to_bytes().to_vec(),
    };
    let result = net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        message,
        approval,
    );
    refused_by_all(&mut net, result, &nodes, NOT_FOR_THIS_KEY, before);
}

/// An approval used once cannot be used again in another request; one that is too old is
/// refused.
fn replayed_and_stale_approvals_are_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(62, 3, 5);
    let auth = net.authorize(&key, &pkp, b"once");
    let mark = net.notices.len();
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            b"once",
            auth.clone(),
        )
        .unwrap();
    verify_independently(&pkp, b"once", &outcome.signature);
    // Let the request's last messages land and its unused nonces expire.
    net.run(Duration::from_secs(11));
    // Only the nodes asked (t of them, as ROAST asks no more unless one fails) admitted the
    // approval: they refuse its replay, and so no t can sign it.
    let admitted = admitted_since(&net, &nodes, mark);
    assert_eq!(admitted.len(), 3, "{admitted:?}");
    let before: usize = admitted.iter().map(|n| net.shares_produced(Some(n))).sum();
    let result = net.sign_roast_as(&coordinator, &key, Epoch(0), &pkp, &nodes, b"once", auth);
    refused_by_all(
        &mut net,
        result,
        &admitted,
        "already used in session",
        before,
    );

    let old = net.authorize(&key, &pkp, b"later");
    net.advance(Duration::from_secs(121));
    let before = net.shares_produced(None);
    let result = net.sign_roast_as(&coordinator, &key, Epoch(0), &pkp, &nodes, b"later", old);
    refused_by_all(&mut net, result, &nodes, "from this node's clock", before);
}

/// A coordinator replaying an approval once the nodes' skew is widened: a node holds a
/// request id in memory only while its timestamp is fresh under its skew (two minutes here),
/// but its store keeps it for the retention (ten), and a wider skew reloads it from there.
/// The replay's timestamp, fresh again under the wider skew, is refused as already used.
fn a_wider_skew_reloads_the_request_ids_memory_forgot<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(64, 3, 5);
    let auth = net.authorize(&key, &pkp, b"once");
    let mark = net.notices.len();
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            b"once",
            auth.clone(),
        )
        .unwrap();
    verify_independently(&pkp, b"once", &outcome.signature);
    let admitted = admitted_since(&net, &nodes, mark);
    assert_eq!(admitted.len(), 3, "{admitted:?}");
    // Past the skew, the nodes that admitted it admit another request, and forget the first.
    net.advance(Duration::from_secs(121));
    let next = net.authorize(&key, &pkp, b"next");
    let outcome = net
        .sign_roast_as(&coordinator, &key, Epoch(0), &pkp, &admitted, b"next", next)
        .unwrap();
    verify_independently(&pkp, b"next", &outcome.signature);
    net.run(Duration::from_secs(11));
    for node in &admitted {
        let core = net.node(node).unwrap().core().unwrap();
        assert_eq!(
            core.request_ids_in_memory(),
            1,
            "{node} holds only the new id"
        );
        assert!(
            remembered_requests(&net, node) >= 2,
            "{node}'s store keeps both"
        );
    }
    // Under the default skew the replay is stale; under ten minutes it is fresh again.
    let mut wide = sim_client_policy();
    wide.max_clock_skew = Duration::from_secs(600);
    for node in &nodes {
        net.set_client_policy(node, wide.clone()).unwrap();
    }
    for node in &admitted {
        let core = net.node(node).unwrap().core().unwrap();
        assert_eq!(
            core.request_ids_in_memory(),
            remembered_requests(&net, node),
            "{node} reloaded every id its store keeps"
        );
    }
    let before: usize = admitted.iter().map(|n| net.shares_produced(Some(n))).sum();
    let result = net.sign_roast_as(&coordinator, &key, Epoch(0), &pkp, &nodes, b"once", auth);
    refused_by_all(
        &mut net,
        result,
        &admitted,
        "already used in session",
        before,
    );
}

/// Nodes decide for themselves: with 2 of 5 not accepting the client, the other 3 (t) still
/// sign; with 3 not accepting it, no signature can come out and the request fails at once as
/// a client refusal.
fn each_node_applies_its_own_policy<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(63, 3, 5);
    let other_client = SigningKey::from_bytes(&[0x77; 32]);
    let mut only_other = ClientPolicy::default();
    only_other
        .all_keys
        .insert(ClientKey(other_client.verifying_key().to_bytes()));
    for node in &nodes[..2] {
        net.set_client_policy(node, only_other.clone()).unwrap();
    }
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"three agree")
        .unwrap();
    verify_independently(&pkp, b"three agree", &outcome.signature);
    assert!(outcome.signers.iter().all(|s| !nodes[..2].contains(s)));

    // Per key: the third node accepts the sim client only for another key.
    let mut per_key = ClientPolicy::default();
    per_key.per_key.insert(
        key_id("key-2"),
        sim_client_policy().all_keys.into_iter().collect(),
    );
    net.set_client_policy(&nodes[2], per_key).unwrap();
    let started = net.now();
    let result = net.sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"two agree");
    match result {
        Err(ProtocolError::ClientNotAuthorized { refused, .. }) => {
            assert_eq!(refused, nodes[..3].to_vec());
        }
        other => panic!("expected a client refusal, got {other:?}"),
    }
    assert!(
        net.now().0 - started.0 < 1_000,
        "a client refusal fails at once, not at a deadline"
    );
}

/// Refusals are audited without a sync of their own (a flood of them costs no sync each), and
/// synced within `REFUSAL_SYNC_WITHIN`: right after a refusal its entry is not yet durable, a
/// second later it is, and a crash then keeps it. No signature happens meanwhile, so no other
/// write could have synced it.
fn audited_refusals_are_synced_within_a_second<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(61, 3, 5);
    let approved = net.authorize(&key, &pkp, b"pay 10 to alice");
    let result = net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"pay 10000 to mallory",
        approved,
    );
    assert!(
        matches!(result, Err(ProtocolError::ClientNotAuthorized { .. })),
        "{result:?}"
    );
    // Each node's refusal entries, with whether each is durable.
    let refusals = |net: &Network<S>, node: &NodeId| -> Vec<bool> {
        net.node(node)
            .unwrap()
            .store()
            .unwrap()
            .audit_entries()
            .filter(|(entry, _)| entry.kind == AuditKind::Refused)
            .map(|(_, durable)| durable)
            .collect()
    };
    let unsynced: usize = nodes
        .iter()
        .map(|n| refusals(&net, n).iter().filter(|d| !**d).count())
        .sum();
    assert!(unsynced >= 3, "the refusals are written lazily: {unsynced}");

    net.run(REFUSAL_SYNC_WITHIN + Duration::from_millis(200));
    let mut kept = Vec::new();
    for node in &nodes {
        let entries = refusals(&net, node);
        assert!(
            entries.iter().all(|durable| *durable),
            "{node}: {entries:?}"
        );
        kept.push(entries.len());
    }
    assert!(kept.iter().sum::<usize>() >= 3, "{kept:?}");
    let now = net.now();
    for (node, count) in nodes.iter().zip(&kept) {
        net.node_mut(node).unwrap().crash_and_restart(now).unwrap();
        assert_eq!(refusals(&net, node).len(), *count, "{node} lost refusals");
    }
}

per_suite!(
    audited_refusals_are_synced_within_a_second,
    a_message_the_client_did_not_approve_is_refused_by_every_node,
    an_unknown_client_key_is_refused_by_every_node,
    replayed_and_stale_approvals_are_refused,
    a_wider_skew_reloads_the_request_ids_memory_forgot,
    each_node_applies_its_own_policy,
    an_approval_for_another_network_is_refused_by_every_node,
    an_approval_for_another_group_key_is_refused_by_every_node,
    an_approval_of_the_v1_domain_is_refused_by_every_node,
);
