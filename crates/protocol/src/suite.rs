use std::borrow::Cow;

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::{Ciphersuite, Element, Group, GroupError, Scalar, VerifyingKey};
use permafrost_wire::Curve;

use crate::derive::DerivationScheme;

/// A FROST ciphersuite Permafrost serves, with what the protocol needs to know about it.
pub trait Suite: Ciphersuite + Send + Sync + 'static {
    /// The curve name on the wire and in the API.
    const CURVE: Curve;

    /// How a child key is derived, one level at a time (see [`crate::derive`]).
    const DERIVATION: DerivationScheme;

    /// The 4 bytes that name this suite in frost's serialized packages, after the format
    /// version byte (the big-endian CRC-32 of the ciphersuite id).
    const FROST_SHORT_ID: [u8; 4];

    /// Bytes of one serialized group element.
    const ELEMENT_LEN: usize;

    /// Bytes of one serialized scalar (an identifier).
    const SCALAR_LEN: usize;

    /// Turns the public key package computed from the DKG commitments into the one frost's DKG
    /// hands the members (frost's `post_dkg` hook: the unspendable BIP-341 tweak for taproot,
    /// nothing for the others). The DKG coordinator uses this to check the members' result.
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self>;

    /// Turns a derived child key into the key its signatures verify under: the BIP-341 tweak
    /// with no script path for taproot (BIP-86), nothing for the others.
    fn finish_child_verifying_key(key: VerifyingKey<Self>) -> VerifyingKey<Self> {
        key
    }

    /// [`Suite::finish_child_verifying_key`] applied to a signer's child key package.
    fn finish_child_key_package(package: KeyPackage<Self>) -> KeyPackage<Self> {
        package
    }

    /// [`Suite::finish_child_verifying_key`] applied to a child public key package.
    fn finish_child_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }

    /// Decodes a group element that is *public* (a nonce commitment read from the wire),
    /// refusing what frost's `Group::deserialize` refuses (a malformed encoding, the identity,
    /// an element outside the prime-order subgroup), and accepting only frost's own encoding
    /// of what it returns: frost also accepts a few other encodings of a point. It may take
    /// time that depends on the element, which is why it is only for public ones.
    fn decode_public_element(
        bytes: &<Self::Group as Group>::Serialization,
    ) -> Result<Element<Self>, GroupError> {
        let element = Self::decode_public_element_of_any_order(bytes)?;
        Self::check_prime_order(&element)?;
        Ok(element)
    }

    /// [`Suite::decode_public_element`] without its last check, that the element lies in the
    /// prime-order subgroup ([`Suite::check_prime_order`]): for a coordinator, which checks
    /// only when a signer refuses a package (every signer checks every point it is sent).
    fn decode_public_element_of_any_order(
        bytes: &<Self::Group as Group>::Serialization,
    ) -> Result<Element<Self>, GroupError>;

    /// Whether a decoded element lies in the prime-order subgroup, as frost requires of every
    /// element it decodes (`InvalidNonPrimeOrderElement` if not). In variable time: for public
    /// elements only.
    fn check_prime_order(element: &Element<Self>) -> Result<(), GroupError>;

    /// RFC 9591's group commitment Σ (Dᵢ + ρᵢ·Eᵢ) of public commitments: each term is
    /// (hiding Dᵢ, binding Eᵢ, binding factor ρᵢ). It may take time that depends on them:
    /// the binding terms as one [`Suite::public_linear_combination`] (frost's generic one
    /// multiplies and adds single points), then the hiding commitments added.
    fn group_commitment(terms: &[(Element<Self>, Element<Self>, Scalar<Self>)]) -> Element<Self> {
        let binding: Vec<(Element<Self>, Scalar<Self>)> =
            terms.iter().map(|(_, e, rho)| (*e, *rho)).collect();
        terms.iter().fold(
            Self::public_linear_combination(&binding),
            |sum, (d, _, _)| sum + *d,
        )
    }

    /// Whether a signature (R, z) with challenge c verifies under the key A: whether
    /// z·G − c·A − R is the identity, frost's check (`VerifyingKey::verify_prehashed`, which
    /// also multiplies by the group's cofactor: 1 in all three suites, so not done here). Exact
    /// for any points, also ed25519 points with a small-order component (c·A is computed as
    /// c·(−A), never as (−c)·A, which differs on them). It may take time that depends on its
    /// inputs: for a signature and a key that are public.
    fn signature_equation_holds(
        z: &Scalar<Self>,
        a: &Element<Self>,
        c: &Scalar<Self>,
        r: &Element<Self>,
    ) -> bool;

    /// Σ kᵢ·Pᵢ over public points and public scalars (Feldman commitments, powers of
    /// identifiers), in variable time: never with a secret.
    fn public_linear_combination(terms: &[(Element<Self>, Scalar<Self>)]) -> Element<Self>;

    /// The inverse of a *public* nonzero scalar (a difference of identifiers), `None` for
    /// zero. It may take time that depends on the scalar: never with a secret. By default
    /// frost's constant-time inversion.
    fn invert_public(scalar: &Scalar<Self>) -> Option<Scalar<Self>> {
        <<Self::Group as Group>::Field as frost_core::Field>::invert(scalar).ok()
    }

    /// `scalar` × the group's generator, in constant time (the scalar may be a secret nonce),
    /// with the suite's precomputed tables where it has them.
    fn mul_generator(scalar: &Scalar<Self>) -> Element<Self>;

    /// Overwrites a secret scalar with zero, in a way the compiler does not remove.
    fn zeroize_scalar(scalar: &mut Scalar<Self>);

    /// The key package a signer signs with: frost's `pre_sign` hook for the suite (taproot: the
    /// key with an even y, BIP-340).
    fn signing_key_package(key_package: &KeyPackage<Self>) -> Cow<'_, KeyPackage<Self>> {
        Cow::Borrowed(key_package)
    }

    /// Whether a signer negates its nonces in a signature with group commitment R, given as
    /// `Group::serialize` writes it: BIP-340's taproot signs with the nonce of the even-y
    /// point, as frost's `compute_signature_share` for that suite does.
    fn negates_nonces(_r: &[u8]) -> bool {
        false
    }

    /// The suite's challenge c (frost's `Ciphersuite::challenge`: H2(R ‖ Y ‖ m)) from R and
    /// the key Y as `Group::serialize` writes them, so that neither point is encoded again (an
    /// inversion each). Tested equal to frost's on every suite.
    fn challenge_of_encoded(r: &[u8], key: &[u8], message: &[u8]) -> Scalar<Self> {
        Self::H2(&[r, key, message].concat())
    }
}

