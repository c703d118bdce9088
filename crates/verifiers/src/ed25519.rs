//! RFC 8032 Ed25519 via `ed25519-dalek`.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::{exact, VerifyError};

const SCHEME: &str = "ed25519";

/// Verifies an RFC 8032 Ed25519 signature with `ed25519-dalek`'s
/// `verify_strict`.
///
/// * `public_key`: the 32-byte compressed Edwards point `A`.
/// * `signature`: the 64-byte `R ‖ S`.
///
/// `verify_strict` additionally rejects small-order keys and `R` values and a
/// non-canonical `S`; these are reported as
/// [`VerifyError::InvalidSignature`].
pub fn verify_ed25519(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let pk_bytes: [u8; 32] = exact(public_key).map_err(|r| VerifyError::key(SCHEME, r))?;
    let sig_bytes: [u8; 64] = exact(signature).map_err(|r| VerifyError::sig(SCHEME, r))?;
    let key = VerifyingKey::from_bytes(&pk_bytes)
        .map_err(|_| VerifyError::key(SCHEME, "not a valid compressed Edwards point"))?;
    let sig = Signature::from_bytes(&sig_bytes);
    key.verify_strict(message, &sig)
        .map_err(|_| VerifyError::invalid(SCHEME))
}
