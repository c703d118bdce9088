//! Pending shares an operator decides on: a node that confirmed a DKG or a reshare keeps its
//! PENDING share until the session's certificate (promotion) — an unsigned abort or a timeout
//! deletes nothing. When no certificate will come (the coordinator recorded an abort, or lost
//! the session), an operator lists what is pending and discards it, with the node stopped.

use permafrost_keystore::{AuditKind, ReshareConclusion, ShareState};
use permafrost_protocol::Timestamp;
use permafrost_wire::{Epoch, KeyId, SessionId};

use super::audit;
use super::store::{NodeStore, StoreError};

/// One PENDING share, and the unconcluded reshare that produced it (none for a DKG's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingShare {
    /// The key.
    pub key_id: KeyId,
    /// The epoch the share would hold.
    pub epoch: Epoch,
    /// The reshare session it belongs to, if it came from a reshare still recorded here.
    pub reshare: Option<SessionId>,
}

/// Every PENDING share in `store`, with its reshare session where one is recorded.
pub fn pending_shares<St: NodeStore>(store: &St) -> Result<Vec<PendingShare>, StoreError> {
    let reshares: Vec<(SessionId, KeyId, Epoch)> = store
        .reshares()?
        .into_iter()
        .filter_map(|(session, record)| {
            let record = record.ok()?;
            let next = record.epoch().0.checked_add(1)?;
            Some((session, record.key_id().clone(), Epoch(next)))
        })
        .collect();
    Ok(store
        .share_summaries()?
        .into_iter()
        .filter(|s| s.state == ShareState::Pending)
        .map(|s| PendingShare {
            reshare: reshares
                .iter()
                .find(|(_, key, epoch)| *key == s.key_id && *epoch == s.epoch)
                .map(|(session, _, _)| *session),
            key_id: s.key_id,
            epoch: s.epoch,
        })
        .collect())
}

/// Discards the PENDING share of `key_id` at `epoch`, on an operator's word: with its reshare's
/// record, concluding that session (so it is never joined again), or alone for a DKG's share;
/// audited as the operator's decision. The node must not be running. Returns what was deleted.
pub fn discard_pending<St: NodeStore>(
    store: &mut St,
    key_id: &KeyId,
    epoch: Epoch,
    now: Timestamp,
) -> Result<PendingShare, StoreError> {
    let Some(pending) = pending_shares(store)?
        .into_iter()
        .find(|p| p.key_id == *key_id && p.epoch == epoch)
    else {
        return Err(StoreError::Unreadable(format!(
            "no pending share of key {key_id} at epoch {epoch}"
        )));
    };
    let what = match pending.reshare {
        Some(session) => format!("reshare {session}"),
        None => "its DKG".to_string(),
    };
    let entry = audit::entry(
        now,
        if pending.reshare.is_some() {
            AuditKind::Reshare
        } else {
            AuditKind::Dkg
        },
        Some(key_id),
        epoch,
        None,
        None,
        format!("pending share of epoch {epoch} discarded by an operator ({what})"),
    );
    match pending.reshare {
        Some(session) => store.conclude_reshare(
            key_id,
            ReshareConclusion::Discard { epoch: epoch.0 },
            &session,
            None,
            &entry,
        )?,
        None => {
            store.delete_pending(key_id, epoch)?;
            store.append_audit(&entry, super::AuditDurability::Durable)?;
        }
    }
    Ok(pending)
}
