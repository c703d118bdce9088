//! Sizes read from frost's serialized bytes before anything is decoded, so that a package of
//! the wrong shape is refused without decoding a single point (no curve arithmetic).

use crate::Suite;

/// The number of entries the first collection of a frost-serialized package claims — the
/// coefficient commitments of a DKG `round1::Package` — read without decoding any point.
/// frost's postcard layout: format version `0` (1 byte) ‖ ciphersuite id (4 bytes) ‖ LEB128
/// varint count ‖ entries ‖ …. `None` if the bytes do not start that way. Signing packages have
/// their own, stricter reader (`sign::parse_signing_package`).
pub(crate) fn claimed_count(package: &[u8]) -> Option<u64> {
    let (&version, rest) = package.split_first()?;
    if version != 0 {
        return None;
    }
    let mut count = 0u64;
    for (i, byte) in rest.get(4..)?.iter().take(10).enumerate() {
        count |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(count);
        }
    }
    None
}

/// The length of a `VerifiableSecretSharingCommitment::serialize_whole()` of `coefficients`
/// coefficient commitments: one serialized group element each.
pub(crate) fn whole_commitment_len<S: Suite>(coefficients: usize) -> usize {
    coefficients.saturating_mul(S::ELEMENT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::keys::dkg;
    use frost_core::Identifier;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn round1_count<S: Suite>(t: u16) -> Option<u64> {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = Identifier::<S>::try_from(1u16).unwrap();
        let (_, package) = dkg::part1::<S, _>(id, 5, t, &mut rng).unwrap();
        claimed_count(&package.serialize().unwrap())
    }

    fn whole_len<S: Suite>(t: u16) -> (usize, usize) {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = Identifier::<S>::try_from(1u16).unwrap();
        let (_, package) = dkg::part1::<S, _>(id, 5, t, &mut rng).unwrap();
        let whole = package.commitment().serialize_whole().unwrap();
        (whole.len(), whole_commitment_len::<S>(usize::from(t)))
    }

    /// The layout assumption holds for every suite: a real round-1 package claims its
    /// threshold, and a whole commitment is threshold × element bytes.
    #[test]
    fn sizes_read_from_bytes_match_real_packages() {
        for t in [2u16, 3, 5] {
            assert_eq!(
                round1_count::<frost_ed25519::Ed25519Sha512>(t),
                Some(u64::from(t))
            );
            assert_eq!(
                round1_count::<frost_secp256k1::Secp256K1Sha256>(t),
                Some(u64::from(t))
            );
            assert_eq!(
                round1_count::<frost_secp256k1_tr::Secp256K1Sha256TR>(t),
                Some(u64::from(t))
            );
            let (a, b) = whole_len::<frost_ed25519::Ed25519Sha512>(t);
            assert_eq!(a, b);
            let (a, b) = whole_len::<frost_secp256k1::Secp256K1Sha256>(t);
            assert_eq!(a, b);
        }
        assert_eq!(claimed_count(&[1, 0, 0, 0, 0, 3]), None);
        assert_eq!(claimed_count(&[0, 0, 0, 0, 0, 0x80, 0x01]), Some(128));
        assert_eq!(claimed_count(&[0, 0, 0]), None);
    }
}
