//! Commitments and signing packages read from the wire. The bytes are frost's own serialization
//! (postcard), unchanged on the wire; they are parsed here rather than by frost's deserializer
//! so that each point is decoded with [`Suite::decode_public_element`] (nonce commitments are
//! public: for ed25519 the prime-order check then runs in variable time), and so that a signer
//! does not check again a commitment it made itself.
//!
//! What this accepts is a subset of what frost accepts, with the same result, and every
//! serialization frost produces is in it (the tests below, and the `frost_packages` fuzz
//! target, which checks [`agrees_with_frost`] on every input). It is
//! stricter in that it takes only frost's own serialization of what it returns: no bytes after
//! the package, no varint longer than it needs to be, members in frost's order and none listed
//! twice (frost keeps the last of two entries). [`agrees_with_frost`] states the contract.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::round1::{NonceCommitment, SigningCommitments};
use frost_core::{Element, Group, Identifier, SigningPackage};

use crate::{Refusal, Suite};

/// frost's serialization format version, the first byte of every package.
const FORMAT_VERSION: u8 = 0;

/// A commitment's (and a package's) header: the format version and the ciphersuite's id.
const COMMITMENT_HEADER_LEN: usize = 1 + 4;

/// The contract of [`parse_commitment`] and [`parse_signing_package`] against frost's
/// deserializers, for any `bytes` (tests and the `frost_packages` fuzz target check it): what
/// the parser accepts, frost accepts, with an equal result, and it is frost's own serialization
/// of that result; what frost accepts and serializes back to the same bytes, the parser
/// accepts. [`parse_commitment_of_any_order`] accepts what [`parse_commitment`] accepts, with
/// the same result, and beyond it only commitments [`outside_prime_order`]. `Err` says how the parser broke it.
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
    // Without the prime-order check: the same where the parser accepts, and otherwise only
    // what fails that check alone.
    match (
        parse_commitment::<S>(bytes),
        parse_commitment_of_any_order::<S>(bytes),
    ) {
        (Ok(checked), Ok(any)) if checked == any && !outside_prime_order(&any) => {}
        (Err(_), Ok(any)) if outside_prime_order(&any) => {}
        (Err(_), Err(_)) => {}
        (checked, any) => {
            return Err(format!(
                "commitment of any order: {any:?}, where the parser gives {checked:?}"
            ))
        }
    }
    let package = SigningPackage::<S>::deserialize(bytes)
        .ok()
        .and_then(|p| Some((p.clone(), p.serialize().ok()?)));
    agree(
        "signing package",
        bytes,
        unwrap_checked(parse_signing_package::<S>(bytes, None, None))?,
        package.clone(),
    )?;
    // A signer's own commitment given as known changes nothing: each member's own, and each
    // member given the next one's (bytes that are not its own commitment).
    let entries: Vec<_> = package
        .iter()
        .flat_map(|(p, _)| p.signing_commitments().iter().map(|(id, c)| (*id, *c)))
        .collect();
    let others = entries
        .iter()
        .zip(entries.iter().cycle().skip(1))
        .map(|((id, _), (_, next))| (*id, *next));
    for (id, own) in entries.iter().copied().chain(others) {
        let serialized = own
            .serialize()
            .map_err(|e| format!("frost cannot serialize a commitment it read: {e}"))?;
        let with_own = unwrap_checked(parse_signing_package::<S>(
            bytes,
            None,
            Some((id, &own, &serialized)),
        ))?;
        agree(
            "signing package, own commitment given",
            bytes,
            with_own,
            package.clone(),
        )?;
    }
    Ok(())
}

/// The package read, once its encoded commitments are checked to be frost's encoding of it.
fn unwrap_checked<S: Suite>(
    read: Result<WirePackage<S>, Refusal>,
) -> Result<Result<SigningPackage<S>, Refusal>, String> {
    let Ok(read) = read else {
        return Ok(read.map(|r| r.package));
    };
    let frost = frost_core::round1::encode_group_commitments(read.package.signing_commitments())
        .map_err(|e| format!("frost cannot encode the commitments read: {e}"))?;
    if frost != read.encoded_commitments {
        return Err(format!(
            "encoded commitments {:02x?} where frost encodes {frost:02x?}",
            read.encoded_commitments
        ));
    }
    Ok(Ok(read.package))
}

/// Parses one member's `SigningCommitments::serialize()`: header ‖ hiding ‖ binding.
pub fn parse_commitment<S: Suite>(bytes: &[u8]) -> Result<SigningCommitments<S>, Refusal> {
    read_commitment::<S>(bytes, "commitment", true)
}

