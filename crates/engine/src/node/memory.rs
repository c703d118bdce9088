//! A node's "disk" in memory, for the simulator and the core's tests: what it holds survives a
//! simulated crash (drop the core, open a new one on the same store), a write can be made to
//! fail, and lazily written audit entries are lost in a crash as they would be on disk.

use std::collections::BTreeMap;

use permafrost_keystore::{
    AuditEntry, ClientRequestRow, KeystoreError, ReshareConclusion, ShareState,
};
use permafrost_wire::{DkgCommit, Epoch, KeyId, Message, ReshareCommit, SessionId};

use super::reshare::ReshareRecord;
use super::store::{AuditDurability, NodeStore, ShareSummary, StoreError, StoredReshare};
use crate::any::StoredShare;

/// An admitted request's place in the store: expiry, approver, request id.
type AdmittedKey = (u64, [u8; 32], [u8; 16]);

fn admitted_key(request: &ClientRequestRow) -> AdmittedKey {
    (request.expires_unix_ms, request.client, request.request_id)
}

/// A [`NodeStore`] in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryNodeStore {
    shares: BTreeMap<(KeyId, Epoch), (ShareState, StoredShare)>,
    reshares: BTreeMap<SessionId, ReshareRecord>,
    concluded: std::collections::BTreeSet<SessionId>,
    certificates: BTreeMap<SessionId, Message>,
    /// Admitted client and operator requests by (expiry, approver, request id), as the
    /// keystore orders them, each with whether it is durable yet.
    client_requests: BTreeMap<AdmittedKey, (ClientRequestRow, bool)>,
    /// The audit log, each entry with whether it is durable yet.
    audit: Vec<(AuditEntry, bool)>,
    /// Writes to fail (each changes nothing): the operation, and how many writes of it succeed
    /// first.
    failing_writes: Vec<(&'static str, usize)>,
    /// Synced writes so far (each a disk sync in the keystore).
    syncs: usize,
    /// Whether a sync was started and not finished: until it is, a crash loses what it would
    /// make durable.
    syncing: bool,
    /// Whether a sync started stays running until a test lets it end.
    sync_ends_held: bool,
}

