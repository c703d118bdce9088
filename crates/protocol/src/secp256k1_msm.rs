//! Variable-time multi-scalar multiplication on secp256k1, for **public** points and scalars
//! only: the group commitment of a signing package (commitments and binding factors are sent
//! or derived in the clear) and the verification of a signature.
//!
//! Each scalar k is split as k = k₁ + k₂·λ (mod n) with |k₁|, |k₂| < 2¹²⁸, where λ is the
//! eigenvalue of the curve's endomorphism (x, y) ↦ (β·x, y) (k256's
//! `ProjectivePoint::endomorphism`); each half is written in width-5 non-adjacent form, and
//! the sum is computed with one run of about 129 doublings, adding a precomputed odd multiple
//! (P, 3P, …, 15P, or its image under the endomorphism) for each nonzero digit, about one
//! position in six. k256's `lincomb` makes the same split but, being constant time, adds an
//! entry selected in constant time for every 4-bit window of every half. The time taken here
//! depends on the scalars: never use it with a secret.
//!
//! The split follows the Guide to Elliptic Curve Cryptography (Hankerson, Menezes, Vanstone),
//! algorithm 3.74, with the divisions replaced by rounded multiplications by precomputed
//! constants (g₁ = round(2³⁸⁴·b₂/n), g₂ = round(2³⁸⁴·(−b₁)/n)), as libsecp256k1 does.

use k256::elliptic_curve::bigint::U256;
use k256::elliptic_curve::ops::{LinearCombinationExt, Reduce};
use k256::elliptic_curve::scalar::IsHigh;
use k256::{ProjectivePoint, Scalar};

/// round(2³⁸⁴·b₂/n).
const G1: U256 =
    U256::from_be_hex("3086d221a7d46bcde86c90e49284eb153daa8a1471e8ca7fe893209a45dbb031");
/// round(2³⁸⁴·(−b₁)/n).
const G2: U256 =
    U256::from_be_hex("e4437ed6010e88286f547fa90abfe4c4221208ac9df506c61571b4ae8ac47f71");
/// −b₁ = 0xe4437ed6010e88286f547fa90abfe4c3.
const MINUS_B1: U256 =
    U256::from_be_hex("00000000000000000000000000000000e4437ed6010e88286f547fa90abfe4c3");
/// −b₂ mod n, with b₂ = 0x3086d221a7d46bcde86c90e49284eb15.
const MINUS_B2: U256 =
    U256::from_be_hex("fffffffffffffffffffffffffffffffe8a280ac50774346dd765cda83db1562c");
/// −λ mod n.
const MINUS_LAMBDA: U256 =
    U256::from_be_hex("ac9c52b33fa3cf1f5ad9e3fd77ed9ba4a880b9fc8ec739c2e0cfc810b51283cf");

/// Digits of a non-adjacent form of a number below 2¹²⁸ (at most one more than its bits).
const NAF_LEN: usize = 129;
/// Odd multiples kept per point: P, 3P, …, 15P (width 5).
const TABLE_LEN: usize = 8;

/// Σ kᵢ·Pᵢ over `terms`, in variable time (see the module documentation).
pub(crate) fn multiscalar_mul_vartime(terms: &[(ProjectivePoint, Scalar)]) -> ProjectivePoint {
    let mut digits = Vec::with_capacity(2 * terms.len());
    let mut tables = Vec::with_capacity(2 * terms.len());
    for (point, scalar) in terms {
        let Some([(k1, k1_negative), (k2, k2_negative)]) = split(scalar) else {
            // Not reached: both halves of the split are below 2¹²⁸ for every scalar (the
            // Guide's lemma; the tests check it). Should it fail, the constant-time sum is
            // still right.
            return ProjectivePoint::lincomb_ext(terms);
        };
        let table = odd_multiples(point);
        digits.push(non_adjacent_form(k1, k1_negative));
        tables.push(table);
        digits.push(non_adjacent_form(k2, k2_negative));
        tables.push(table.map(|p| p.endomorphism()));
    }
    let mut sum = ProjectivePoint::IDENTITY;
    let mut started = false;
    for position in (0..NAF_LEN).rev() {
        if started {
            sum = sum.double();
        }
        for (naf, table) in digits.iter().zip(&tables) {
            let digit = naf[position];
            // A digit is odd and below 16 in absolute value: entry |d| / 2 holds |d|·P.
            let entry = usize::from(digit.unsigned_abs() / 2);
            if digit > 0 {
                sum += table[entry];
                started = true;
            } else if digit < 0 {
                sum -= table[entry];
                started = true;
            }
        }
    }
    sum
}

