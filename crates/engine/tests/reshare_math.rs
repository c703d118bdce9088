//! The reshare arithmetic on real DKG output, per suite: committees that overlap, are
//! disjoint, shrink, grow, or stay (refresh); the group key never changes; the new shares sign;
//! an evicted share is useless; faulty dealers are caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use frost_core::keys::{KeyPackage, PublicKeyPackage, SigningShare};
use frost_core::{Field, Group, Identifier};
use permafrost_engine::sim::Network;
use permafrost_protocol::reshare::{
    check_dealing, combine, deal, public_key_package_from_dealings, DealingFault,
};
use permafrost_protocol::wire::{participant_identifier, Epoch, KeyId, NodeId};
use permafrost_protocol::{KeyShare, Suite};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

struct Reshared<S: Suite> {
    package: PublicKeyPackage<S>,
    shares: BTreeMap<NodeId, KeyPackage<S>>,
}

fn id<S: Suite>(node: &NodeId) -> Identifier<S> {
    participant_identifier::<S>(node).unwrap()
}

/// Runs the arithmetic of a reshare from the old shares of `dealers` to `new_committee`.
/// `tamper` may replace a dealer's share before dealing (a dealer lying about its share).
fn reshare<S: Suite>(
    old: &BTreeMap<NodeId, KeyShare<S>>,
    dealers: &[NodeId],
    new_committee: &[NodeId],
    new_threshold: u16,
    seed: u64,
) -> Reshared<S> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let old_package = &old.values().next().unwrap().public_key_package;
    let threshold = usize::from(*old.values().next().unwrap().key_package.min_signers());
    let recipients: BTreeSet<Identifier<S>> = new_committee.iter().map(id::<S>).collect();
    let dealings: BTreeMap<Identifier<S>, _> = dealers
        .iter()
        .map(|d| {
            let share = old[d].key_package.signing_share();
            (
                id::<S>(d),
                deal::<S>(share, new_threshold, &recipients, &mut rng).unwrap(),
            )
        })
        .collect();
    // H: the t smallest identifiers among the dealers that pass (all do here).
    let h: Vec<Identifier<S>> = dealings.keys().copied().take(threshold).collect();
    let mut shares = BTreeMap::new();
    let mut package = None;
    for member in new_committee {
        let me = id::<S>(member);
        let mine: BTreeMap<_, _> = h
            .iter()
            .map(|i| {
                let dealing = &dealings[i];
                let share = dealing.shares[&me];
                check_dealing::<S>(
                    &old_package.verifying_shares()[i],
                    &dealing.commitment,
                    new_threshold,
                    me,
                    &share,
                )
                .unwrap();
                (*i, (dealing.commitment.clone(), share))
            })
            .collect();
        let (key_package, new_package) = combine::<S>(
            &mine,
            old_package.verifying_key(),
            &recipients,
            new_threshold,
            me,
        )
        .unwrap();
        if let Some(p) = &package {
            assert_eq!(
                p, &new_package,
                "new members disagree on the public key package"
            );
        }
        package = Some(new_package);
        shares.insert(member.clone(), key_package);
    }
    // Anyone with the commitments alone derives the same package.
    let commitments = h
        .iter()
        .map(|i| (*i, dealings[i].commitment.clone()))
        .collect();
    let public = public_key_package_from_dealings::<S>(
        &commitments,
        old_package.verifying_key(),
        &recipients,
        new_threshold,
    )
    .unwrap();
    let package = package.unwrap();
    assert_eq!(public, package);
    Reshared { package, shares }
}

/// A network with a key: (network, old nodes, fresh nodes, coordinator, key id, old shares).
type Setup<S> = (
    Network<S>,
    Vec<NodeId>,
    Vec<NodeId>,
    NodeId,
    KeyId,
    BTreeMap<NodeId, KeyShare<S>>,
);

/// A network with a (t, n) key and `extra` further nodes (candidates for a new committee).
fn setup<S: Suite>(seed: u64, t: u16, n: usize, extra: usize) -> Setup<S> {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(seed, t, n);
    let mut fresh: Vec<NodeId> = (0..extra).map(|_| net.add_node()).collect();
    fresh.sort();
    let old = nodes
        .iter()
        .map(|n| {
            (
                n.clone(),
                net.node(n).unwrap().active_share(&key).unwrap().clone(),
            )
        })
        .collect();
    (net, nodes, fresh, coordinator, key, old)
}