impl Suite for frost_ed25519::Ed25519Sha512 {
    const CURVE: Curve = Curve::Ed25519;
    const DERIVATION: DerivationScheme = DerivationScheme::Ed25519Additive;
    const FROST_SHORT_ID: [u8; 4] = [0xb1, 0x69, 0xf0, 0xda];
    const ELEMENT_LEN: usize = 32;
    const SCALAR_LEN: usize = 32;
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }

    /// The decoding and the order of the checks are frost's: the identity is refused first; a
    /// non-canonical encoding decodes to the identity or to a point of small or mixed order
    /// (RFC 8032 §5.1.3, eprint 2020/1244), so it is refused by one check or the other
    /// ([`Suite::check_prime_order`]), as in frost.
    fn decode_public_element_of_any_order(
        bytes: &<Self::Group as Group>::Serialization,
    ) -> Result<Element<Self>, GroupError> {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use curve25519_dalek::traits::IsIdentity;
        let point = CompressedEdwardsY(*bytes)
            .decompress()
            .ok_or(GroupError::MalformedElement)?;
        if point.is_identity() {
            return Err(GroupError::InvalidIdentityElement);
        }
        Ok(point)
    }

    /// frost checks the prime order with a constant-time multiplication by the group order ℓ,
    /// about a quarter of a node's CPU per signature (two points per commitment, every
    /// commitment of every package). A commitment is public, so this multiplies in variable
    /// time instead: P is in the prime-order subgroup iff (ℓ − 1)·P + P is the identity, and
    /// ℓ − 1 is a canonical scalar (−1).
    fn check_prime_order(element: &Element<Self>) -> Result<(), GroupError> {
        use curve25519_dalek::edwards::EdwardsPoint;
        use curve25519_dalek::traits::IsIdentity;
        use curve25519_dalek::Scalar;
        let order_minus_one = -Scalar::ONE;
        let times_order = EdwardsPoint::vartime_double_scalar_mul_basepoint(
            &order_minus_one,
            element,
            &Scalar::ZERO,
        ) + element;
        if times_order.is_identity() {
            Ok(())
        } else {
            Err(GroupError::InvalidNonPrimeOrderElement)
        }
    }

    /// One variable-time double-base multiplication, c·(−A) + z·G, where frost multiplies twice
    /// in constant time.
    fn signature_equation_holds(
        z: &Scalar<Self>,
        a: &Element<Self>,
        c: &Scalar<Self>,
        r: &Element<Self>,
    ) -> bool {
        use curve25519_dalek::edwards::EdwardsPoint;
        use curve25519_dalek::traits::IsIdentity;
        (EdwardsPoint::vartime_double_scalar_mul_basepoint(c, &-a, z) - r).is_identity()
    }

    /// curve25519-dalek's variable-time multi-scalar multiplication.
    fn public_linear_combination(terms: &[(Element<Self>, Scalar<Self>)]) -> Element<Self> {
        use curve25519_dalek::edwards::EdwardsPoint;
        use curve25519_dalek::traits::VartimeMultiscalarMul;
        EdwardsPoint::vartime_multiscalar_mul(
            terms.iter().map(|(_, k)| k),
            terms.iter().map(|(p, _)| p),
        )
    }

    fn mul_generator(scalar: &Scalar<Self>) -> Element<Self> {
        curve25519_dalek::edwards::EdwardsPoint::mul_base(scalar)
    }

    fn zeroize_scalar(scalar: &mut Scalar<Self>) {
        zeroize::Zeroize::zeroize(scalar);
    }
}

