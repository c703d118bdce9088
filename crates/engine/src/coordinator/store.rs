//! What the coordinator keeps: public facts about every key and the outcome of every reshare,
//! typed, behind the [`MetadataStore`] trait (redb in the coordinator, in memory in the
//! simulator). No share ever enters it; losing it loses no key.

use permafrost_wire::{
    Curve, Epoch, KeyId, NodeId, OperatorApproval, ReshareAbort, ReshareCommit, SessionId,
};
use serde::{Deserialize, Serialize};

/// Why the metadata store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The database or the file system failed.
    #[error("metadata storage: {0}")]
    Storage(String),
    /// A stored record does not decode.
    #[error("metadata record unreadable: {0}")]
    Unreadable(String),
}

/// What the coordinator knows of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// The key id.
    pub key_id: KeyId,
    /// Its curve.
    pub curve: Curve,
    /// Signers needed.
    pub threshold: u16,
    /// The committee, sorted (the protocol's order).
    pub committee: Vec<NodeId>,
    /// The committee's node names, same order.
    pub nodes: Vec<String>,
    /// `VerifyingKey::serialize()`.
    pub public_key: Vec<u8>,
    /// `PublicKeyPackage::serialize()`.
    pub public_key_package: Vec<u8>,
    /// The current epoch.
    pub epoch: Epoch,
}

/// Where a reshare stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReshareState {
    /// Opened, not concluded. A coordinator that restarts finds it so and records it aborted:
    /// a commit is only ever sent after the reshare is recorded committed.
    Running,
    /// Committed, with its certificate.
    Committed(ReshareCommit),
    /// Aborted, with the abort members are sent.
    Aborted(ReshareAbort),
}

/// What the coordinator records of a reshare: enough to answer a member that asks what
/// became of it (`SessionStatus`) after any crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshareEntry {
    /// The session.
    pub session: SessionId,
    /// The key.
    pub key_id: KeyId,
    /// The epoch reshared.
    pub epoch: Epoch,
    /// The attempt number within that epoch.
    pub attempt: u32,
    /// Where it stands.
    pub state: ReshareState,
}

/// A standing rotation policy of a key: refresh its shares every `every_secs`, keeping the
/// committee and threshold it was approved for. The coordinator runs each refresh on
/// schedule; every member checks it against the operators' `approvals` of the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    /// The key.
    pub key_id: KeyId,
    /// The interval, in seconds.
    pub every_secs: u64,
    /// The committee every refresh keeps, sorted.
    pub committee: Vec<NodeId>,
    /// The threshold every refresh keeps.
    pub threshold: u16,
    /// Operators' approvals of the policy (a `LifecycleKind::Rotation` action).
    pub approvals: Vec<OperatorApproval>,
    /// When the last scheduled refresh committed, milliseconds since the Unix epoch.
    pub last_ms: Option<u64>,
    /// When the next one is due, milliseconds since the Unix epoch.
    pub next_ms: u64,
}

/// The coordinator's metadata, as the operations its core performs. Every write is durable
/// when it returns.
pub trait MetadataStore {
    /// One key.
    fn key(&self, key_id: &KeyId) -> Result<Option<KeyMeta>, MetadataError>;
    /// Every key, sorted by id.
    fn keys(&self) -> Result<Vec<KeyMeta>, MetadataError>;
    /// Records a new key.
    fn put_key(&mut self, meta: &KeyMeta) -> Result<(), MetadataError>;
    /// One reshare.
    fn reshare(&self, session: &SessionId) -> Result<Option<ReshareEntry>, MetadataError>;
    /// One past the highest attempt recorded for `key_id` at `epoch` (0 if none), read
    /// without the reshares of other keys and epochs: a proposal costs the same after a
    /// million reshares as after one.
    fn next_reshare_attempt(&self, key_id: &KeyId, epoch: Epoch) -> Result<u32, MetadataError>;
    /// Every reshare recorded as running (a restarted coordinator records each aborted),
    /// read without the concluded ones.
    fn running_reshares(&self) -> Result<Vec<ReshareEntry>, MetadataError>;
    /// Records (or updates) a reshare.
    fn put_reshare(&mut self, entry: &ReshareEntry) -> Result<(), MetadataError>;
    /// Records a committed reshare and the key's new epoch in one step.
    fn commit_reshare(&mut self, meta: &KeyMeta, entry: &ReshareEntry)
        -> Result<(), MetadataError>;
    /// Every rotation policy, sorted by key id.
    fn rotations(&self) -> Result<Vec<RotationPolicy>, MetadataError>;
    /// Records (or replaces) a key's rotation policy.
    fn put_rotation(&mut self, policy: &RotationPolicy) -> Result<(), MetadataError>;
    /// Removes a key's rotation policy; whether there was one.
    fn delete_rotation(&mut self, key_id: &KeyId) -> Result<bool, MetadataError>;
}

