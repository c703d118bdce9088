//! Request and response bodies.

use permafrost_wire::Curve;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::curve_name::CurveName;

/// `POST /v1/keys`: run a DKG for a new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The signature scheme.
    #[serde(with = "crate::curve_name")]
    #[schema(value_type = CurveName)]
    pub curve: Curve,
    /// Signers needed for a signature (t).
    #[schema(minimum = 2)]
    pub threshold: u16,
    /// The committee, by node name; `None` (field absent) means every node of the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    /// The new key's id (`A-Za-z0-9._-`, at most 64, not `.` or `..`); absent, the
    /// coordinator picks one.
    /// Operator approvals name the key id, so a request with approvals must give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(?!\\.\\.?$)[A-Za-z0-9._-]{1,64}$")]
    pub key_id: Option<String>,
    /// Operators' approvals of this DKG, checked by every member against its own list. Empty,
    /// the coordinator approves with its gateway operator key, if it has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub approvals: Vec<OperatorApproval>,
}

/// A key as the coordinator knows it: the answer of `POST /v1/keys` (201),
/// `GET /v1/keys/{key_id}`, `POST /v1/keys/{key_id}/reshare` and `PUT|DELETE
/// /v1/keys/{key_id}/rotation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyRecord {
    /// The opaque key id.
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub key_id: String,
    /// The signature scheme.
    #[serde(with = "crate::curve_name")]
    #[schema(value_type = CurveName)]
    pub curve: Curve,
    /// The group public key, lowercase hex of frost's `VerifyingKey::serialize()`: 32 bytes
    /// for ed25519, 33 (SEC1 compressed) for secp256k1 and secp256k1-tr. Never changes. A
    /// client's approval covers these bytes.
    #[schema(pattern = "^[0-9a-f]{64}([0-9a-f]{2})?$")]
    pub public_key: String,
    /// The network id of the coordinator's network file (`network_id`). A client's approval
    /// covers it (its UTF-8 bytes), so an approval made for one network is refused on another.
    pub network_id: String,
    /// Signers needed for a signature (t) in the current epoch.
    pub threshold: u16,
    /// The committee of the current epoch, by node name.
    pub nodes: Vec<String>,
    /// 0 after DKG, +1 at every committed reshare.
    pub epoch: u64,
    /// SHA-256 of the current epoch's serialized public key package, lowercase hex: what an
    /// operator's approval of the next reshare names.
    // Always sent; `default` only lets this client read older coordinators.
    #[serde(default)]
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    pub public_key_package_digest: String,
    /// The key's chain code, lowercase hex (32 bytes): with `public_key`, it determines every
    /// child key (`GET /v1/keys/{key_id}/derive`). Never changes.
    // Always sent; `default` only lets this client read older coordinators.
    #[serde(default)]
    #[schema(required = true, pattern = "^[0-9a-f]{64}$")]
    pub chain_code: String,
    /// The extended public key (`public_key` and `chain_code`) as a BIP-32 depth-0 mainnet
    /// `xpub`, for secp256k1 and secp256k1-tr (`null` for ed25519): a wallet derives every
    /// child key from it (`tr(<xpub>/<path>)` for secp256k1-tr).
    #[serde(default)]
    #[schema(required = true)]
    pub xpub: Option<String>,
    /// The key's scheduled share rotation (`PUT /v1/keys/{key_id}/rotation`), `null` when it
    /// has none.
    // Always sent; `default` only lets this client read older coordinators.
    #[serde(default)]
    #[schema(required = true)]
    pub rotation: Option<RotationRecord>,
}

/// A key's rotation policy, as [`KeyRecord::rotation`] shows it: the coordinator refreshes the
/// key's shares every `every_secs`, each refresh keeping `threshold` and `nodes`, as the
/// operators approved; every member checks each refresh against that approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotationRecord {
    /// The interval between two refreshes, in seconds.
    #[schema(minimum = 60)]
    pub every_secs: u64,
    /// When the last scheduled refresh committed, milliseconds since the Unix epoch; `null`
    /// before the first.
    #[serde(default)]
    #[schema(required = true)]
    pub last_ms: Option<u64>,
    /// When the next one is due, milliseconds since the Unix epoch. A refresh that was due
    /// while the coordinator was down runs once when it is back.
    pub next_ms: u64,
    /// The threshold every refresh keeps (the policy was approved for it).
    pub threshold: u16,
    /// The committee every refresh keeps, by node name, in the protocol's order (sorted by
    /// node id). If a reshare has since changed the key's committee or threshold, the policy
    /// no longer runs: set a new one.
    pub nodes: Vec<String>,
}