/// Installs the new shares as epoch 1, signs with exactly `signers` (t' of them), verifies
/// independently under the unchanged key.
fn sign_with_new_shares<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &KeyId,
    reshared: &Reshared<S>,
    signers: &[NodeId],
) {
    let committee: Vec<NodeId> = reshared.shares.keys().cloned().collect();
    for (node, key_package) in &reshared.shares {
        let now = net.now();
        net.node_mut(node)
            .unwrap()
            .install_share(
                KeyShare {
                    key_id: key.clone(),
                    epoch: Epoch(1),
                    committee: committee.clone(),
                    key_package: key_package.clone(),
                    public_key_package: reshared.package.clone(),
                },
                now,
            )
            .unwrap();
    }
    let message = b"after reshare";
    let outcome = net
        .sign(
            coordinator,
            key,
            Epoch(1),
            &reshared.package,
            signers,
            message,
        )
        .unwrap();
    assert_eq!(outcome.signers.len(), signers.len());
    verify_independently(&reshared.package, message, &outcome.signature);
}

fn check_unchanged_key<S: Suite>(
    old: &BTreeMap<NodeId, KeyShare<S>>,
    reshared: &Reshared<S>,
    t: u16,
) {
    let old_key = old
        .values()
        .next()
        .unwrap()
        .public_key_package
        .verifying_key();
    assert_eq!(
        reshared.package.verifying_key().serialize().unwrap(),
        old_key.serialize().unwrap(),
        "the group key changed (parity included)"
    );
    assert_eq!(reshared.package.min_signers(), Some(t));
}

fn overlapping_3_of_5_to_4_of_6<S: Suite>() {
    let (mut net, nodes, fresh, coordinator, key, old) = setup::<S>(41, 3, 5, 2);
    // node[4] is evicted; two fresh nodes join.
    let mut new_committee: Vec<NodeId> = nodes[..4].iter().chain(&fresh).cloned().collect();
    new_committee.sort();
    let reshared = reshare::<S>(&old, &nodes[..4], &new_committee, 4, 1);
    check_unchanged_key(&old, &reshared, 4);
    sign_with_new_shares(&mut net, &coordinator, &key, &reshared, &new_committee[2..]);

    // The evicted node's old share is no share of the new key: its verifying share is not in
    // the new package, and the new package does not know its identifier at all.
    let evicted = id::<S>(&nodes[4]);
    assert!(!reshared.package.verifying_shares().contains_key(&evicted));
    assert!(!reshared
        .package
        .verifying_shares()
        .values()
        .any(|v| *v == old[&nodes[4]].public_key_package.verifying_shares()[&evicted]));
}

fn disjoint_3_of_5_to_4_of_6<S: Suite>() {
    let (mut net, nodes, fresh, coordinator, key, old) = setup::<S>(42, 3, 5, 6);
    let reshared = reshare::<S>(&old, &nodes[1..4], &fresh, 4, 2);
    check_unchanged_key(&old, &reshared, 4);
    sign_with_new_shares(&mut net, &coordinator, &key, &reshared, &fresh[..4]);
    for old_member in &nodes {
        assert!(!reshared
            .package
            .verifying_shares()
            .contains_key(&id::<S>(old_member)));
    }
}

fn shrink_3_of_5_to_2_of_3<S: Suite>() {
    let (mut net, nodes, _, coordinator, key, old) = setup::<S>(43, 3, 5, 0);
    let new_committee = nodes[2..].to_vec();
    let reshared = reshare::<S>(&old, &nodes, &new_committee, 2, 3);
    check_unchanged_key(&old, &reshared, 2);
    sign_with_new_shares(&mut net, &coordinator, &key, &reshared, &new_committee[1..]);
}

fn grow_2_of_3_to_5_of_7<S: Suite>() {
    let (mut net, nodes, fresh, coordinator, key, old) = setup::<S>(44, 2, 3, 4);
    let mut new_committee: Vec<NodeId> = nodes.iter().chain(&fresh).cloned().collect();
    new_committee.sort();
    let reshared = reshare::<S>(&old, &nodes[1..], &new_committee, 5, 4);
    check_unchanged_key(&old, &reshared, 5);
    sign_with_new_shares(&mut net, &coordinator, &key, &reshared, &new_committee[..5]);
}

