//! Binary values in the API are hex strings.

use crate::ApiError;

/// Encodes bytes as lowercase hex, the API's spelling of every binary value.
pub fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes a hex string (lowercase or uppercase) taken from the JSON field `field`.
///
/// The error names the field, so a caller can report `invalid hex in "message"` rather
/// than a bare parse failure.
pub fn decode_hex(field: &'static str, value: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(value).map_err(|e| ApiError::InvalidHex {
        field,
        reason: match e {
            hex::FromHexError::OddLength => format!("odd number of digits ({})", value.len()),
            hex::FromHexError::InvalidHexCharacter { c, index } => {
                format!("invalid character {c:?} at position {index}")
            }
            other => other.to_string(),
        },
    })
}
