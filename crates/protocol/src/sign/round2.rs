//! FROST's second round on a package read from the wire: a signer's share and the coordinator's
//! aggregate, equal to frost's `round2::sign` and `aggregate_custom` (the tests below compare
//! them on every suite), computed with less work:
//!
//! - the binding factors are hashed from the commitments' bytes as they are in the package
//!   ([`WirePackage::encoded_commitments`]), where frost encodes every point again (a field
//!   inversion each);
//! - the group commitment is the suite's fastest multi-scalar multiplication
//!   ([`Suite::group_commitment`]: the points are public);
//! - a signer encodes R once per share and the key once per key ([`SigningKey`], which also
//!   applies taproot's even-key hook once), and hashes the challenge from those bytes
//!   ([`Suite::challenge_of_encoded`]), where frost's `challenge` (and taproot's parity check)
//!   encode them again;
//! - the signer's Lagrange coefficient divides by a public scalar (a product of differences of
//!   identifiers) in variable time ([`Suite::invert_public`]), where frost inverts in constant
//!   time;
//! - the aggregate's verification is frost's equation as one double-base multiplication
//!   ([`Suite::signature_equation_holds`]: in variable time for ed25519, the signature and the
//!   key being public; k256's linear combination for secp256k1), where frost multiplies twice.
//!
//! The share's arithmetic is frost's (RFC 9591 §5.2): `z = d + e·ρ + λ·s·c`, with the suite's
//! hooks applied as frost applies them (`pre_sign`, here [`Suite::signing_key_package`], once
//! per [`SigningKey`]; `challenge`, here [`Suite::challenge_of_encoded`]; BIP-340's negation of
//! the nonces, [`Suite::negates_nonces`]) on the nonces of [`Nonces`]. frost's
//! `pre_commitment_sign` and `pre_commitment_aggregate` hooks are not called: none of the three
//! suites overrides them. An aggregate that does not verify is handed to frost's own
//! `aggregate_custom`, which finds the cheaters, so every error comes from frost. The secret
//! scalars (nonces, share) are handled as frost's `compute_signature_share` handles them:
//! copied into the arithmetic, not zeroized there; the nonces themselves are the caller's,
//! consumed and zeroized on drop.

use std::borrow::Cow;
use std::collections::BTreeMap;

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::round2::SignatureShare;
use frost_core::{
    aggregate_custom, CheaterDetection, Ciphersuite, Element, Error, Field, Group, Identifier,
    Scalar, Signature, VerifyingKey,
};

use super::{Nonces, WirePackage};
use crate::Suite;

type ScalarField<S> = <<S as Ciphersuite>::Group as Group>::Field;

/// An element as `Group::serialize` writes it.
pub type EncodedElement<S> = <<S as Ciphersuite>::Group as Group>::Serialization;

/// ρᵢ of each member of `package`, in the package's order (RFC 9591 §4.4):
/// H1(key ‖ H4(message) ‖ H5(encoded commitments) ‖ identifier), the key serialized.
fn binding_factors<S: Suite>(
    key: &[u8],
    package: &WirePackage<S>,
) -> Result<Vec<Scalar<S>>, Error<S>> {
    let mut input = Vec::with_capacity(256);
    input.extend_from_slice(key);
    input.extend_from_slice(S::H4(package.package().message()).as_ref());
    input.extend_from_slice(S::H5(package.encoded_commitments()).as_ref());
    let prefix = input.len();
    Ok(package
        .package()
        .signing_commitments()
        .keys()
        .map(|id| {
            input.truncate(prefix);
            input.extend_from_slice(id.serialize().as_ref());
            S::H1(&input)
        })
        .collect())
}

/// R = Σ (Dᵢ + ρᵢ·Eᵢ) (RFC 9591 §4.5); an identity commitment is refused, as in frost.
fn group_commitment<S: Suite>(
    package: &WirePackage<S>,
    factors: &[Scalar<S>],
) -> Result<Element<S>, Error<S>> {
    let identity = <S::Group as Group>::identity();
    let mut terms = Vec::with_capacity(factors.len());
    for (commitment, factor) in package
        .package()
        .signing_commitments()
        .values()
        .zip(factors)
    {
        let (hiding, binding) = (commitment.hiding().value(), commitment.binding().value());
        if hiding == identity || binding == identity {
            return Err(Error::IdentityCommitment);
        }
        terms.push((hiding, binding, *factor));
    }
    Ok(S::group_commitment(&terms))
}

