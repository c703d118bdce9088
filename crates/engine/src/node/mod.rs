//! The signer node's core: every rule a node applies above the protocol sessions, sans-IO.
//!
//! A [`NodeCore`] is opened on a [`NodeStore`] (it reloads the client request ids, starts a
//! signer for every ACTIVE share and resumes every unconcluded reshare), then fed messages
//! ([`NodeCore::handle_message`]) and the passing of time ([`NodeCore::handle_timeout`]).
//! What it wants sent, and what happened, come out of [`NodeCore::poll_output`] in the order
//! they happened: a message that depends on a write is queued only after the write returned.
//! A crash is "drop the core, open a new one on the same store".
//!
//! The rules live by concept: [`admission`](self) of signing requests and the refusal audit
//! (`admission.rs`), joining DKGs (`dkg.rs`) and reshares (`reshare.rs`), carrying out the
//! sessions' events on the store (`events.rs`), the audit entries (`audit.rs`).

mod admission;
mod audit;
mod dkg;
mod events;
mod lifecycle;
mod memory;
mod notice;
mod pending;
mod reshare;
mod store;

pub use admission::{AUDITED_REFUSALS_PER_SECOND, REFUSAL_SYNC_WITHIN};
pub use memory::MemoryNodeStore;
pub use notice::NodeNotice;
pub use pending::{discard_pending, pending_shares, PendingShare};
pub use reshare::{EarlyLimits, EarlyMessages, ReshareRecord};
pub use store::{AuditDurability, NodeStore, ShareSummary, StoreError, StoredReshare};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use permafrost_keystore::{AuditKind, ShareState};
use permafrost_protocol::lifecycle::{OperatorGate, OperatorPolicy};
use permafrost_protocol::reshare::Identities;
use permafrost_protocol::sign::client::{ClientGate, ClientPolicy};
use permafrost_protocol::{IdentityVerifier, NodeIdentity, ProtocolError, Refusal, Timestamp};
use permafrost_wire::{Epoch, KeyId, Message, NodeId, SessionId};
use rand_core::CryptoRngCore;

use crate::any;
use crate::sessions::{Handled, Route, Sessions};
use admission::{RefusalAudit, ReloadInto};
use events::{EventContext, FollowUp};

/// What a node core is: its identity, whom it takes orders from, whom it signs for.
#[derive(Clone)]
pub struct NodeSetup {
    /// This node's identity key.
    pub identity: Arc<dyn NodeIdentity>,
    /// Verifies other nodes' identity signatures.
    pub verifier: Arc<dyn IdentityVerifier>,
    /// The coordinators: the only peers that may open sessions and ask for signatures.
    pub coordinators: BTreeSet<NodeId>,
    /// The signer nodes (`[[nodes]]` of the network file): the only parties a committee may
    /// name. A coordinator identity never is one.
    pub nodes: BTreeSet<NodeId>,
    /// The network id every process of the network is configured with (`network_id` of the
    /// network file): client and operator approvals are bound to it.
    pub network_id: String,
    /// The client keys whose approval a signing request needs.
    pub clients: ClientPolicy,
    /// The operator keys whose approval a DKG or reshare needs, and this node's floors.
    pub operators: OperatorPolicy,
    /// How the audit log names a peer (e.g. its PeerId), if it can. Called for every
    /// signature share's audit entry: a shell that names peers by an encoding computes the
    /// known ones once ([`PeerName`]).
    pub peer_name: PeerName,
}

/// How the audit log names a peer: shared by every clone of a [`NodeSetup`].
pub type PeerName = Arc<dyn Fn(&NodeId) -> Option<String> + Send + Sync>;

/// The share a running signer signs with, as far as client authorization needs it.
struct SignerKey {
    /// Its epoch.
    epoch: Epoch,
    /// The group key of its public key package (`VerifyingKey::serialize()`).
    group_key: Vec<u8>,
}

