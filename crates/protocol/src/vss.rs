//! Feldman commitments (`VerifiableSecretSharingCommitment`) evaluated in variable time: the
//! verifying shares of a public key package and the check of a share against its dealer's
//! commitment, where frost evaluates Σ Cₖ·jᵏ with one constant-time multiplication per
//! coefficient. Every input here is public (commitments are broadcast, identifiers are
//! derived from node ids); the one secret, a share, is only ever multiplied by the generator
//! in constant time ([`Suite::mul_generator`]).

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::{
    PublicKeyPackage, SigningShare, VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_core::{Element, Error, Field, Group, Identifier, VerifyingKey};

use crate::Suite;

/// Σₖ Cₖ·jᵏ: the commitment evaluated at `identifier`, the verifying share of the member
/// it names (frost's `VerifyingShare::from_commitment`), in one variable-time multi-scalar
/// multiplication.
pub fn evaluate<S: Suite>(
    identifier: Identifier<S>,
    commitment: &VerifiableSecretSharingCommitment<S>,
) -> Element<S> {
    let j = identifier.to_scalar();
    let mut power = <<S::Group as Group>::Field as Field>::one();
    let terms: Vec<_> = commitment
        .coefficients()
        .iter()
        .map(|c| {
            let term = (c.value(), power);
            power = power * j;
            term
        })
        .collect();
    S::public_linear_combination(&terms)
}

/// Whether `share` is the value at `identifier` of the polynomial `commitment` commits to:
/// share·G = Σₖ Cₖ·jᵏ (frost's `SecretShare::verify`), the share multiplied in constant time.
pub fn share_matches<S: Suite>(
    identifier: Identifier<S>,
    share: &SigningShare<S>,
    commitment: &VerifiableSecretSharingCommitment<S>,
) -> bool {
    S::mul_generator(&share.to_scalar()) == evaluate(identifier, commitment)
}

/// The public key package of `identifiers` under the polynomial `commitment` commits to,
/// as frost's `PublicKeyPackage::from_commitment` computes it (the key is C₀, the
/// threshold the number of coefficients).
pub fn public_key_package<S: Suite>(
    identifiers: &BTreeSet<Identifier<S>>,
    commitment: &VerifiableSecretSharingCommitment<S>,
) -> Result<PublicKeyPackage<S>, Error<S>> {
    let verifying_shares = identifiers
        .iter()
        .map(|id| (*id, VerifyingShare::new(evaluate(*id, commitment))))
        .collect();
    let min_signers =
        u16::try_from(commitment.coefficients().len()).map_err(|_| Error::InvalidCoefficients)?;
    Ok(PublicKeyPackage::new(
        verifying_shares,
        VerifyingKey::from_commitment(commitment)?,
        Some(min_signers),
    ))
}

/// The public key package of a DKG (frost's `PublicKeyPackage::from_dkg_commitments`): the
/// members' commitments summed coefficient by coefficient, then [`public_key_package`].
pub fn dkg_public_key_package<S: Suite>(
    commitments: &BTreeMap<Identifier<S>, &VerifiableSecretSharingCommitment<S>>,
) -> Result<PublicKeyPackage<S>, Error<S>> {
    let identifiers: BTreeSet<_> = commitments.keys().copied().collect();
    let all: Vec<_> = commitments.values().copied().collect();
    let sum = frost_core::keys::sum_commitments(&all)?;
    public_key_package(&identifiers, &sum)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use frost_core::keys::{CoefficientCommitment, SecretShare};
    use frost_core::Scalar;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn random_polynomial<S: Suite>(t: usize, rng: &mut ChaCha20Rng) -> Vec<Scalar<S>> {
        (0..t)
            .map(|_| <<S::Group as Group>::Field as Field>::random(&mut *rng))
            .collect()
    }

    fn commit<S: Suite>(coefficients: &[Scalar<S>]) -> VerifiableSecretSharingCommitment<S> {
        VerifiableSecretSharingCommitment::new(
            coefficients
                .iter()
                .map(|a| CoefficientCommitment::new(<S::Group as Group>::generator() * *a))
                .collect(),
        )
    }

    fn identifiers<S: Suite>() -> BTreeSet<Identifier<S>> {
        let mut ids: BTreeSet<Identifier<S>> = (1..=3u16)
            .map(|i| Identifier::try_from(i).unwrap())
            .collect();
        for name in ["node1", "node2", "node3", "node4", "node5", "node6"] {
            ids.insert(Identifier::derive(name.as_bytes()).unwrap());
        }
        ids
    }

    /// Every verifying share, the key and the threshold as frost computes them, for
    /// thresholds 1 to 5, one commitment and a DKG's five.
    fn packages_equal_frost<S: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let ids = identifiers::<S>();
        for t in 1..=5 {
            let commitment = commit::<S>(&random_polynomial::<S>(t, &mut rng));
            assert_eq!(
                public_key_package(&ids, &commitment).unwrap(),
                PublicKeyPackage::from_commitment(&ids, &commitment).unwrap(),
                "{:?} t={t}",
                S::CURVE
            );
            let members: Vec<_> = ids.iter().copied().take(5).collect();
            let dealt: Vec<_> = members
                .iter()
                .map(|_| commit::<S>(&random_polynomial::<S>(t, &mut rng)))
                .collect();
            let commitments: BTreeMap<_, _> = members.iter().copied().zip(&dealt).collect();
            assert_eq!(
                dkg_public_key_package(&commitments).unwrap(),
                PublicKeyPackage::from_dkg_commitments(&commitments).unwrap(),
                "{:?} t={t}",
                S::CURVE
            );
        }
    }

    /// A share of the polynomial matches, as frost's check says; the same share plus one,
    /// or the share of another member, does not, and frost refuses both.
    fn share_check_decides_as_frost<S: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let one = <<S::Group as Group>::Field as Field>::one();
        for t in 1..=4 {
            let coefficients = random_polynomial::<S>(t, &mut rng);
            let commitment = commit::<S>(&coefficients);
            for id in identifiers::<S>() {
                let share = SigningShare::from_coefficients(&coefficients, id);
                let frost = |s: SigningShare<S>, at: Identifier<S>| {
                    SecretShare::new(at, s, commitment.clone()).verify().is_ok()
                };
                assert!(share_matches(id, &share, &commitment));
                assert!(frost(share, id));
                let wrong = SigningShare::new(share.to_scalar() + one);
                assert!(!share_matches(id, &wrong, &commitment));
                assert!(!frost(wrong, id));
                let elsewhere = Identifier::derive(b"not a member").unwrap();
                assert_eq!(
                    share_matches(elsewhere, &share, &commitment),
                    frost(share, elsewhere),
                );
                assert!(t == 1 || !share_matches(elsewhere, &share, &commitment));
            }
        }
    }

    #[test]
    fn public_key_packages_equal_frosts() {
        packages_equal_frost::<frost_ed25519::Ed25519Sha512>();
        packages_equal_frost::<frost_secp256k1::Secp256K1Sha256>();
        packages_equal_frost::<frost_secp256k1_tr::Secp256K1Sha256TR>();
    }

    #[test]
    fn the_share_check_decides_as_frosts() {
        share_check_decides_as_frost::<frost_ed25519::Ed25519Sha512>();
        share_check_decides_as_frost::<frost_secp256k1::Secp256K1Sha256>();
        share_check_decides_as_frost::<frost_secp256k1_tr::Secp256K1Sha256TR>();
    }
}