/// The arithmetic both secp256k1 suites share (their groups are the same: k256's points and
/// scalars), in each one's `impl Suite`.
macro_rules! secp256k1_arithmetic {
    () => {
        fn decode_public_element_of_any_order(
            bytes: &<Self::Group as Group>::Serialization,
        ) -> Result<Element<Self>, GroupError> {
            decode_compressed_sec1::<Self>(bytes)
        }
        /// secp256k1 has prime order: every point is in the group.
        fn check_prime_order(_element: &Element<Self>) -> Result<(), GroupError> {
            Ok(())
        }
        /// z·G + c·(−A) as one variable-time linear combination (`secp256k1_msm`: one run of
        /// doublings for both; the signature and the key are public), where frost multiplies
        /// twice in constant time.
        fn signature_equation_holds(
            z: &Scalar<Self>,
            a: &Element<Self>,
            c: &Scalar<Self>,
            r: &Element<Self>,
        ) -> bool {
            secp256k1_signature_equation_holds(z, a, c, r)
        }
        /// Our `secp256k1_msm` (GLV split, width-5 NAF).
        fn public_linear_combination(terms: &[(Element<Self>, Scalar<Self>)]) -> Element<Self> {
            crate::secp256k1_msm::multiscalar_mul_vartime(terms)
        }
        /// k256's variable-time inversion (binary, Stein's), several times faster than its
        /// constant-time one.
        fn invert_public(scalar: &Scalar<Self>) -> Option<Scalar<Self>> {
            use k256::elliptic_curve::ops::Invert;
            Option::from(scalar.invert_vartime())
        }
        fn mul_generator(scalar: &Scalar<Self>) -> Element<Self> {
            use k256::elliptic_curve::ops::MulByGenerator;
            k256::ProjectivePoint::mul_by_generator(scalar)
        }
        fn zeroize_scalar(scalar: &mut Scalar<Self>) {
            zeroize::Zeroize::zeroize(scalar);
        }
    };
}