/// What the core wants done, in order.
#[derive(Debug)]
pub enum NodeOutput {
    /// Send `message` to `to`.
    Transmit {
        /// The recipient.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Something happened that an operator should be able to see (the shell logs it).
    Notice(NodeNotice),
}

/// The signer node's rules over a store `St`.
pub struct NodeCore<St: NodeStore> {
    setup: NodeSetup,
    store: St,
    sessions: Sessions,
    /// The time of the latest input.
    now: Timestamp,
    /// The key each running DKG session creates.
    dkg_keys: BTreeMap<SessionId, KeyId>,
    /// The reshares this node takes part in (their records are in the store).
    reshares: BTreeMap<SessionId, ReshareRecord>,
    /// Test-signature session id → its reshare session.
    aliases: BTreeMap<SessionId, SessionId>,
    /// Reshare messages that came before their session opened here.
    early: EarlyMessages,
    /// Client authorization of signing requests; the request ids it admitted are also in the
    /// store.
    gate: ClientGate,
    /// Operator approval of DKG and reshare opens; the request ids it admitted are also in
    /// the store.
    operators: OperatorGate,
    /// The epoch and group key each running signer signs with: a client's approval must be
    /// for that group key.
    signer_keys: BTreeMap<KeyId, SignerKey>,
    /// The audit-rate cap on refusals.
    refusals: RefusalAudit,
    outputs: VecDeque<NodeOutput>,
    /// Admissions and share audit entries to write at the next [`flush`](Self::flush).
    staged: Staged,
    /// Signature shares, and their `ShareProduced` notices, waiting for the next
    /// [`flush`](Self::flush) to make their admissions and audit entries durable.
    held: Vec<NodeOutput>,
    /// While the store's sync runs: the signature shares whose entries it makes durable,
    /// released when it ends ([`sync_ended`](Self::sync_ended)), and what it syncs (for the
    /// notice should it fail).
    syncing: Option<(Vec<NodeOutput>, &'static str)>,
    /// Signing sessions whose admission the store refused as a replay after the gate had let
    /// it through (the store and the gate disagree): no share of theirs is ever released.
    /// Each is kept until the request ids' retention has passed.
    revoked: BTreeMap<SessionId, Timestamp>,
    /// When this node last joined a scheduled refresh of each key under a standing rotation
    /// policy (in memory: a restarted node allows the next one at once).
    rotations: BTreeMap<KeyId, Timestamp>,
    /// Whether a one-round signature's entry is written, and its sync started, before its
    /// share is computed ([`sync_early`](Self::sync_early)).
    sync_early: bool,
    /// The one-round signature whose entry was written early, its sync not yet waited for.
    written_early: Option<EarlyWrite>,
}

/// A one-round signature whose admission was written as its share's entry, with the sync
/// started, before the signer computed the share ([`NodeCore::sync_early`]).
struct EarlyWrite {
    session: SessionId,
    /// The admission's entry as staged (kind `ClientRequest`): the share's entry must be
    /// about the same request for the early write to stand for it.
    admission: permafrost_keystore::AuditEntry,
    /// Whether the sync started.
    started: Result<(), StoreError>,
}

/// What a failed sync of an early write was doing ([`NodeCore::sync_early`]).
const EARLY_SYNC: &str = "syncing a signature share's admission (share not sent)";
/// What a failed sync of a group commit was doing ([`NodeCore::flush`]).
const BATCH_SYNC: &str = "syncing admissions and share audit entries (shares not sent)";

/// The recipient and the share, if `output` sends a signature share.
fn signature_share(output: &NodeOutput) -> Option<(&NodeId, &permafrost_wire::SignShare)> {
    match output {
        NodeOutput::Transmit {
            to,
            message: Message::SignShare(share),
        } => Some((to, share)),
        _ => None,
    }
}

/// Most admissions staged at once: beyond it (the store cannot keep up, or keeps failing),
/// signing requests are refused until a flush writes them.
pub const MAX_STAGED_ADMISSIONS: usize = 4096;

/// What the next [`NodeCore::flush`] writes, in one step.
#[derive(Default)]
struct Staged {
    /// Client requests admitted, each with its audit entry.
    admissions: Vec<(
        permafrost_keystore::ClientRequestRow,
        permafrost_keystore::AuditEntry,
    )>,
    /// Audit entries of signature shares produced, by session.
    audits: Vec<(SessionId, permafrost_keystore::AuditEntry)>,
}

/// The audit entries a flush writes: one per admission, and one per share produced, except
/// that a share produced in the session of an admission of the same batch (a one-round
/// signature) is recorded in that admission's entry, which then says `SignatureShare` and
/// keeps the client's approval: one entry per one-round signature instead of two. A share is
/// folded only into the one admission of its session in the batch, and only if that admission
/// names the same key, epoch, message digest and requester: a session with two admissions (a
/// coordinator that sent a second request in it, which the signer refused) or any difference
/// keeps both entries as they are, so the log never says a message was signed that was not.
/// The staged admissions themselves are left as they are, for a retry after a failed write
/// (whose shares are not released).
fn fold_shares_into_admissions(
    admissions: &[(
        permafrost_keystore::ClientRequestRow,
        permafrost_keystore::AuditEntry,
    )],
    shares: Vec<(SessionId, permafrost_keystore::AuditEntry)>,
) -> (
    Vec<(
        permafrost_keystore::ClientRequestRow,
        permafrost_keystore::AuditEntry,
    )>,
    Vec<permafrost_keystore::AuditEntry>,
) {
    let mut admissions = admissions.to_vec();
    let mut by_session: BTreeMap<[u8; 32], Vec<usize>> = BTreeMap::new();
    for (i, (row, _)) in admissions.iter().enumerate() {
        by_session.entry(row.session).or_default().push(i);
    }
    let mut unfolded = Vec::new();
    for (session, share) in shares {
        let only = match by_session.get(&session.0).map(Vec::as_slice) {
            Some(&[i]) => Some(i),
            _ => None,
        };
        match only {
            Some(i) if same_request(&admissions[i].1, &share) => {
                admissions[i].1.kind = AuditKind::SignatureShare;
            }
            _ => unfolded.push(share),
        }
    }
    (admissions, unfolded)
}

/// Whether a share's entry is about the request an admission's entry admitted: an admission
/// not folded yet, for the same key, epoch, message and requester.
fn same_request(
    admission: &permafrost_keystore::AuditEntry,
    share: &permafrost_keystore::AuditEntry,
) -> bool {
    admission.kind == AuditKind::ClientRequest
        && admission.key_id == share.key_id
        && admission.epoch == share.epoch
        && admission.message_digest.is_some()
        && admission.message_digest == share.message_digest
        && admission.requester == share.requester
}

impl<St: NodeStore> NodeCore<St> {
    /// Opens a core on `store` at `now`: reloads the client request ids admitted before (so a
    /// replay is refused), starts a signer for every ACTIVE share, and resumes every reshare
    /// the store records as unconcluded (each asks its coordinator for the outcome).
    pub fn open(setup: NodeSetup, store: St, now: Timestamp) -> Result<Self, StoreError> {
        let gate = ClientGate::new(setup.clients.clone());
        let operators = OperatorGate::new(setup.network_id.clone(), setup.operators.clone());
        let mut core = NodeCore {
            setup,
            store,
            sessions: Sessions::new(),
            now,
            dkg_keys: BTreeMap::new(),
            reshares: BTreeMap::new(),
            aliases: BTreeMap::new(),
            early: EarlyMessages::new(
                EarlyLimits::default(),
                crate::deadlines::EARLY_MESSAGE_MAX_AGE,
            ),
            gate,
            operators,
            signer_keys: BTreeMap::new(),
            refusals: RefusalAudit::default(),
            outputs: VecDeque::new(),
            staged: Staged::default(),
            held: Vec::new(),
            syncing: None,
            revoked: BTreeMap::new(),
            rotations: BTreeMap::new(),
            sync_early: true,
            written_early: None,
        };
        core.restore_client_requests(now)?;
        core.load_active_shares()?;
        core.resume_reshares(now)?;
        Ok(core)
    }

