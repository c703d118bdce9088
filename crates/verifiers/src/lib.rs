//! Independent, non-FROST signature verifiers.
//!
//! Permafrost produces threshold signatures with the `frost-*` crates. The
//! whole point of FROST is that the result is an ordinary signature that any
//! standard verifier accepts, so tests and the demo check every signature
//! with code that shares nothing with the signing path:
//!
//! | [`Curve`]                | verifier                     | key      | signature |
//! |--------------------------|------------------------------|----------|-----------|
//! | [`Curve::Ed25519`]       | [`verify_ed25519`] (RFC 8032, `ed25519-dalek` `verify_strict`) | 32 bytes | 64 bytes |
//! | [`Curve::Secp256k1`]     | [`verify_frost_secp256k1`] (RFC 9591 §6.5, hand-written on `k256`) | 33 bytes | 65 bytes |
//! | [`Curve::Secp256k1Tr`]   | [`verify_bip340`] (BIP-340, libsecp256k1 via `secp256k1`) | 33 bytes | 64 bytes |
//!
//! Keys and signatures are the byte strings the frost crates serialize
//! (`VerifyingKey::serialize()`, `Signature::serialize()`). Every function
//! checks lengths and encodings first and reports them as
//! [`VerifyError::MalformedKey`] / [`VerifyError::MalformedSignature`]; a
//! well-formed signature that does not verify is
//! [`VerifyError::InvalidSignature`]. Nothing here panics on any input.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bip340;
mod ed25519;
mod error;
mod frost_secp256k1;

pub use bip340::verify_bip340;
pub use ed25519::verify_ed25519;
pub use error::VerifyError;
pub use frost_secp256k1::verify_frost_secp256k1;
pub use permafrost_wire::Curve;

/// Verifies `signature` over `message` under `public_key` with the standard,
/// non-FROST verifier for `curve`.
///
/// Dispatches to [`verify_ed25519`], [`verify_frost_secp256k1`] or
/// [`verify_bip340`]; see those for the exact encodings.
pub fn verify(
    curve: Curve,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    match curve {
        Curve::Ed25519 => verify_ed25519(public_key, message, signature),
        Curve::Secp256k1 => verify_frost_secp256k1(public_key, message, signature),
        Curve::Secp256k1Tr => verify_bip340(public_key, message, signature),
    }
}