/// P, 3P, 5P, …, 15P.
fn odd_multiples(point: &ProjectivePoint) -> [ProjectivePoint; TABLE_LEN] {
    let twice = point.double();
    let mut table = [*point; TABLE_LEN];
    for i in 1..TABLE_LEN {
        table[i] = table[i - 1] + twice;
    }
    table
}

/// k = k₁ + k₂·λ (mod n): each half as its absolute value and whether it is negative. `None`
/// if a half does not fit in 128 bits (not reached: see [`multiscalar_mul_vartime`]).
fn split(k: &Scalar) -> Option<[(u128, bool); 2]> {
    let reduce = <Scalar as Reduce<U256>>::reduce;
    let k_int = U256::from(k);
    let c1 = reduce(mul_shift_384_rounded(&k_int, &G1));
    let c2 = reduce(mul_shift_384_rounded(&k_int, &G2));
    let k2 = c1 * reduce(MINUS_B1) + c2 * reduce(MINUS_B2);
    let k1 = *k + k2 * reduce(MINUS_LAMBDA);
    let half = |h: Scalar| -> Option<(u128, bool)> {
        let negative = bool::from(h.is_high());
        let magnitude = if negative { -h } else { h };
        let bytes = magnitude.to_bytes();
        let (high, low) = bytes.split_at(16);
        if high.iter().any(|b| *b != 0) {
            return None;
        }
        Some((u128::from_be_bytes(low.try_into().ok()?), negative))
    };
    Some([half(k1)?, half(k2)?])
}

/// round(a·b / 2³⁸⁴), for a, b below 2²⁵⁶.
fn mul_shift_384_rounded(a: &U256, b: &U256) -> U256 {
    let (_low, high) = a.mul_wide(b);
    // Bits 384 and up are `high`'s from 128; bit 383, which rounds, is `high`'s bit 127.
    let quotient = high.shr_vartime(128);
    let round = high.shr_vartime(127).bitand(&U256::ONE);
    quotient.wrapping_add(&round)
}