    /// The store (to inspect it).
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The store, to change it behind the core's back (tests: injected failures).
    pub fn store_mut(&mut self) -> &mut St {
        &mut self.store
    }

    /// Ends the core (a crash or a shutdown), handing back its store; nothing in memory
    /// survives: sessions, nonces, buffered messages.
    pub fn into_parts(self) -> (NodeSetup, St) {
        (self.setup, self.store)
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        self.setup.identity.node_id()
    }

    /// Client request ids held in memory (those whose timestamps the client gate could still
    /// accept; the store keeps them longer).
    pub fn request_ids_in_memory(&self) -> usize {
        self.gate.remembered()
    }

    /// Secret nonces held in memory for signing sessions, over all keys.
    pub fn live_nonces(&self) -> usize {
        self.sessions.iter().map(|(_, s)| s.live_nonces()).sum()
    }

    /// Secret nonces held in memory ahead of time for one-round signing, over all keys.
    pub fn pooled_nonces(&self) -> usize {
        self.sessions.iter().map(|(_, s)| s.pooled_nonces()).sum()
    }

    /// Whether a signer runs for `key_id`.
    pub fn signs_for(&self, key_id: &KeyId) -> bool {
        self.sessions.contains(&Route::Signer(key_id.clone()))
    }

    /// Takes orders from `coordinator` too.
    pub fn add_coordinator(&mut self, coordinator: NodeId) {
        self.setup.coordinators.insert(coordinator);
    }