fn refresh_keeps_committee_and_threshold<S: Suite>() {
    let (mut net, nodes, _, coordinator, key, old) = setup::<S>(45, 3, 4, 0);
    let reshared = reshare::<S>(&old, &nodes, &nodes, 3, 5);
    check_unchanged_key(&old, &reshared, 3);
    for node in &nodes {
        assert_ne!(
            reshared.shares[node].signing_share(),
            old[node].key_package.signing_share(),
            "a refresh must change every share"
        );
    }
    sign_with_new_shares(&mut net, &coordinator, &key, &reshared, &nodes[1..]);
}

/// A dealer that shares something other than its own share, one whose commitment does not
/// match the shares it sends, and one of the wrong degree are each caught by the checks; the
/// honest dealers that remain (at least t) still complete the reshare.
fn faulty_dealers_are_caught_and_excluded<S: Suite>() {
    let (mut net, nodes, fresh, coordinator, key, old) = setup::<S>(46, 2, 5, 1);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let old_package = &old[&nodes[0]].public_key_package;
    let mut new_committee: Vec<NodeId> = nodes[..3].iter().chain(&fresh).cloned().collect();
    new_committee.sort();
    let recipients: BTreeSet<Identifier<S>> = new_committee.iter().map(id::<S>).collect();
    let me = id::<S>(&new_committee[0]);
    let t_new = 3;

    // 1. Wrong constant term: deals a random value instead of its share.
    let liar = id::<S>(&nodes[0]);
    let random = SigningShare::<S>::new(<<S::Group as Group>::Field as Field>::random(&mut rng));
    let bad = deal::<S>(&random, t_new, &recipients, &mut rng).unwrap();
    assert_eq!(
        check_dealing::<S>(
            &old_package.verifying_shares()[&liar],
            &bad.commitment,
            t_new,
            me,
            &bad.shares[&me]
        ),
        Err(DealingFault::WrongConstantTerm)
    );
    // 2. Commitment inconsistent with the share sent.
    let inconsistent = id::<S>(&nodes[1]);
    let honest = deal::<S>(
        old[&nodes[1]].key_package.signing_share(),
        t_new,
        &recipients,
        &mut rng,
    )
    .unwrap();
    let wrong_share = SigningShare::<S>::new(
        honest.shares[&me].to_scalar() + <<S::Group as Group>::Field as Field>::one(),
    );
    assert_eq!(
        check_dealing::<S>(
            &old_package.verifying_shares()[&inconsistent],
            &honest.commitment,
            t_new,
            me,
            &wrong_share
        ),
        Err(DealingFault::ShareMismatch)
    );
    // 3. Wrong degree.
    let short = deal::<S>(
        old[&nodes[2]].key_package.signing_share(),
        t_new - 1,
        &recipients,
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        check_dealing::<S>(
            &old_package.verifying_shares()[&id::<S>(&nodes[2])],
            &short.commitment,
            t_new,
            me,
            &short.shares[&me]
        ),
        Err(DealingFault::WrongDegree {
            got: 2,
            expected: 3
        })
    );
    // The two honest dealers left (t = 2) complete the reshare.
    let reshared = reshare::<S>(&old, &nodes[3..], &new_committee, t_new, 8);
    check_unchanged_key(&old, &reshared, t_new);
    sign_with_new_shares(&mut net, &coordinator, &key, &reshared, &new_committee[1..]);
    // Combining with a dishonest dealing does not silently produce a wrong key: it fails.
    let mut mixed = BTreeMap::new();
    mixed.insert(liar, (bad.commitment.clone(), bad.shares[&me]));
    let good = deal::<S>(
        old[&nodes[4]].key_package.signing_share(),
        t_new,
        &recipients,
        &mut rng,
    )
    .unwrap();
    mixed.insert(
        id::<S>(&nodes[4]),
        (good.commitment.clone(), good.shares[&me]),
    );
    assert!(combine::<S>(&mixed, old_package.verifying_key(), &recipients, t_new, me).is_err());
}

per_suite!(
    overlapping_3_of_5_to_4_of_6,
    disjoint_3_of_5_to_4_of_6,
    shrink_3_of_5_to_2_of_3,
    grow_2_of_3_to_5_of_7,
    refresh_keeps_committee_and_threshold,
    faulty_dealers_are_caught_and_excluded,
);
