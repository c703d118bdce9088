use frost_core::{keys::PublicKeyPackage, Ciphersuite};
use permafrost_wire::Curve;

/// A FROST ciphersuite Permafrost serves, with what the protocol needs to know about it.
pub trait Suite: Ciphersuite + Send + Sync + 'static {
    /// The curve name on the wire and in the API.
    const CURVE: Curve;

    /// Turns the public key package computed from the DKG commitments into the one frost's DKG
    /// hands the members (frost's `post_dkg` hook: the unspendable BIP-341 tweak for taproot,
    /// nothing for the others). The DKG coordinator uses this to check the members' result.
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self>;
}

impl Suite for frost_ed25519::Ed25519Sha512 {
    const CURVE: Curve = Curve::Ed25519;
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }
}

impl Suite for frost_secp256k1::Secp256K1Sha256 {
    const CURVE: Curve = Curve::Secp256k1;
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        package
    }
}

impl Suite for frost_secp256k1_tr::Secp256K1Sha256TR {
    const CURVE: Curve = Curve::Secp256k1Tr;
    fn finish_dkg_public_key_package(package: PublicKeyPackage<Self>) -> PublicKeyPackage<Self> {
        use frost_secp256k1_tr::keys::Tweak;
        package.tweak::<&[u8]>(None)
    }
}