/// [`parse_commitment`] without the check that its points lie in the prime-order subgroup
/// (for ed25519, the one check of the two that costs: a multiplication by the group order);
/// [`outside_prime_order`] makes it later. For a coordinator: every signer checks every point
/// of a package it is sent and refuses one outside the group, and only then need the
/// coordinator know which member's it was.
pub fn parse_commitment_of_any_order<S: Suite>(
    bytes: &[u8],
) -> Result<SigningCommitments<S>, Refusal> {
    read_commitment::<S>(bytes, "commitment", false)
}

/// One member's commitment as a coordinator holds it: decoded, and its two points as they were
/// encoded where it was read (a `SignCommitment`, a pooled batch, or a package written
/// before). A package is written from these bytes (`WirePackage::write`), so no point is
/// encoded again (an inversion each). They are frost's own encoding of the points: the parsers
/// accept no other encoding of a point in the prime-order subgroup, and an ed25519 encoding
/// frost would not write decodes to a point outside it, which every signer refuses (as it
/// would the point encoded again) and [`outside_prime_order`] convicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedCommitment<S: Suite> {
    commitment: SigningCommitments<S>,
    /// hiding ‖ binding, as read.
    points: Vec<u8>,
}

impl<S: Suite> EncodedCommitment<S> {
    /// [`parse_commitment`], keeping the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Refusal> {
        Self::read(bytes, true)
    }

    /// [`parse_commitment_of_any_order`], keeping the bytes.
    pub fn parse_of_any_order(bytes: &[u8]) -> Result<Self, Refusal> {
        Self::read(bytes, false)
    }

    fn read(bytes: &[u8], check_order: bool) -> Result<Self, Refusal> {
        let commitment = read_commitment::<S>(bytes, "commitment", check_order)?;
        let points = bytes
            .get(COMMITMENT_HEADER_LEN..)
            .unwrap_or_default()
            .to_vec();
        Ok(Self { commitment, points })
    }

    /// The commitment.
    pub fn commitment(&self) -> &SigningCommitments<S> {
        &self.commitment
    }
}

/// A commitment that is the whole of `bytes` (`what` names them in errors), its points checked
/// to lie in the prime-order subgroup if `check_order`.
fn read_commitment<S: Suite>(
    bytes: &[u8],
    what: &'static str,
    check_order: bool,
) -> Result<SigningCommitments<S>, Refusal> {
    let mut reader = Reader::new(bytes, what);
    reader.check_order = check_order;
    let commitment = reader.commitment::<S>()?;
    reader.finish()?;
    Ok(commitment)
}

/// Whether a point of `commitment` lies outside the prime-order subgroup (what
/// [`parse_commitment`] refuses beyond [`parse_commitment_of_any_order`]).
pub fn outside_prime_order<S: Suite>(commitment: &SigningCommitments<S>) -> bool {
    S::check_prime_order(&commitment.hiding().value()).is_err()
        || S::check_prime_order(&commitment.binding().value()).is_err()
}

/// A signing package as it was read from the wire (or written by the coordinator), with the
/// bytes frost hashes into the binding factors: each member's identifier and its two points,
/// as they appear in the package (frost's `encode_group_commitments`), so that the second
/// round encodes no point again ([`super::round2`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WirePackage<S: Suite> {
    package: SigningPackage<S>,
    encoded_commitments: Vec<u8>,
}

impl<S: Suite> WirePackage<S> {
    /// The package of `commitments` over `message` a coordinator writes: it, and the bytes to
    /// send, frost's serialization of it (header ‖ varint count ‖ count × (identifier ‖
    /// commitment header ‖ points) ‖ varint length ‖ message), written from the commitments'
    /// bytes.
    pub(crate) fn write(
        commitments: BTreeMap<Identifier<S>, EncodedCommitment<S>>,
        message: &[u8],
    ) -> (Self, Vec<u8>) {
        let entry_len = S::SCALAR_LEN + COMMITMENT_HEADER_LEN + 2 * S::ELEMENT_LEN;
        let mut bytes = Vec::with_capacity(
            COMMITMENT_HEADER_LEN + 20 + commitments.len() * entry_len + message.len(),
        );
        let header = |bytes: &mut Vec<u8>| {
            bytes.push(FORMAT_VERSION);
            bytes.extend_from_slice(&S::FROST_SHORT_ID);
        };
        header(&mut bytes);
        write_varint(&mut bytes, commitments.len() as u64);
        let mut encoded_commitments = Vec::with_capacity(commitments.len() * entry_len);
        for (id, encoded) in &commitments {
            let id = id.serialize();
            bytes.extend_from_slice(id.as_ref());
            header(&mut bytes);
            bytes.extend_from_slice(&encoded.points);
            encoded_commitments.extend_from_slice(id.as_ref());
            encoded_commitments.extend_from_slice(&encoded.points);
        }
        write_varint(&mut bytes, message.len() as u64);
        bytes.extend_from_slice(message);
        let package = SigningPackage::new(
            commitments
                .into_iter()
                .map(|(id, encoded)| (id, encoded.commitment))
                .collect(),
            message,
        );
        let written = Self {
            package,
            encoded_commitments,
        };
        (written, bytes)
    }