impl KeyRecord {
    /// The key id, group key and network id an approval to sign with this key's child at
    /// `path` (the key itself for the empty path) is for, decoded and checked: `f` gets them as
    /// a [`permafrost_wire::ApprovalTarget`].
    pub fn with_approval_target<T>(
        &self,
        path: &permafrost_wire::DerivationPath,
        f: impl FnOnce(&permafrost_wire::ApprovalTarget<'_>) -> T,
    ) -> Result<T, crate::ApiError> {
        let key_id = permafrost_wire::KeyId::new(self.key_id.clone()).map_err(|_| {
            crate::ApiError::InvalidKeyId {
                key_id: self.key_id.clone(),
                reason: "not a valid key id",
            }
        })?;
        let group_key = crate::decode_hex("public_key", &self.public_key)?;
        Ok(f(&permafrost_wire::ApprovalTarget {
            network_id: &self.network_id,
            group_key: &group_key,
            key_id: &key_id,
            path,
        }))
    }
}

/// `GET /v1/keys`: every key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The keys.
    pub keys: Vec<KeyRecord>,
}

/// `POST /v1/keys/{key_id}/sign`: sign one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The message, hex (either case), at most 64 KiB once decoded.
    #[schema(pattern = "^([0-9a-fA-F]{2})*$", max_length = 131072)]
    pub message: String,
    /// The child key to sign with, as `m/0/17`: non-hardened indices below 2^31, at most 16
    /// levels. Absent (or `m`): the key itself. The client's approval covers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^m(/(0|[1-9][0-9]{0,9})){0,16}$")]
    pub path: Option<String>,
    /// The client's approval, checked by every signer node. Without it, the coordinator
    /// approves with its own gateway client key, if it has one (and nodes accept that key only
    /// if their config lists it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientAuthorization>,
}

/// A client's approval of one signature (see `permafrost_wire::ClientAuthorization`): an
/// ed25519 signature over `DOMAIN ‖ u32 BE len(network_id) ‖ network_id ‖ u32 BE
/// len(group_key) ‖ group_key ‖ u32 BE len(key_id) ‖ key_id ‖ u32 BE len(message) ‖ message ‖
/// request_id ‖ u64 BE timestamp_ms`, with `DOMAIN` = `permafrost/client-authorization/v2`,
/// `network_id` and `group_key` (decoded from hex) the [`KeyRecord`]'s `network_id` and
/// `public_key` (the key's own, also for a child key). For a child key, `‖ "path" ‖ u8 depth ‖
/// depth × u32 BE index` follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthorization {
    /// The client's ed25519 public key, 32 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub public_key: String,
    /// 16 bytes hex, unique per approval: nodes refuse an id they saw in another request.
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    pub request_id: String,
    /// When the client approved, milliseconds since the Unix epoch; nodes refuse one more
    /// than their configured skew (default 120 s) from their clock.
    pub timestamp_ms: u64,
    /// The ed25519 signature, 64 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{128}$")]
    pub signature: String,
}

impl ClientAuthorization {
    /// The JSON form of a wire authorization.
    pub fn from_wire(auth: &permafrost_wire::ClientAuthorization) -> Self {
        ClientAuthorization {
            public_key: hex::encode(auth.public_key),
            request_id: hex::encode(auth.request_id),
            timestamp_ms: auth.timestamp_ms,
            signature: hex::encode(&auth.signature),
        }
    }

