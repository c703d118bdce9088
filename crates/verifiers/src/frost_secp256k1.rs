//! FROST(secp256k1, SHA-256) signatures (RFC 9591 §6.5), verified by hand on
//! `k256` rather than with frost's own code.
//!
//! A signature is `R ‖ z` with `R` a 33-byte SEC1 compressed point and `z`
//! a 32-byte big-endian scalar. It is valid for key `PK` and message `msg`
//! when `z·G == R + c·PK` with
//! `c = H2(SerializeElement(R) ‖ SerializeElement(PK) ‖ msg)` (RFC 9591
//! §5.3 / §6.5), where `H2(m)` is RFC 9380 `hash_to_field(m, 1)` over the
//! scalar field with `expand_message_xmd` / SHA-256, `L = 48`, and
//! `DST = "FROST-secp256k1-SHA256-v1" ‖ "chal"`. The cofactor is 1, so no
//! cofactor clearing is needed.

use k256::elliptic_curve::group::Group;
use k256::elliptic_curve::hash2curve::{ExpandMsgXmd, GroupDigest};
use k256::elliptic_curve::sec1::FromEncodedPoint;
use k256::elliptic_curve::PrimeField;
use k256::sha2::Sha256;
use k256::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint, Scalar, Secp256k1};

use crate::error::{exact, VerifyError};

const SCHEME: &str = "frost-secp256k1";

/// The H2 domain separation tag: RFC 9591 §6.5 `contextString ‖ "chal"`.
const CHALLENGE_DST: &[u8] = b"FROST-secp256k1-SHA256-v1chal";

/// Verifies a FROST(secp256k1, SHA-256) signature as specified in RFC 9591.
///
/// * `public_key`: the 33-byte SEC1 compressed group key.
/// * `signature`: 65 bytes, `R` (33-byte SEC1 compressed) ‖ `z` (32 bytes,
///   big-endian).
///
/// An `R` or key that is not a compressed encoding of a curve point, and a
/// `z >= n`, are malformed. The identity has no 33-byte SEC1 encoding, so it
/// is rejected as malformed too.
pub fn verify_frost_secp256k1(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let pk = decode_point(public_key).map_err(|r| VerifyError::key(SCHEME, r))?;
    let sig: [u8; 65] = exact(signature).map_err(|r| VerifyError::sig(SCHEME, r))?;
    let (r_bytes, z_bytes) = sig.split_at(33);
    let r = decode_point(r_bytes).map_err(|e| VerifyError::sig(SCHEME, format!("R: {e}")))?;
    let z_bytes: [u8; 32] =
        exact(z_bytes).map_err(|e| VerifyError::sig(SCHEME, format!("z: {e}")))?;
    let z = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(z_bytes)))
        .ok_or_else(|| VerifyError::sig(SCHEME, "z is not below the group order n"))?;

    let c = challenge(r_bytes, public_key, message)?;
    if ProjectivePoint::GENERATOR * z == r + pk * c {
        Ok(())
    } else {
        Err(VerifyError::invalid(SCHEME))
    }
}

/// `H2(R_enc ‖ PK_enc ‖ msg)`: RFC 9380 `hash_to_field` with
/// `expand_message_xmd(SHA-256)`, one 48-byte block reduced mod `n`.
///
/// The three parts are passed as separate slices; `hash_to_field` feeds them
/// to `expand_message_xmd` back to back, which is exactly the concatenation.
fn challenge(r_enc: &[u8], pk_enc: &[u8], message: &[u8]) -> Result<Scalar, VerifyError> {
    // expand_message_xmd only fails for an empty or > 255-byte DST or an
    // output longer than 255 blocks; neither can happen with these constants.
    Secp256k1::hash_to_scalar::<ExpandMsgXmd<Sha256>>(&[r_enc, pk_enc, message], &[CHALLENGE_DST])
        .map_err(|_| VerifyError::invalid(SCHEME))
}

/// Decodes a 33-byte SEC1 compressed point, rejecting every other length and
/// form, points off the curve and the identity.
fn decode_point(bytes: &[u8]) -> Result<ProjectivePoint, String> {
    let bytes: [u8; 33] = exact(bytes)?;
    if bytes[0] != 0x02 && bytes[0] != 0x03 {
        return Err(format!(
            "expected a SEC1 compressed point (prefix 0x02 or 0x03), got prefix {:#04x}",
            bytes[0]
        ));
    }
    let encoded = EncodedPoint::from_bytes(bytes).map_err(|e| format!("bad SEC1 encoding: {e}"))?;
    let point = Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&encoded))
        .ok_or_else(|| "x coordinate is not on secp256k1".to_string())?;
    let point = ProjectivePoint::from(point);
    if bool::from(point.is_identity()) {
        return Err("the identity is not allowed".to_string());
    }
    Ok(point)
}
