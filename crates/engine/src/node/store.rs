//! What a node keeps on disk, as domain operations: the [`NodeStore`] trait, and its
//! implementation by the redb keystore. Every write either happens whole or not at all, and
//! returns only once it is durable (except audit entries written [`AuditDurability::Lazy`]).

use permafrost_keystore::{
    AuditEntry, ClientRequestRow, KeyStore, KeystoreError, ReshareConclusion, ShareRecord,
    ShareState,
};
use permafrost_wire::{decode, encode, DkgCommit, Epoch, KeyId, Message, ReshareCommit, SessionId};
use zeroize::Zeroizing;

use super::reshare::ReshareRecord;
use crate::any::{PublicShareInfo, StoredShare};

/// Why the store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The keystore failed or refused.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// Something stored does not decode (kept for an operator, never deleted).
    #[error("unreadable stored record: {0}")]
    Unreadable(String),
}

/// An unconcluded reshare as stored: its session, and its record or why the record does not
/// decode.
pub type StoredReshare = (SessionId, Result<ReshareRecord, String>);

/// A stored share's key, epoch and state, without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSummary {
    /// The key.
    pub key_id: KeyId,
    /// The epoch.
    pub epoch: Epoch,
    /// Its life-cycle state.
    pub state: ShareState,
}

/// How soon an audit entry must be on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditDurability {
    /// Synced before the call returns: for everything the node promises something on.
    Durable,
    /// Synced with a later durable write: for refusals, which promise nothing to anyone.
    Lazy,
}

