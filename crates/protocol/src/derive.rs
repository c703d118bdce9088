//! Child keys: one DKG, any number of keys. A child key at a non-hardened path such as `m/0/17`
//! is the key plus a public tweak, so every node derives its child share locally (share + δ,
//! verifying share + δ·G), the coordinator derives the child public key package the same way,
//! and the group signs for the child key with no new DKG. Anyone holding the key's
//! [`ExtendedPublicKey`] derives the same child public keys.
//!
//! - secp256k1: BIP-32 public derivation (`CKDpub`), exactly.
//! - secp256k1-tr: BIP-32 derivation of the BIP-86 internal key, then the BIP-341 tweak with no
//!   script path, as a descriptor wallet does for `tr(<xpub>/<path>)`. The extended public key
//!   is the key's group key as frost's DKG left it (already tweaked once); only the key itself
//!   (the empty path) is signed for without a second tweak, as before child keys existed.
//! - Ed25519: no standard exists; the additive scheme [`Ed25519Additive`](DerivationScheme) is
//!   specified in `docs/PROTOCOLS.md` and below.
//!
//! The chain code of a key is [`chain_code`]: a hash of the curve, key id and group key, all
//! fixed at DKG and kept by every reshare, so every child key outlives every reshare.

use std::collections::BTreeMap;

use frost_core::keys::{KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use frost_core::{Ciphersuite, Field, Group, VerifyingKey};
use hmac::{Hmac, Mac};
use permafrost_wire::{Curve, DerivationPath, KeyId};
use sha2::{Digest as _, Sha256, Sha512};

use crate::{ProtocolError, Suite};

type Scalar<S> = <<<S as Ciphersuite>::Group as Group>::Field as Field>::Scalar;

/// How a suite derives one level of a child key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DerivationScheme {
    /// BIP-32 `CKDpub`: `I = HMAC-SHA512(c, serP(K) ‖ ser32(i))`, `δ = parse256(IL)` (the
    /// index is invalid if `δ ≥ n`), child key `K + δ·G` (invalid if it is the point at
    /// infinity), child chain code `IR`.
    Bip32,
    /// Permafrost's additive Ed25519 scheme:
    /// `I = HMAC-SHA512(c, "permafrost/ed25519-child/v1" ‖ A ‖ ser32(i))` with `A` the 32-byte
    /// compressed parent key; `δ` is `IL` read little-endian after clearing the top four bits
    /// of its last byte (so `δ < 2²⁵² < ℓ`); child key `A + δ·B` (invalid if it is the
    /// identity), child chain code `IR`.
    Ed25519Additive,
}

/// Domain tag of the Ed25519 additive scheme's HMAC input.
pub const ED25519_CHILD_TAG: &[u8] = b"permafrost/ed25519-child/v1";

/// Domain tag of [`chain_code`].
pub const CHAIN_CODE_TAG: &[u8] = b"permafrost/chain-code/v1";

/// A BIP-32 chain code: 32 bytes of public metadata that, with the group key, determine every
/// child key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainCode(pub [u8; 32]);

/// The chain code of key `key_id` on `curve` with group key `group_key` (the key's
/// `VerifyingKey::serialize()`):
///
/// ```text
/// SHA-256("permafrost/chain-code/v1" ‖ u32 BE len(curve) ‖ curve
///         ‖ u32 BE len(key_id) ‖ key_id ‖ u32 BE len(group_key) ‖ group_key)
/// ```
///
/// Every input is fixed at DKG and kept by every reshare, so the chain code (and every child
/// key) never changes. It is as public as the key id and group key: whoever knows both can
/// derive every child public key, exactly as whoever holds the exported extended public key.
pub fn chain_code(curve: Curve, key_id: &KeyId, group_key: &[u8]) -> ChainCode {
    let mut hash = Sha256::new();
    hash.update(CHAIN_CODE_TAG);
    for part in [
        curve.as_str().as_bytes(),
        key_id.as_str().as_bytes(),
        group_key,
    ] {
        hash.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        hash.update(part);
    }
    ChainCode(hash.finalize().into())
}