    /// The wire form; the error names the field of the wrong form or length.
    pub fn to_wire(&self) -> Result<permafrost_wire::ClientAuthorization, String> {
        fn fixed<const N: usize>(field: &'static str, value: &str) -> Result<[u8; N], String> {
            let bytes = crate::decode_hex(field, value).map_err(|e| e.to_string())?;
            <[u8; N]>::try_from(bytes.as_slice())
                .map_err(|_| format!("client.{field}: {} bytes, expected {N}", bytes.len()))
        }
        Ok(permafrost_wire::ClientAuthorization {
            public_key: fixed::<32>("public_key", &self.public_key)?,
            request_id: fixed::<16>("request_id", &self.request_id)?,
            timestamp_ms: self.timestamp_ms,
            signature: fixed::<64>("signature", &self.signature)?.to_vec(),
        })
    }
}

/// The answer of `POST /v1/keys/{key_id}/sign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignResponse {
    /// Lowercase hex of frost's `Signature::serialize()`: 64 bytes (RFC 8032) for ed25519,
    /// 65 (`R ‖ z`) for secp256k1, 64 (BIP-340) for secp256k1-tr.
    #[schema(pattern = "^[0-9a-f]{128}([0-9a-f]{2})?$")]
    pub signature: String,
    /// The public key the signature verifies under, lowercase hex: the key's own, or the
    /// child key's for a `path`.
    #[schema(pattern = "^[0-9a-f]{64}([0-9a-f]{2})?$")]
    pub public_key: String,
    /// The child key signed for, as `m/0/17` (`m`: the key itself).
    // Always sent; `default` only lets this client read older coordinators.
    #[serde(default = "root_path")]
    #[schema(required = true)]
    pub path: String,
    /// The epoch whose shares made the signature.
    pub epoch: u64,
    /// The nodes whose shares made the signature, by name.
    pub signers: Vec<String>,
    /// Members that sent a signature share that does not verify, by name: ROAST left them out
    /// and signed with others (empty when nobody cheated).
    // Always sent; `default` only lets this client read older coordinators.
    #[serde(default)]
    #[schema(required = true)]
    pub culprits: Vec<String>,
}

fn root_path() -> String {
    "m".into()
}

/// `GET /v1/keys/{key_id}/derive?path=m/0/17`: a child key, as every signer derives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChildKey {
    /// The key's id.
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub key_id: String,
    /// The path, as `m/0/17`.
    pub path: String,
    /// The child's public key, lowercase hex, in the form of the key's `public_key`: what a
    /// signature for this child verifies under (for secp256k1-tr the BIP-341 output key,
    /// tweaked from `internal_key` with no script path, as BIP-86 does).
    #[schema(pattern = "^[0-9a-f]{64}([0-9a-f]{2})?$")]
    pub public_key: String,
    /// For secp256k1-tr below the key itself: the BIP-86 internal key (33 bytes SEC1,
    /// lowercase hex), the BIP-32 child of the `xpub`. `null` otherwise.
    #[schema(pattern = "^[0-9a-f]{66}$")]
    pub internal_key: Option<String>,
}

/// `POST /v1/keys/{key_id}/reshare`: move the key to a new committee and/or threshold.
/// The answer is the [`KeyRecord`] of the new epoch, once committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReshareRequest {
    /// The new threshold.
    #[schema(minimum = 2)]
    pub threshold: u16,
    /// The new committee, by node name.
    pub nodes: Vec<String>,
    /// Operators' approvals of this reshare, checked by every old and new member against its
    /// own list. Empty, the coordinator approves with its gateway operator key, if it has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub approvals: Vec<OperatorApproval>,
}

/// `PUT /v1/keys/{key_id}/rotation`: refresh the key's shares every `every_secs`, keeping its
/// current committee and threshold. Replaces any policy the key had. The answer is the
/// [`KeyRecord`] with its `rotation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationRequest {
    /// The interval between two refreshes, in seconds; at least 60. The first refresh is due
    /// this long after the policy is set.
    #[schema(minimum = 60)]
    pub every_secs: u64,
    /// Operators' approvals of this policy (a `rotation` action, see [`OperatorApproval`]),
    /// checked by every member at every refresh against its own list. Empty, the coordinator
    /// approves with its gateway operator key, if it has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub approvals: Vec<OperatorApproval>,
}

