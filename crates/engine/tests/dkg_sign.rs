//! DKG followed by signing on every ciphersuite, every signature checked by an independent
//! verifier; and a seeded property test over (t, n) and delivery order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use frost_core::keys::PublicKeyPackage;
use permafrost_engine::sim::Network;
use permafrost_protocol::wire::{Epoch, NodeId};
use permafrost_protocol::Suite;
use proptest::prelude::*;

/// DKG (t, n), then: every member holds an active share consistent with the coordinator's
/// public key package; any t members sign; the signature verifies independently.
fn dkg_then_sign<S: Suite>(seed: u64, t: u16, n: usize, shuffle: bool) {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(seed, n);
    net.shuffle = shuffle;
    let key = key_id("settlement-key");
    let pkp: PublicKeyPackage<S> = net.run_dkg(&coordinator, &key, t, &nodes).unwrap();

    assert_eq!(pkp.verifying_shares().len(), n);
    assert_eq!(pkp.min_signers(), Some(t));
    for node in &nodes {
        let share = net
            .node(node)
            .unwrap()
            .active_share(&key)
            .unwrap_or_else(|| panic!("{node} has no active share"));
        assert_eq!(share.public_key_package, pkp, "{node} computed another key");
        assert_eq!(share.epoch, Epoch(0));
        assert!(net.node(node).unwrap().pending_share(&key).is_none());
    }

    // The whole committee is asked; the first t to commit sign.
    let message = format!("settle batch {seed}").into_bytes();
    let outcome = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &nodes, &message)
        .unwrap();
    assert_eq!(outcome.signers.len(), usize::from(t));
    verify_independently(&pkp, &message, &outcome.signature);

    // Exactly t chosen members sign too (here: the last t).
    let subset: Vec<NodeId> = nodes[n - usize::from(t)..].to_vec();
    let outcome = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &subset, b"second")
        .unwrap();
    assert_eq!(outcome.signers, subset);
    verify_independently(&pkp, b"second", &outcome.signature);
}

fn dkg_2_of_3<S: Suite>() {
    dkg_then_sign::<S>(1, 2, 3, false);
}

fn dkg_3_of_5<S: Suite>() {
    dkg_then_sign::<S>(2, 3, 5, false);
}

fn dkg_5_of_7<S: Suite>() {
    dkg_then_sign::<S>(3, 5, 7, false);
}

/// t − 1 signers cannot produce a signature: with only t − 1 members able to answer, the
/// session fails at its deadline naming the silent ones, and nothing is aggregated.
fn fewer_than_t_cannot_sign<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(4, 3, 5);
    let silent: Vec<NodeId> = nodes[..3].to_vec();
    let blocked = silent.clone();
    net.set_faults(move |env| {
        if blocked.contains(&env.to) {
            permafrost_engine::sim::Fault::Drop
        } else {
            permafrost_engine::sim::Fault::Deliver
        }
    });
    let error = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &nodes, b"x")
        .unwrap_err();
    assert_eq!(error.culprits(), silent, "{error}");
}

/// Two DKGs over the same committee give unrelated keys, and each signs independently.
fn two_keys_are_independent<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(5, 3);
    let a = net.run_dkg(&coordinator, &key_id("a"), 2, &nodes).unwrap();
    let b = net.run_dkg(&coordinator, &key_id("b"), 2, &nodes).unwrap();
    assert_ne!(a.verifying_key(), b.verifying_key());
    let sig = net
        .sign(&coordinator, &key_id("b"), Epoch(0), &b, &nodes, b"m")
        .unwrap();
    verify_independently(&b, b"m", &sig.signature);
    let pk_a = a.verifying_key().serialize().unwrap();
    let bytes = sig.signature.serialize().unwrap();
    assert!(permafrost_verifiers::verify(S::CURVE, &pk_a, b"m", &bytes).is_err());
}

per_suite!(
    dkg_2_of_3,
    dkg_3_of_5,
    dkg_5_of_7,
    fewer_than_t_cannot_sign,
    two_keys_are_independent
);

fn random_order_strategy() -> impl Strategy<Value = (u16, usize, u64)> {
    (2usize..=10).prop_flat_map(|n| (2u16..=n as u16, Just(n), any::<u64>()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn any_t_of_n_in_random_order_ed25519((t, n, seed) in random_order_strategy()) {
        dkg_then_sign::<Ed25519>(seed, t, n, true);
    }

    #[test]
    fn any_t_of_n_in_random_order_secp256k1((t, n, seed) in random_order_strategy()) {
        dkg_then_sign::<Secp256k1>(seed, t, n, true);
    }

    #[test]
    fn any_t_of_n_in_random_order_secp256k1_tr((t, n, seed) in random_order_strategy()) {
        dkg_then_sign::<Secp256k1Tr>(seed, t, n, true);
    }
}

#[test]
fn duplicated_and_delayed_messages_change_nothing() {
    let (mut net, nodes, coordinator) = Network::<Secp256k1Tr>::with_nodes(11, 4);
    let mut i = 0u64;
    net.set_faults(move |_| {
        i += 1;
        match i % 3 {
            0 => permafrost_engine::sim::Fault::Duplicate,
            1 => permafrost_engine::sim::Fault::Delay(Duration::from_millis(i * 7 % 500)),
            _ => permafrost_engine::sim::Fault::Deliver,
        }
    });
    let key = key_id("k");
    let pkp = net.run_dkg(&coordinator, &key, 3, &nodes).unwrap();
    let sig = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &nodes, b"dup")
        .unwrap();
    verify_independently(&pkp, b"dup", &sig.signature);
}
