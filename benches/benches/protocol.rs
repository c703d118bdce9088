//! Criterion benchmarks of the protocol core, run end to end through the in-memory simulator
//! (`permafrost_engine::sim::Network`), once per ciphersuite:
//!
//! - `dkg_3_of_5/<curve>`: one complete DKG with t = 3, n = 5, on a fresh network.
//! - `sign_3_of_5/<curve>`: one complete signing session (request, commitments, package, shares,
//!   aggregate) with a 3-of-5 key created before the timed loop, a fresh message and session
//!   each iteration.
//!
//! The simulator encodes and decodes every message with the wire codec, so the times include
//! the codec. Virtual time means latency costs nothing: the numbers are CPU time only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use frost_core::keys::PublicKeyPackage;
use permafrost_engine::sim::Network;
use permafrost_protocol::Suite;
use permafrost_wire::{Epoch, KeyId, NodeId};

const THRESHOLD: u16 = 3;
const NODES: usize = 5;

/// How many signing sessions run on one network before it is rebuilt (untimed). The simulator
/// keeps every finished coordinator session and every node keeps a nonce slot per session
/// until it expires, so an ever-growing network would slowly change what is measured.
const SIGNATURES_PER_NETWORK: u64 = 200;

type Ed25519 = frost_ed25519::Ed25519Sha512;
type Secp256k1 = frost_secp256k1::Secp256K1Sha256;
type Secp256k1Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

fn key_id() -> KeyId {
    KeyId::new("bench-key").expect("valid key id")
}

/// A network of `NODES` nodes holding a fresh `THRESHOLD`-of-`NODES` key.
struct Keyed<S: Suite> {
    net: Network<S>,
    nodes: Vec<NodeId>,
    coordinator: NodeId,
    key_id: KeyId,
    pkp: PublicKeyPackage<S>,
}

impl<S: Suite> Keyed<S> {
    fn new(seed: u64) -> Self {
        let (mut net, nodes, coordinator) = Network::<S>::with_nodes(seed, NODES);
        let key_id = key_id();
        let pkp = net
            .run_dkg(&coordinator, &key_id, THRESHOLD, &nodes)
            .expect("setup DKG");
        Keyed {
            net,
            nodes,
            coordinator,
            key_id,
            pkp,
        }
    }
}

fn bench_dkg<S: Suite>(c: &mut Criterion, curve: &str) {
    let mut group = c.benchmark_group("dkg_3_of_5");
    let mut seed = 0u64;
    group.bench_function(BenchmarkId::from_parameter(curve), |b| {
        b.iter_batched(
            || {
                seed += 1;
                let (net, nodes, coordinator) = Network::<S>::with_nodes(seed, NODES);
                (net, nodes, coordinator, key_id())
            },
            |(mut net, nodes, coordinator, key_id)| {
                let pkp = net
                    .run_dkg(&coordinator, &key_id, THRESHOLD, &nodes)
                    .expect("DKG");
                // Returned so that dropping the network is not timed.
                (net, pkp)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn bench_sign<S: Suite>(c: &mut Criterion, curve: &str) {
    let mut group = c.benchmark_group("sign_3_of_5");
    let mut seed = 1_000_000u64;
    let mut keyed = Keyed::<S>::new(seed);
    let mut on_this_network = 0u64;
    let mut counter = 0u64;
    group.bench_function(BenchmarkId::from_parameter(curve), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                if on_this_network == SIGNATURES_PER_NETWORK {
                    seed += 1;
                    keyed = Keyed::new(seed);
                    on_this_network = 0;
                }
                counter += 1;
                let message = format!("permafrost bench message {counter}").into_bytes();

                let start = Instant::now();
                let outcome = keyed
                    .net
                    .sign(
                        &keyed.coordinator,
                        &keyed.key_id,
                        Epoch(0),
                        &keyed.pkp,
                        &keyed.nodes,
                        black_box(&message),
                    )
                    .expect("signing");
                timed += start.elapsed();

                // Untimed: check the result, then let the late commitments arrive and the
                // unused nonces expire so every session starts from the same state.
                assert_eq!(outcome.signers.len(), usize::from(THRESHOLD));
                keyed
                    .pkp
                    .verifying_key()
                    .verify(&message, &outcome.signature)
                    .expect("valid signature");
                keyed.net.run(Duration::from_secs(30));
                on_this_network += 1;
            }
            timed
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_dkg::<Ed25519>(c, "ed25519");
    bench_dkg::<Secp256k1>(c, "secp256k1");
    bench_dkg::<Secp256k1Tr>(c, "secp256k1-tr");
    bench_sign::<Ed25519>(c, "ed25519");
    bench_sign::<Secp256k1>(c, "secp256k1");
    bench_sign::<Secp256k1Tr>(c, "secp256k1-tr");
}

criterion_group!(protocol, benches);
criterion_main!(protocol);