    /// Counts `node` as a signer node too.
    pub fn add_node(&mut self, node: NodeId) {
        self.setup.nodes.insert(node);
    }

    /// No longer counts `node` as a signer node (it was removed from the network file).
    pub fn remove_node(&mut self, node: &NodeId) {
        self.setup.nodes.remove(node);
    }

    /// Replaces the client keys and clock skew this node applies at `now`; the gate keeps every
    /// request id it remembers (also those staged and not yet written, which the store does not
    /// hold yet). The gate forgets an id once its timestamp is stale under its skew, so a wider
    /// skew first reloads the ids the store kept: if that read fails, nothing changes.
    pub fn set_client_policy(
        &mut self,
        policy: ClientPolicy,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let reload = (policy.max_clock_skew > self.gate.policy().max_clock_skew)
            .then(|| self.stored_request_ids(now))
            .transpose()?;
        self.setup.clients = policy.clone();
        self.gate.set_policy(policy);
        if let Some(rows) = reload {
            self.remember_request_ids(&rows, ReloadInto::Clients, now);
        }
        Ok(())
    }

    /// Replaces the operator keys, floors and clock skew this node applies at `now`, as
    /// [`set_client_policy`](Self::set_client_policy) does for the client gate.
    pub fn set_operator_policy(
        &mut self,
        policy: OperatorPolicy,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let reload = (policy.max_clock_skew > self.operators.policy().max_clock_skew)
            .then(|| self.stored_request_ids(now))
            .transpose()?;
        self.setup.operators = policy.clone();
        self.operators.set_policy(policy);
        if let Some(rows) = reload {
            self.remember_request_ids(&rows, ReloadInto::Operators, now);
        }
        Ok(())
    }

    /// The next thing to do: a message to send or a notice, in the order they happened.
    /// Signature shares come out only once their entries are durable: after
    /// [`sync_ended`](Self::sync_ended).
    pub fn poll_output(&mut self) -> Option<NodeOutput> {
        self.outputs.pop_front()
    }

    /// Group commit: writes every admission and share audit entry staged since the last flush
    /// in one step and, when signature shares wait on them, starts the store's sync, which
    /// runs on a thread of its own: the shell goes on with the next requests meanwhile, and
    /// [`sync_ended`](Self::sync_ended) releases those shares once the sync is done. The shell
    /// calls it after each batch of messages (all those that arrived together); what is
    /// staged and held while a sync runs waits for it, and goes in the next one, which
    /// `sync_ended` starts. So under load many signatures share one write and one sync, and the
    /// node never waits for the disk with work in hand.
    ///
    /// If the write or the sync fails, no share is released (their signing attempts stall and
    /// ROAST moves on) and the failure is noticed. Admissions whose write failed stay staged
    /// and go with the next flush, so that no later share of theirs leaves before they are on
    /// disk; if the store refused one as the same approval admitted in another session (a
    /// `Conflict`: the gate forgot an id the store still holds), every session admitted in the
    /// batch is revoked instead and releases no share, and those admissions are dropped so
    /// that later batches can be written.
    pub fn flush(&mut self) {
        if !self.has_unflushed() || self.syncing.is_some() {
            return;
        }
        let now = self.now;
        self.revoked.retain(|_, until| *until > now);
        if let Some(early) = self.written_early.take() {
            // The shares held now are the early write's: its sync, running, covers them.
            let covered = std::mem::take(&mut self.held);
            match early.started {
                Ok(()) => {
                    self.syncing = Some((covered, EARLY_SYNC));
                    return;
                }
                Err(error) => self.notice(NodeNotice::StoreFailed {
                    operation: EARLY_SYNC,
                    key_id: None,
                    error,
                }),
            }
            if self.staged.admissions.is_empty() && self.staged.audits.is_empty() {
                return;
            }
        }
        let held = std::mem::take(&mut self.held);
        let (admissions, audits) = fold_shares_into_admissions(
            &self.staged.admissions,
            std::mem::take(&mut self.staged.audits),
        );
        match self.store.write_batch(&admissions, &audits, false, now.0) {
            Ok(()) => {
                self.staged.admissions.clear();
                if held.is_empty() {
                    return;
                }
                match self.store.start_sync() {
                    Ok(()) => self.syncing = Some((held, BATCH_SYNC)),
                    Err(error) => self.notice(NodeNotice::StoreFailed {
                        operation: BATCH_SYNC,
                        key_id: None,
                        error,
                    }),
                }
            }
            Err(error) => {
                if let StoreError::Keystore(permafrost_keystore::KeystoreError::Conflict(_)) =
                    &error
                {
                    let until = now.after(permafrost_protocol::sign::client::REQUEST_ID_RETENTION);
                    for (row, _) in std::mem::take(&mut self.staged.admissions) {
                        self.revoked.insert(SessionId(row.session), until);
                    }
                }
                self.notice(NodeNotice::StoreFailed {
                    operation: "writing admissions and share audit entries (shares not sent)",
                    key_id: None,
                    error,
                });
            }
        }
    }

