//! Commitments and signing packages read from the wire. The bytes are frost's own serialization
//! (postcard), unchanged on the wire; they are parsed here rather than by frost's deserializer
//! so that each point is decoded with [`Suite::decode_public_element`] (nonce commitments are
//! public: for ed25519 the prime-order check then runs in variable time), and so that a signer
//! does not check again a commitment it made itself.
//!
//! What this accepts is a subset of what frost accepts, with the same result, and every
//! serialization frost produces is in it (tests below and `tests/package_parser.rs`). It is
//! stricter in that it takes only frost's own serialization of what it returns: no bytes after
//! the package, no varint longer than it needs to be, members in frost's order and none listed
//! twice (frost keeps the last of two entries). [`agrees_with_frost`] states the contract.

use std::collections::BTreeMap;

use frost_core::round1::{NonceCommitment, SigningCommitments};
use frost_core::{Element, Group, Identifier, SigningPackage};

use crate::{Refusal, Suite};

/// frost's serialization format version, the first byte of every package.
const FORMAT_VERSION: u8 = 0;

/// The contract of [`parse_commitment`] and [`parse_signing_package`] against frost's
/// deserializers, for any `bytes` (tests and the `frost_packages` fuzz target check it): what
/// the parser accepts, frost accepts, with an equal result, and it is frost's own serialization
/// of that result; what frost accepts and serializes back to the same bytes, the parser
/// accepts. `Err` says how the parser broke it.
pub fn agrees_with_frost<S: Suite>(bytes: &[u8]) -> Result<(), String> {
    fn agree<T: PartialEq + std::fmt::Debug>(
        what: &str,
        bytes: &[u8],
        ours: Result<T, Refusal>,
        frost: Option<(T, Vec<u8>)>,
    ) -> Result<(), String> {
        match (ours, frost) {
            (Ok(ours), Some((theirs, again))) if ours == theirs && again == bytes => Ok(()),
            (Ok(ours), theirs) => Err(format!(
                "{what}: accepted {ours:?}; frost: {theirs:?}, from {bytes:02x?}"
            )),
            (Err(refusal), Some((theirs, again))) if again == bytes => Err(format!(
                "{what}: refused frost's own serialization of {theirs:?} ({refusal})"
            )),
            (Err(_), _) => Ok(()),
        }
    }
    let commitment = SigningCommitments::<S>::deserialize(bytes)
        .ok()
        .and_then(|c| Some((c, c.serialize().ok()?)));
    agree(
        "commitment",
        bytes,
        parse_commitment::<S>(bytes),
        commitment,
    )?;
    let package = SigningPackage::<S>::deserialize(bytes)
        .ok()
        .and_then(|p| Some((p.clone(), p.serialize().ok()?)));
    agree(
        "signing package",
        bytes,
        parse_signing_package::<S>(bytes, None),
        package,
    )
}

/// Parses one member's `SigningCommitments::serialize()`: header ‖ hiding ‖ binding.
pub fn parse_commitment<S: Suite>(bytes: &[u8]) -> Result<SigningCommitments<S>, Refusal> {
    let mut reader = Reader::new(bytes, "commitment");
    let commitment = reader.commitment::<S>(None)?;
    reader.finish()?;
    Ok(commitment)
}

/// Parses a `SigningPackage::serialize()`: header ‖ varint count ‖ count × (identifier ‖
/// commitment) ‖ varint length ‖ message. `own` is this signer's identifier and the commitment
/// it made: an entry of that identifier whose points are equal to it is not checked again (a
/// point equal to one this signer made is in the group). Any other entry is checked in full.
pub fn parse_signing_package<S: Suite>(
    bytes: &[u8],
    own: Option<(Identifier<S>, &SigningCommitments<S>)>,
) -> Result<SigningPackage<S>, Refusal> {
    let mut reader = Reader::new(bytes, "signing package");
    reader.header::<S>()?;
    let count = reader.varint()?;
    // Each entry takes at least one identifier's bytes: a count larger than what is left is
    // refused before anything is allocated for it.
    if count > (reader.left() / S::SCALAR_LEN) as u64 {
        return Err(reader.malformed("more commitments claimed than the package holds"));
    }
    let mut commitments = BTreeMap::new();
    for _ in 0..count {
        let id = Identifier::<S>::deserialize(reader.take(S::SCALAR_LEN)?)
            .map_err(|e| reader.malformed(&format!("identifier: {e}")))?;
        match commitments.last_key_value() {
            Some((last, _)) if *last == id => {
                return Err(Refusal::CommitmentSet(
                    "a member's commitment is listed twice".into(),
                ))
            }
            Some((last, _)) if *last > id => {
                return Err(reader.malformed("commitments out of order"))
            }
            _ => {}
        }
        let known = own.and_then(|(me, mine)| (me == id).then_some(mine));
        let commitment = reader.commitment::<S>(known)?;
        commitments.insert(id, commitment);
    }
    let message_len = reader.varint()?;
    let message_len = usize::try_from(message_len)
        .ok()
        .filter(|len| *len <= reader.left())
        .ok_or_else(|| reader.malformed("message longer than the package"))?;
    let message = reader.take(message_len)?;
    reader.finish()?;
    Ok(SigningPackage::new(commitments, message))
}

