//! Identifiers carried by every message.

use std::fmt;

use frost_core::{Ciphersuite, Identifier};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::WireError;

/// Longest accepted key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Longest accepted node id, in bytes (a libp2p ed25519 PeerId is 38).
pub const MAX_NODE_ID_LEN: usize = 64;

/// The three signature schemes Permafrost serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Curve {
    /// FROST(Ed25519, SHA-512): plain RFC 8032 Ed25519 signatures.
    Ed25519,
    /// FROST(secp256k1, SHA-256) as in RFC 9591: 65-byte `R ‖ z` signatures.
    Secp256k1,
    /// FROST(secp256k1, SHA-256) with BIP-340/341 tweaks: 64-byte taproot signatures.
    Secp256k1Tr,
}

impl Curve {
    /// Every curve, in a stable order.
    pub const ALL: [Curve; 3] = [Curve::Ed25519, Curve::Secp256k1, Curve::Secp256k1Tr];

    /// The name used in the API and configs: `ed25519`, `secp256k1`, `secp256k1-tr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::Ed25519 => "ed25519",
            Curve::Secp256k1 => "secp256k1",
            Curve::Secp256k1Tr => "secp256k1-tr",
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Curve {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Curve::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| WireError::InvalidId {
                what: "curve",
                reason: format!("{s:?} is not one of ed25519, secp256k1, secp256k1-tr"),
            })
    }
}

/// An opaque key id: printable ASCII, 1 to [`MAX_KEY_ID_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// Validates and wraps a key id.
    pub fn new(id: impl Into<String>) -> Result<Self, WireError> {
        let id = id.into();
        let invalid = |reason: &str| WireError::InvalidId {
            what: "key id",
            reason: reason.to_owned(),
        };
        if id.is_empty() {
            return Err(invalid("empty"));
        }
        if id.len() > MAX_KEY_ID_LEN {
            return Err(invalid("longer than 64 bytes"));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("not printable ASCII"));
        }
        Ok(KeyId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = WireError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        KeyId::new(value)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 32-byte session id. DKG session ids are hashes of the session parameters; signing session
/// ids are chosen at random by the coordinator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The epoch of a key: 0 after DKG, +1 at every committed reshare.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex::encode(&self.0[..8]))
    }
}

/// A node's network identity: the bytes of its libp2p PeerId (or, in the in-memory simulator,
/// any stable public bytes). The FROST identifier of a node is derived from these bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>", into = "Vec<u8>")]
pub struct NodeId(Vec<u8>);

impl NodeId {
    /// Validates and wraps identity bytes (1 to [`MAX_NODE_ID_LEN`] bytes).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, WireError> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > MAX_NODE_ID_LEN {
            return Err(WireError::InvalidId {
                what: "node id",
                reason: format!("{} bytes, expected 1 to {MAX_NODE_ID_LEN}", bytes.len()),
            });
        }
        Ok(NodeId(bytes))
    }

    /// The identity bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<Vec<u8>> for NodeId {
    type Error = WireError;
    fn try_from(value: Vec<u8>) -> Result<Self, Self::Error> {
        NodeId::new(value)
    }
}

impl From<NodeId> for Vec<u8> {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    /// The last 8 bytes in hex: enough to tell nodes apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = &self.0[self.0.len().saturating_sub(8)..];
        f.write_str(&hex::encode(tail))
    }
}

/// The FROST participant identifier of a node: `Identifier::derive(node id bytes)`. Stable
/// across reshares, unique per node, never a positional index.
pub fn participant_identifier<C: Ciphersuite>(node: &NodeId) -> Result<Identifier<C>, WireError> {
    Identifier::derive(node.as_bytes()).map_err(|e| WireError::InvalidId {
        what: "node id",
        reason: format!("cannot derive a FROST identifier: {e}"),
    })
}

/// Secret bytes on the wire (a DKG round-2 share). Zeroized on drop, printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// The secret bytes; do not log or copy them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_validated() {
        assert!(KeyId::new("k-1").is_ok());
        assert!(KeyId::new("").is_err());
        assert!(KeyId::new("has space").is_err());
        assert!(KeyId::new("x".repeat(65)).is_err());
    }

    #[test]
    fn node_ids_are_bounded_and_derive_distinct_identifiers() {
        assert!(NodeId::new(vec![]).is_err());
        assert!(NodeId::new(vec![1; 65]).is_err());
        let a = participant_identifier::<frost_ed25519::Ed25519Sha512>(
            &NodeId::new(vec![1; 38]).unwrap(),
        )
        .unwrap();
        let b = participant_identifier::<frost_ed25519::Ed25519Sha512>(
            &NodeId::new(vec![2; 38]).unwrap(),
        )
        .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(format!("{:?}", SecretBytes::new(vec![42; 4])), "<redacted>");
    }

    #[test]
    fn curve_names_round_trip() {
        for c in Curve::ALL {
            assert_eq!(c.as_str().parse::<Curve>().unwrap(), c);
        }
        assert!("p256".parse::<Curve>().is_err());
    }
}