/// A key share as a signer signs with it, prepared once: frost's `pre_sign` hook applied
/// ([`Suite::signing_key_package`]: BIP-340's even key for taproot, a copy of the package) and
/// the key encoded for the binding factors and the challenge, where each share would otherwise
/// copy the package and encode the key again (a field inversion, two for taproot). It holds a
/// copy of the secret share, zeroized when it drops, as frost's `KeyPackage` is.
pub struct SigningKey<S: Suite> {
    package: KeyPackage<S>,
    /// The key as `VerifyingKey::serialize` writes it.
    key: Vec<u8>,
}

impl<S: Suite> SigningKey<S> {
    /// `key_package` prepared for signing.
    pub fn new(key_package: &KeyPackage<S>) -> Result<Self, Error<S>> {
        let package = S::signing_key_package(key_package).into_owned();
        let key = package.verifying_key().serialize()?;
        Ok(SigningKey { package, key })
    }

    /// This signer's identifier.
    pub fn identifier(&self) -> &Identifier<S> {
        self.package.identifier()
    }
}

/// The identifier only: never the share.
impl<S: Suite> std::fmt::Debug for SigningKey<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("identifier", self.identifier())
            .finish_non_exhaustive()
    }
}

/// λᵢ of `me` among the signers of a package (RFC 9591 §4.2, frost's
/// `derive_interpolating_value`, to which the tests compare it): Π xⱼ / Π (xⱼ − xᵢ) over the
/// other signers j. The identifiers are public, so the division is the suite's inversion of a
/// public scalar ([`Suite::invert_public`]), where frost's is in constant time.
fn interpolating_value<S: Suite>(
    me: &Identifier<S>,
    signers: impl Iterator<Item = Identifier<S>>,
) -> Result<Scalar<S>, Error<S>> {
    let mut numerator = <ScalarField<S> as Field>::one();
    let mut denominator = <ScalarField<S> as Field>::one();
    let mut found = false;
    for id in signers {
        if id == *me {
            found = true;
            continue;
        }
        numerator = numerator * id.to_scalar();
        denominator = denominator * (id.to_scalar() - me.to_scalar());
    }
    if !found {
        return Err(Error::UnknownIdentifier);
    }
    let inverse = S::invert_public(&denominator).ok_or(Error::DuplicatedIdentifier)?;
    Ok(numerator * inverse)
}

/// This signer's share of `package` with `nonces` and `key` (frost's `round2::sign`), and the
/// group commitment R it computed on the way (serialized), which it sends with the share so
/// that the coordinator need not compute it ([`aggregate`]). The nonces are consumed (zeroized
/// as they drop), whatever the outcome.
pub fn sign<S: Suite>(
    package: &WirePackage<S>,
    nonces: Nonces<S>,
    key: &SigningKey<S>,
) -> Result<(SignatureShare<S>, EncodedElement<S>), Error<S>> {
    let signing_package = package.package();
    let commitments = signing_package.signing_commitments();
    if commitments.len() < usize::from(*key.package.min_signers()) {
        return Err(Error::IncorrectNumberOfCommitments);
    }
    let me = key.identifier();
    let own = commitments.get(me).ok_or(Error::MissingCommitment)?;
    if nonces.commitments() != own {
        return Err(Error::IncorrectCommitment);
    }
    let encoded_key = key.key.as_slice();
    let factors = binding_factors(encoded_key, package)?;
    let r = group_commitment(package, &factors)?;
    // R encoded once: for the challenge, the nonces' sign, and the coordinator.
    let encoded_r = <S::Group as Group>::serialize(&r)?;
    let position = commitments
        .keys()
        .position(|id| id == me)
        .ok_or(Error::MissingCommitment)?;
    let rho = factors[position];
    let lambda = interpolating_value(me, commitments.keys().copied())?;
    let challenge =
        S::challenge_of_encoded(encoded_r.as_ref(), encoded_key, signing_package.message());
    let mut nonce = nonces.hiding() + nonces.binding() * rho;
    if S::negates_nonces(encoded_r.as_ref()) {
        nonce = <ScalarField<S> as Field>::zero() - nonce;
    }
    let z = nonce + lambda * key.package.signing_share().to_scalar() * challenge;
    let share = SignatureShare::deserialize(<ScalarField<S> as Field>::serialize(&z).as_ref())?;
    Ok((share, encoded_r))
}

