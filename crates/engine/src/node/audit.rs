//! The audit entries a node writes.

use permafrost_keystore::{AuditEntry, AuditKind};
use permafrost_protocol::Timestamp;
use permafrost_wire::{Epoch, KeyId};

/// An audit entry at `now`.
pub(super) fn entry(
    now: Timestamp,
    kind: AuditKind,
    key_id: Option<&KeyId>,
    epoch: Epoch,
    message_digest: Option<[u8; 32]>,
    requester: Option<String>,
    detail: String,
) -> AuditEntry {
    AuditEntry {
        time_unix_ms: now.0,
        kind,
        key_id: key_id.map(|k| k.as_str().to_owned()).unwrap_or_default(),
        epoch: epoch.0,
        message_digest,
        requester,
        detail,
        client: None,
    }
}
