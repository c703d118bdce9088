//! Child keys through the real node and coordinator cores: one DKG, signatures under any
//! non-hardened child, each signer deriving its child share itself from the path the client
//! approved. A coordinator that asks for another child than the approved one gets nothing, and
//! a reshare changes no child key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use frost_core::keys::PublicKeyPackage;
use frost_core::Signature;
use permafrost_engine::any;
use permafrost_engine::sim::{Fault, Network};
use permafrost_keystore::AuditKind;
use permafrost_protocol::derive::Derivation;
use permafrost_protocol::wire::{DerivationPath, Epoch, KeyId, Message, NodeId};
use permafrost_protocol::{ProtocolError, Refusal, Suite};

fn path(text: &str) -> DerivationPath {
    text.parse().unwrap()
}

/// The child public key at `path`, as a signer derives it.
fn child_key<S: Suite>(key: &KeyId, pkp: &PublicKeyPackage<S>, path: &DerivationPath) -> Vec<u8> {
    Derivation::of_key(key, pkp.verifying_key(), path)
        .unwrap()
        .verifying_key()
        .serialize()
        .unwrap()
}

/// Whether the independent (non-frost) verifier of the suite accepts `signature` over
/// `message` under `public_key`.
fn verifies<S: Suite>(public_key: &[u8], message: &[u8], signature: &Signature<S>) -> bool {
    permafrost_verifiers::verify(
        S::CURVE,
        public_key,
        message,
        &signature.serialize().unwrap(),
    )
    .is_ok()
}

/// Signs `message` at `path` through the coordinator core; the signature must verify
/// independently under the child key, and under no other.
#[allow(clippy::too_many_arguments)]
fn signs_at<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &KeyId,
    epoch: Epoch,
    pkp: &PublicKeyPackage<S>,
    committee: &[NodeId],
    at: &DerivationPath,
    message: &[u8],
) -> Vec<NodeId> {
    let outcome = net
        .sign_roast_at(coordinator, key, epoch, pkp, committee, at, message)
        .unwrap_or_else(|e| panic!("signing at {at} failed: {e}"));
    let child = child_key(key, pkp, at);
    assert!(
        verifies::<S>(&child, message, &outcome.signature),
        "{} signature at {at} rejected by the independent verifier",
        S::CURVE
    );
    if !at.is_root() {
        let root = pkp.verifying_key().serialize().unwrap();
        assert!(!verifies::<S>(&root, message, &outcome.signature));
    }
    outcome.signers
}

const PATHS: [&str; 5] = ["m", "m/0", "m/0/17", "m/2147483647/1/2", "m/5"];

