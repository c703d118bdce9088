//! BIP-340 Schnorr signatures via libsecp256k1 (the `secp256k1` crate).

use secp256k1::{schnorr::Signature, PublicKey, SECP256K1};

use crate::error::{exact, VerifyError};

const SCHEME: &str = "bip340";

/// Verifies a BIP-340 Schnorr signature with libsecp256k1.
///
/// * `public_key`: the 33-byte SEC1 compressed point that
///   `frost-secp256k1-tr` serializes (`0x02`/`0x03` ‖ x). BIP-340 keys are
///   x-only, so only the x coordinate is used and the parity byte is ignored
///   once the point has been checked to be on the curve.
/// * `message`: the raw message, of any length (BIP-340 as amended for
///   variable-length messages; libsecp256k1's `secp256k1_schnorrsig_verify`).
/// * `signature`: the 64-byte `r ‖ s`.
///
/// libsecp256k1 does not distinguish an out-of-range `r`/`s` from a wrong
/// signature, so both are [`VerifyError::InvalidSignature`].
pub fn verify_bip340(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let pk_bytes: [u8; 33] = exact(public_key).map_err(|r| VerifyError::key(SCHEME, r))?;
    if pk_bytes[0] != 0x02 && pk_bytes[0] != 0x03 {
        return Err(VerifyError::key(
            SCHEME,
            format!(
                "expected a SEC1 compressed point (prefix 0x02 or 0x03), got prefix {:#04x}",
                pk_bytes[0]
            ),
        ));
    }
    let sig_bytes: [u8; 64] = exact(signature).map_err(|r| VerifyError::sig(SCHEME, r))?;
    let key = PublicKey::from_byte_array_compressed(&pk_bytes)
        .map_err(|_| VerifyError::key(SCHEME, "x coordinate is not on secp256k1"))?;
    let (x_only, _parity) = key.x_only_public_key();
    let sig = Signature::from_byte_array(sig_bytes);
    SECP256K1
        .verify_schnorr(&sig, message, &x_only)
        .map_err(|_| VerifyError::invalid(SCHEME))
}