impl Suite for frost_secp256k1::Secp256K1Sha256 {
    const CURVE: Curve = Curve::Secp256k1;
    const DERIVATION: DerivationScheme = DerivationScheme::Bip32;
    const FROST_SHORT_ID: [u8; 4] = [0xee, 0xd6, 0xb1, 0xb1];
    const ELEMENT_LEN: usize = 33;
    const SCALAR_LEN: usize = 32;
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }
    secp256k1_arithmetic!();
}

impl Suite for frost_secp256k1_tr::Secp256K1Sha256TR {
    const CURVE: Curve = Curve::Secp256k1Tr;
    const DERIVATION: DerivationScheme = DerivationScheme::Bip32;
    const FROST_SHORT_ID: [u8; 4] = [0x23, 0x0f, 0x8a, 0xb3];
    const ELEMENT_LEN: usize = 33;
    const SCALAR_LEN: usize = 32;
    secp256k1_arithmetic!();
    fn signing_key_package(key_package: &KeyPackage<Self>) -> Cow<'_, KeyPackage<Self>> {
        use frost_secp256k1_tr::keys::EvenY;
        Cow::Owned(key_package.clone().into_even_y(None))
    }
    /// frost's `compute_signature_share` for this suite negates the nonces when the group
    /// commitment's y is odd: SEC1's tag 3.
    fn negates_nonces(r: &[u8]) -> bool {
        r.first() == Some(&3)
    }
    /// BIP-340's challenge, frost's for this suite: H2 (the tagged hash) of the x coordinates
    /// of R and Y (their SEC1 compressed form without the tag) and the message.
    fn challenge_of_encoded(r: &[u8], key: &[u8], message: &[u8]) -> Scalar<Self> {
        let (r, key) = (
            r.get(1..).unwrap_or_default(),
            key.get(1..).unwrap_or_default(),
        );
        Self::H2(&[r, key, message].concat())
    }
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        use frost_secp256k1_tr::keys::Tweak;
        package.tweak::<&[u8]>(None)
    }
    fn finish_child_verifying_key(key: VerifyingKey<Self>) -> VerifyingKey<Self> {
        // frost tweaks packages, not bare keys: a package with no shares carries the key.
        let package = PublicKeyPackage::new(Default::default(), key, None);
        *Self::finish_child_public_key_package(package).verifying_key()
    }
    fn finish_child_key_package(package: KeyPackage<Self>) -> KeyPackage<Self> {
        use frost_secp256k1_tr::keys::Tweak;
        package.tweak::<&[u8]>(None)
    }
    fn finish_child_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        use frost_secp256k1_tr::keys::Tweak;
        package.tweak::<&[u8]>(None)
    }
}

/// z·G − c·A − R = O on secp256k1 (whose cofactor is 1).
fn secp256k1_signature_equation_holds(
    z: &k256::Scalar,
    a: &k256::ProjectivePoint,
    c: &k256::Scalar,
    r: &k256::ProjectivePoint,
) -> bool {
    use k256::elliptic_curve::group::Group as _;
    let sum = crate::secp256k1_msm::multiscalar_mul_vartime(&[
        (k256::ProjectivePoint::GENERATOR, *z),
        (-*a, *c),
    ]);
    bool::from((sum - r).is_identity())
}