/// The signature of `package` from `shares`: frost's `aggregate_custom`. The signature is
/// computed here and verified: with `claimed` as its R if given (the group commitment the
/// signers sent with their shares), and if that does not verify, with R computed from the
/// package. Only when that does not verify either (or frost would refuse the inputs) does
/// frost aggregate, find the cheaters with `detection`, and give its error.
///
/// A wrong `claimed` costs the computation of R and nothing else: a signature verifies with
/// one R only (for taproot, R or −R, which its x-only encoding writes alike), and no share is
/// judged against a claimed R.
pub fn aggregate<S: Suite>(
    package: &WirePackage<S>,
    shares: &BTreeMap<Identifier<S>, SignatureShare<S>>,
    public_keys: &PublicKeyPackage<S>,
    detection: CheaterDetection,
    claimed: Option<&Element<S>>,
) -> Result<Signature<S>, Error<S>> {
    if let Some(r) = claimed {
        if let Ok(Some(signature)) = verified_aggregate(package, shares, public_keys, Some(r)) {
            return Ok(signature);
        }
    }
    match verified_aggregate(package, shares, public_keys, None) {
        Ok(Some(signature)) => Ok(signature),
        _ => aggregate_custom(package.package(), shares, public_keys, detection),
    }
}

/// The aggregate signature, if frost would accept the inputs and it verifies, with R = `r`, or
/// the group commitment of `package` if `r` is `None`.
fn verified_aggregate<S: Suite>(
    package: &WirePackage<S>,
    shares: &BTreeMap<Identifier<S>, SignatureShare<S>>,
    public_keys: &PublicKeyPackage<S>,
    r: Option<&Element<S>>,
) -> Result<Option<Signature<S>>, Error<S>> {
    let signing_package = package.package();
    let commitments = signing_package.signing_commitments();
    let complete = commitments.len() == shares.len()
        && commitments
            .keys()
            .all(|id| shares.contains_key(id) && public_keys.verifying_shares().contains_key(id))
        && public_keys
            .min_signers()
            .is_none_or(|min| shares.len() >= usize::from(min));
    if !complete {
        return Ok(None);
    }
    let (hooked_package, shares, public_keys) =
        S::pre_aggregate(signing_package, shares, public_keys)?;
    if matches!(hooked_package, Cow::Owned(_)) {
        return Ok(None);
    }
    let r = match r {
        Some(r) => *r,
        None => {
            let key = public_keys.verifying_key().serialize()?;
            group_commitment(package, &binding_factors(&key, package)?)?
        }
    };
    let mut z = <ScalarField<S> as Field>::zero();
    for share in shares.values() {
        let bytes = share.serialize();
        let serialization = <ScalarField<S> as Field>::Serialization::try_from(bytes.as_slice())
            .map_err(|_| Error::MalformedSignature)?;
        z = z + <ScalarField<S> as Field>::deserialize(&serialization)?;
    }
    let signature = Signature::new(r, z);
    Ok(verifies(
        public_keys.verifying_key(),
        signing_package.message(),
        &signature,
    )
    .then_some(signature))
}