    /// Once the sync [`flush`](Self::flush) started has ended: releases the signature shares
    /// it made durable (none if it failed: that is noticed), then flushes what was staged and
    /// held meanwhile, starting the next sync. Returns at once, changing nothing, while the
    /// sync still runs. The shell calls it when the store tells it a sync ended, and on its
    /// tick in case it missed that. Returns whether a sync ended (`false`: none ran, or it
    /// still runs).
    pub fn sync_ended(&mut self) -> bool {
        let Some((shares, operation)) = self.syncing.take() else {
            return false;
        };
        match self.store.try_finish_sync() {
            None => {
                self.syncing = Some((shares, operation));
                return false;
            }
            Some(Ok(())) => self.release(shares),
            Some(Err(error)) => self.notice(NodeNotice::StoreFailed {
                operation,
                key_id: None,
                error,
            }),
        }
        self.flush();
        true
    }

    /// Whether a sync [`flush`](Self::flush) started has not been seen to end
    /// ([`sync_ended`](Self::sync_ended)).
    pub fn sync_running(&self) -> bool {
        self.syncing.is_some()
    }

    /// Whether a signature share for `session`, to `to`, waits on the store: computed, its
    /// entries not yet durable.
    pub fn share_pending(&self, to: &NodeId, session: SessionId) -> bool {
        self.held
            .iter()
            .chain(self.syncing.iter().flat_map(|(shares, _)| shares))
            .filter_map(signature_share)
            .any(|(recipient, share)| recipient == to && share.session == session)
    }

    /// Queues the shares whose writes are durable, but none of a revoked session.
    fn release(&mut self, held: Vec<NodeOutput>) {
        let revoked = &self.revoked;
        self.outputs.extend(held.into_iter().filter(|output| {
            !signature_share(output).is_some_and(|(_, share)| revoked.contains_key(&share.session))
        }));
    }

    /// With `true` (the default), a one-round signing request that comes alone — nothing
    /// staged or held before it — has its admission written as its share's audit entry, and
    /// the sync of that write started, before the signer computes the share: the disk flushes
    /// while the CPU works, and the share is released when that sync ends
    /// ([`sync_ended`](Self::sync_ended)). If the signer then produces no share, an entry saying so follows.
    /// A shell that handles many requests in one batch turns it off for that batch: they share
    /// one sync at the flush instead.
    pub fn sync_early(&mut self, early: bool) {
        self.sync_early = early;
    }

    /// Writes the one-round request just admitted in `session` as its share's entry and
    /// starts its sync, if it came alone ([`sync_early`](Self::sync_early)). Returns whether
    /// it did; if the write fails, the admission stays staged for the flush, as without it.
    fn write_early(&mut self, session: SessionId) -> bool {
        let alone = self.sync_early
            && self.written_early.is_none()
            && self.syncing.is_none()
            && self.held.is_empty()
            && self.staged.audits.is_empty()
            && matches!(self.staged.admissions.as_slice(), [(row, _)] if row.session == session.0);
        if !alone {
            return false;
        }
        let (row, admission) = self.staged.admissions[0].clone();
        let mut entry = admission.clone();
        entry.kind = AuditKind::SignatureShare;
        if self
            .store
            .write_batch(&[(row, entry)], &[], false, self.now.0)
            .is_err()
        {
            return false;
        }
        self.staged.admissions.clear();
        let started = self.store.start_sync();
        self.written_early = Some(EarlyWrite {
            session,
            admission,
            started,
        });
        true
    }