/// One step of derivation: the scalar `δ` added at this level and the child chain code, from
/// the parent key's serialized point. `None` if the index is invalid for this parent (BIP-32's
/// `IL ≥ n`); the caller also refuses a child key at infinity.
fn child_step<S: Suite>(
    parent: &[u8],
    chain_code: &ChainCode,
    index: u32,
) -> (Option<Scalar<S>>, ChainCode) {
    // HMAC accepts a key of any length; 32 bytes never fails.
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(&chain_code.0)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    if S::DERIVATION == DerivationScheme::Ed25519Additive {
        mac.update(ED25519_CHILD_TAG);
    }
    mac.update(parent);
    mac.update(&index.to_be_bytes());
    let i = mac.finalize().into_bytes();
    let mut il = [0u8; 32];
    il.copy_from_slice(&i[..32]);
    let mut next = [0u8; 32];
    next.copy_from_slice(&i[32..]);
    let delta = match S::DERIVATION {
        // frost-secp256k1's field reads 32 big-endian bytes and refuses a value ≥ n.
        DerivationScheme::Bip32 => scalar_from::<S>(il),
        DerivationScheme::Ed25519Additive => {
            il[31] &= 0x0f;
            // frost-ed25519's field reads 32 little-endian bytes, canonical below ℓ.
            scalar_from::<S>(il)
        }
    };
    (delta, ChainCode(next))
}

/// `δ` from 32 bytes in the field's own encoding; `None` if they are not a canonical scalar.
fn scalar_from<S: Suite>(bytes: [u8; 32]) -> Option<Scalar<S>> {
    let serialization =
        <<S::Group as Group>::Field as Field>::Serialization::try_from(bytes.as_slice()).ok()?;
    <S::Group as Group>::Field::deserialize(&serialization).ok()
}

/// A child key: what a key's extended public key and a path give, before the suite finishes it
/// (BIP-341 tweak for taproot).
pub struct Derivation<S: Suite> {
    /// The path derived.
    pub path: DerivationPath,
    /// The sum of every level's `δ`: the child's share is the parent share plus this.
    tweak: Scalar<S>,
    /// The child key before the suite's finish (for taproot, the BIP-86 internal key).
    derived_key: VerifyingKey<S>,
    /// `tweak·G`, the child key minus the parent key: added to every verifying share.
    shift: <S::Group as Group>::Element,
    /// The child's chain code.
    pub chain_code: ChainCode,
}

impl<S: Suite> Derivation<S> {
    /// The child key of `root` (a key's group key, with chain code `chain_code`) at `path`.
    /// The empty path gives the key itself. Fails, naming the level, for the (probability
    /// about 2⁻¹²⁷) index that BIP-32 calls invalid; the caller should use another index.
    pub fn new(
        root: &VerifyingKey<S>,
        chain_code: ChainCode,
        path: &DerivationPath,
    ) -> Result<Self, ProtocolError> {
        let mut key = root.to_element();
        let mut code = chain_code;
        let mut tweak = <S::Group as Group>::Field::zero();
        for (level, &index) in path.indices().iter().enumerate() {
            let invalid = || {
                ProtocolError::InvalidParameters(format!(
                    "child index {index} at level {} of {path} is invalid for this key \
                     (BIP-32: probability about 2^-127); use another index",
                    level + 1
                ))
            };
            let parent = <S::Group as Group>::serialize(&key).map_err(|_| invalid())?;
            let (delta, next) = child_step::<S>(parent.as_ref(), &code, index);
            let delta = delta.ok_or_else(invalid)?;
            key = key + <S::Group as Group>::generator() * delta;
            if key == <S::Group as Group>::identity() {
                return Err(invalid());
            }
            tweak = tweak + delta;
            code = next;
        }
        Ok(Derivation {
            path: path.clone(),
            tweak,
            derived_key: VerifyingKey::new(key),
            // Every level added δ·G to the key: their sum is the key's shift, with no further
            // multiplication.
            shift: key - root.to_element(),
            chain_code: code,
        })
    }

    /// The child at `path` of key `key_id` with group key `group_key`, with the key's
    /// [`chain_code`]: what the signers and the coordinator each derive on their own.
    pub fn of_key(
        key_id: &KeyId,
        group_key: &VerifyingKey<S>,
        path: &DerivationPath,
    ) -> Result<Self, ProtocolError> {
        let bytes = group_key
            .serialize()
            .map_err(|e| ProtocolError::Frost(e.to_string()))?;
        Derivation::new(group_key, chain_code(S::CURVE, key_id, &bytes), path)
    }

    /// The derived key before the suite's finish: for taproot, the BIP-86 internal key; for the
    /// others, the child key itself.
    pub fn derived_key(&self) -> VerifyingKey<S> {
        self.derived_key
    }