/// Whether `signature` of `message` verifies under `key`, as frost's `VerifyingKey::verify`
/// decides: the suite's `pre_verify` hook (taproot: the key and R with even y), its challenge,
/// and the verification equation as one double-base multiplication
/// ([`Suite::signature_equation_holds`]; the signature and the key are public).
fn verifies<S: Suite>(key: &VerifyingKey<S>, message: &[u8], signature: &Signature<S>) -> bool {
    let Ok((message, signature, key)) = S::pre_verify(message, signature, key) else {
        return false;
    };
    let Ok(challenge) = S::challenge(signature.R(), &key, &message) else {
        return false;
    };
    S::signature_equation_holds(
        signature.z(),
        &key.to_element(),
        &challenge.to_scalar(),
        signature.R(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::Derivation;
    use frost_core::keys::{generate_with_dealer, IdentifierList, KeyPackage};
    use frost_core::{round1, SigningPackage};
    use permafrost_wire::{Curve, DerivationPath, KeyId};
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};
    use std::collections::BTreeSet;

    type Ed = frost_ed25519::Ed25519Sha512;
    type Secp = frost_secp256k1::Secp256K1Sha256;
    type Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

    /// frost's nonces as [`Nonces`].
    fn ours_of<S: Suite>(nonces: &frost_core::round1::SigningNonces<S>) -> Nonces<S> {
        Nonces::from_scalars(nonces.hiding().to_scalar(), nonces.binding().to_scalar()).unwrap()
    }

    /// On random keys (also child keys), signer sets and messages, each share and the aggregate
    /// equal frost's, bit for bit; a wrong share makes the aggregate frost's error naming it.
    fn equal_to_frost<S: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
        // (nonces negated, key already even) of each signature: taproot must meet all four.
        let mut parities = std::collections::BTreeSet::new();
        for (round, (n, t)) in [(3, 2), (5, 3), (5, 5), (7, 4), (3, 2), (5, 3)]
            .into_iter()
            .cycle()
            .take(24)
            .enumerate()
        {
            let (shares, public) =
                generate_with_dealer::<S, _>(n, t, IdentifierList::Default, &mut rng).unwrap();
            let public = S::finish_dkg_public_key_package(public);
            let mut keys: BTreeMap<_, _> = shares
                .into_iter()
                .map(|(id, share)| {
                    let key = S::finish_child_key_package(KeyPackage::try_from(share).unwrap());
                    (id, key)
                })
                .collect();
            let mut public = public;
            if round % 3 == 2 {
                // A child key: the same arithmetic on derived packages.
                let path = DerivationPath::new(vec![7, 1]).unwrap();
                let key_id = KeyId::new("child").unwrap();
                let derivation =
                    Derivation::of_key(&key_id, public.verifying_key(), &path).unwrap();
                keys = keys
                    .into_iter()
                    .map(|(id, k)| (id, derivation.key_package(&k)))
                    .collect();
                public = derivation.public_key_package(&public);
            }
            let signers: Vec<_> = keys
                .keys()
                .copied()
                .skip(round % 2)
                .take(t.into())
                .collect();
            let mut nonces = BTreeMap::new();
            let mut commitments = BTreeMap::new();
            for id in &signers {
                let (n, c) = round1::commit(keys[id].signing_share(), &mut rng);
                commitments.insert(*id, c);
                nonces.insert(*id, (ours_of(&n), n));
            }
            let message = vec![round as u8; round * 7];
            let package = SigningPackage::new(commitments, &message);
            let bytes = package.serialize().unwrap();
            let read = super::super::parse_signing_package::<S>(&bytes, None, None).unwrap();
            let mut ours = BTreeMap::new();
            let mut claimed = BTreeSet::new();
            for id in &signers {
                let (mine, frosts) = nonces.remove(id).unwrap();
                let theirs = frost_core::round2::sign(&package, &frosts, &keys[id]).unwrap();
                let (share, r) = sign(&read, mine, &SigningKey::new(&keys[id]).unwrap()).unwrap();
                assert_eq!(share, theirs, "round {round}");
                ours.insert(*id, share);
                claimed.insert(r.as_ref().to_vec());
            }
            let theirs =
                aggregate_custom(&package, &ours, &public, CheaterDetection::AllCheaters).unwrap();
            // Every signer computed the signature's R; aggregated with it, with none, or with a
            // wrong one (R moved by G), the signature is frost's.
            let serialized_r = <S::Group as Group>::serialize(theirs.R()).unwrap();
            assert_eq!(
                claimed.into_iter().collect::<Vec<_>>(),
                vec![serialized_r.as_ref().to_vec()]
            );
            let moved = *theirs.R() + <S::Group as Group>::generator();
            for claim in [Some(theirs.R()), None, Some(&moved)] {
                let signature =
                    aggregate(&read, &ours, &public, CheaterDetection::AllCheaters, claim);
                assert_eq!(signature.unwrap(), theirs, "round {round}");
            }
            let key = &keys[&signers[0]];
            let even = S::signing_key_package(key).verifying_key() == key.verifying_key();
            parities.insert((S::negates_nonces(serialized_r.as_ref()), even));
            public.verifying_key().verify(&message, &theirs).unwrap();
            verification_equal_to_frosts(public.verifying_key(), &message, &theirs);
            // A share of another package: the aggregate fails as frost's does, naming it.
            let cheater = signers[round % signers.len()];
            let mut wrong = ours.clone();
            wrong.insert(cheater, ours[&signers[(round + 1) % signers.len()]]);
            let frost = aggregate_custom(&package, &wrong, &public, CheaterDetection::AllCheaters);
            for claim in [Some(theirs.R()), None] {
                let ours = aggregate(&read, &wrong, &public, CheaterDetection::AllCheaters, claim);
                assert!(
                    matches!(&ours, Err(Error::InvalidSignatureShare { culprits }) if *culprits == vec![cheater]),
                    "{ours:?}"
                );
                assert_eq!(ours, frost);
            }
        }
        let expected = match S::CURVE {
            permafrost_wire::Curve::Secp256k1Tr => 4,
            _ => 1,
        };
        assert_eq!(parities.len(), expected, "{parities:?}");
    }

    /// [`verifies`] decides as frost's `VerifyingKey::verify` on a valid signature and on
    /// variations of it: another message, the negated key, R moved or negated, z moved (taproot
    /// accepts the negated key and R: only their x coordinates count).
    fn verification_equal_to_frosts<S: Suite>(
        key: &VerifyingKey<S>,
        message: &[u8],
        signature: &Signature<S>,
    ) {
        let generator = <S::Group as Group>::generator();
        let identity = <S::Group as Group>::identity();
        let one = <ScalarField<S> as Field>::one();
        // What `Suite::signature_equation_holds` leaves out.
        assert!(<S::Group as Group>::cofactor() == one);
        let (r, z) = (*signature.R(), *signature.z());
        let longer = [message, b"!"].concat();
        let negated_key = VerifyingKey::new(identity - key.to_element());
        let variants = [
            (*key, message, Signature::new(r, z), true),
            (*key, &longer[..], Signature::new(r, z), false),
            (
                negated_key,
                message,
                Signature::new(r, z),
                S::CURVE == Curve::Secp256k1Tr,
            ),
            (*key, message, Signature::new(r + generator, z), false),
            (
                *key,
                message,
                Signature::new(identity - r, z),
                S::CURVE == Curve::Secp256k1Tr,
            ),
            (*key, message, Signature::new(r, z + one), false),
        ];
        for (i, (key, message, signature, valid)) in variants.into_iter().enumerate() {
            assert_eq!(verifies(&key, message, &signature), valid, "variant {i}");
            assert_eq!(
                key.verify(message, &signature).is_ok(),
                valid,
                "variant {i}"
            );
        }
    }

    /// frost's ed25519 verification has no cofactor (its group's cofactor is 1: every element
    /// it decodes is in the prime-order subgroup): a signature whose R has a small-order
    /// component, valid under the cofactored equation, is refused, by frost and by [`verifies`].
    #[test]
    fn ed25519_verification_is_frosts_without_the_cofactor() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::Scalar as DalekScalar;
        let secret = DalekScalar::from(0x5eed_u64);
        let nonce = DalekScalar::from(0xfeed_u64);
        let key = VerifyingKey::<Ed>::new(ED25519_BASEPOINT_POINT * secret);
        let message = b"pay 10";
        for (i, torsion) in EIGHT_TORSION.iter().enumerate() {
            let r = ED25519_BASEPOINT_POINT * nonce + torsion;
            let challenge = Ed::challenge(&r, &key, message).unwrap().to_scalar();
            let signature = Signature::<Ed>::new(r, nonce + challenge * secret);
            // Only the first of the eight torsion points is the identity.
            let valid = i == 0;
            assert_eq!(
                key.verify(message, &signature).is_ok(),
                valid,
                "torsion {i}"
            );
            assert_eq!(verifies(&key, message, &signature), valid, "torsion {i}");
        }
    }

    /// A key with a small-order component (frost never decodes one, but the equation must not
    /// depend on it): for each torsion point T and a range of messages, [`verifies`] decides as
    /// frost does, accepting exactly when c·T is the identity — both outcomes occur.
    #[test]
    fn ed25519_verification_is_frosts_for_a_key_with_torsion() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::Scalar as DalekScalar;
        let secret = DalekScalar::from(0x5eed_u64);
        let nonce = DalekScalar::from(0xfeed_u64);
        let r = ED25519_BASEPOINT_POINT * nonce;
        let mut outcomes = std::collections::BTreeSet::new();
        for torsion in &EIGHT_TORSION[1..] {
            let key = VerifyingKey::<Ed>::new(ED25519_BASEPOINT_POINT * secret + torsion);
            for m in 0..32u8 {
                let message = [m; 9];
                let challenge = Ed::challenge(&r, &key, &message).unwrap().to_scalar();
                let signature = Signature::<Ed>::new(r, nonce + challenge * secret);
                let frost = key.verify(&message, &signature).is_ok();
                assert_eq!(verifies(&key, &message, &signature), frost, "message {m}");
                outcomes.insert(frost);
            }
        }
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    }

    #[test]
    fn shares_and_aggregates_equal_frosts() {
        equal_to_frost::<Ed>();
        equal_to_frost::<Secp>();
        equal_to_frost::<Tr>();
    }

    /// λ of each signer of random sets of random identifiers is frost's; a signer outside the
    /// set is refused with frost's error.
    fn interpolating_values_equal_frosts<S: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(0x1a9);
        for size in [1usize, 2, 3, 5, 9] {
            let ids: BTreeSet<Identifier<S>> = (0..size)
                .map(|_| {
                    let bytes = rng.next_u64().to_le_bytes();
                    Identifier::derive(&bytes).unwrap()
                })
                .collect();
            for me in &ids {
                let ours = interpolating_value(me, ids.iter().copied()).unwrap();
                let frosts = frost_core::compute_lagrange_coefficient(&ids, None, *me).unwrap();
                assert!(ours == frosts, "{size} signers");
            }
            let outsider = Identifier::derive(b"not a signer").unwrap();
            assert!(matches!(
                interpolating_value(&outsider, ids.iter().copied()),
                Err(Error::UnknownIdentifier)
            ));
        }
    }

    #[test]
    fn interpolating_values_equal_frosts_on_every_suite() {
        interpolating_values_equal_frosts::<Ed>();
        interpolating_values_equal_frosts::<Secp>();
        interpolating_values_equal_frosts::<Tr>();
    }

    /// A signer refuses what frost's `round2::sign` refuses, with the same error.
    fn refusals<S: Suite>() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (shares, _) =
            generate_with_dealer::<S, _>(5, 3, IdentifierList::Default, &mut rng).unwrap();
        let keys: Vec<KeyPackage<S>> = shares
            .into_values()
            .map(|s| KeyPackage::try_from(s).unwrap())
            .collect();
        let committed: Vec<_> = keys
            .iter()
            .map(|k| round1::commit(k.signing_share(), &mut rng))
            .collect();
        let package_of = |members: &[usize]| {
            let package = SigningPackage::new(
                members
                    .iter()
                    .map(|m| (*keys[*m].identifier(), committed[*m].1))
                    .collect(),
                b"m",
            );
            let bytes = package.serialize().unwrap();
            let read = super::super::parse_signing_package::<S>(&bytes, None, None).unwrap();
            (package, read)
        };
        for (members, signer, nonce) in [
            (&[0, 1][..], 0, 0), // fewer than t
            (&[0, 1, 2], 3, 3),  // the signer is not in it
            (&[0, 1, 2], 0, 1),  // another member's nonces
        ] {
            let (package, read) = package_of(members);
            let theirs = frost_core::round2::sign(&package, &committed[nonce].0, &keys[signer]);
            let ours = sign(
                &read,
                ours_of(&committed[nonce].0),
                &SigningKey::new(&keys[signer]).unwrap(),
            );
            assert!(theirs.is_err());
            assert_eq!(ours.map(|(share, _)| share), theirs);
        }
    }

    #[test]
    fn refusals_equal_frosts() {
        refusals::<Ed>();
        refusals::<Secp>();
        refusals::<Tr>();
    }
}