    /// After the signer handled the request written early in `session`: its share's entry is
    /// the one written (not staged again); if it produced no share, an entry says so.
    fn settle_early(&mut self, session: SessionId, outcome: &Result<(), ProtocolError>) {
        let Some(early) = self.written_early.as_ref().filter(|e| e.session == session) else {
            return;
        };
        let produced = self
            .staged
            .audits
            .iter()
            .position(|(s, share)| *s == session && same_request(&early.admission, share));
        if let Some(i) = produced {
            self.staged.audits.remove(i);
            return;
        }
        let reason = match outcome {
            Err(e) => e.to_string(),
            Ok(()) => "the signer gave no reason".to_owned(),
        };
        let mut entry = early.admission.clone();
        entry.kind = AuditKind::Refused;
        entry.client = None;
        entry.detail = format!(
            "no signature share was produced for the request admitted just before ({reason})"
        );
        if let Err(error) = self.append_refusal(&entry, self.now) {
            self.notice(NodeNotice::StoreFailed {
                operation: "auditing a share not produced",
                key_id: None,
                error,
            });
        }
    }

    /// Whether the next [`flush`](Self::flush) has anything to write (it returns at once
    /// otherwise).
    pub fn has_unflushed(&self) -> bool {
        !(self.held.is_empty()
            && self.written_early.is_none()
            && self.staged.admissions.is_empty()
            && self.staged.audits.is_empty())
    }

    /// Signature shares waiting for their entries to be durable: for the next
    /// [`flush`](Self::flush), or for the sync it started to end.
    pub fn held_shares(&self) -> usize {
        self.held
            .iter()
            .chain(self.syncing.iter().flat_map(|(shares, _)| shares))
            .filter_map(signature_share)
            .count()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let early = self
            .early
            .next_expiry()
            .into_iter()
            .chain(self.refusals.next_flush());
        self.sessions.next_deadline().into_iter().chain(early).min()
    }

    /// Lets time pass: deadlines of sessions, the refusal count, buffered messages.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        self.flush_refusal_count(now);
        self.sync_refusals(now);
        self.drive(|sessions, handler| sessions.tick(now, handler));
        self.early.expire(now);
    }

