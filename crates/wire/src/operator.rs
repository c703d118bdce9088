//! Operator approvals of a key's life-cycle actions (a DKG, a reshare, a standing policy of
//! scheduled share rotations).
//!
//! The coordinator only carries them: every node that takes part checks, against its own list
//! of operator keys, that an operator approved exactly the action it is asked to join. What an
//! operator signs is a [`LifecycleAction`] under a network id, a request id and a timestamp.

use serde::{Deserialize, Serialize};

use crate::ids::{Curve, Digest, Epoch, KeyId, NodeId};

/// The most approvals one open may carry (one per custodian is the normal case).
pub const MAX_APPROVALS: usize = 16;

/// Which life-cycle action an operator approves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleKind {
    /// Create a key by DKG.
    Dkg,
    /// Move a key to a new committee and/or threshold, or refresh its shares.
    Reshare,
    /// A standing approval: refresh the key's shares every `every_secs` seconds, keeping its
    /// committee and threshold. Each scheduled refresh is an ordinary reshare that every member
    /// checks against it; it approves no other change.
    Rotation {
        /// The interval between two refreshes, in seconds (at least
        /// [`MIN_ROTATION_SECS`]).
        every_secs: u64,
    },
}

/// The shortest interval a rotation policy may have.
pub const MIN_ROTATION_SECS: u64 = 60;

impl LifecycleKind {
    /// The action's name in the signed bytes and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleKind::Dkg => "dkg",
            LifecycleKind::Reshare => "reshare",
            LifecycleKind::Rotation { .. } => "rotation",
        }
    }
}

/// What an operator approves: one DKG or one reshare of one key, with the committee and
/// threshold that will hold it afterwards; or a standing policy of refreshes that keep the
/// committee and threshold (then `epoch` is 0 and `old_public_key_package` is the SHA-256 of
/// the key's group key, which no refresh changes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleAction {
    /// DKG or reshare.
    pub kind: LifecycleKind,
    /// The key.
    pub key_id: KeyId,
    /// Its curve.
    pub curve: Curve,
    /// 0 for a DKG and a rotation policy; the epoch being reshared for a reshare.
    pub epoch: Epoch,
    /// SHA-256 of the public key package of `epoch` (all zero for a DKG): binds the old
    /// committee and the group key. For a rotation policy, SHA-256 of the group key.
    pub old_public_key_package: Digest,
    /// The committee that holds the key afterwards, sorted.
    pub committee: Vec<NodeId>,
    /// The threshold afterwards.
    pub threshold: u16,
}

/// An operator's ed25519 approval of one [`LifecycleAction`] on one network, once (request id
/// `request_id`), around time `timestamp_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorApproval {
    /// The operator's ed25519 public key.
    pub public_key: [u8; 32],
    /// Unique per approval: a node refuses a request id it has seen in another session.
    pub request_id: [u8; 16],
    /// When the operator approved, milliseconds since the Unix epoch; a node refuses one too far
    /// from its own clock.
    pub timestamp_ms: u64,
    /// ed25519 signature (64 bytes) over [`OperatorApproval::signed_bytes`].
    pub signature: Vec<u8>,
}

impl OperatorApproval {
    /// Domain separation for the operator's signature.
    pub const DOMAIN: &'static [u8] = b"permafrost/operator-approval/v1";

    /// The bytes an operator signs: `DOMAIN`, then each of network id, action name, key id and
    /// curve name as `u32 BE length ‖ bytes`, then `u64 BE epoch ‖ 32-byte old package digest ‖
    /// u16 BE threshold ‖ u32 BE committee size`, each member as `u32 BE length ‖ node id`, for
    /// a rotation policy `u64 BE every_secs`, and last `request_id ‖ u64 BE timestamp_ms`.
    pub fn signed_bytes(
        network_id: &str,
        action: &LifecycleAction,
        request_id: &[u8; 16],
        timestamp_ms: u64,
    ) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, part: &[u8]) {
            // Every part is far below 4 GiB (no frame is over 1 MiB).
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part);
        }
        let mut out = Vec::with_capacity(256 + 48 * action.committee.len());
        out.extend_from_slice(Self::DOMAIN);
        put(&mut out, network_id.as_bytes());
        put(&mut out, action.kind.as_str().as_bytes());
        put(&mut out, action.key_id.as_str().as_bytes());
        put(&mut out, action.curve.as_str().as_bytes());
        out.extend_from_slice(&action.epoch.0.to_be_bytes());
        out.extend_from_slice(&action.old_public_key_package.0);
        out.extend_from_slice(&action.threshold.to_be_bytes());
        let members = u32::try_from(action.committee.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&members.to_be_bytes());
        for member in &action.committee {
            put(&mut out, member.as_bytes());
        }
        if let LifecycleKind::Rotation { every_secs } = action.kind {
            out.extend_from_slice(&every_secs.to_be_bytes());
        }
        out.extend_from_slice(request_id);
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        out
    }

    /// `signing_key`'s approval of `action` on network `network_id`, once (`request_id`), at
    /// `timestamp_ms`.
    pub fn sign(
        signing_key: &ed25519_dalek::SigningKey,
        network_id: &str,
        action: &LifecycleAction,
        request_id: [u8; 16],
        timestamp_ms: u64,
    ) -> Self {
        use ed25519_dalek::Signer as _;
        let signed = Self::signed_bytes(network_id, action, &request_id, timestamp_ms);
        OperatorApproval {
            public_key: signing_key.verifying_key().to_bytes(),
            request_id,
            timestamp_ms,
            signature: signing_key.sign(&signed).to_bytes().to_vec(),
        }
    }

    /// Checks the signature (strict ed25519) over exactly `action` on `network_id`, sizes
    /// first. The error says what is wrong.
    pub fn verify(&self, network_id: &str, action: &LifecycleAction) -> Result<(), String> {
        let signature: [u8; 64] = self.signature.as_slice().try_into().map_err(|_| {
            format!(
                "operator signature of {} bytes, not 64",
                self.signature.len()
            )
        })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| "operator public key is not a valid ed25519 key".to_string())?;
        let signed = Self::signed_bytes(network_id, action, &self.request_id, self.timestamp_ms);
        key.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|_| {
                format!(
                    "the approval of operator {} does not verify over this network, {} of key {}, epoch, committee and threshold",
                    hex::encode(self.public_key),
                    action.kind.as_str(),
                    action.key_id
                )
            })
    }
}