    /// Member `id`'s commitment in the package, with its bytes as the package holds them.
    pub(crate) fn encoded_commitment(&self, id: &Identifier<S>) -> Option<EncodedCommitment<S>> {
        let commitments = self.package.signing_commitments();
        let position = commitments.keys().position(|member| member == id)?;
        let entry_len = S::SCALAR_LEN + 2 * S::ELEMENT_LEN;
        let start = position * entry_len + S::SCALAR_LEN;
        let points = self
            .encoded_commitments
            .get(start..start + 2 * S::ELEMENT_LEN)?
            .to_vec();
        Some(EncodedCommitment {
            commitment: *commitments.get(id)?,
            points,
        })
    }

    /// The members whose commitments it holds: those asked to sign it.
    pub(crate) fn signers(&self) -> BTreeSet<Identifier<S>> {
        self.package.signing_commitments().keys().copied().collect()
    }

    /// The package.
    pub fn package(&self) -> &SigningPackage<S> {
        &self.package
    }

    /// Each member's identifier ‖ hiding point ‖ binding point, in the package's order: what
    /// frost's `encode_group_commitments` writes for it.
    pub fn encoded_commitments(&self) -> &[u8] {
        &self.encoded_commitments
    }
}

/// Parses a `SigningPackage::serialize()`: header ‖ varint count ‖ count × (identifier ‖
/// commitment) ‖ varint length ‖ message. With `expected`, a package of another number of
/// commitments is refused before any point is decoded (`CommitmentSet`). `own` is this signer's
/// identifier, the commitment it made and frost's serialization of it: an entry of that
/// identifier with exactly those bytes is not decoded again (frost would decode them to that
/// commitment). Any other entry is decoded and checked in full.
pub fn parse_signing_package<S: Suite>(
    bytes: &[u8],
    expected: Option<usize>,
    own: Option<(Identifier<S>, &SigningCommitments<S>, &[u8])>,
) -> Result<WirePackage<S>, Refusal> {
    let layout = Layout::read::<S>(bytes, expected)?;
    let mut commitments = BTreeMap::new();
    for entry in &layout.entries {
        let id = Identifier::<S>::deserialize(entry.identifier)
            .map_err(|e| Refusal::Malformed(format!("signing package: identifier: {e}")))?;
        if commitments.contains_key(&id) {
            return Err(Refusal::CommitmentSet(
                "a member's commitment is listed twice".into(),
            ));
        }
        if commitments
            .last_key_value()
            .is_some_and(|(last, _)| *last > id)
        {
            return Err(Refusal::Malformed(
                "signing package: commitments out of order".into(),
            ));
        }
        let commitment = match own {
            Some((me, mine, serialized)) if me == id && entry.commitment == serialized => *mine,
            _ => read_commitment::<S>(entry.commitment, "signing package", true)?,
        };
        commitments.insert(id, commitment);
    }
    Ok(WirePackage {
        package: SigningPackage::new(commitments, layout.message),
        encoded_commitments: layout.encoded_commitments(),
    })
}

/// `value` as a LEB128 varint, as postcard writes it (no longer than it needs to be).
fn write_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// Where each part of a serialized signing package lies, read without decoding anything.
struct Layout<'a> {
    entries: Vec<Entry<'a>>,
    message: &'a [u8],
}

/// One member's entry in a serialized signing package.
struct Entry<'a> {
    /// Its serialized identifier.
    identifier: &'a [u8],
    /// Its serialized commitment: header ‖ hiding ‖ binding.
    commitment: &'a [u8],
}