/// Signatures under several child keys of one DKG verify independently, each under its own
/// child key only; the coordinator's `derive_child` (what the API shows) agrees with every
/// signer; each admission in a signer's audit log names the path approved.
fn signatures_under_child_keys_verify_independently<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(301, 3, 5);
    let group_key = pkp.verifying_key().serialize().unwrap();
    let mut seen = Vec::new();
    for text in PATHS {
        let at = path(text);
        let child = child_key(&key, &pkp, &at);
        let shown = any::derive_child(S::CURVE, &key, &group_key, &at).unwrap();
        assert_eq!(shown.public_key, child, "{text}");
        assert_eq!(
            shown.internal_key.is_some(),
            S::CURVE == permafrost_protocol::wire::Curve::Secp256k1Tr && !at.is_root()
        );
        assert!(!seen.contains(&child), "{text} gives a key seen before");
        seen.push(child);
        // Twice: the second goes in one round, from the pools the first filled.
        for round in 0..2 {
            let message = format!("pay {round} at {text}");
            let signers = signs_at(
                &mut net,
                &coordinator,
                &key,
                Epoch(0),
                &pkp,
                &nodes,
                &at,
                message.as_bytes(),
            );
            assert_eq!(signers.len(), 3);
        }
    }
    // The audit logs: every admission records the path its client approved.
    let mut recorded: Vec<String> = nodes
        .iter()
        .flat_map(|n| {
            net.node(n)
                .unwrap()
                .store()
                .unwrap()
                .audit_entries()
                .filter_map(|(entry, _)| {
                    let client = entry.client.as_ref()?;
                    matches!(
                        entry.kind,
                        AuditKind::ClientRequest | AuditKind::SignatureShare
                    )
                    .then(|| {
                        DerivationPath::new(client.path.clone())
                            .unwrap()
                            .to_string()
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    recorded.sort();
    recorded.dedup();
    let mut expected: Vec<String> = PATHS.iter().map(|p| p.to_string()).collect();
    expected.sort();
    assert_eq!(recorded, expected);
}

/// A coordinator that takes a client's approval for one child key and asks for another (or
/// for the key itself, or the approval of the key itself for a child) gets nothing: every
/// node refuses the approval and makes no share.
fn an_approval_for_one_path_is_refused_for_another<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(302, 3, 5);
    let before = net.shares_produced(None);
    for (approved, asked) in [
        ("m/0/1", "m/0/2"),
        ("m/0/1", "m"),
        ("m", "m/0/1"),
        ("m/0/1", "m/0/1/0"),
        ("m/0/1", "m/0"),
    ] {
        let (approved, asked) = (path(approved), path(asked));
        let approval = net.authorize_path(&key, &pkp, &approved, b"pay 10 to alice");
        let result = net.sign_roast_path_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &asked,
            b"pay 10 to alice",
            approval,
        );
        match result {
            Err(ProtocolError::ClientNotAuthorized { refused, reason }) => {
                assert!(refused.len() >= 3, "{refused:?}");
                assert!(reason.contains("does not verify"), "{reason}");
            }
            other => {
                panic!("approved {approved}, asked {asked}: expected a refusal, got {other:?}")
            }
        }
        net.run(Duration::from_secs(1));
        assert_eq!(net.shares_produced(None), before, "a share was produced");
    }
    let refusing: Vec<&NodeId> = nodes
        .iter()
        .filter(|n| {
            refusals_at(&net, n)
                .iter()
                .any(|r| matches!(r, Refusal::ClientNotAuthorized(_)))
        })
        .collect();
    assert_eq!(refusing.len(), nodes.len(), "every node refused");
    // The approval for the path asked signs.
    signs_at(
        &mut net,
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        &path("m/0/2"),
        b"pay 10 to alice",
    );
}

/// A reshare to a new committee and threshold keeps every child key: the same paths give the
/// same child keys from the new package, and the new committee signs under them.
fn child_keys_are_unchanged_by_a_reshare<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(303, 3, 5);
    let before: Vec<Vec<u8>> = PATHS
        .iter()
        .map(|p| child_key(&key, &pkp, &path(p)))
        .collect();
    for p in PATHS {
        signs_at(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &path(p),
            b"before",
        );
    }
    // (3 of 5) → (4 of 5), then one node out: (3 of 4). Each epoch signs at every path.
    let steps = [(&nodes[..], 4u16, Epoch(1)), (&nodes[1..], 3, Epoch(2))];
    for (committee, threshold, epoch) in steps {
        let holder = &committee[0];
        let proposal = reshare_proposal(&net, &key, holder, committee, threshold, committee);
        let package = net.run_reshare(&coordinator, proposal).unwrap();
        let after: Vec<Vec<u8>> = PATHS
            .iter()
            .map(|p| child_key(&key, &package, &path(p)))
            .collect();
        assert_eq!(after, before, "a child key changed at epoch {epoch}");
        for p in PATHS {
            signs_at(
                &mut net,
                &coordinator,
                &key,
                epoch,
                &package,
                committee,
                &path(p),
                b"after",
            );
        }
    }
}

/// Signers and the coordinator keep recent child keys derived: signing at more paths than a
/// signer keeps, then again at the first ones (forgotten, derived anew) and the last ones
/// (kept), gives signatures under the right child key every time.
fn kept_child_keys_sign_right_past_the_bound<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(304, 3, 5);
    let paths: Vec<DerivationPath> = (0..permafrost_protocol::sign::CHILD_KEYS_KEPT + 4)
        .map(|i| path(&format!("m/7/{i}")))
        .collect();
    let again = [&paths[0], &paths[1], &paths[paths.len() - 1], &paths[0]];
    for (i, at) in paths.iter().chain(again).enumerate() {
        signs_at(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            at,
            format!("payment {i}").as_bytes(),
        );
    }
}

/// A signer that sends a bad share while the group signs for a child key is named, and only it:
/// the coordinator checks each share against the child's verifying shares (against the key's
/// own, every honest child share would fail too). ROAST then signs without it, under the child
/// key, and the next request does not start with it.
fn a_bad_share_under_a_child_key_is_named<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(305, 3, 5);
    let cheater = nodes[0].clone();
    let c = cheater.clone();
    net.set_faults(move |env| match &env.message {
        Message::SignShare(m) if env.from == c => Fault::Replace(wrong_share::<S>(m)),
        _ => Fault::Deliver,
    });
    let at = path("m/0/17");
    for round in 0..2 {
        let message = format!("pay {round} at a child");
        let outcome = net
            .sign_roast_at(
                &coordinator,
                &key,
                Epoch(0),
                &pkp,
                &nodes,
                &at,
                message.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(verifies::<S>(
            &child_key(&key, &pkp, &at),
            message.as_bytes(),
            &outcome.signature
        ));
        // Named the first time; the second time the coordinator, which ranks members by how
        // they answered, no longer asks it first.
        let named = if round == 0 {
            vec![cheater.clone()]
        } else {
            Vec::new()
        };
        assert_eq!(outcome.culprits, named, "round {round}");
        assert_eq!(outcome.signers.len(), 3);
        assert!(!outcome.signers.contains(&cheater));
    }
}

per_suite!(
    a_bad_share_under_a_child_key_is_named,
    kept_child_keys_sign_right_past_the_bound,
    signatures_under_child_keys_verify_independently,
    an_approval_for_one_path_is_refused_for_another,
    child_keys_are_unchanged_by_a_reshare,
);