/// The attempt after `attempts` (the attempts recorded for one key and epoch): one past the
/// highest, so that a new attempt never reuses a session id; 0 if there is none.
fn next_attempt(attempts: impl IntoIterator<Item = u32>) -> u32 {
    attempts
        .into_iter()
        .map(|a| a.saturating_add(1))
        .max()
        .unwrap_or(0)
}

/// The coordinator's metadata in memory, for the simulator and tests: it survives a simulated
/// restart (drop the core, open a new one on it), and a write can be made to fail.
#[derive(Debug, Default, Clone)]
pub struct MemoryMetadataStore {
    keys: std::collections::BTreeMap<KeyId, KeyMeta>,
    reshares: std::collections::BTreeMap<SessionId, ReshareEntry>,
    rotations: std::collections::BTreeMap<KeyId, RotationPolicy>,
    failing_writes: usize,
}

impl MemoryMetadataStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next write fail, changing nothing.
    pub fn fail_next_write(&mut self) {
        self.failing_writes += 1;
    }

    fn write(&mut self, what: &str) -> Result<(), MetadataError> {
        if self.failing_writes > 0 {
            self.failing_writes -= 1;
            return Err(MetadataError::Storage(format!(
                "injected write failure ({what}); nothing was written"
            )));
        }
        Ok(())
    }
}

impl MetadataStore for MemoryMetadataStore {
    fn key(&self, key_id: &KeyId) -> Result<Option<KeyMeta>, MetadataError> {
        Ok(self.keys.get(key_id).cloned())
    }

    fn keys(&self) -> Result<Vec<KeyMeta>, MetadataError> {
        Ok(self.keys.values().cloned().collect())
    }

    fn put_key(&mut self, meta: &KeyMeta) -> Result<(), MetadataError> {
        self.write("a key")?;
        self.keys.insert(meta.key_id.clone(), meta.clone());
        Ok(())
    }

    fn reshare(&self, session: &SessionId) -> Result<Option<ReshareEntry>, MetadataError> {
        Ok(self.reshares.get(session).cloned())
    }

    fn next_reshare_attempt(&self, key_id: &KeyId, epoch: Epoch) -> Result<u32, MetadataError> {
        Ok(next_attempt(
            self.reshares
                .values()
                .filter(|r| r.key_id == *key_id && r.epoch == epoch)
                .map(|r| r.attempt),
        ))
    }

    fn running_reshares(&self) -> Result<Vec<ReshareEntry>, MetadataError> {
        Ok(self
            .reshares
            .values()
            .filter(|r| r.state == ReshareState::Running)
            .cloned()
            .collect())
    }

    fn put_reshare(&mut self, entry: &ReshareEntry) -> Result<(), MetadataError> {
        self.write("a reshare")?;
        self.reshares.insert(entry.session, entry.clone());
        Ok(())
    }

    fn commit_reshare(
        &mut self,
        meta: &KeyMeta,
        entry: &ReshareEntry,
    ) -> Result<(), MetadataError> {
        self.write("a reshare's commit")?;
        self.keys.insert(meta.key_id.clone(), meta.clone());
        self.reshares.insert(entry.session, entry.clone());
        Ok(())
    }

    fn rotations(&self) -> Result<Vec<RotationPolicy>, MetadataError> {
        Ok(self.rotations.values().cloned().collect())
    }

    fn put_rotation(&mut self, policy: &RotationPolicy) -> Result<(), MetadataError> {
        self.write("a rotation policy")?;
        self.rotations.insert(policy.key_id.clone(), policy.clone());
        Ok(())
    }

    fn delete_rotation(&mut self, key_id: &KeyId) -> Result<bool, MetadataError> {
        self.write("removing a rotation policy")?;
        Ok(self.rotations.remove(key_id).is_some())
    }
}