/// An operator's approval of one DKG or reshare, or of a standing rotation policy (see
/// `permafrost_wire::OperatorApproval`): an ed25519 signature over `DOMAIN`, then network id,
/// action (`dkg`, `reshare` or `rotation`), key id and curve name each as `u32 BE length ‖
/// bytes`, then `u64 BE epoch ‖ 32-byte digest ‖ u16 BE threshold ‖ u32 BE committee size`,
/// each member's node id (its libp2p PeerId bytes) as `u32 BE length ‖ bytes` in sorted order,
/// for a rotation `u64 BE every_secs`, and last `request_id ‖ u64 BE timestamp_ms`; `DOMAIN` =
/// `permafrost/operator-approval/v1`. The digest is the old public key package's (zero for a
/// DKG); for a rotation the epoch is 0 and the digest is SHA-256 of the group public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorApproval {
    /// The operator's ed25519 public key, 32 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub public_key: String,
    /// 16 bytes hex, unique per approval: nodes refuse an id they saw in another session.
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    pub request_id: String,
    /// When the operator approved, milliseconds since the Unix epoch; nodes refuse one more
    /// than their configured skew (default 120 s) from their clock.
    pub timestamp_ms: u64,
    /// The ed25519 signature, 64 bytes hex.
    #[schema(pattern = "^[0-9a-fA-F]{128}$")]
    pub signature: String,
}

impl OperatorApproval {
    /// The JSON form of a wire approval.
    pub fn from_wire(approval: &permafrost_wire::OperatorApproval) -> Self {
        OperatorApproval {
            public_key: hex::encode(approval.public_key),
            request_id: hex::encode(approval.request_id),
            timestamp_ms: approval.timestamp_ms,
            signature: hex::encode(&approval.signature),
        }
    }

    /// The wire form; the error names the field of the wrong form or length.
    pub fn to_wire(&self) -> Result<permafrost_wire::OperatorApproval, String> {
        Ok(permafrost_wire::OperatorApproval {
            public_key: fixed::<32>("approvals", "public_key", &self.public_key)?,
            request_id: fixed::<16>("approvals", "request_id", &self.request_id)?,
            timestamp_ms: self.timestamp_ms,
            signature: fixed::<64>("approvals", "signature", &self.signature)?.to_vec(),
        })
    }
}

/// `value`, hex, as exactly `N` bytes; the error names `section.field`.
fn fixed<const N: usize>(
    section: &str,
    field: &'static str,
    value: &str,
) -> Result<[u8; N], String> {
    let bytes = crate::decode_hex(field, value).map_err(|e| format!("{section}.{e}"))?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{section}.{field}: {} bytes, expected {N}", bytes.len()))
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `"ok"` when the coordinator is serving.
    pub status: String,
    /// The network id (operator approvals name it).
    // Always sent; `default` only lets this client read older coordinators.
    #[serde(default)]
    #[schema(required = true)]
    pub network_id: String,
    /// Every node of the network file.
    pub nodes: Vec<NodeHealth>,
}

/// One node in [`Health`]. The coordinator sends every field (`null` where there is no value
/// yet); `default` only lets this client read older coordinators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeHealth {
    /// The node's name in the network file.
    pub name: String,
    /// Its libp2p PeerId (base58).
    #[schema(pattern = "^[1-9A-HJ-NP-Za-km-z]+$")]
    pub peer_id: String,
    /// Whether the coordinator has a libp2p connection to it open (not a probe: see
    /// `healthy`).
    pub connected: bool,
    /// The node answered a liveness probe (from its main loop) within the coordinator's
    /// `unhealthy_after_ms` (3 s by default): it is up and serving.
    #[serde(default)]
    #[schema(required = true)]
    pub healthy: bool,
    /// Round trip of the last successful probe, in microseconds.
    #[serde(default)]
    #[schema(required = true)]
    pub last_round_trip_us: Option<u64>,
    /// How long ago the last successful probe was sent, in milliseconds.
    #[serde(default)]
    #[schema(required = true)]
    pub last_probe_age_ms: Option<u64>,
    /// Why the last probe failed, if it failed after the last success.
    #[serde(default)]
    #[schema(required = true)]
    pub probe_error: Option<String>,
}

/// `GET /v1/ready`: whether the coordinator can sign with every key now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// At least the threshold of every key's committee is healthy (with no key yet: at least
    /// one node is).
    pub ready: bool,
}