    /// Handles one message from the authenticated peer `from`. `Err` means it was refused
    /// (answer the peer with the error); a refused signing request is also answered with a
    /// `SignRefusal` to the coordinator at once.
    pub fn handle_message(
        &mut self,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        self.now = self.now.max(now);
        let from_coordinator = self.setup.coordinators.contains(from);
        let route = match &message {
            Message::DkgOpen(open) => {
                if !from_coordinator {
                    return Err(Refusal::NotFromCoordinator(from.clone()).into());
                }
                return self.open_dkg(from.clone(), open.clone(), now, rng);
            }
            Message::ReshareOpen(open) => {
                if !from_coordinator {
                    return Err(Refusal::NotFromCoordinator(from.clone()).into());
                }
                return self.open_reshare(from.clone(), open.clone(), now, rng);
            }
            Message::SessionStatus(status) => {
                return self.answer_status(from, status.session);
            }
            Message::Probe(_) => {
                // A liveness probe: accepted by this loop (the acknowledgement is the answer),
                // changing nothing.
                if !from_coordinator {
                    return Err(Refusal::NotFromCoordinator(from.clone()).into());
                }
                return Ok(());
            }
            Message::SignRequest(_) | Message::SignPackage(_) | Message::SignWithCommitment(_)
                if self.aliases.contains_key(&message.session()) =>
            {
                let session = self.aliases[&message.session()];
                return self.deliver(&Route::Session(session), from, message, now, rng);
            }
            Message::SignRequest(m) => Route::Signer(m.key_id.clone()),
            Message::SignPackage(m) => Route::Signer(m.key_id.clone()),
            Message::SignWithCommitment(m) => Route::Signer(m.key_id.clone()),
            Message::CommitmentsRequest(m) => Route::Signer(m.key_id.clone()),
            Message::DkgRound1Set(_) | Message::DkgRound2(_) | Message::DkgCommit(_) => {
                Route::Session(message.session())
            }
            // Messages that can overtake their session's open: a dealer deals as soon as its
            // own open arrives, and a DKG's abort is sent right after its open when a member
            // cannot be reached. Kept for the open.
            Message::DkgAbort(_)
            | Message::ReshareShare(_)
            | Message::ReshareDealingSet(_)
            | Message::ReshareDealerSet(_)
            | Message::ReshareCommit(_)
            | Message::ReshareAbort(_) => {
                let route = Route::Session(message.session());
                if self.sessions.contains(&route) {
                    return self.deliver(&route, from, message, now, rng);
                }
                return self.keep_early(from.clone(), message, now);
            }
            other => return Err(Refusal::Unexpected(other.kind()).into()),
        };
        if let Route::Signer(_) = &route {
            if !from_coordinator {
                return Err(Refusal::NotFromCoordinator(from.clone()).into());
            }
            let checked = if !self.sessions.contains(&route) {
                Err(Refusal::WrongKey)
            } else {
                match &message {
                    Message::SignRequest(request) => self.admit(from, request, now),
                    Message::SignWithCommitment(m) => self.admit(from, &m.sign_request(), now),
                    _ => Ok(()),
                }
            };
            if let Err(refusal) = checked {
                if let Message::CommitmentsRequest(_) = &message {
                    // No signing session to refuse: the answer to the request says it.
                    return Err(refusal.into());
                }
                // Tell the coordinator now rather than let it wait for its deadline.
                self.transmit(
                    from.clone(),
                    Message::SignRefusal(permafrost_protocol::sign::refusal_message(
                        message.session(),
                        &refusal,
                    )),
                );
                return Err(refusal.into());
            }
            if let Message::SignWithCommitment(m) = &message {
                let session = m.session;
                let ready = self
                    .sessions
                    .get(&route)
                    .is_some_and(|s| s.holds_pooled_nonce(from, m));
                if ready && self.write_early(session) {
                    let outcome = self.deliver(&route, from, message, now, rng);
                    self.settle_early(session, &outcome);
                    return outcome;
                }
            }
        }
        self.deliver(&route, from, message, now, rng)
    }

