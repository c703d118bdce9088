//! Admission of signing requests: the client's approval checked by the gate (for this node's
//! network id and the group key of the share that would sign), a new request id and its audit
//! entry staged before the signer commits (written with their batch, and synced before any
//! share of the batch leaves: [`NodeCore::flush`]), and every refusal audited — at most
//! [`AUDITED_REFUSALS_PER_SECOND`] one by one, the rest counted.

use permafrost_keystore::{AuditKind, ClientRequestRow};
use permafrost_protocol::sign::client::{Admission, AdmittedRequest, ClientKey};
use permafrost_protocol::{Refusal, Timestamp};
use permafrost_wire::{Epoch, NodeId, SignRequest};
use sha2::{Digest as _, Sha256};

use super::store::{AuditDurability, StoreError};
use super::{audit, NodeCore, NodeNotice, NodeStore};

/// Refusals of signing requests written to the audit log one by one, at most this many per
/// second; the rest are counted and written as one entry (a coordinator flooding refusals
/// cannot grow the audit log faster than this).
pub const AUDITED_REFUSALS_PER_SECOND: u32 = 32;

/// How long a refusal written lazily (without a sync) may wait for one: the node syncs this
/// long after the first unsynced refusal, so a crash loses at most about the last second's
/// refusals however few there are (a busy node's signatures sync them sooner).
pub const REFUSAL_SYNC_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Which gate reloads the request ids the store kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ReloadInto {
    /// The client gate (signing approvals).
    Clients,
    /// The operator gate (DKG and reshare approvals).
    Operators,
    /// Both, as the node opens.
    Both,
}

/// Refusals audited in the current second, and those counted but not written one by one.
#[derive(Default)]
pub(super) struct RefusalAudit {
    second: u64,
    written: u32,
    unwritten: u64,
    /// When the first refusal written lazily since the last timed sync was written.
    unsynced_since: Option<Timestamp>,
}

impl RefusalAudit {
    /// When the count of unwritten refusals is due to be written, or the refusals written
    /// lazily are due to be synced, whichever comes first.
    pub(super) fn next_flush(&self) -> Option<Timestamp> {
        let count = (self.unwritten > 0)
            .then(|| Timestamp(self.second.saturating_add(1).saturating_mul(1000)));
        let sync = self
            .unsynced_since
            .map(|since| since.after(REFUSAL_SYNC_WITHIN));
        count.into_iter().chain(sync).min()
    }
}

impl<St: NodeStore> NodeCore<St> {
    /// Reloads the client and operator request ids admitted before, so a replay is refused.
    pub(super) fn restore_client_requests(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let rows = self.stored_request_ids(now)?;
        self.remember_request_ids(&rows, ReloadInto::Both, now);
        Ok(())
    }

    /// The request ids the store keeps (until their timestamps plus
    /// [`REQUEST_ID_RETENTION`](permafrost_protocol::sign::client::REQUEST_ID_RETENTION)), in
    /// expiry order, so that a gate forgets them as they expire
    /// (see `RequestIds`).
    pub(super) fn stored_request_ids(
        &self,
        now: Timestamp,
    ) -> Result<Vec<ClientRequestRow>, StoreError> {
        let mut rows = self.store.client_requests(now.0)?;
        rows.sort_by_key(|row| row.expires_unix_ms);
        Ok(rows)
    }

    /// Records `rows` (from [`stored_request_ids`](Self::stored_request_ids)) in the gates
    /// `into`; each keeps in memory those its skew could still accept.
    pub(super) fn remember_request_ids(
        &mut self,
        rows: &[ClientRequestRow],
        into: ReloadInto,
        now: Timestamp,
    ) {
        for row in rows {
            // The table holds operator approvals' request ids too: both gates remember all.
            if into != ReloadInto::Clients {
                self.operators.restore(
                    row.client,
                    row.request_id,
                    permafrost_wire::SessionId(row.session),
                    row.expires_unix_ms,
                    now,
                );
            }
            if into != ReloadInto::Operators {
                self.gate.restore(
                    ClientKey(row.client),
                    row.request_id,
                    permafrost_wire::SessionId(row.session),
                    row.expires_unix_ms,
                    now,
                );
            }
        }
        if !rows.is_empty() {
            self.notice(NodeNotice::ClientRequestsReloaded { count: rows.len() });
        }
    }

