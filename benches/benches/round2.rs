//! Criterion benchmarks of FROST's second round in one process, frost's functions beside
//! Permafrost's (`permafrost_protocol::sign::round2`, which signers and coordinators run), on
//! the same 3-of-5 package, per ciphersuite:
//!
//! - `round2_sign/<curve>/{frost,permafrost}`: one signer's share (`round2::sign`).
//! - `round2_aggregate/<curve>/{frost,permafrost}`: the aggregate of three valid shares,
//!   verified (`aggregate_custom`).
//!
//! The package is parsed once, outside the timed loop, as a signer parses it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use frost_core::keys::{generate_with_dealer, IdentifierList, KeyPackage};
use frost_core::{aggregate_custom, round1, CheaterDetection, SigningPackage};
use permafrost_protocol::sign::{parse_signing_package, round2};
use permafrost_protocol::Suite;
use rand::rngs::StdRng;
use rand::SeedableRng;

type Ed25519 = frost_ed25519::Ed25519Sha512;
type Secp256k1 = frost_secp256k1::Secp256K1Sha256;
type Secp256k1Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

fn bench_round2<S: Suite>(c: &mut Criterion, curve: &str) {
    let mut rng = StdRng::seed_from_u64(7);
    let (shares, public) =
        generate_with_dealer::<S, _>(5, 3, IdentifierList::Default, &mut rng).unwrap();
    let public = S::finish_dkg_public_key_package(public);
    let keys: BTreeMap<_, _> = shares
        .into_iter()
        .take(3)
        .map(|(id, s)| {
            (
                id,
                S::finish_child_key_package(KeyPackage::try_from(s).unwrap()),
            )
        })
        .collect();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for (id, key) in &keys {
        let (n, c) = round1::commit(key.signing_share(), &mut rng);
        nonces.insert(*id, n);
        commitments.insert(*id, c);
    }
    let package = SigningPackage::new(commitments, b"settle 1 BTC to the custodian");
    let bytes = package.serialize().unwrap();
    let read = parse_signing_package::<S>(&bytes, None, None).unwrap();
    let (id, key) = keys.iter().next().unwrap();
    let mut group = c.benchmark_group("round2_sign");
    group.bench_function(format!("{curve}/frost"), |b| {
        b.iter(|| frost_core::round2::sign(black_box(&package), &nonces[id], key).unwrap())
    });
    group.bench_function(format!("{curve}/permafrost"), |b| {
        b.iter(|| round2::sign(black_box(&read), &nonces[id], key).unwrap())
    });
    group.finish();
    let shares: BTreeMap<_, _> = keys
        .iter()
        .map(|(id, key)| (*id, round2::sign(&read, &nonces[id], key).unwrap()))
        .collect();
    let mut group = c.benchmark_group("round2_aggregate");
    group.bench_function(format!("{curve}/frost"), |b| {
        b.iter(|| {
            aggregate_custom(
                black_box(&package),
                &shares,
                &public,
                CheaterDetection::AllCheaters,
            )
            .unwrap()
        })
    });
    group.bench_function(format!("{curve}/permafrost"), |b| {
        b.iter(|| {
            round2::aggregate(
                black_box(&read),
                &shares,
                &public,
                CheaterDetection::AllCheaters,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_round2::<Ed25519>(c, "ed25519");
    bench_round2::<Secp256k1>(c, "secp256k1");
    bench_round2::<Secp256k1Tr>(c, "secp256k1-tr");
}

criterion_group!(round2_benches, benches);
criterion_main!(round2_benches);