impl<'a> Layout<'a> {
    /// The header, the count (refused if it is not `expected`), each entry's identifier and
    /// commitment (by length), the message, and nothing after it.
    fn read<S: Suite>(bytes: &'a [u8], expected: Option<usize>) -> Result<Self, Refusal> {
        let mut reader = Reader::new(bytes, "signing package");
        reader.header::<S>()?;
        let count = reader.varint()?;
        if let Some(expected) = expected.filter(|e| *e as u64 != count) {
            return Err(Refusal::CommitmentSet(format!(
                "{count} commitments where exactly {expected} are selected"
            )));
        }
        let entry_len = S::SCALAR_LEN + COMMITMENT_HEADER_LEN + 2 * S::ELEMENT_LEN;
        // A count larger than what is left is refused before anything is allocated for it.
        if count > (reader.left() / entry_len) as u64 {
            return Err(reader.malformed("more commitments claimed than the package holds"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            entries.push(Entry {
                identifier: reader.take(S::SCALAR_LEN)?,
                commitment: reader.take(COMMITMENT_HEADER_LEN + 2 * S::ELEMENT_LEN)?,
            });
        }
        let message_len = reader.varint()?;
        let message_len = usize::try_from(message_len)
            .ok()
            .filter(|len| *len <= reader.left())
            .ok_or_else(|| reader.malformed("message longer than the package"))?;
        let message = reader.take(message_len)?;
        reader.finish()?;
        Ok(Self { entries, message })
    }

    /// frost's `encode_group_commitments`: identifier ‖ hiding ‖ binding, entry by entry.
    fn encoded_commitments(&self) -> Vec<u8> {
        let mut encoded = Vec::with_capacity(
            self.entries
                .iter()
                .map(|e| e.identifier.len() + e.commitment.len())
                .sum(),
        );
        for entry in &self.entries {
            encoded.extend_from_slice(entry.identifier);
            encoded.extend_from_slice(entry.commitment.get(COMMITMENT_HEADER_LEN..).unwrap_or(&[]));
        }
        encoded
    }
}

/// A cursor over frost-serialized bytes; `what` names them in errors.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
    /// Points are checked to lie in the prime-order subgroup.
    check_order: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            what,
            check_order: true,
        }
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
        let header = self.take(COMMITMENT_HEADER_LEN)?;
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

    fn element<S: Suite>(&mut self) -> Result<Element<S>, Refusal> {
        let bytes = self.take(S::ELEMENT_LEN)?;
        let serialization = <S::Group as Group>::Serialization::try_from(bytes)
            .map_err(|_| self.malformed("element size"))?;
        let decoded = if self.check_order {
            S::decode_public_element(&serialization)
        } else {
            S::decode_public_element_of_any_order(&serialization)
        };
        decoded.map_err(|e| self.malformed(&format!("point: {e}")))
    }

