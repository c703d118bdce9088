//! Criterion benchmarks of FROST's second round in one process, frost's functions beside
//! Permafrost's (`permafrost_protocol::sign::round2`, which signers and coordinators run), on
//! the same 3-of-5 package, per ciphersuite:
//!
//! - `round1_commit/<curve>/{frost,permafrost}`: one signer's nonces and commitment
//!   (`round1::commit`, `Nonces::commit`).
//! - `round2_sign/<curve>/{frost,permafrost}`: one signer's share (`round2::sign`).
//! - `round2_aggregate/<curve>/{frost,permafrost,"permafrost, R from the signers"}`: the
//!   aggregate of three valid shares, verified (`aggregate_custom`); the last with the group
//!   commitment the signers sent, as a coordinator aggregates in the common case.
//!
//! Permafrost's package is parsed once, outside the timed loop, as a signer parses it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use frost_core::keys::{generate_with_dealer, IdentifierList, KeyPackage};
use frost_core::{aggregate_custom, round1, CheaterDetection, Group, SigningPackage};
use permafrost_protocol::sign::round2::SigningKey;
use permafrost_protocol::sign::{parse_signing_package, round2, Nonces};
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
    // frost's nonces for frost's package, Permafrost's for its own: the same shape, one
    // package each (a package holds its signers' commitments).
    let mut frost_nonces = BTreeMap::new();
    let mut frost_commitments = BTreeMap::new();
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for (id, key) in &keys {
        let (n, c) = round1::commit(key.signing_share(), &mut rng);
        frost_nonces.insert(*id, n);
        frost_commitments.insert(*id, c);
        let ours = Nonces::commit(key.signing_share(), &mut rng).unwrap();
        commitments.insert(*id, *ours.commitments());
        nonces.insert(*id, ours);
    }
    let message = b"settle 1 BTC to the custodian";
    let frost_package = SigningPackage::new(frost_commitments, message);
    let bytes = SigningPackage::new(commitments.clone(), message)
        .serialize()
        .unwrap();
    let read = parse_signing_package::<S>(&bytes, None, None).unwrap();
    let (id, key) = keys.iter().next().unwrap();
    let mut group = c.benchmark_group("round1_commit");
    group.bench_function(format!("{curve}/frost"), |b| {
        b.iter(|| round1::commit(black_box(key.signing_share()), &mut rng))
    });
    group.bench_function(format!("{curve}/permafrost"), |b| {
        b.iter(|| Nonces::<S>::commit(black_box(key.signing_share()), &mut rng).unwrap())
    });
    group.finish();
    let mut group = c.benchmark_group("round2_sign");
    group.bench_function(format!("{curve}/frost"), |b| {
        b.iter(|| {
            frost_core::round2::sign(black_box(&frost_package), &frost_nonces[id], key).unwrap()
        })
    });
    // Permafrost's signing consumes its nonces: fresh ones for each share, with the package
    // that holds their commitment (made and parsed outside the timed part).
    let mut others = commitments.clone();
    let signing_key = SigningKey::new(key).unwrap();
    group.bench_function(format!("{curve}/permafrost"), |b| {
        b.iter_batched(
            || {
                let fresh = Nonces::<S>::commit(key.signing_share(), &mut rng).unwrap();
                others.insert(*id, *fresh.commitments());
                let bytes = SigningPackage::new(others.clone(), message)
                    .serialize()
                    .unwrap();
                (
                    parse_signing_package::<S>(&bytes, None, None).unwrap(),
                    fresh,
                )
            },
            |(read, fresh)| round2::sign(black_box(&read), fresh, &signing_key).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let signed: BTreeMap<_, _> = nonces
        .into_iter()
        .map(|(id, nonces)| {
            let key = SigningKey::new(&keys[&id]).unwrap();
            (id, round2::sign(&read, nonces, &key).unwrap())
        })
        .collect();
    let shares: BTreeMap<_, _> = signed
        .iter()
        .map(|(id, (share, _))| (*id, *share))
        .collect();
    // The group commitment the signers sent with their shares.
    let claimed = signed
        .values()
        .next()
        .map(|(_, r)| <S::Group as Group>::deserialize(r).unwrap());
    let frost_shares: BTreeMap<_, _> = keys
        .iter()
        .map(|(id, key)| {
            let share = frost_core::round2::sign(&frost_package, &frost_nonces[id], key);
            (*id, share.unwrap())
        })
        .collect();
    let mut group = c.benchmark_group("round2_aggregate");
    group.bench_function(format!("{curve}/frost"), |b| {
        b.iter(|| {
            aggregate_custom(
                black_box(&frost_package),
                &frost_shares,
                &public,
                CheaterDetection::AllCheaters,
            )
            .unwrap()
        })
    });
    // R computed from the package, and R as the signers sent it (the coordinator's common case).
    for (name, r) in [
        ("permafrost", None),
        ("permafrost, R from the signers", claimed),
    ] {
        group.bench_function(format!("{curve}/{name}"), |b| {
            b.iter(|| {
                round2::aggregate(
                    black_box(&read),
                    &shares,
                    &public,
                    CheaterDetection::AllCheaters,
                    r.as_ref(),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_round2::<Ed25519>(c, "ed25519");
    bench_round2::<Secp256k1>(c, "secp256k1");
    bench_round2::<Secp256k1Tr>(c, "secp256k1-tr");
}

criterion_group!(round2_benches, benches);
criterion_main!(round2_benches);
