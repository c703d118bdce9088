//! The CPU cost of one t-of-n FROST signature's operations in one process, with nothing
//! around them: t commitments, t signature shares, the aggregation (which verifies the
//! signature under the group key) and one more verification (a client's). It is the floor for
//! what a network of processes can spend per signature; the load tool reports the network's
//! CPU per signature beside it, as a ratio.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use frost_core::keys::{generate_with_dealer, IdentifierList, KeyPackage};
use frost_core::{aggregate, round1, round2, Ciphersuite, SigningPackage};
use permafrost_verifiers::Curve;
use rand::rngs::OsRng;

/// Mean CPU (wall time on one thread, nothing else running in this process) of one `t`-of-`n`
/// signature's FROST operations on `curve`, over `iterations` signatures.
pub fn per_signature(curve: Curve, t: u16, n: u16, iterations: u32) -> anyhow::Result<Duration> {
    match curve {
        Curve::Ed25519 => measure::<frost_ed25519::Ed25519Sha512>(t, n, iterations),
        Curve::Secp256k1 => measure::<frost_secp256k1::Secp256K1Sha256>(t, n, iterations),
        Curve::Secp256k1Tr => measure::<frost_secp256k1_tr::Secp256K1Sha256TR>(t, n, iterations),
    }
}

fn measure<C: Ciphersuite>(t: u16, n: u16, iterations: u32) -> anyhow::Result<Duration> {
    let mut rng = OsRng;
    let (shares, public) = generate_with_dealer::<C, _>(n, t, IdentifierList::Default, &mut rng)?;
    let signers: Vec<KeyPackage<C>> = shares
        .into_values()
        .take(usize::from(t))
        .map(KeyPackage::try_from)
        .collect::<Result<_, _>>()?;
    let mut total = Duration::ZERO;
    for i in 0..iterations.max(1) {
        let message = format!("in-process {i}").into_bytes();
        let started = Instant::now();
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for signer in &signers {
            let (nonce, commitment) = round1::commit(signer.signing_share(), &mut rng);
            nonces.insert(*signer.identifier(), nonce);
            commitments.insert(*signer.identifier(), commitment);
        }
        let package = SigningPackage::new(commitments, &message);
        let mut signature_shares = BTreeMap::new();
        for signer in &signers {
            let nonce = nonces
                .remove(signer.identifier())
                .ok_or_else(|| anyhow::anyhow!("no nonce"))?;
            signature_shares.insert(
                *signer.identifier(),
                round2::sign(&package, &nonce, signer)?,
            );
        }
        let signature = aggregate(&package, &signature_shares, &public)?;
        public.verifying_key().verify(&message, &signature)?;
        total += started.elapsed();
    }
    Ok(total / iterations.max(1))
}