/// A secp256k1 point in SEC1 compressed form, the only form frost writes: tag 2 or 3, then x.
/// frost's decoder (through the `sec1` crate) also takes a 33-byte *compact* point (tag 5) and
/// returns the point that tag 2 would name: that second encoding is refused here, so that one
/// package has one encoding.
fn decode_compressed_sec1<S: Suite>(
    bytes: &<S::Group as Group>::Serialization,
) -> Result<Element<S>, GroupError> {
    match bytes.as_ref().first() {
        Some(2 | 3) => <S::Group as Group>::deserialize(bytes),
        _ => Err(GroupError::MalformedElement),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::round1::SigningCommitments;
    use frost_core::{Field, Identifier};

    /// `challenge_of_encoded` equals the suite's `challenge` (frost's) for R = k·G and keys
    /// 2k·G of either parity; `negates_nonces` says yes for some R only for taproot (that it
    /// says so exactly when frost negates is checked by round2's tests, share for share).
    fn challenge_equals_frosts<S: Suite>() {
        let g = <S::Group as Group>::generator();
        let mut k = <<S::Group as Group>::Field as Field>::one();
        let mut odd = std::collections::BTreeSet::new();
        for round in 0..24u8 {
            k = k + k + <<S::Group as Group>::Field as Field>::one();
            let r = g * k;
            let key = VerifyingKey::<S>::new(g * (k + k));
            let message = vec![round; usize::from(round) * 3];
            let encoded_r = <S::Group as Group>::serialize(&r).unwrap();
            let encoded_key = key.serialize().unwrap();
            assert!(
                S::challenge_of_encoded(encoded_r.as_ref(), &encoded_key, &message)
                    == S::challenge(&r, &key, &message).unwrap().to_scalar(),
                "{:?} round {round}",
                S::CURVE
            );
            let negates = S::negates_nonces(encoded_r.as_ref());
            odd.insert(negates);
        }
        let expected = if S::CURVE == Curve::Secp256k1Tr { 2 } else { 1 };
        assert_eq!(odd.len(), expected, "{:?}", S::CURVE);
    }

    #[test]
    fn the_challenge_from_encoded_points_is_frosts() {
        challenge_equals_frosts::<frost_ed25519::Ed25519Sha512>();
        challenge_equals_frosts::<frost_secp256k1::Secp256K1Sha256>();
        challenge_equals_frosts::<frost_secp256k1_tr::Secp256K1Sha256TR>();
    }

    /// The constants agree with frost's serialization of each suite.
    fn layout_matches_frost<S: Suite>() {
        let element = <S::Group as Group>::serialize(&<S::Group as Group>::generator()).unwrap();
        assert_eq!(element.as_ref().len(), S::ELEMENT_LEN);
        let scalar = <<S::Group as Group>::Field as Field>::serialize(
            &<<S::Group as Group>::Field as Field>::one(),
        );
        assert_eq!(scalar.as_ref().len(), S::SCALAR_LEN);
        assert_eq!(
            Identifier::<S>::try_from(1u16).unwrap().serialize().len(),
            S::SCALAR_LEN
        );
        let generator =
            frost_core::round1::NonceCommitment::<S>::new(<S::Group as Group>::generator());
        let commitment = SigningCommitments::<S>::new(generator, generator)
            .serialize()
            .unwrap();
        assert_eq!(commitment[0], 0, "format version");
        assert_eq!(
            commitment[1..5],
            S::FROST_SHORT_ID,
            "{:02x?}",
            &commitment[1..5]
        );
        assert_eq!(commitment.len(), 5 + 2 * S::ELEMENT_LEN);
    }

    /// ed25519's variable-time decoding gives what frost's gives, error kind included: on
    /// random bytes (most are not points), on points with every small-order component and on
    /// the small-order points themselves.
    #[test]
    fn ed25519_public_decoding_is_frosts() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use rand_chacha::ChaCha20Rng;
        use rand_core::{RngCore, SeedableRng};
        type Ed = frost_ed25519::Ed25519Sha512;
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut inputs = Vec::new();
        for _ in 0..2000 {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            inputs.push(bytes);
        }
        // y = 1 (the identity) and y = −1 (order 2), x = 0, with the sign bit set: not
        // canonical; y = 0 with either sign bit (order 4).
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        for mut y in [one, minus_one, [0u8; 32]] {
            inputs.push(y);
            y[31] |= 0x80;
            inputs.push(y);
        }
        for k in 1u64..40 {
            let point = ED25519_BASEPOINT_POINT * curve25519_dalek::Scalar::from(k * 7919);
            for torsion in EIGHT_TORSION {
                inputs.push((point + torsion).compress().0);
                inputs.push(torsion.compress().0);
            }
        }
        let mut accepted = 0;
        for bytes in inputs {
            let ours = Ed::decode_public_element(&bytes);
            let frost = <<Ed as Ciphersuite>::Group as Group>::deserialize(&bytes);
            assert_eq!(ours, frost, "{bytes:02x?}");
            accepted += usize::from(ours.is_ok());
        }
        assert!(accepted > 39, "{accepted}");
    }

    /// secp256k1's public decoding refuses exactly what frost refuses, and also every
    /// encoding frost would not write (a compact point, tag 5, which frost takes); what it
    /// accepts is frost's encoding of the result. x = p and x = p + 1 (not field elements)
    /// are refused by both.
    fn sec1_decoding<S: Suite>() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::{RngCore, SeedableRng};
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut inputs = Vec::new();
        let p = hex::decode("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f")
            .unwrap();
        let mut p_plus_one = p.clone();
        p_plus_one[31] += 1;
        for tag in [0u8, 1, 2, 3, 4, 5, 6, 7, 0xff] {
            for _ in 0..200 {
                let mut bytes = [0u8; 33];
                rng.fill_bytes(&mut bytes[1..]);
                bytes[0] = tag;
                inputs.push(bytes.to_vec());
            }
            inputs.push([&[tag][..], &p].concat());
            inputs.push([&[tag][..], &p_plus_one].concat());
        }
        let (mut accepted, mut compact) = (0, 0);
        for bytes in inputs {
            let Ok(serialization) = <S::Group as Group>::Serialization::try_from(bytes.as_slice())
            else {
                panic!("33 bytes are a secp256k1 serialization");
            };
            let ours = S::decode_public_element(&serialization);
            let frost = <S::Group as Group>::deserialize(&serialization);
            match (&ours, &frost) {
                (Ok(point), Ok(theirs)) => {
                    assert!(point == theirs);
                    let again = <S::Group as Group>::serialize(point).unwrap();
                    assert_eq!(again.as_ref(), bytes.as_slice());
                    accepted += 1;
                }
                (Err(_), Ok(_)) => {
                    assert_eq!(bytes[0], 5, "{bytes:02x?}");
                    compact += 1;
                }
                (Ok(_), Err(_)) => panic!("accepted what frost refuses: {bytes:02x?}"),
                (Err(_), Err(_)) => {}
            }
        }
        // About half of all x are on the curve, for tags 2, 3 and 5.
        assert!(accepted > 100, "{accepted}");
        assert!(compact > 50, "frost took {compact} compact points");
    }

    #[test]
    fn sec1_public_decoding_is_frosts_canonical_part() {
        sec1_decoding::<frost_secp256k1::Secp256K1Sha256>();
        sec1_decoding::<frost_secp256k1_tr::Secp256K1Sha256TR>();
    }

    #[test]
    fn layout_constants_match_frost() {
        layout_matches_frost::<frost_ed25519::Ed25519Sha512>();
        layout_matches_frost::<frost_secp256k1::Secp256K1Sha256>();
        layout_matches_frost::<frost_secp256k1_tr::Secp256K1Sha256TR>();
    }
}
