//! Feldman commitments (`VerifiableSecretSharingCommitment`) evaluated in variable time: the
//! verifying shares of a public key package and the check of a share against its dealer's
//! commitment, where frost evaluates Σ Cₖ·jᵏ with one constant-time multiplication per
//! coefficient. Every input here is public (commitments are broadcast, identifiers are
//! derived from node ids); the one secret, a share, is only ever multiplied by the generator
//! in constant time ([`Suite::mul_generator`]).

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::dkg::{round1, round2};
use frost_core::keys::{
    KeyPackage, PublicKeyPackage, SigningShare, VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_core::{Ciphersuite, Element, Error, Field, Group, Identifier, Signature, VerifyingKey};

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

/// frost's `verify_proof_of_knowledge` (the DKG's round 1, step 5): whether `proof` = (R, μ)
/// is member `identifier`'s Schnorr signature of knowledge of the secret behind the first
/// coefficient φ₀ of `commitment`, R = μ·G − c·φ₀ with c = H_DKG(identifier ‖ φ₀ ‖ R), checked
/// as one variable-time double-base multiplication ([`Suite::signature_equation_holds`]: the
/// commitment and the proof are broadcast) where frost multiplies twice in constant time. Its
/// errors are frost's, in frost's order.
pub fn verify_proof_of_knowledge<S: Suite>(
    identifier: Identifier<S>,
    commitment: &VerifiableSecretSharingCommitment<S>,
    proof: &Signature<S>,
) -> Result<(), Error<S>> {
    let phi0 = commitment
        .coefficients()
        .first()
        .ok_or(Error::MissingCommitment)?
        .value();
    let mut preimage = identifier.serialize();
    preimage.extend_from_slice(<S::Group as Group>::serialize(&phi0)?.as_ref());
    preimage.extend_from_slice(<S::Group as Group>::serialize(proof.R())?.as_ref());
    let challenge = S::HDKG(&preimage).ok_or(Error::DKGNotSupported)?;
    if S::signature_equation_holds(proof.z(), &phi0, &challenge, proof.R()) {
        Ok(())
    } else {
        Err(Error::InvalidProofOfKnowledge {
            culprit: identifier,
        })
    }
}

/// The secret package and the shares of frost's `dkg::part2`, with its checks and errors in its
/// order, each member's proof of knowledge checked by [`verify_proof_of_knowledge`]. The copy
/// of the secret polynomial it evaluates is zeroized (frost's is not).
#[allow(clippy::type_complexity)]
pub fn dkg_part2<S: Suite>(
    secret: round1::SecretPackage<S>,
    round1_packages: &BTreeMap<Identifier<S>, round1::Package<S>>,
) -> Result<
    (
        round2::SecretPackage<S>,
        BTreeMap<Identifier<S>, round2::Package<S>>,
    ),
    Error<S>,
> {
    let me = *secret.identifier();
    if round1_packages.len() != usize::from(*secret.max_signers()).saturating_sub(1) {
        return Err(Error::IncorrectNumberOfPackages);
    }
    if round1_packages.contains_key(&me) {
        return Err(Error::UnknownIdentifier);
    }
    if round1_packages
        .values()
        .any(|p| p.commitment().coefficients().len() != usize::from(*secret.min_signers()))
    {
        return Err(Error::IncorrectNumberOfCommitments);
    }
    let mut coefficients = secret.coefficients();
    let shares = round1_packages
        .iter()
        .map(|(sender, package)| {
            verify_proof_of_knowledge(*sender, package.commitment(), package.proof_of_knowledge())?;
            let share = SigningShare::from_coefficients(&coefficients, *sender);
            Ok((*sender, round2::Package::new(share)))
        })
        .collect::<Result<BTreeMap<_, _>, Error<S>>>();
    let own = SigningShare::from_coefficients(&coefficients, me);
    for coefficient in &mut coefficients {
        S::zeroize_scalar(coefficient);
    }
    let secret2 = round2::SecretPackage::new(
        me,
        secret.commitment().clone(),
        own.to_scalar(),
        *secret.min_signers(),
        *secret.max_signers(),
    );
    Ok((secret2, shares?))
}

/// frost's `dkg::part3`, with its checks and errors in its order: the member's key package
/// and the public key package ([`dkg_public_key_package`]), after the suite's `post_dkg` hook
/// (taproot's tweak).
///
/// The received shares are checked together first: their sum with the member's own share,
/// times the generator, must be the member's verifying share in the public key package, which
/// is computed in any case (Σᵢ fᵢ(j)·G = Σᵢ Σₖ Cᵢₖ·jᵏ, the summed commitment evaluated at j).
/// Only when that fails is each share checked by [`share_matches`] (frost's check, naming the
/// first sender whose share does not match). If the sum holds, the member's signing share is
/// exactly the one every share matching would give, and its key package is the same: shares
/// that are each off but cancel out (two senders acting together) harm no one, and are not
/// named. It saves `n − 1` evaluations of a commitment and multiplications of the generator.
pub fn dkg_part3<S: Suite>(
    secret: &round2::SecretPackage<S>,
    round1_packages: &BTreeMap<Identifier<S>, round1::Package<S>>,
    round2_packages: &BTreeMap<Identifier<S>, round2::Package<S>>,
) -> Result<(KeyPackage<S>, PublicKeyPackage<S>), Error<S>> {
    let me = *secret.identifier();
    if round1_packages.len() != usize::from(*secret.max_signers()).saturating_sub(1) {
        return Err(Error::IncorrectNumberOfPackages);
    }
    if round1_packages.contains_key(&me) || round2_packages.contains_key(&me) {
        return Err(Error::UnknownIdentifier);
    }
    if round1_packages.len() != round2_packages.len() {
        return Err(Error::IncorrectNumberOfPackages);
    }
    if round1_packages
        .keys()
        .any(|id| !round2_packages.contains_key(id))
    {
        return Err(Error::IncorrectPackage);
    }
    let commitments: BTreeMap<_, _> = round1_packages
        .iter()
        .map(|(id, package)| (*id, package.commitment()))
        .chain([(me, secret.commitment())])
        .collect();
    let public_key_package = dkg_public_key_package(&commitments);
    let mut sum = round2_packages
        .values()
        .fold(secret.secret_share(), |sum, package| {
            sum + package.signing_share().to_scalar()
        });
    let verifying_share = VerifyingShare::new(S::mul_generator(&sum));
    let all_match = commitments.values().all(|c| !c.coefficients().is_empty())
        && public_key_package
            .as_ref()
            .is_ok_and(|p| p.verifying_shares().get(&me) == Some(&verifying_share));
    if !all_match {
        // One by one, as frost does: its error, naming the first sender found out.
        for (sender, package) in round2_packages {
            let Some(commitment) = commitments.get(sender) else {
                S::zeroize_scalar(&mut sum);
                return Err(Error::PackageNotFound);
            };
            if !share_matches(me, package.signing_share(), commitment) {
                S::zeroize_scalar(&mut sum);
                return Err(Error::InvalidSecretShare {
                    culprit: Some(*sender),
                });
            }
            // frost's check reads the commitment's key after the share: an empty commitment
            // that a zero share "matches" is refused here, as there.
            if commitment.coefficients().is_empty() {
                S::zeroize_scalar(&mut sum);
                return Err(Error::MissingCommitment);
            }
        }
    }
    let signing_share = SigningShare::new(sum);
    S::zeroize_scalar(&mut sum);
    let public_key_package = public_key_package?;
    let key_package = KeyPackage::new(
        me,
        signing_share,
        verifying_share,
        *public_key_package.verifying_key(),
        *secret.min_signers(),
    );
    <S as Ciphersuite>::post_dkg(key_package, public_key_package)
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

    /// A whole DKG of four members, threshold 3: each member's key package and public key
    /// package equal frost's `part3`; a share one off, a package missing, or one for the
    /// member itself are refused with frost's error.
    fn part3_equals_frost<S: Suite>() {
        use frost_core::keys::dkg;
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let ids: Vec<Identifier<S>> = ["node1", "node2", "node3", "node4"]
            .iter()
            .map(|n| Identifier::derive(n.as_bytes()).unwrap())
            .collect();
        let mut secrets1 = BTreeMap::new();
        let mut round1_all = BTreeMap::new();
        for id in &ids {
            let (secret, package) = dkg::part1::<S, _>(*id, 4, 3, &mut rng).unwrap();
            secrets1.insert(*id, secret);
            round1_all.insert(*id, package);
        }
        let mut secrets2 = BTreeMap::new();
        let mut sent: BTreeMap<Identifier<S>, BTreeMap<Identifier<S>, dkg::round2::Package<S>>> =
            BTreeMap::new();
        for id in &ids {
            let others: BTreeMap<_, _> = round1_all
                .iter()
                .filter(|(k, _)| *k != id)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            let (secret, packages) = dkg::part2(secrets1[id].clone(), &others).unwrap();
            secrets2.insert(*id, secret);
            for (to, package) in packages {
                sent.entry(to).or_default().insert(*id, package);
            }
        }
        let one = <<S::Group as Group>::Field as Field>::one();
        for id in &ids {
            let round1: BTreeMap<_, _> = round1_all
                .iter()
                .filter(|(k, _)| *k != id)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            let round2 = &sent[id];
            let secret = &secrets2[id];
            let ours = dkg_part3(secret, &round1, round2).unwrap();
            assert_eq!(
                ours,
                dkg::part3(secret, &round1, round2).unwrap(),
                "{:?}",
                S::CURVE
            );
            let (culprit, _) = round2.iter().next().unwrap();
            let mut bad = round2.clone();
            let off = SigningShare::new(bad[culprit].signing_share().to_scalar() + one);
            bad.insert(*culprit, dkg::round2::Package::new(off));
            let refused = dkg_part3(secret, &round1, &bad).unwrap_err();
            assert_eq!(
                refused,
                Error::InvalidSecretShare {
                    culprit: Some(*culprit)
                }
            );
            assert_eq!(refused, dkg::part3(secret, &round1, &bad).unwrap_err());
            // The last sender's share off alone: it is the one named, as frost names it.
            let (last, _) = round2.iter().next_back().unwrap();
            let mut last_bad = round2.clone();
            let off = SigningShare::new(last_bad[last].signing_share().to_scalar() + one);
            last_bad.insert(*last, dkg::round2::Package::new(off));
            assert_eq!(
                dkg_part3(secret, &round1, &last_bad).unwrap_err(),
                Error::InvalidSecretShare {
                    culprit: Some(*last)
                }
            );
            // Two shares off by amounts that cancel out: the sum is the one every share
            // matching gives, and so is the key package (frost refuses, naming the first).
            let mut cancelling = bad.clone();
            let less = SigningShare::new(round2[last].signing_share().to_scalar() - one);
            cancelling.insert(*last, dkg::round2::Package::new(less));
            assert_eq!(dkg_part3(secret, &round1, &cancelling).unwrap(), ours);
            assert!(dkg::part3(secret, &round1, &cancelling).is_err());
            let mut missing = round2.clone();
            missing.remove(culprit);
            assert_eq!(
                dkg_part3(secret, &round1, &missing).unwrap_err(),
                dkg::part3(secret, &round1, &missing).unwrap_err()
            );
            let mut own = round2.clone();
            own.insert(*id, round2[culprit].clone());
            assert_eq!(
                dkg_part3(secret, &round1, &own).unwrap_err(),
                dkg::part3(secret, &round1, &own).unwrap_err()
            );
        }
    }

    /// Every member's `dkg_part2` of a DKG of four, threshold 3, equals frost's `part2`; a proof
    /// of knowledge one off in μ, one over another member's identifier, one with R the
    /// identity, a commitment of another length, a package missing, and the member's own
    /// package among the others are refused with frost's error.
    fn part2_equals_frost<S: Suite>() {
        use frost_core::keys::dkg;
        let mut rng = ChaCha20Rng::seed_from_u64(17);
        let ids: Vec<Identifier<S>> = ["node1", "node2", "node3", "node4"]
            .iter()
            .map(|n| Identifier::derive(n.as_bytes()).unwrap())
            .collect();
        let mut secrets = BTreeMap::new();
        let mut packages = BTreeMap::new();
        for id in &ids {
            let (secret, package) = dkg::part1::<S, _>(*id, 4, 3, &mut rng).unwrap();
            secrets.insert(*id, secret);
            packages.insert(*id, package);
        }
        let one = <<S::Group as Group>::Field as Field>::one();
        let identity = <S::Group as Group>::identity();
        for id in &ids {
            let others: BTreeMap<_, _> = packages
                .iter()
                .filter(|(k, _)| *k != id)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            let secret = &secrets[id];
            let both = |round1: &BTreeMap<Identifier<S>, dkg::round1::Package<S>>| {
                (
                    dkg_part2(secret.clone(), round1),
                    dkg::part2(secret.clone(), round1),
                )
            };
            let (ours, theirs) = both(&others);
            assert_eq!(ours.unwrap(), theirs.unwrap(), "{:?}", S::CURVE);
            let (culprit, package) = others.iter().next().unwrap();
            let (other, _) = others.iter().nth(1).unwrap();
            let proof = package.proof_of_knowledge();
            let forged = [
                Signature::new(*proof.R(), *proof.z() + one),
                Signature::new(identity, *proof.z()),
            ];
            for forged in forged {
                let mut bad = others.clone();
                bad.insert(
                    *culprit,
                    dkg::round1::Package::new(package.commitment().clone(), forged),
                );
                let (ours, theirs) = both(&bad);
                assert!(ours.is_err());
                assert_eq!(ours.unwrap_err(), theirs.unwrap_err());
            }
            // A valid proof, of another member: bound to the identifier.
            let mut swapped = others.clone();
            swapped.insert(*other, package.clone());
            let (ours, theirs) = both(&swapped);
            assert_eq!(
                ours.unwrap_err(),
                Error::InvalidProofOfKnowledge { culprit: *other }
            );
            assert_eq!(
                theirs.unwrap_err(),
                Error::InvalidProofOfKnowledge { culprit: *other }
            );
            let mut short = others.clone();
            let coefficients = package.commitment().coefficients()[..2].to_vec();
            short.insert(
                *culprit,
                dkg::round1::Package::new(
                    VerifiableSecretSharingCommitment::new(coefficients),
                    *proof,
                ),
            );
            let (ours, theirs) = both(&short);
            assert_eq!(ours.unwrap_err(), theirs.unwrap_err());
            let mut missing = others.clone();
            missing.remove(culprit);
            let (ours, theirs) = both(&missing);
            assert_eq!(ours.unwrap_err(), theirs.unwrap_err());
            let mut own = missing.clone();
            own.insert(*id, packages[id].clone());
            let (ours, theirs) = both(&own);
            assert_eq!(ours.unwrap_err(), Error::UnknownIdentifier);
            assert_eq!(theirs.unwrap_err(), Error::UnknownIdentifier);
        }
    }

    #[test]
    fn dkg_part2_equals_frosts() {
        part2_equals_frost::<frost_ed25519::Ed25519Sha512>();
        part2_equals_frost::<frost_secp256k1::Secp256K1Sha256>();
        part2_equals_frost::<frost_secp256k1_tr::Secp256K1Sha256TR>();
    }

    #[test]
    fn dkg_part3_equals_frosts() {
        part3_equals_frost::<frost_ed25519::Ed25519Sha512>();
        part3_equals_frost::<frost_secp256k1::Secp256K1Sha256>();
        part3_equals_frost::<frost_secp256k1_tr::Secp256K1Sha256TR>();
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
