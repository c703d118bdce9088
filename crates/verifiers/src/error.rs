//! The error type shared by every verifier.

/// Why a signature was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The public key has the wrong length or is not a valid encoding of a
    /// usable point.
    #[error("malformed {scheme} public key: {reason}")]
    MalformedKey {
        /// The signature scheme, e.g. `"ed25519"`.
        scheme: &'static str,
        /// What is wrong with the key.
        reason: String,
    },
    /// The signature has the wrong length or contains an invalid encoding
    /// (a point that does not decode, a scalar out of range).
    #[error("malformed {scheme} signature: {reason}")]
    MalformedSignature {
        /// The signature scheme, e.g. `"ed25519"`.
        scheme: &'static str,
        /// What is wrong with the signature.
        reason: String,
    },
    /// Key and signature are well formed, but the signature is not valid for
    /// this key and message.
    #[error(
        "invalid {scheme} signature: verification equation does not hold for this key and message"
    )]
    InvalidSignature {
        /// The signature scheme, e.g. `"ed25519"`.
        scheme: &'static str,
    },
}

impl VerifyError {
    pub(crate) fn key(scheme: &'static str, reason: impl Into<String>) -> Self {
        VerifyError::MalformedKey {
            scheme,
            reason: reason.into(),
        }
    }

    pub(crate) fn sig(scheme: &'static str, reason: impl Into<String>) -> Self {
        VerifyError::MalformedSignature {
            scheme,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(scheme: &'static str) -> Self {
        VerifyError::InvalidSignature { scheme }
    }
}

/// Copies `bytes` into an array of exactly `N` bytes, or explains the length
/// mismatch.
pub(crate) fn exact<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    <[u8; N]>::try_from(bytes).map_err(|_| format!("expected {N} bytes, got {}", bytes.len()))
}