    /// Decides on a signing request's client authorization. An admission is staged (request id
    /// and audit entry) before the signer commits, and written with its batch at the next
    /// [`flush`](NodeCore::flush), synced before any share of the batch leaves; a refusal is
    /// audited too.
    pub(super) fn admit(
        &mut self,
        from: &NodeId,
        request: &SignRequest,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let checked = self.signer_group_key(request).and_then(|group_key| {
            self.gate
                .check(request, &self.setup.network_id, group_key, now)
        });
        let decision = match checked {
            Ok(Admission::Again) => return Ok(()),
            Ok(Admission::New(_))
                if self.staged.admissions.len() >= super::MAX_STAGED_ADMISSIONS =>
            {
                Err(Refusal::Limit(format!(
                    "{} admissions wait for the keystore",
                    self.staged.admissions.len()
                )))
            }
            Ok(Admission::New(admitted)) => {
                self.stage_admission(from, request, admitted, now);
                Ok(())
            }
            Err(refusal) => Err(refusal),
        };
        if let Err(refusal) = &decision {
            self.notice(NodeNotice::SigningRefused {
                key_id: request.key_id.clone(),
                session: request.session,
                refusal: refusal.clone(),
            });
            self.flush_refusal_count(now);
            if self.refusals.written < AUDITED_REFUSALS_PER_SECOND {
                self.refusals.written += 1;
                let entry = self.request_audit_entry(
                    AuditKind::Refused,
                    from,
                    request,
                    refusal.to_string(),
                    now,
                );
                if let Err(error) = self.append_refusal(&entry, now) {
                    self.notice(NodeNotice::StoreFailed {
                        operation: "auditing a refusal",
                        key_id: Some(request.key_id.clone()),
                        error,
                    });
                }
            } else {
                self.refusals.unwritten += 1;
            }
        }
        decision
    }

    /// The group key a client's approval of `request` must be for: that of the share the
    /// running signer of the key would sign with. A request for another epoch is refused here,
    /// as the signer would refuse it, before any request id is spent on it.
    fn signer_group_key(&self, request: &SignRequest) -> Result<&[u8], Refusal> {
        let Some(signer) = self.signer_keys.get(&request.key_id) else {
            return Err(Refusal::WrongKey);
        };
        if signer.epoch != request.epoch {
            return Err(Refusal::WrongEpoch {
                expected: signer.epoch,
                got: request.epoch,
            });
        }
        Ok(&signer.group_key)
    }

    /// Starts a new second of the refusal audit cap, writing one entry for the refusals of the
    /// previous ones that were only counted.
    pub(super) fn flush_refusal_count(&mut self, now: Timestamp) {
        let second = now.0 / 1000;
        if second == self.refusals.second {
            return;
        }
        let unwritten = std::mem::take(&mut self.refusals.unwritten);
        self.refusals.second = second;
        self.refusals.written = 0;
        if unwritten == 0 {
            return;
        }
        self.notice(NodeNotice::RefusalsOverCap { count: unwritten });
        let entry = audit::entry(
            now,
            AuditKind::Refused,
            None,
            Epoch(0),
            None,
            None,
            format!(
                "{unwritten} further signing requests refused, not written one by one (at most {AUDITED_REFUSALS_PER_SECOND} a second are)"
            ),
        );
        if let Err(error) = self.append_refusal(&entry, now) {
            self.notice(NodeNotice::StoreFailed {
                operation: "auditing a count of refusals",
                key_id: None,
                error,
            });
        }
    }

    /// Appends a refusal's audit entry lazily (no sync of its own: a flood of refusals costs
    /// no sync each), to be synced within [`REFUSAL_SYNC_WITHIN`].
    pub(super) fn append_refusal(
        &mut self,
        entry: &permafrost_keystore::AuditEntry,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.store.append_audit(entry, AuditDurability::Lazy)?;
        self.refusals.unsynced_since.get_or_insert(now);
        Ok(())
    }

    /// Syncs the refusals written lazily once the first of them has waited
    /// [`REFUSAL_SYNC_WITHIN`].
    pub(super) fn sync_refusals(&mut self, now: Timestamp) {
        let Some(since) = self.refusals.unsynced_since else {
            return;
        };
        if now < since.after(REFUSAL_SYNC_WITHIN) {
            return;
        }
        self.refusals.unsynced_since = None;
        if let Err(error) = self.store.sync() {
            self.notice(NodeNotice::StoreFailed {
                operation: "syncing the audited refusals",
                key_id: None,
                error,
            });
        }
    }

    fn stage_admission(
        &mut self,
        from: &NodeId,
        request: &SignRequest,
        admitted: AdmittedRequest,
        now: Timestamp,
    ) {
        let row = ClientRequestRow {
            client: admitted.client.0,
            request_id: admitted.request_id,
            session: admitted.session.0,
            expires_unix_ms: admitted.expires_ms,
        };
        let mut entry =
            self.request_audit_entry(AuditKind::ClientRequest, from, request, String::new(), now);
        entry.client = Some(permafrost_keystore::AuditClient {
            public_key: admitted.client.0,
            request_id: admitted.request_id,
            timestamp_ms: admitted.timestamp_ms,
            session: admitted.session.0,
            path: request.path.indices().to_vec(),
        });
        // Written with the batch's other admissions and share records at the next flush, which
        // syncs before any share of the batch leaves; the gate refuses a replay from now on.
        self.staged.admissions.push((row, entry));
        self.gate.record(admitted, now);
        self.notice(NodeNotice::ClientRequestAdmitted {
            key_id: request.key_id.clone(),
            session: request.session,
        });
    }

    fn request_audit_entry(
        &self,
        kind: AuditKind,
        from: &NodeId,
        request: &SignRequest,
        detail: String,
        now: Timestamp,
    ) -> permafrost_keystore::AuditEntry {
        audit::entry(
            now,
            kind,
            Some(&request.key_id),
            request.epoch,
            Some(Sha256::digest(&request.message).into()),
            (self.setup.peer_name)(from),
            detail,
        )
    }
}