    /// A `SigningCommitments`.
    fn commitment<S: Suite>(&mut self) -> Result<SigningCommitments<S>, Refusal> {
        self.header::<S>()?;
        let hiding = self.element::<S>()?;
        let binding = self.element::<S>()?;
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
            (5, 4, &[9u8; 20_000][..]),
        ] {
            let package = package::<S>(seed, t, message);
            let bytes = package.serialize().unwrap();
            let read = parse_signing_package::<S>(&bytes, None, None).unwrap();
            assert_eq!(*read.package(), package);
            assert_eq!(
                read.encoded_commitments(),
                round1::encode_group_commitments(package.signing_commitments()).unwrap()
            );
            // Written from the commitments' bytes: frost's serialization, and each member's
            // commitment with its bytes back out of it.
            let encoded: BTreeMap<_, _> = package
                .signing_commitments()
                .iter()
                .map(|(id, c)| {
                    let bytes = c.serialize().unwrap();
                    let parsed = EncodedCommitment::<S>::parse(&bytes).unwrap();
                    assert_eq!(
                        EncodedCommitment::parse_of_any_order(&bytes),
                        Ok(parsed.clone())
                    );
                    assert_eq!(parsed.commitment(), c);
                    (*id, parsed)
                })
                .collect();
            let written = WirePackage::write(encoded.clone(), message);
            assert_eq!(written, (read.clone(), bytes.clone()));
            for (id, commitment) in &encoded {
                assert_eq!(written.0.encoded_commitment(id).as_ref(), Some(commitment));
            }
            agrees_with_frost::<S>(&bytes).unwrap();
            // A signer's own entry, given as known, gives the same package.
            for (id, own) in package.signing_commitments() {
                let parsed = parse_signing_package::<S>(
                    &bytes,
                    None,
                    Some((*id, own, &own.serialize().unwrap())),
                )
                .unwrap();
                assert_eq!(parsed, read);
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
        let members: Vec<_> = package
            .signing_commitments()
            .iter()
            .map(|(id, c)| (*id, *c))
            .collect();
        // Given each member's original commitment as its own, an edited package parses as it
        // does without: refused as well, or to the same package.
        let own_changes_nothing = |edited: &[u8]| {
            let without = parse_signing_package::<S>(edited, None, None).ok();
            for (id, own) in &members {
                let with = parse_signing_package::<S>(
                    edited,
                    None,
                    Some((*id, own, &own.serialize().unwrap())),
                )
                .ok();
                assert_eq!(with, without, "{edited:02x?}");
            }
        };
        for bytes in [package.serialize().unwrap(), commitment] {
            for i in 0..bytes.len() {
                for edit in [0x01u8, 0x02, 0x80, 0xff] {
                    let mut edited = bytes.clone();
                    edited[i] ^= edit;
                    agrees_with_frost::<S>(&edited).unwrap();
                    own_changes_nothing(&edited);
                }
                agrees_with_frost::<S>(&bytes[..i]).unwrap();
                // A byte inserted: frost takes a varint longer than it needs (0x83 0x00 for 3).
                let mut inserted = bytes.clone();
                inserted.insert(i, 0x00);
                agrees_with_frost::<S>(&inserted).unwrap();
                inserted[i] = 0x80;
                agrees_with_frost::<S>(&inserted).unwrap();
            }
            let mut longer = bytes.clone();
            longer.push(0);
            agrees_with_frost::<S>(&longer).unwrap();
            assert!(parse_signing_package::<S>(&longer, None, None).is_err());
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

    /// A count varint longer than it needs to be, which frost reads: refused.
    fn long_varints<S: Suite>() {
        let bytes = package::<S>(6, 3, b"m").serialize().unwrap();
        assert_eq!(bytes[5], 3);
        let longer = [&bytes[..5], &[0x83, 0x00], &bytes[6..]].concat();
        assert!(SigningPackage::<S>::deserialize(&longer).is_ok());
        assert!(matches!(
            parse_signing_package::<S>(&longer, None, None),
            Err(Refusal::Malformed(e)) if e.contains("varint longer than needed")
        ));
        agrees_with_frost::<S>(&longer).unwrap();
        // Another count than the expected one is refused before any point is decoded: the
        // entries here are garbage.
        let garbage = [&bytes[..6], &[0xff; 300][..]].concat();
        assert!(matches!(
            parse_signing_package::<S>(&garbage, Some(2), None),
            Err(Refusal::CommitmentSet(e)) if e.contains("exactly 2")
        ));
    }

    #[test]
    fn long_varints_and_unexpected_counts_are_refused() {
        long_varints::<Ed>();
        long_varints::<Secp>();
        long_varints::<Tr>();
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
            parse_signing_package::<S>(&swapped, None, None),
            Err(Refusal::Malformed(e)) if e.contains("out of order")
        ));
        agrees_with_frost::<S>(&swapped).unwrap();
        let twice = body(
            entry(entries[0].0, entries[0].1),
            entry(entries[0].0, entries[1].1),
        );
        assert!(matches!(
            parse_signing_package::<S>(&twice, None, None),
            Err(Refusal::CommitmentSet(_))
        ));
        agrees_with_frost::<S>(&twice).unwrap();
        // Twice, with another member between: still a duplicate, not an order error.
        let a = entry(entries[0].0, entries[0].1);
        let b = entry(entries[1].0, entries[1].1);
        let apart = [header, &[3], &a, &b, &a, &[1], b"m"].concat();
        assert!(matches!(
            parse_signing_package::<S>(&apart, None, None),
            Err(Refusal::CommitmentSet(_))
        ));
        agrees_with_frost::<S>(&apart).unwrap();
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
        // In the hiding and in the binding slot of a signer's own entry.
        for slot in [at, at + 32] {
            for point in &bad {
                let mut edited = bytes.clone();
                edited[slot..slot + 32].copy_from_slice(point);
                assert!(parse_signing_package::<Ed>(&edited, None, None).is_err());
                assert!(parse_signing_package::<Ed>(
                    &edited,
                    None,
                    Some((*id, own, &own.serialize().unwrap()))
                )
                .is_err());
                agrees_with_frost::<Ed>(&edited).unwrap();
            }
        }
        // The signer's own points swapped between its two slots are decoded in full (and
        // valid): the package parses, and its commitment is not the signer's.
        let mut swapped = bytes.clone();
        swapped[at..at + 32].copy_from_slice(&bytes[at + 32..at + 64]);
        swapped[at + 32..at + 64].copy_from_slice(&bytes[at..at + 32]);
        let parsed = parse_signing_package::<Ed>(
            &swapped,
            None,
            Some((*id, own, &own.serialize().unwrap())),
        )
        .unwrap();
        assert_ne!(parsed.package().signing_commitment(id).as_ref(), Some(own));
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