    /// Another member asks what became of DKG or reshare `session`: if this node concluded it
    /// on a certificate, it hands the certificate over (it proves itself, so a coordinator that
    /// withholds it cannot strand the other members). Only signer nodes ask.
    pub(super) fn answer_status(
        &mut self,
        from: &NodeId,
        session: SessionId,
    ) -> Result<(), ProtocolError> {
        if !self.setup.nodes.contains(from) {
            return Err(Refusal::NotASignerNode(from.clone()).into());
        }
        match self.store.certificate(&session) {
            Ok(Some(certificate)) => {
                self.transmit(from.clone(), certificate);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(reshare::store_refusal(e)),
        }
    }

    /// Delivers one message to a session and carries out what follows.
    fn deliver(
        &mut self,
        route: &Route,
        from: &NodeId,
        message: Message,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), ProtocolError> {
        self.drive(|sessions, handler| sessions.deliver(route, from, message, now, rng, handler))
    }

    /// Runs `f` on the sessions with the event handler, then does the follow-up work and drops
    /// what belonged to sessions that ended.
    fn drive<R>(
        &mut self,
        f: impl FnOnce(&mut Sessions, &mut dyn FnMut(&Route, any::AnyOutput) -> Handled) -> R,
    ) -> R {
        let mut cx = EventContext {
            store: &mut self.store,
            setup: &self.setup,
            dkg_keys: &self.dkg_keys,
            reshares: &self.reshares,
            outputs: &mut self.outputs,
            held: &mut self.held,
            staged_audits: &mut self.staged.audits,
            follow: Vec::new(),
            now: self.now,
        };
        let result = f(&mut self.sessions, &mut |route, output| {
            cx.handle(route, output)
        });
        let follow = std::mem::take(&mut cx.follow);
        for action in follow {
            match action {
                FollowUp::StartSigner(key_id, epoch) => self.start_signer(&key_id, epoch),
                FollowUp::StopSigner(key_id) => {
                    self.sessions.remove(&Route::Signer(key_id.clone()));
                    self.signer_keys.remove(&key_id);
                    self.notice(NodeNotice::SignerStopped { key_id });
                }
            }
        }
        self.forget_finished();
        result
    }

    /// Drops what belonged to sessions that ended.
    fn forget_finished(&mut self) {
        let sessions = &self.sessions;
        self.dkg_keys
            .retain(|session, _| sessions.contains(&Route::Session(*session)));
        self.reshares
            .retain(|session, _| sessions.contains(&Route::Session(*session)));
        let reshares = &self.reshares;
        self.aliases
            .retain(|_, session| reshares.contains_key(session));
    }

    /// Starts a signer for every key's ACTIVE share. If a key had two ACTIVE epochs (which the
    /// store's transactions prevent) the newest wins.
    fn load_active_shares(&mut self) -> Result<(), StoreError> {
        let mut active: BTreeMap<KeyId, Epoch> = BTreeMap::new();
        for share in self.store.share_summaries()? {
            match share.state {
                ShareState::Active => {
                    if let Some(older) = active.insert(share.key_id.clone(), share.epoch) {
                        self.notice(NodeNotice::TwoActiveEpochs {
                            key_id: share.key_id,
                            older,
                        });
                    }
                }
                ShareState::Pending => self.notice(NodeNotice::PendingShareKept {
                    key_id: share.key_id,
                    epoch: share.epoch,
                }),
                ShareState::Retired => {}
            }
        }
        for (key_id, epoch) in active {
            self.start_signer(&key_id, epoch);
        }
        Ok(())
    }

    fn start_signer(&mut self, key_id: &KeyId, epoch: Epoch) {
        let started = match self.store.share(key_id, epoch) {
            Ok(Some((_, share))) => {
                any::signer(&share).map(|(signer, group_key)| (signer, share.curve, group_key))
            }
            Ok(None) => Err(ProtocolError::Frost("no such share".into())),
            Err(e) => Err(ProtocolError::Frost(e.to_string())),
        };
        match started {
            Ok((signer, curve, group_key)) => {
                let mut ignore = |_: &Route, _: any::AnyOutput| Handled::Continue;
                self.sessions
                    .insert(Route::Signer(key_id.clone()), signer, &mut ignore);
                self.signer_keys
                    .insert(key_id.clone(), SignerKey { epoch, group_key });
                self.notice(NodeNotice::SignerReady {
                    key_id: key_id.clone(),
                    epoch,
                    curve,
                });
            }
            Err(error) => self.notice(NodeNotice::SignerNotStarted {
                key_id: key_id.clone(),
                epoch,
                error,
            }),
        }
    }

    /// Whether this node holds any share of `key_id`, or runs its signer (true if the store
    /// cannot be read: never create a key over one that may exist).
    fn holds_key(&self, key_id: &KeyId) -> bool {
        self.sessions.contains(&Route::Signer(key_id.clone()))
            || self
                .store
                .shares_of_key(key_id)
                .map(|shares| !shares.is_empty())
                .unwrap_or(true)
    }

    fn active_epoch(&self, key_id: &KeyId) -> Option<Epoch> {
        self.store
            .shares_of_key(key_id)
            .ok()?
            .into_iter()
            .filter(|s| s.state == ShareState::Active)
            .map(|s| s.epoch)
            .max()
    }

    /// Refuses a committee that names anyone who is not a signer node.
    fn refuse_strangers<'a>(
        &self,
        committee: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<(), ProtocolError> {
        match committee
            .into_iter()
            .find(|n| !self.setup.nodes.contains(*n))
        {
            Some(stranger) => Err(Refusal::NotASignerNode(stranger.clone()).into()),
            None => Ok(()),
        }
    }

    /// Refuses an open of a session this node concluded (a replay).
    fn refuse_concluded(&self, session: &SessionId) -> Result<(), ProtocolError> {
        match self.store.session_concluded(session) {
            Ok(false) => Ok(()),
            Ok(true) => Err(Refusal::SessionConcluded.into()),
            Err(e) => Err(reshare::store_refusal(e)),
        }
    }

    fn identities(&self) -> Arc<Identities> {
        Arc::new(Identities {
            key: self.setup.identity.clone(),
            verifier: self.setup.verifier.clone(),
        })
    }

    fn transmit(&mut self, to: NodeId, message: Message) {
        self.outputs.push_back(NodeOutput::Transmit { to, message });
    }

    fn notice(&mut self, notice: NodeNotice) {
        self.outputs.push_back(NodeOutput::Notice(notice));
    }
}