impl MemoryNodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `after` more writes of `operation` succeed, then makes the next one fail, changing
    /// nothing. The operations: "put_pending", "activate", "delete_pending", "put_reshare",
    /// "conclude_reshare", "conclude_session", "admit_client_request", "append_audit", "sync",
    /// "start_sync", "finish_sync", "write_batch".
    pub fn fail_write(&mut self, operation: &'static str, after: usize) {
        self.failing_writes.push((operation, after));
    }

    /// With `true`, a sync started does not end ([`NodeStore::try_finish_sync`] says it still
    /// runs; [`NodeStore::finish_sync`], which waits, still ends it): a crash meanwhile is a
    /// crash while the disk flushes. With `false`, it ends when next asked.
    pub fn hold_sync_ends(&mut self, hold: bool) {
        self.sync_ends_held = hold;
    }

    /// What a crash leaves: audit entries and client admissions that were written lazily and
    /// not yet made durable by a sync or a later durable write are gone.
    pub fn crash(&mut self) {
        let durable = self
            .audit
            .iter()
            .rposition(|(_, d)| *d)
            .map_or(0, |i| i + 1);
        self.audit.truncate(durable);
        self.client_requests.retain(|_, (_, durable)| *durable);
        self.syncing = false;
    }

    /// How many synced writes (durable writes, syncs, synced batches) this store made: what
    /// the keystore pays a disk sync for.
    pub fn syncs(&self) -> usize {
        self.syncs
    }

    /// Every lazy write so far is durable (a sync or a durable write happened).
    fn make_durable(&mut self) {
        self.syncs += 1;
        for (_, d) in &mut self.audit {
            *d = true;
        }
        for (_, d) in self.client_requests.values_mut() {
            *d = true;
        }
    }

    /// Every share of `key_id` with its state, by epoch.
    pub fn shares_of(&self, key_id: &KeyId) -> Vec<(Epoch, ShareState, &StoredShare)> {
        self.shares
            .iter()
            .filter(|((k, _), _)| k == key_id)
            .map(|((_, e), (state, share))| (*e, *state, share))
            .collect()
    }

    /// The audit log, each entry with whether it is durable yet.
    pub fn audit_entries(&self) -> impl Iterator<Item = (&AuditEntry, bool)> {
        self.audit.iter().map(|(entry, durable)| (entry, *durable))
    }

    /// Whether a reshare record of `session` is stored.
    pub fn has_reshare(&self, session: &SessionId) -> bool {
        self.reshares.contains_key(session)
    }

    /// Stores `share` as ACTIVE, replacing every other share of its key (tests of stale or
    /// foreign shares).
    pub fn install_active(&mut self, share: StoredShare) {
        let key_id = share.key_id.clone();
        self.shares.retain(|(k, _), _| *k != key_id);
        self.shares
            .insert((key_id, share.epoch), (ShareState::Active, share));
    }

    /// The same approval (approver, request id and expiry) stored, or earlier in `requests`,
    /// for another session is a [`KeystoreError::Conflict`], as in the keystore, which sees it
    /// when its insert replaces a row.
    fn refuse_same_approvals<'a>(
        &self,
        requests: impl IntoIterator<Item = &'a ClientRequestRow>,
    ) -> Result<(), StoreError> {
        let mut earlier = BTreeMap::new();
        for request in requests {
            let key = admitted_key(request);
            let known = earlier
                .get(&key)
                .copied()
                .or_else(|| self.client_requests.get(&key).map(|(row, _)| row.session));
            if let Some(session) = known.filter(|session| *session != request.session) {
                return Err(KeystoreError::Conflict(format!(
                    "request id {} already admitted in session {}",
                    hex::encode(request.request_id),
                    hex::encode(session)
                ))
                .into());
            }
            earlier.insert(key, request.session);
        }
        Ok(())
    }

    /// Remembers `admissions` (not durable yet), each with its audit entry, after forgetting
    /// the requests expired at `now_unix_ms`.
    fn remember(&mut self, admissions: &[(ClientRequestRow, AuditEntry)], now_unix_ms: u64) {
        self.client_requests
            .retain(|_, (row, _)| row.expires_unix_ms >= now_unix_ms);
        for (request, entry) in admissions {
            self.client_requests
                .insert(admitted_key(request), (request.clone(), false));
            self.push_audit(entry, false);
        }
    }

    /// Fails a write if asked to.
    fn write(&mut self, operation: &'static str) -> Result<(), StoreError> {
        let mut failing = None;
        for (index, (op, after)) in self.failing_writes.iter_mut().enumerate() {
            if *op != operation {
                continue;
            }
            if *after == 0 {
                failing = Some(index);
                break;
            }
            *after -= 1;
        }
        if let Some(index) = failing {
            self.failing_writes.remove(index);
            return Err(KeystoreError::Storage(format!(
                "injected write failure ({operation}); nothing was written"
            ))
            .into());
        }
        Ok(())
    }

    /// A write that is synced before it returns, as the keystore's are: it makes every lazy
    /// write before it durable too (redb commits in order).
    fn durable_write(&mut self, operation: &'static str) -> Result<(), StoreError> {
        self.write(operation)?;
        self.make_durable();
        Ok(())
    }

    fn push_audit(&mut self, entry: &AuditEntry, durable: bool) {
        if durable {
            self.make_durable();
        }
        self.audit.push((entry.clone(), durable));
    }
}

impl NodeStore for MemoryNodeStore {
    fn share_summaries(&self) -> Result<Vec<ShareSummary>, StoreError> {
        Ok(self
            .shares
            .iter()
            .map(|((key_id, epoch), (state, _))| ShareSummary {
                key_id: key_id.clone(),
                epoch: *epoch,
                state: *state,
            })
            .collect())
    }

    fn shares_of_key(&self, key_id: &KeyId) -> Result<Vec<ShareSummary>, StoreError> {
        Ok(self
            .share_summaries()?
            .into_iter()
            .filter(|s| s.key_id == *key_id)
            .collect())
    }

    fn share(
        &self,
        key_id: &KeyId,
        epoch: Epoch,
    ) -> Result<Option<(ShareState, StoredShare)>, StoreError> {
        Ok(self.shares.get(&(key_id.clone(), epoch)).cloned())
    }

    fn put_pending(&mut self, share: &StoredShare) -> Result<(), StoreError> {
        self.durable_write("put_pending")?;
        self.shares.insert(
            (share.key_id.clone(), share.epoch),
            (ShareState::Pending, share.clone()),
        );
        Ok(())
    }

    fn activate(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        session: &SessionId,
        certificate: &DkgCommit,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        if !self.shares.contains_key(&(key_id.clone(), epoch)) {
            return Err(KeystoreError::NotFound {
                key_id: key_id.to_string(),
                epoch: epoch.0,
            }
            .into());
        }
        self.write("activate")?;
        if let Some((state, _)) = self.shares.get_mut(&(key_id.clone(), epoch)) {
            *state = ShareState::Active;
        }
        self.certificates
            .insert(*session, Message::DkgCommit(certificate.clone()));
        self.concluded.insert(*session);
        self.push_audit(audit, true);
        Ok(())
    }

    fn delete_pending(&mut self, key_id: &KeyId, epoch: Epoch) -> Result<(), StoreError> {
        let slot = (key_id.clone(), epoch);
        if self
            .shares
            .get(&slot)
            .is_some_and(|(state, _)| *state == ShareState::Pending)
        {
            self.durable_write("delete_pending")?;
            self.shares.remove(&slot);
        }
        Ok(())
    }