    /// The key a signature for this child verifies under (what the API shows as the child's
    /// `public_key`).
    pub fn verifying_key(&self) -> VerifyingKey<S> {
        if self.path.is_root() {
            return self.derived_key;
        }
        S::finish_child_verifying_key(self.derived_key)
    }

    /// A signer's key package for the child: share + δ, verifying share + δ·G, then the suite's
    /// finish. The key itself for the empty path.
    pub fn key_package(&self, parent: &KeyPackage<S>) -> KeyPackage<S> {
        if self.path.is_root() {
            return parent.clone();
        }
        let child = KeyPackage::new(
            *parent.identifier(),
            SigningShare::new(parent.signing_share().to_scalar() + self.tweak),
            VerifyingShare::new(parent.verifying_share().to_element() + self.shift),
            self.derived_key,
            *parent.min_signers(),
        );
        S::finish_child_key_package(child)
    }

    /// The coordinator's public key package for the child, as [`Derivation::key_package`] for
    /// every member.
    pub fn public_key_package(&self, parent: &PublicKeyPackage<S>) -> PublicKeyPackage<S> {
        if self.path.is_root() {
            return parent.clone();
        }
        let shares: BTreeMap<_, _> = parent
            .verifying_shares()
            .iter()
            .map(|(id, share)| (*id, VerifyingShare::new(share.to_element() + self.shift)))
            .collect();
        let child = PublicKeyPackage::new(shares, self.derived_key, parent.min_signers());
        S::finish_child_public_key_package(child)
    }
}

/// The public key package a signature at a path is made and verified under: the key's own at
/// `m`, the derived child's below it. Made only by [`KeyAtPath::derive`], so the package is
/// always the path's.
#[derive(Clone)]
pub struct KeyAtPath<S: Suite> {
    path: DerivationPath,
    package: PublicKeyPackage<S>,
}

impl<S: Suite> KeyAtPath<S> {
    /// The child at `path` of key `key_id`, whose public key package is `parent` (the key
    /// itself, with nothing computed, for the empty path).
    pub fn derive(
        key_id: &KeyId,
        parent: PublicKeyPackage<S>,
        path: &DerivationPath,
    ) -> Result<Self, ProtocolError> {
        let package = if path.is_root() {
            parent
        } else {
            Derivation::of_key(key_id, parent.verifying_key(), path)?.public_key_package(&parent)
        };
        Ok(KeyAtPath {
            path: path.clone(),
            package,
        })
    }

    /// The path.
    pub fn path(&self) -> &DerivationPath {
        &self.path
    }

    /// The package signatures at the path are aggregated and verified under.
    pub fn package(&self) -> &PublicKeyPackage<S> {
        &self.package
    }
}

/// A key's extended public key: its group key and chain code. For secp256k1 and secp256k1-tr
/// also in the BIP-32 `xpub` text form that wallets import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedPublicKey {
    /// The curve.
    pub curve: Curve,
    /// The key's group key, `VerifyingKey::serialize()`.
    pub public_key: Vec<u8>,
    /// Its chain code.
    pub chain_code: ChainCode,
}

/// BIP-32 version bytes of a mainnet extended public key (`xpub`).
pub const XPUB_VERSION: [u8; 4] = [0x04, 0x88, 0xb2, 0x1e];

impl ExtendedPublicKey {
    /// The extended public key of key `key_id` with group key `public_key`.
    pub fn new(curve: Curve, key_id: &KeyId, public_key: Vec<u8>) -> Self {
        let chain_code = chain_code(curve, key_id, &public_key);
        ExtendedPublicKey {
            curve,
            public_key,
            chain_code,
        }
    }

    /// BIP-32 serialization as a depth-0 mainnet `xpub` (Base58Check of `version ‖ depth 0 ‖
    /// parent fingerprint 0 ‖ child number 0 ‖ chain code ‖ 33-byte key`), for secp256k1 and
    /// secp256k1-tr; `None` for Ed25519, which BIP-32 does not cover. A testnet wallet
    /// (`tpub`) takes the same bytes with version `043587cf`.
    pub fn xpub(&self) -> Option<String> {
        if self.curve == Curve::Ed25519 || self.public_key.len() != 33 {
            return None;
        }
        let mut data = Vec::with_capacity(82);
        data.extend_from_slice(&XPUB_VERSION);
        data.push(0);
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&self.chain_code.0);
        data.extend_from_slice(&self.public_key);
        let check = Sha256::digest(Sha256::digest(&data));
        data.extend_from_slice(&check[..4]);
        Some(bs58::encode(data).into_string())
    }
}
