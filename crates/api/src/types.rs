//! Request and response bodies.

use permafrost_wire::Curve;
use serde::{Deserialize, Serialize};

/// `POST /v1/keys`: run a DKG for a new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The signature scheme.
    #[serde(with = "crate::curve_name")]
    pub curve: Curve,
    /// Signers needed for a signature (t).
    pub threshold: u16,
    /// The committee, by node name; `None` (field absent) means every node of the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
}

/// A key as the coordinator knows it: the answer of `POST /v1/keys` (201),
/// `GET /v1/keys/{key_id}` and `POST /v1/keys/{key_id}/reshare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The opaque key id.
    pub key_id: String,
    /// The signature scheme.
    #[serde(with = "crate::curve_name")]
    pub curve: Curve,
    /// The group public key, lowercase hex of frost's `VerifyingKey::serialize()`: 32 bytes
    /// for ed25519, 33 (SEC1 compressed) for secp256k1 and secp256k1-tr. Never changes.
    pub public_key: String,
    /// Signers needed for a signature (t) in the current epoch.
    pub threshold: u16,
    /// The committee of the current epoch, by node name.
    pub nodes: Vec<String>,
    /// 0 after DKG, +1 at every committed reshare.
    pub epoch: u64,
}

/// `GET /v1/keys`: every key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    /// The keys.
    pub keys: Vec<KeyRecord>,
}

/// `POST /v1/keys/{key_id}/sign`: sign one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The message, hex.
    pub message: String,
}

/// The answer of `POST /v1/keys/{key_id}/sign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    /// Lowercase hex of frost's `Signature::serialize()`: 64 bytes (RFC 8032) for ed25519,
    /// 65 (`R ‖ z`) for secp256k1, 64 (BIP-340) for secp256k1-tr.
    pub signature: String,
    /// The group public key the signature verifies under, lowercase hex.
    pub public_key: String,
    /// The epoch whose shares made the signature.
    pub epoch: u64,
    /// The nodes whose shares made the signature, by name.
    pub signers: Vec<String>,
}

/// `POST /v1/keys/{key_id}/reshare`: move the key to a new committee and/or threshold.
/// The answer is the [`KeyRecord`] of the new epoch, once committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshareRequest {
    /// The new threshold.
    pub threshold: u16,
    /// The new committee, by node name.
    pub nodes: Vec<String>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` when the coordinator is serving.
    pub status: String,
    /// Every node of the network file.
    pub nodes: Vec<NodeHealth>,
}

/// One node in [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// The node's name in the network file.
    pub name: String,
    /// Its libp2p PeerId (base58).
    pub peer_id: String,
    /// Whether the coordinator has a live connection to it.
    pub connected: bool,
}