    fn put_reshare(&mut self, record: &ReshareRecord) -> Result<(), StoreError> {
        self.durable_write("put_reshare")?;
        self.reshares.insert(record.open.session, record.clone());
        Ok(())
    }

    fn reshares(&self) -> Result<Vec<StoredReshare>, StoreError> {
        Ok(self
            .reshares
            .iter()
            .map(|(session, record)| (*session, Ok(record.clone())))
            .collect())
    }

    fn conclude_reshare(
        &mut self,
        key_id: &KeyId,
        change: ReshareConclusion,
        session: &SessionId,
        certificate: Option<&ReshareCommit>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mine = |k: &KeyId| k == key_id;
        if let ReshareConclusion::Promote { epoch } = change {
            let pending = self
                .shares
                .get(&(key_id.clone(), Epoch(epoch)))
                .is_some_and(|(state, _)| *state == ShareState::Pending);
            if !pending {
                return Err(KeystoreError::NotFound {
                    key_id: key_id.to_string(),
                    epoch,
                }
                .into());
            }
        }
        self.write("conclude_reshare")?;
        match change {
            ReshareConclusion::Promote { epoch } => {
                self.shares.retain(|(k, e), _| !mine(k) || e.0 == epoch);
                if let Some((state, _)) = self.shares.get_mut(&(key_id.clone(), Epoch(epoch))) {
                    *state = ShareState::Active;
                }
            }
            ReshareConclusion::Retire { epoch } => {
                self.shares.retain(|(k, e), _| !mine(k) || e.0 > epoch);
            }
            ReshareConclusion::Discard { epoch } => {
                let slot = (key_id.clone(), Epoch(epoch));
                if self
                    .shares
                    .get(&slot)
                    .is_some_and(|(state, _)| *state == ShareState::Pending)
                {
                    self.shares.remove(&slot);
                }
            }
        }
        self.reshares.remove(session);
        if let Some(certificate) = certificate {
            self.certificates
                .insert(*session, Message::ReshareCommit(certificate.clone()));
        }
        self.concluded.insert(*session);
        self.push_audit(audit, true);
        Ok(())
    }

    fn certificate(&self, session: &SessionId) -> Result<Option<Message>, StoreError> {
        Ok(self.certificates.get(session).cloned())
    }

    fn conclude_session(&mut self, session: &SessionId) -> Result<(), StoreError> {
        self.durable_write("conclude_session")?;
        self.concluded.insert(*session);
        Ok(())
    }

    fn session_concluded(&self, session: &SessionId) -> Result<bool, StoreError> {
        Ok(self.concluded.contains(session))
    }

    fn admit_client_request(
        &mut self,
        request: &ClientRequestRow,
        audit: &AuditEntry,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.refuse_same_approvals([request])?;
        self.write("admit_client_request")?;
        self.remember(&[(request.clone(), audit.clone())], now_unix_ms);
        Ok(())
    }

    fn client_requests(&self, now_unix_ms: u64) -> Result<Vec<ClientRequestRow>, StoreError> {
        Ok(self
            .client_requests
            .values()
            .map(|(row, _)| row)
            .filter(|row| row.expires_unix_ms >= now_unix_ms)
            .cloned()
            .collect())
    }

    fn append_audit(
        &mut self,
        entry: &AuditEntry,
        durability: AuditDurability,
    ) -> Result<(), StoreError> {
        self.write("append_audit")?;
        self.push_audit(entry, durability == AuditDurability::Durable);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.write("sync")?;
        self.make_durable();
        Ok(())
    }

    fn start_sync(&mut self) -> Result<(), StoreError> {
        self.write("start_sync")?;
        self.syncing = true;
        Ok(())
    }

    fn finish_sync(&mut self) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.syncing) {
            return Ok(());
        }
        self.write("finish_sync")?;
        self.make_durable();
        Ok(())
    }

    /// The disk in memory is instant: a sync started has ended, unless a test holds it
    /// ([`hold_sync_ends`](Self::hold_sync_ends)).
    fn try_finish_sync(&mut self) -> Option<Result<(), StoreError>> {
        if self.syncing && self.sync_ends_held {
            return None;
        }
        Some(self.finish_sync())
    }

    fn write_batch(
        &mut self,
        admissions: &[(ClientRequestRow, AuditEntry)],
        audits: &[AuditEntry],
        durable: bool,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.refuse_same_approvals(admissions.iter().map(|(request, _)| request))?;
        self.write("write_batch")?;
        self.remember(admissions, now_unix_ms);
        for entry in audits {
            self.audit.push((entry.clone(), false));
        }
        if durable {
            self.make_durable();
        }
        Ok(())
    }
}