/// A cursor over frost-serialized bytes; `what` names them in errors.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    fn malformed(&self, problem: &str) -> Refusal {
        Refusal::Malformed(format!("{}: {problem}", self.what))
    }

    fn left(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if n > self.bytes.len() {
            return Err(self.malformed("truncated"));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    /// Format version and ciphersuite: the same header starts a package and each commitment.
    fn header<S: Suite>(&mut self) -> Result<(), Refusal> {
        let header = self.take(5)?;
        if header[0] != FORMAT_VERSION {
            return Err(self.malformed("unknown format version"));
        }
        if header[1..] != S::FROST_SHORT_ID {
            return Err(self.malformed("another ciphersuite"));
        }
        Ok(())
    }

    /// A LEB128 varint as postcard writes it (at most ten bytes, and no longer than needed).
    fn varint(&mut self) -> Result<u64, Refusal> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.take(1)?.first().unwrap_or(&0);
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                return Err(self.malformed("varint overflows"));
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(self.malformed("varint longer than needed"));
                }
                return Ok(value);
            }
        }
        Err(self.malformed("varint overflows"))
    }

    fn element<S: Suite>(&mut self, known: Option<Element<S>>) -> Result<Element<S>, Refusal> {
        let bytes = self.take(S::ELEMENT_LEN)?;
        let serialization = <S::Group as Group>::Serialization::try_from(bytes)
            .map_err(|_| self.malformed("element size"))?;
        // frost decodes its own serialization of a valid point to that point.
        if let Some(known) = known {
            if <S::Group as Group>::serialize(&known).is_ok_and(|own| own.as_ref() == bytes) {
                return Ok(known);
            }
        }
        S::decode_public_element(&serialization).map_err(|e| self.malformed(&format!("point: {e}")))
    }

    /// A `SigningCommitments`; with `known`, points equal to its own are not checked again.
    fn commitment<S: Suite>(
        &mut self,
        known: Option<&SigningCommitments<S>>,
    ) -> Result<SigningCommitments<S>, Refusal> {
        self.header::<S>()?;
        let hiding = self.element::<S>(known.map(|c| c.hiding().value()))?;
        let binding = self.element::<S>(known.map(|c| c.binding().value()))?;
        Ok(SigningCommitments::new(
            NonceCommitment::new(hiding),
            NonceCommitment::new(binding),
        ))
    }

    fn finish(self) -> Result<(), Refusal> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("bytes after the end"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_core::keys::{generate_with_dealer, IdentifierList};
    use frost_core::round1;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    type Ed = frost_ed25519::Ed25519Sha512;
    type Secp = frost_secp256k1::Secp256K1Sha256;
    type Tr = frost_secp256k1_tr::Secp256K1Sha256TR;

    /// A signing package of `t` of 5 members' fresh commitments over `message`.
    fn package<S: Suite>(seed: u64, t: u16, message: &[u8]) -> SigningPackage<S> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (shares, _) =
            generate_with_dealer::<S, _>(5, t, IdentifierList::Default, &mut rng).unwrap();
        let commitments = shares
            .iter()
            .take(usize::from(t))
            .map(|(id, share)| (*id, round1::commit(share.signing_share(), &mut rng).1))
            .collect();
        SigningPackage::new(commitments, message)
    }

    fn frosts_serializations_parse<S: Suite>() {
        for (seed, t, message) in [
            (1, 2, &b""[..]),
            (2, 2, b"settle 1 BTC"),
            (3, 3, &[7u8; 200][..]),
            (4, 5, &[0u8; 128][..]),
        ] {
            let package = package::<S>(seed, t, message);
            let bytes = package.serialize().unwrap();
            assert_eq!(parse_signing_package::<S>(&bytes, None).unwrap(), package);
            agrees_with_frost::<S>(&bytes).unwrap();
            // A signer's own entry, given as known, gives the same package.
            for (id, own) in package.signing_commitments() {
                let parsed = parse_signing_package::<S>(&bytes, Some((*id, own))).unwrap();
                assert_eq!(parsed, package);
            }
            for commitment in package.signing_commitments().values() {
                let bytes = commitment.serialize().unwrap();
                assert_eq!(parse_commitment::<S>(&bytes).unwrap(), *commitment);
                agrees_with_frost::<S>(&bytes).unwrap();
            }
        }
    }

    #[test]
    fn frosts_serializations_parse_to_the_same_value() {
        frosts_serializations_parse::<Ed>();
        frosts_serializations_parse::<Secp>();
        frosts_serializations_parse::<Tr>();
    }

    /// Every single-byte change, every truncation and a byte too many, of a package and of a
    /// commitment: the parser keeps its contract with frost on each.
    fn every_edit_agrees<S: Suite>() {
        let package = package::<S>(9, 3, b"pay 3 to bob");
        let commitment = package
            .signing_commitments()
            .values()
            .next()
            .unwrap()
            .serialize()
            .unwrap();
        for bytes in [package.serialize().unwrap(), commitment] {
            for i in 0..bytes.len() {
                for edit in [0x01u8, 0x02, 0x80, 0xff] {
                    let mut edited = bytes.clone();
                    edited[i] ^= edit;
                    agrees_with_frost::<S>(&edited).unwrap();
                }
                agrees_with_frost::<S>(&bytes[..i]).unwrap();
            }
            let mut longer = bytes.clone();
            longer.push(0);
            agrees_with_frost::<S>(&longer).unwrap();
            assert!(parse_signing_package::<S>(&longer, None).is_err());
        }
    }

    #[test]
    fn every_edit_keeps_the_contract_with_frost() {
        every_edit_agrees::<Ed>();
        every_edit_agrees::<Secp>();
        every_edit_agrees::<Tr>();
    }

    /// The bytes of one package entry: identifier ‖ commitment.
    fn entry<S: Suite>(id: &Identifier<S>, commitment: &SigningCommitments<S>) -> Vec<u8> {
        [id.serialize(), commitment.serialize().unwrap()].concat()
    }

    /// Entries out of frost's order, or one member twice, are refused; frost takes both (a map
    /// of the last entries), so neither is frost's serialization of what it returns.
    fn order_and_duplicates<S: Suite>() {
        let package = package::<S>(5, 2, b"m");
        let entries: Vec<_> = package.signing_commitments().iter().collect();
        let header = &package.serialize().unwrap()[..5];
        let body =
            |first: Vec<u8>, second: Vec<u8>| [header, &[2], &first, &second, &[1], b"m"].concat();
        let swapped = body(
            entry(entries[1].0, entries[1].1),
            entry(entries[0].0, entries[0].1),
        );
        assert!(matches!(
            parse_signing_package::<S>(&swapped, None),
            Err(Refusal::Malformed(e)) if e.contains("out of order")
        ));
        agrees_with_frost::<S>(&swapped).unwrap();
        let twice = body(
            entry(entries[0].0, entries[0].1),
            entry(entries[0].0, entries[1].1),
        );
        assert!(matches!(
            parse_signing_package::<S>(&twice, None),
            Err(Refusal::CommitmentSet(_))
        ));
        agrees_with_frost::<S>(&twice).unwrap();
        assert_eq!(
            body(
                entry(entries[0].0, entries[0].1),
                entry(entries[1].0, entries[1].1)
            ),
            package.serialize().unwrap()
        );
    }

    #[test]
    fn entries_out_of_order_or_twice_are_refused() {
        order_and_duplicates::<Ed>();
        order_and_duplicates::<Secp>();
        order_and_duplicates::<Tr>();
    }

    /// ed25519 points outside the prime-order subgroup, the identity, and non-canonical
    /// encodings, in place of a commitment point: refused, also in a signer's own entry (a
    /// point is taken as known only when it is the signer's own).
    #[test]
    fn ed25519_points_outside_the_group_are_refused() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let package = package::<Ed>(11, 3, b"m");
        let bytes = package.serialize().unwrap();
        let (id, own) = package.signing_commitments().iter().next().unwrap();
        // The first entry's hiding point: after the header, the count, an identifier and the
        // commitment's own header.
        let at = 5 + 1 + 32 + 5;
        let hiding = CompressedEdwardsY(bytes[at..at + 32].try_into().unwrap())
            .decompress()
            .unwrap();
        let mut bad: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .flat_map(|t| [(hiding + t).compress().0, t.compress().0])
            .filter(|b| *b != bytes[at..at + 32])
            .collect();
        // y = p + k for k < 19 (p = 2^255 − 19), with either sign bit.
        for k in 0u8..19 {
            let mut y = [0xffu8; 32];
            y[0] = 0xed + k;
            y[31] = 0x7f;
            bad.push(y);
            y[31] = 0xff;
            bad.push(y);
        }
        assert_eq!(
            bad.len(),
            15 + 38,
            "seven mixed-order points, eight of small order"
        );
        for point in bad {
            let mut edited = bytes.clone();
            edited[at..at + 32].copy_from_slice(&point);
            assert!(parse_signing_package::<Ed>(&edited, None).is_err());
            assert!(parse_signing_package::<Ed>(&edited, Some((*id, own))).is_err());
            agrees_with_frost::<Ed>(&edited).unwrap();
        }
    }

    fn random_edits<S: Suite>(edits: &[(usize, u8)], cut: usize) {
        let mut bytes = package::<S>(13, 3, b"proptest").serialize().unwrap();
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = *value;
        }
        bytes.truncate(bytes.len() - cut % 4);
        agrees_with_frost::<S>(&bytes).unwrap();
    }

    proptest! {
        #[test]
        fn random_edits_keep_the_contract_with_frost(
            edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..4),
            cut in 0usize..8,
        ) {
            random_edits::<Ed>(&edits, cut);
            random_edits::<Secp>(&edits, cut);
            random_edits::<Tr>(&edits, cut);
        }
    }
}