/// A node's storage, as the operations the node core performs. Implemented by
/// [`KeyStore`] (redb, encrypted) and by [`MemoryNodeStore`](super::MemoryNodeStore).
pub trait NodeStore {
    /// Every stored share's key, epoch and state.
    fn share_summaries(&self) -> Result<Vec<ShareSummary>, StoreError>;
    /// The epochs and states of the stored shares of `key_id`, reading no other key's.
    fn shares_of_key(&self, key_id: &KeyId) -> Result<Vec<ShareSummary>, StoreError>;
    /// One share with its state.
    fn share(
        &self,
        key_id: &KeyId,
        epoch: Epoch,
    ) -> Result<Option<(ShareState, StoredShare)>, StoreError>;
    /// Stores `share` as PENDING (replacing a PENDING share of the same epoch).
    fn put_pending(&mut self, share: &StoredShare) -> Result<(), StoreError>;
    /// Promotes the PENDING share of `epoch` to ACTIVE (a DKG's end), with `audit`, keeps the
    /// `certificate` it was activated on, and remembers `session` as concluded, in one step.
    fn activate(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        session: &SessionId,
        certificate: &DkgCommit,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Deletes the PENDING share of `epoch`, if there is one.
    fn delete_pending(&mut self, key_id: &KeyId, epoch: Epoch) -> Result<(), StoreError>;
    /// Records (or updates) a reshare this node joined.
    fn put_reshare(&mut self, record: &ReshareRecord) -> Result<(), StoreError>;
    /// Every unconcluded reshare record; one that does not decode comes back as an error.
    fn reshares(&self) -> Result<Vec<StoredReshare>, StoreError>;
    /// Concludes a reshare in one step: `change` to the key's shares, the record of `session`
    /// forgotten, the session remembered as concluded, the `certificate` it was concluded on
    /// kept (to hand to a member that asks), `audit` appended.
    fn conclude_reshare(
        &mut self,
        key_id: &KeyId,
        change: ReshareConclusion,
        session: &SessionId,
        certificate: Option<&ReshareCommit>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// The certificate (a `DkgCommit` or a `ReshareCommit`) DKG or reshare `session` was
    /// concluded on here, if any.
    fn certificate(&self, session: &SessionId) -> Result<Option<Message>, StoreError>;
    /// Remembers that this node concluded `session` (a DKG's end).
    fn conclude_session(&mut self, session: &SessionId) -> Result<(), StoreError>;
    /// Whether this node concluded `session` (a DKG, or a reshare through
    /// [`conclude_reshare`](Self::conclude_reshare)).
    fn session_concluded(&self, session: &SessionId) -> Result<bool, StoreError>;
    /// Remembers a client (or operator) request id with its audit entry, in one step,
    /// **without syncing**: durable at the next [`sync`](Self::sync) (or durable write). The
    /// store does not look the id up: the node's gates refuse an id admitted before.
    fn admit_client_request(
        &mut self,
        request: &ClientRequestRow,
        audit: &AuditEntry,
        now_unix_ms: u64,
    ) -> Result<(), StoreError>;
    /// The client and operator request ids remembered and not expired at `now_unix_ms`, in the
    /// order they expire.
    fn client_requests(&self, now_unix_ms: u64) -> Result<Vec<ClientRequestRow>, StoreError>;
    /// Appends an audit entry.
    fn append_audit(
        &mut self,
        entry: &AuditEntry,
        durability: AuditDurability,
    ) -> Result<(), StoreError>;
    /// Makes every write before it durable (admissions, lazily appended audit entries): one
    /// sync for all of them.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Starts making every write before it durable, as [`sync`](Self::sync) does, and returns
    /// without waiting for the disk: the caller goes on with other work meanwhile and calls
    /// [`finish_sync`](Self::finish_sync) before it acts on those writes being durable.
    fn start_sync(&mut self) -> Result<(), StoreError>;
    /// Waits for the sync [`start_sync`](Self::start_sync) started: `Ok` means every write
    /// before that call is durable.
    fn finish_sync(&mut self) -> Result<(), StoreError>;
    /// [`finish_sync`](Self::finish_sync) without waiting: `None` while that sync still runs.
    fn try_finish_sync(&mut self) -> Option<Result<(), StoreError>>;
    /// Group commit: remembers `admissions` (each with its audit entry, as
    /// [`admit_client_request`](Self::admit_client_request)) and appends `audits`, in one
    /// step, durable before it returns when `durable` (and with everything written before).
    /// A batch that fails changes nothing.
    fn write_batch(
        &mut self,
        admissions: &[(ClientRequestRow, AuditEntry)],
        audits: &[AuditEntry],
        durable: bool,
        now_unix_ms: u64,
    ) -> Result<(), StoreError>;
}

/// The keystore's `public` column of a share: its [`PublicShareInfo`] as JSON.
fn share_record(share: &StoredShare, state: ShareState) -> Result<ShareRecord, StoreError> {
    let public = serde_json::to_vec(&share.public_info())
        .map_err(|e| StoreError::Unreadable(format!("share metadata: {e}")))?;
    Ok(ShareRecord {
        key_id: share.key_id.as_str().to_owned(),
        epoch: share.epoch.0,
        state,
        identifier: share.identifier.clone(),
        public,
        secret: Zeroizing::new(share.key_package.to_vec()),
    })
}

/// The summaries of `metas`, leaving out a row whose key id is not a valid one.
fn summaries(metas: Vec<permafrost_keystore::ShareMeta>) -> Vec<ShareSummary> {
    metas
        .into_iter()
        .filter_map(|meta| {
            Some(ShareSummary {
                key_id: KeyId::new(meta.key_id).ok()?,
                epoch: Epoch(meta.epoch),
                state: meta.state,
            })
        })
        .collect()
}

impl NodeStore for KeyStore {
    fn share_summaries(&self) -> Result<Vec<ShareSummary>, StoreError> {
        Ok(summaries(self.shares()?))
    }

    fn shares_of_key(&self, key_id: &KeyId) -> Result<Vec<ShareSummary>, StoreError> {
        Ok(summaries(self.shares_of(key_id.as_str())?))
    }

    fn share(
        &self,
        key_id: &KeyId,
        epoch: Epoch,
    ) -> Result<Option<(ShareState, StoredShare)>, StoreError> {
        let Some(record) = KeyStore::share(self, key_id.as_str(), epoch.0)? else {
            return Ok(None);
        };
        let public: PublicShareInfo = serde_json::from_slice(&record.public)
            .map_err(|e| StoreError::Unreadable(format!("share {key_id} epoch {epoch}: {e}")))?;
        let share = StoredShare::from_parts(
            key_id.clone(),
            epoch,
            record.identifier.clone(),
            &public,
            record.secret.clone(),
        )
        .map_err(|e| StoreError::Unreadable(format!("share {key_id} epoch {epoch}: {e}")))?;
        Ok(Some((record.state, share)))
    }

    fn put_pending(&mut self, share: &StoredShare) -> Result<(), StoreError> {
        Ok(self.put_share(&share_record(share, ShareState::Pending)?)?)
    }

    fn activate(
        &mut self,
        key_id: &KeyId,
        epoch: Epoch,
        session: &SessionId,
        certificate: &DkgCommit,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let frame = encode(&Message::DkgCommit(certificate.clone()))
            .map_err(|e| StoreError::Unreadable(format!("cannot encode a certificate: {e}")))?;
        Ok(self.activate_share(key_id.as_str(), epoch.0, &session.0, Some(&frame), audit)?)
    }

    fn delete_pending(&mut self, key_id: &KeyId, epoch: Epoch) -> Result<(), StoreError> {
        match KeyStore::share(self, key_id.as_str(), epoch.0)? {
            Some(record) if record.state == ShareState::Pending => {
                Ok(self.delete_share(key_id.as_str(), epoch.0)?)
            }
            _ => Ok(()),
        }
    }

    fn put_reshare(&mut self, record: &ReshareRecord) -> Result<(), StoreError> {
        let bytes = record.encode().map_err(StoreError::Unreadable)?;
        Ok(KeyStore::put_reshare(self, &record.open.session.0, &bytes)?)
    }

    fn reshares(&self) -> Result<Vec<StoredReshare>, StoreError> {
        Ok(KeyStore::reshares(self)?
            .into_iter()
            .map(|(session, bytes)| {
                let session = SessionId(session);
                (session, ReshareRecord::decode(&session, &bytes))
            })
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
        let frame = certificate
            .map(|c| encode(&Message::ReshareCommit(c.clone())))
            .transpose()
            .map_err(|e| StoreError::Unreadable(format!("cannot encode a certificate: {e}")))?;
        Ok(KeyStore::conclude_reshare_certified(
            self,
            key_id.as_str(),
            change,
            &session.0,
            frame.as_deref(),
            audit,
        )?)
    }

    fn certificate(&self, session: &SessionId) -> Result<Option<Message>, StoreError> {
        let Some(frame) = KeyStore::certificate(self, &session.0)? else {
            return Ok(None);
        };
        match decode(&frame) {
            Ok(message @ (Message::ReshareCommit(_) | Message::DkgCommit(_)))
                if message.session() == *session =>
            {
                Ok(Some(message))
            }
            Ok(_) => Err(StoreError::Unreadable(format!(
                "the certificate kept for {session} is not its commit"
            ))),
            Err(e) => Err(StoreError::Unreadable(format!(
                "the certificate kept for {session} does not decode: {e}"
            ))),
        }
    }

    fn conclude_session(&mut self, session: &SessionId) -> Result<(), StoreError> {
        Ok(KeyStore::conclude_session(self, &session.0)?)
    }

    fn session_concluded(&self, session: &SessionId) -> Result<bool, StoreError> {
        Ok(KeyStore::session_concluded(self, &session.0)?)
    }

    fn admit_client_request(
        &mut self,
        request: &ClientRequestRow,
        audit: &AuditEntry,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        Ok(KeyStore::admit_client_request(
            self,
            request,
            audit,
            now_unix_ms,
        )?)
    }

    fn client_requests(&self, now_unix_ms: u64) -> Result<Vec<ClientRequestRow>, StoreError> {
        Ok(KeyStore::client_requests(self, now_unix_ms)?)
    }

    fn append_audit(
        &mut self,
        entry: &AuditEntry,
        durability: AuditDurability,
    ) -> Result<(), StoreError> {
        match durability {
            AuditDurability::Durable => KeyStore::append_audit(self, entry)?,
            AuditDurability::Lazy => self.append_audit_lazily(entry)?,
        };
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(KeyStore::sync(self)?)
    }

    fn start_sync(&mut self) -> Result<(), StoreError> {
        Ok(KeyStore::start_sync(self)?)
    }

    fn finish_sync(&mut self) -> Result<(), StoreError> {
        Ok(KeyStore::finish_sync(self)?)
    }

    fn try_finish_sync(&mut self) -> Option<Result<(), StoreError>> {
        KeyStore::try_finish_sync(self).map(|r| r.map_err(StoreError::from))
    }

    fn write_batch(
        &mut self,
        admissions: &[(ClientRequestRow, AuditEntry)],
        audits: &[AuditEntry],
        durable: bool,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        Ok(KeyStore::write_batch(
            self,
            admissions,
            audits,
            durable,
            now_unix_ms,
        )?)
    }
}