/// The width-5 non-adjacent form of `magnitude` (negated if `negative`): digits dᵢ, each 0 or
/// odd with |dᵢ| < 16, any two nonzero ones at least 5 positions apart, and Σ dᵢ·2ⁱ the
/// (signed) number.
fn non_adjacent_form(magnitude: u128, negative: bool) -> [i8; NAF_LEN] {
    let mut naf = [0i8; NAF_LEN];
    let window = |position: usize| -> u8 {
        if position >= 128 {
            0
        } else {
            // Five bits, so the cast keeps them all.
            ((magnitude >> position) & 0x1f) as u8
        }
    };
    let mut position = 0;
    let mut carry = 0u8;
    while position < NAF_LEN {
        let value = carry + window(position);
        if value & 1 == 0 {
            // An even window leaves the carry as it was: the next bit decides.
            position += 1;
            continue;
        }
        // value is odd and at most 32: below 16 it is the digit, else value − 32 with a carry.
        let digit = if value < 16 {
            carry = 0;
            value as i8
        } else {
            carry = 1;
            value as i8 - 32
        };
        naf[position] = if negative { -digit } else { digit };
        position += 5;
    }
    naf
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::Field;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn scalar_of(bytes: [u8; 32]) -> Scalar {
        <Scalar as Reduce<U256>>::reduce(U256::from_be_slice(&bytes))
    }

    /// Scalars where a split or a form could go wrong: small, near n, near 2¹²⁸ and 2²⁵⁵,
    /// λ and −λ themselves (a half of zero), and their neighbours.
    fn edge_scalars() -> Vec<Scalar> {
        let lambda = -<Scalar as Reduce<U256>>::reduce(MINUS_LAMBDA);
        let two_128 = Scalar::from(2u64).pow_vartime([128]);
        let two_255 = Scalar::from(2u64).pow_vartime([255]);
        let mut edges = vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(15u64),
            Scalar::from(16u64),
        ];
        for base in [
            two_128,
            two_255,
            lambda,
            -lambda,
            Scalar::ZERO,
            Scalar::from(2u64).invert().unwrap(),
        ] {
            for delta in [-Scalar::ONE, Scalar::ZERO, Scalar::ONE] {
                edges.push(base + delta);
            }
        }
        edges
    }

    #[test]
    fn splits_are_exact_and_short() {
        let lambda = -<Scalar as Reduce<U256>>::reduce(MINUS_LAMBDA);
        assert_eq!(
            lambda * lambda * lambda,
            Scalar::ONE,
            "λ is a cube root of 1"
        );
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let randoms = (0..2000).map(|_| Scalar::random(&mut rng));
        for k in edge_scalars().into_iter().chain(randoms) {
            let [(k1, n1), (k2, n2)] = split(&k).expect("both halves below 2^128");
            let signed = |m: u128, negative: bool| {
                let s = <Scalar as Reduce<U256>>::reduce(U256::from_u128(m));
                if negative {
                    -s
                } else {
                    s
                }
            };
            assert_eq!(signed(k1, n1) + signed(k2, n2) * lambda, k);
        }
    }

    #[test]
    fn forms_are_non_adjacent_and_exact() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let magnitudes = [0u128, 1, 15, 16, 31, 32, u128::MAX, u128::MAX - 1, 1 << 127]
            .into_iter()
            .chain((0..2000).map(|_| {
                let mut bytes = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut rng, &mut bytes);
                u128::from_le_bytes(bytes)
            }));
        for magnitude in magnitudes {
            for negative in [false, true] {
                let naf = non_adjacent_form(magnitude, negative);
                let mut value = Scalar::ZERO;
                let mut last = None;
                for (position, digit) in naf.iter().enumerate().rev() {
                    value = value.double();
                    if *digit == 0 {
                        continue;
                    }
                    assert!(digit % 2 != 0 && digit.unsigned_abs() < 16, "{digit}");
                    if let Some(last) = last {
                        assert!(last >= position + 5, "digits at {last} and {position}");
                    }
                    last = Some(position);
                    let d = Scalar::from(u64::from(digit.unsigned_abs()));
                    value += if *digit < 0 { -d } else { d };
                }
                let expected = <Scalar as Reduce<U256>>::reduce(U256::from_u128(magnitude));
                assert_eq!(value, if negative { -expected } else { expected });
            }
        }
    }

    /// Equal to k256's constant-time linear combination on edge cases: zero and edge scalars,
    /// the identity, one point twice, a point and its negation, the generator.
    #[test]
    fn equal_to_lincomb_on_edges() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let p = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
        let q = ProjectivePoint::GENERATOR * Scalar::random(&mut rng);
        let points = [
            ProjectivePoint::IDENTITY,
            ProjectivePoint::GENERATOR,
            p,
            -p,
            q,
        ];
        let edges = edge_scalars();
        for a in &edges {
            for b in &edges {
                for (x, y) in [(p, q), (p, p), (p, -p), (points[0], q), (points[1], p)] {
                    let terms = [(x, *a), (y, *b)];
                    assert_eq!(
                        multiscalar_mul_vartime(&terms),
                        ProjectivePoint::lincomb_ext(&terms[..]),
                        "{a:?} {b:?}"
                    );
                }
            }
        }
        assert_eq!(multiscalar_mul_vartime(&[]), ProjectivePoint::IDENTITY);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Equal to k256's constant-time linear combination on random points and scalars, one
        /// to six terms.
        #[test]
        fn equal_to_lincomb(
            seeds in proptest::collection::vec((any::<[u8; 32]>(), any::<[u8; 32]>()), 1..7)
        ) {
            let terms: Vec<(ProjectivePoint, Scalar)> = seeds
                .iter()
                .map(|(p, k)| (ProjectivePoint::GENERATOR * scalar_of(*p), scalar_of(*k)))
                .collect();
            prop_assert_eq!(
                multiscalar_mul_vartime(&terms),
                ProjectivePoint::lincomb_ext(&terms[..])
            );
        }
    }
}
