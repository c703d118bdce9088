//! The FROST deserializers that `permafrost-protocol` (and the reshare code) apply to bytes
//! received from the network, for each of the three ciphersuites. None may panic; whatever
//! deserializes must serialize and deserialize back to the same value. Commitments and signing
//! packages are parsed by `permafrost-protocol`'s own parser, which must keep its contract with
//! frost's deserializers (`permafrost_protocol::sign::agrees_with_frost`).
#![no_main]

use frost_core::keys::{dkg, PublicKeyPackage, SigningShare, VerifiableSecretSharingCommitment};
use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::{Signature, SigningPackage};
use libfuzzer_sys::fuzz_target;
use permafrost_protocol::sign::agrees_with_frost;
use permafrost_protocol::Suite;

/// `$ty::deserialize(data)`; on success, checks the serialize → deserialize round trip.
/// `$ser` turns the value into bytes (some `serialize()`s are fallible, some are not).
macro_rules! check {
    ($data:expr, $ty:ty, $de:ident, |$v:ident| $ser:expr) => {
        if let Ok($v) = <$ty>::$de($data) {
            let bytes: Vec<u8> = match $ser {
                Ok(bytes) => bytes,
                Err(e) => panic!(
                    "a deserialized {} does not serialize: {e:?}",
                    stringify!($ty)
                ),
            };
            match <$ty>::$de(&bytes) {
                Ok(again) => assert!(again == $v, "round trip changed a {}", stringify!($ty)),
                Err(e) => panic!(
                    "a re-serialized {} does not deserialize: {e:?}",
                    stringify!($ty)
                ),
            }
        }
    };
}

fn suite<C: Suite>(data: &[u8]) {
    type E<C> = frost_core::Error<C>;
    // Signing: commitments (signer → coordinator), the signing package (coordinator →
    // signer), signature shares (signer → coordinator).
    check!(data, SigningCommitments<C>, deserialize, |v| v.serialize());
    check!(data, SigningPackage<C>, deserialize, |v| v.serialize());
    if let Err(broken) = agrees_with_frost::<C>(data) {
        panic!("the signing package parser broke its contract: {broken}");
    }
    check!(data, SignatureShare<C>, deserialize, |v| Ok::<_, E<C>>(
        v.serialize()
    ));
    // DKG: round-1 packages (broadcast), round-2 packages (secret, member → member).
    check!(data, dkg::round1::Package<C>, deserialize, |v| v
        .serialize());
    check!(data, dkg::round2::Package<C>, deserialize, |v| v
        .serialize());
    // Public key packages (reshare proposals carry the old one).
    check!(data, PublicKeyPackage<C>, deserialize, |v| v.serialize());
    // Reshare: Feldman commitments, dealt shares, the commit's test signature.
    check!(
        data,
        VerifiableSecretSharingCommitment<C>,
        deserialize_whole,
        |v| v.serialize_whole()
    );
    check!(data, SigningShare<C>, deserialize, |v| Ok::<_, E<C>>(
        v.serialize()
    ));
    check!(data, Signature<C>, deserialize, |v| v.serialize());
}

fuzz_target!(|data: &[u8]| {
    suite::<frost_ed25519::Ed25519Sha512>(data);
    suite::<frost_secp256k1::Secp256K1Sha256>(data);
    suite::<frost_secp256k1_tr::Secp256K1Sha256TR>(data);
});
