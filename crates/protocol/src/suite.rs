use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::{Ciphersuite, VerifyingKey};
use permafrost_wire::Curve;

use crate::derive::DerivationScheme;

/// A FROST ciphersuite Permafrost serves, with what the protocol needs to know about it.
pub trait Suite: Ciphersuite + Send + Sync + 'static {
    /// The curve name on the wire and in the API.
    const CURVE: Curve;

    /// How a child key is derived, one level at a time (see [`crate::derive`]).
    const DERIVATION: DerivationScheme;

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
}

impl Suite for frost_ed25519::Ed25519Sha512 {
    const CURVE: Curve = Curve::Ed25519;
    const DERIVATION: DerivationScheme = DerivationScheme::Ed25519Additive;
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }
}

impl Suite for frost_secp256k1::Secp256K1Sha256 {
    const CURVE: Curve = Curve::Secp256k1;
    const DERIVATION: DerivationScheme = DerivationScheme::Bip32;
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }
}

impl Suite for frost_secp256k1_tr::Secp256K1Sha256TR {
    const CURVE: Curve = Curve::Secp256k1Tr;
    const DERIVATION: DerivationScheme = DerivationScheme::Bip32;
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
