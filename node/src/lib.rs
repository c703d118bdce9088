//! # permafrost-node
//!
//! The signer node. One per custodian: it holds that custodian's share of every key, encrypted
//! at rest, and takes part in DKG and signing sessions the coordinator opens. It never sends a
//! share anywhere (DKG round-2 shares go only to their one recipient).
//!
//! [`run`] joins the network (`permafrost-net`), the protocol (`permafrost-protocol`, through
//! `permafrost-runtime`) and the keystore (`permafrost-keystore`); `main.rs` only parses
//! arguments and sets up logging.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod reshare;

pub use config::{ClientsConfig, NodeConfig, PASSPHRASE_ENV};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use permafrost_keystore::{
    AuditEntry, AuditKind, ClientRequestRow, KeyStore, KeystoreError, ReshareConclusion,
    ShareRecord, ShareState,
};
use permafrost_net::{InboundRequest, NetConfig, PeerId};
use permafrost_protocol::reshare::{Identities, IdentityVerifierAndKey, DEFAULT_RESHARE_TIMEOUT};
use permafrost_protocol::sign::client::{Admission, AdmittedRequest, ClientGate, ClientKey};
use permafrost_protocol::{ProtocolError, Refusal, Timestamp};
use permafrost_runtime::any::{self, AnyEvent, PublicShareInfo, StoredShare};
use permafrost_runtime::driver::{self, Driver, Handled, Route};
use permafrost_runtime::identity::{self, Libp2pIdentity, Libp2pVerifier};
use permafrost_runtime::network::{Network, NetworkFile, RateLimitConfig};
use permafrost_wire::{decode, Epoch, KeyId, Message, NodeId, ReshareOpen, SessionId, SignRequest};
use reshare::{EarlyMessages, ReshareRecord};
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

/// Why a node could not start or stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The config file is unusable.
    #[error("config: {0}")]
    Config(String),
    /// No usable passphrase.
    #[error("passphrase: {0}")]
    Passphrase(String),
    /// The keystore refused to open (a wrong passphrase says so).
    #[error("keystore: {0}")]
    Keystore(#[from] KeystoreError),
    /// The identity key is missing or unusable.
    #[error("identity: {0} (create one with `permafrost-node init --dir DIR`)")]
    Identity(String),
    /// The network file is unusable, or does not list this node.
    #[error("network: {0}")]
    Network(String),
}

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// Refusals of signing requests written to the audit log one by one, at most this many per
/// second; the rest are counted and written as one entry (a coordinator flooding refusals
/// cannot grow the audit log faster than this).
const AUDITED_REFUSALS_PER_SECOND: u32 = 32;

/// Reshare messages kept for a session that has not opened here yet: how many, how long.
const EARLY_CAPACITY: usize = 256;
const EARLY_MAX_AGE: Duration = Duration::from_secs(60);

/// Runs a node until `shutdown` completes.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let passphrase = config.passphrase()?;
    let keypair = identity::load_identity_file(&config.identity_path())
        .map_err(|e| NodeError::Identity(e.to_string()))?;
    let me = keypair.public().to_peer_id();
    let network = NetworkFile::load(&config.network_file)
        .and_then(|f| f.validate())
        .map_err(|e| NodeError::Network(e.to_string()))?;
    let Some(name) = network.name_of(&me).map(str::to_owned) else {
        return Err(NodeError::Network(format!(
            "this node ({me}) is not listed in {}",
            config.network_file.display()
        )));
    };
    let policy = config.clients.policy()?;
    if policy.all_keys.is_empty() && policy.per_key.is_empty() {
        tracing::warn!("no client keys in [clients]: this node will refuse every signing request");
    }
    let keystore = KeyStore::open(&config.keystore_path(), passphrase.as_bytes())?;
    drop(passphrase);

    let identity = Arc::new(
        Libp2pIdentity::new(keypair.clone()).map_err(|e| NodeError::Identity(e.to_string()))?,
    );
    let mut net_config = NetConfig::new(keypair, network.network_id.clone());
    net_config.listen = vec![config
        .listen
        .parse()
        .map_err(|e| NodeError::Config(format!("listen address {:?}: {e}", config.listen)))?];
    net_config.peers = network.peers_except(&me);
    net_config.inbound_rate_limit = Some(RateLimitConfig::or_default(config.rate_limit));
    let (client, mut inbound) = permafrost_net::start(net_config)
        .await
        .map_err(|e| NodeError::Network(e.to_string()))?;
    tracing::info!(node = %name, peer_id = %me, "node started");

    let mut node = Node {
        name,
        keystore,
        network,
        identity,
        driver: Driver::new(client.clone()),
        dkg_keys: BTreeMap::new(),
        reshares: BTreeMap::new(),
        aliases: BTreeMap::new(),
        early: EarlyMessages::new(EARLY_CAPACITY, EARLY_MAX_AGE),
        gate: ClientGate::new(policy),
        refusals: RefusalAudit::default(),
    };
    node.restore_client_requests()?;
    node.load_active_shares()?;
    node.resume_reshares()?;
    if let Err(e) = client.dial_all().await {
        tracing::warn!(error = %e, "cannot dial peers yet");
    }

    let mut ticker = tokio::time::interval(TICK);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            request = inbound.recv() => match request {
                Some(request) => node.handle_request(request),
                None => break,
            },
            _ = ticker.tick() => node.tick(),
        }
    }
    tracing::info!(node = %node.name, "node stopping");
    client.shutdown().await;
    Ok(())
}

struct Node {
    name: String,
    keystore: KeyStore,
    network: Network,
    identity: Arc<Libp2pIdentity>,
    driver: Driver,
    /// The key each running DKG session creates.
    dkg_keys: BTreeMap<SessionId, KeyId>,
    /// The reshares this node takes part in (their records are in the keystore).
    reshares: BTreeMap<SessionId, ReshareRecord>,
    /// Test-signature session id → its reshare session.
    aliases: BTreeMap<SessionId, SessionId>,
    /// Reshare messages that came before their session opened here.
    early: EarlyMessages,
    /// Client authorization of signing requests; the request ids it admitted are also in the
    /// keystore.
    gate: ClientGate,
    /// The audit-rate cap on refusals.
    refusals: RefusalAudit,
}

/// Refusals audited in the current second, and those counted but not written one by one.
#[derive(Default)]
struct RefusalAudit {
    second: u64,
    written: u32,
    unwritten: u64,
}

/// Work an event asks for that needs the driver itself (done after the session's outputs).
enum FollowUp {
    StartSigner(KeyId, Epoch),
    StopSigner(KeyId),
}

/// What the event handler may read and write while a session's outputs are carried out.
struct Context<'a> {
    keystore: &'a KeyStore,
    dkg_keys: &'a BTreeMap<SessionId, KeyId>,
    reshares: &'a BTreeMap<SessionId, ReshareRecord>,
    follow: Vec<FollowUp>,
}

impl Node {
    /// Reloads the client request ids admitted before a restart, so a replay is refused.
    fn restore_client_requests(&mut self) -> Result<(), NodeError> {
        let now = permafrost_runtime::now();
        let retention =
            u64::try_from(permafrost_protocol::sign::client::REQUEST_ID_RETENTION.as_millis())
                .unwrap_or(u64::MAX);
        let rows = self.keystore.client_requests(now.0)?;
        let count = rows.len();
        for row in rows {
            self.gate.record(
                AdmittedRequest {
                    client: ClientKey(row.client),
                    request_id: row.request_id,
                    session: SessionId(row.session),
                    timestamp_ms: row.expires_unix_ms.saturating_sub(retention),
                    expires_ms: row.expires_unix_ms,
                },
                now,
            );
        }
        if count > 0 {
            tracing::info!(count, "client request ids reloaded");
        }
        Ok(())
    }

    /// Decides on a signing request's client authorization. An admission is written to the
    /// keystore (request id and audit entry, one transaction) before the signer commits; a
    /// refusal is audited too.
    fn admit(
        &mut self,
        from: &NodeId,
        request: &SignRequest,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let decision = match self.gate.check(request, now) {
            Ok(Admission::Again) => return Ok(()),
            Ok(Admission::New(admitted)) => self.persist_admission(from, request, admitted, now),
            Err(refusal) => Err(refusal),
        };
        if let Err(refusal) = &decision {
            tracing::warn!(key = %request.key_id, session = %request.session, %refusal, "signing request refused");
            self.flush_refusal_count();
            if self.refusals.written < AUDITED_REFUSALS_PER_SECOND {
                self.refusals.written += 1;
                let entry = self.request_audit_entry(
                    AuditKind::Refused,
                    from,
                    request,
                    refusal.to_string(),
                );
                if let Err(e) = self.keystore.append_audit_lazily(&entry) {
                    tracing::error!(key = %request.key_id, error = %e, "cannot write the audit log");
                }
            } else {
                self.refusals.unwritten += 1;
            }
        }
        decision
    }

    /// Starts a new second of the refusal audit cap, writing one entry for the refusals of the
    /// previous ones that were only counted.
    fn flush_refusal_count(&mut self) {
        let second = unix_ms() / 1000;
        if second == self.refusals.second {
            return;
        }
        let unwritten = std::mem::take(&mut self.refusals.unwritten);
        self.refusals.second = second;
        self.refusals.written = 0;
        if unwritten == 0 {
            return;
        }
        tracing::warn!(unwritten, "signing requests refused beyond the audit cap");
        let entry = audit_entry(
            AuditKind::Refused,
            "",
            0,
            None,
            None,
            format!(
                "{unwritten} further signing requests refused, not written one by one (at most {AUDITED_REFUSALS_PER_SECOND} a second are)"
            ),
        );
        if let Err(e) = self.keystore.append_audit_lazily(&entry) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    fn persist_admission(
        &mut self,
        from: &NodeId,
        request: &SignRequest,
        admitted: AdmittedRequest,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let row = ClientRequestRow {
            client: admitted.client.0,
            request_id: admitted.request_id,
            session: admitted.session.0,
            expires_unix_ms: admitted.expires_ms,
        };
        let detail = format!(
            "client {} request {} (timestamp {}) admitted in session {}",
            admitted.client,
            hex::encode(admitted.request_id),
            admitted.timestamp_ms,
            admitted.session
        );
        let entry = self.request_audit_entry(AuditKind::ClientRequest, from, request, detail);
        match self.keystore.admit_client_request(&row, &entry, now.0) {
            Ok(()) => {
                self.gate.record(admitted, now);
                Ok(())
            }
            Err(KeystoreError::Conflict(why)) => Err(Refusal::ClientNotAuthorized(why)),
            Err(e) => {
                tracing::error!(key = %request.key_id, error = %e, "cannot record a client request; refusing it");
                Err(Refusal::Limit(format!("cannot record the request: {e}")))
            }
        }
    }

    fn request_audit_entry(
        &self,
        kind: AuditKind,
        from: &NodeId,
        request: &SignRequest,
        detail: String,
    ) -> AuditEntry {
        audit_entry(
            kind,
            request.key_id.as_str(),
            request.epoch.0,
            Some(Sha256::digest(&request.message).into()),
            identity::peer_id(from).map(|p| p.to_string()),
            detail,
        )
    }

    /// Starts a signer for every key's ACTIVE share. Shares are listed by (key, epoch), so if
    /// a key had two ACTIVE epochs (which the keystore's transactions prevent) the newest wins.
    fn load_active_shares(&mut self) -> Result<(), NodeError> {
        let mut active: BTreeMap<KeyId, Epoch> = BTreeMap::new();
        for meta in self.keystore.shares()? {
            let Ok(key_id) = KeyId::new(meta.key_id.clone()) else {
                continue;
            };
            match meta.state {
                ShareState::Active => {
                    if let Some(previous) = active.insert(key_id.clone(), Epoch(meta.epoch)) {
                        tracing::error!(key = %key_id, epoch = %previous, "two active epochs; signing with the newer");
                    }
                }
                ShareState::Pending => {
                    tracing::warn!(key = %key_id, epoch = meta.epoch, "pending share kept until its DKG or reshare is concluded; not used for signing");
                }
                ShareState::Retired => {}
            }
        }
        for (key_id, epoch) in active {
            self.start_signer(&key_id, epoch);
        }
        Ok(())
    }

    fn reshare_identities(&self) -> Arc<dyn IdentityVerifierAndKey> {
        Arc::new(Identities {
            key: self.identity.clone(),
            verifier: Arc::new(Libp2pVerifier),
        })
    }

    /// Picks up every reshare the keystore records as unconcluded: each asks its coordinator
    /// for the outcome and waits for the certificate or the abort, keeping both epochs
    /// meanwhile.
    fn resume_reshares(&mut self) -> Result<(), NodeError> {
        for (session, bytes) in self.keystore.reshares()? {
            let session = SessionId(session);
            let record = match ReshareRecord::decode(&session, &bytes) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(%session, error = %e, "unreadable reshare record kept for an operator");
                    continue;
                }
            };
            let (key_id, epoch) = (record.key_id().clone(), record.epoch());
            let old = self.stored_share(&key_id, epoch).ok();
            let pending = self
                .stored_share(&key_id, Epoch(epoch.0 + 1))
                .ok()
                .filter(|_| {
                    self.share_state(&key_id, Epoch(epoch.0 + 1)) == Some(ShareState::Pending)
                });
            let resumed = any::resume_reshare_peer(
                record.open.clone(),
                record.coordinator.clone(),
                self.reshare_identities(),
                old.as_ref(),
                pending.as_ref(),
                permafrost_runtime::now(),
            );
            match resumed {
                Ok(peer) => {
                    tracing::warn!(key = %key_id, epoch = %epoch, %session, pending = pending.is_some(), "resuming an unconcluded reshare: asking the coordinator for its outcome");
                    self.insert_reshare(session, record, peer);
                }
                Err(e) => {
                    tracing::error!(key = %key_id, %session, error = %e, "cannot resume reshare; record kept for an operator");
                }
            }
        }
        Ok(())
    }

    fn share_state(&self, key_id: &KeyId, epoch: Epoch) -> Option<ShareState> {
        self.keystore
            .shares()
            .ok()?
            .into_iter()
            .find(|m| m.key_id == key_id.as_str() && m.epoch == epoch.0)
            .map(|m| m.state)
    }

    /// Joins a reshare: records it durably, then starts its session (which may deal at once).
    fn open_reshare(
        &mut self,
        coordinator: NodeId,
        open: ReshareOpen,
    ) -> Result<(), ProtocolError> {
        let session = open.session;
        if self.driver.contains(&Route::Session(session)) || self.reshares.contains_key(&session) {
            return Err(Refusal::SessionExists.into());
        }
        let p = &open.proposal;
        // One reshare of a key at a time on this node, including one resumed after a restart
        // and still waiting for its outcome: two would write the same next epoch.
        if let Some((other, record)) = self.reshares.iter().find(|(_, r)| r.key_id() == &p.key_id) {
            // Ask again now, so that the next attempt finds this one concluded.
            self.driver.send(
                record.coordinator.clone(),
                Message::ReshareStatus(permafrost_wire::ReshareStatus { session: *other }),
            );
            return Err(ProtocolError::InvalidParameters(format!(
                "reshare {other} of key {} is not concluded here yet",
                p.key_id
            )));
        }
        // The old share, if this node holds the epoch being reshared.
        let old = match self.stored_share(&p.key_id, p.epoch) {
            Ok(share) => Some(share),
            Err(_) if p.old_committee.contains(self.identity_node_id()) => {
                return Err(Refusal::WrongEpoch {
                    expected: self.active_epoch(&p.key_id).unwrap_or(Epoch(0)),
                    got: p.epoch,
                }
                .into());
            }
            Err(_) => None,
        };
        if !p.old_committee.contains(self.identity_node_id()) && self.holds_key(&p.key_id) {
            return Err(ProtocolError::InvalidParameters(format!(
                "key {} already exists on this node",
                p.key_id
            )));
        }
        let peer = any::reshare_peer(
            open.clone(),
            coordinator.clone(),
            self.reshare_identities(),
            old.as_ref(),
            false,
            permafrost_runtime::now(),
            DEFAULT_RESHARE_TIMEOUT,
            &mut rand_core::OsRng,
        )?;
        let record = ReshareRecord {
            coordinator,
            dealt: false,
            open,
        };
        // Persist before anything of the session happens.
        let bytes = record.encode().map_err(ProtocolError::Frost)?;
        self.keystore
            .put_reshare(&session.0, &bytes)
            .map_err(|e| ProtocolError::Frost(format!("cannot record the reshare: {e}")))?;
        tracing::info!(key = %record.key_id(), epoch = %record.epoch(), %session, "reshare joined");
        self.insert_reshare(session, record, peer);
        // Messages that came first.
        let now = permafrost_runtime::now();
        for (from, message) in self.early.take(&session) {
            let _ = self.deliver(&Route::Session(session), &from, message, now);
        }
        Ok(())
    }

    fn insert_reshare(
        &mut self,
        session: SessionId,
        record: ReshareRecord,
        peer: Box<dyn any::AnySession>,
    ) {
        self.aliases.insert(
            permafrost_protocol::reshare::test_session_id(&session),
            session,
        );
        self.reshares.insert(session, record);
        self.drive(|driver, handler| driver.insert(Route::Session(session), peer, handler));
    }

    fn identity_node_id(&self) -> &NodeId {
        permafrost_protocol::NodeIdentity::node_id(self.identity.as_ref())
    }

    fn active_epoch(&self, key_id: &KeyId) -> Option<Epoch> {
        self.keystore
            .shares()
            .ok()?
            .into_iter()
            .filter(|m| m.key_id == key_id.as_str() && m.state == ShareState::Active)
            .map(|m| Epoch(m.epoch))
            .max()
    }

    /// Runs `f` on the driver with the event handler, then does the follow-up work and drops
    /// what belonged to sessions that ended.
    fn drive<R>(
        &mut self,
        f: impl FnOnce(&mut Driver, &mut dyn FnMut(&Route, AnyEvent) -> Handled) -> R,
    ) -> R {
        let mut cx = Context {
            keystore: &self.keystore,
            dkg_keys: &self.dkg_keys,
            reshares: &self.reshares,
            follow: Vec::new(),
        };
        let result = f(&mut self.driver, &mut |r, e| cx.handle(r, e));
        let follow = cx.follow;
        self.follow_up(follow);
        self.forget_finished();
        result
    }

    /// Delivers one message to a session and carries out what follows.
    fn deliver(
        &mut self,
        route: &Route,
        from: &NodeId,
        message: Message,
        now: permafrost_protocol::Timestamp,
    ) -> Result<(), ProtocolError> {
        self.drive(|driver, handler| driver.deliver(route, from, message, now, handler))
    }

    fn start_signer(&mut self, key_id: &KeyId, epoch: Epoch) {
        let share = match self.stored_share(key_id, epoch) {
            Ok(share) => share,
            Err(e) => {
                tracing::error!(key = %key_id, epoch = %epoch, error = %e, "cannot load share");
                return;
            }
        };
        match any::signer(&share) {
            Ok(signer) => {
                let mut ignore = |_: &Route, _: AnyEvent| Handled::Continue;
                self.driver
                    .insert(Route::Signer(key_id.clone()), signer, &mut ignore);
                tracing::info!(key = %key_id, epoch = %epoch, curve = %share.curve, "signer ready");
            }
            Err(e) => tracing::error!(key = %key_id, error = %e, "cannot build signer"),
        }
    }

    fn stored_share(&self, key_id: &KeyId, epoch: Epoch) -> Result<StoredShare, String> {
        let record = self
            .keystore
            .share(key_id.as_str(), epoch.0)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no such share".to_string())?;
        let public: PublicShareInfo =
            serde_json::from_slice(&record.public).map_err(|e| e.to_string())?;
        StoredShare::from_parts(
            key_id.clone(),
            epoch,
            record.identifier.clone(),
            &public,
            record.secret.clone(),
        )
    }

    fn handle_request(&mut self, request: InboundRequest) {
        let outcome = self.dispatch(request.peer, &request.payload);
        driver::answer(request, outcome);
    }

    fn dispatch(&mut self, peer: PeerId, payload: &[u8]) -> Result<(), ProtocolError> {
        let message = decode(payload)?;
        let from = identity::node_id(&peer)?;
        let from_coordinator = self.network.is_coordinator(&peer);
        let now = permafrost_runtime::now();
        let route = match &message {
            Message::DkgOpen(open) => {
                if !from_coordinator {
                    return Err(Refusal::NotFromCoordinator(from).into());
                }
                let route = Route::Session(open.session);
                if self.driver.contains(&route) {
                    return Err(Refusal::SessionExists.into());
                }
                if self.holds_key(&open.key_id) {
                    return Err(ProtocolError::InvalidParameters(format!(
                        "key {} already exists on this node",
                        open.key_id
                    )));
                }
                self.dkg_keys.insert(open.session, open.key_id.clone());
                let session = any::dkg_participant(
                    open.clone(),
                    from,
                    self.identity.clone(),
                    Arc::new(Libp2pVerifier),
                    now,
                    &mut rand_core::OsRng,
                )?;
                self.drive(|driver, handler| driver.insert(route, session, handler));
                return Ok(());
            }
            Message::ReshareOpen(open) => {
                if !from_coordinator {
                    return Err(Refusal::NotFromCoordinator(from).into());
                }
                return self.open_reshare(from, open.clone());
            }
            Message::SignRequest(_) | Message::SignPackage(_)
                if self.aliases.contains_key(&message.session()) =>
            {
                let session = self.aliases[&message.session()];
                return self.deliver(&Route::Session(session), &from, message, now);
            }
            Message::SignRequest(m) => (Route::Signer(m.key_id.clone()), m.session),
            Message::SignPackage(m) => (Route::Signer(m.key_id.clone()), m.session),
            Message::DkgRound1Set(_)
            | Message::DkgRound2(_)
            | Message::DkgCommit(_)
            | Message::DkgAbort(_) => (Route::Session(message.session()), message.session()),
            Message::ReshareShare(_)
            | Message::ReshareDealingSet(_)
            | Message::ReshareDealerSet(_)
            | Message::ReshareCommit(_)
            | Message::ReshareAbort(_) => {
                let route = Route::Session(message.session());
                if self.driver.contains(&route) {
                    return self.deliver(&route, &from, message, now);
                }
                // Its open may still be on the way.
                if self.early.keep(now, from, message) {
                    return Ok(());
                }
                return Err(Refusal::Limit("too many messages for unknown reshares".into()).into());
            }
            other => return Err(Refusal::Unexpected(other.kind()).into()),
        };
        let (route, session) = route;
        if let Route::Signer(_) = &route {
            if !from_coordinator {
                return Err(Refusal::NotFromCoordinator(from).into());
            }
            let checked = if !self.driver.contains(&route) {
                Err(Refusal::WrongKey)
            } else if let Message::SignRequest(request) = &message {
                self.admit(&from, request, now)
            } else {
                Ok(())
            };
            if let Err(refusal) = checked {
                // Tell the coordinator now rather than let it wait for its deadline.
                self.driver.send(
                    from,
                    Message::SignRefusal(permafrost_protocol::sign::refusal_message(
                        session, &refusal,
                    )),
                );
                return Err(refusal.into());
            }
        }
        self.deliver(&route, &from, message, now)
    }

    fn tick(&mut self) {
        self.flush_refusal_count();
        let now = permafrost_runtime::now();
        self.drive(|driver, handler| driver.tick(now, handler));
        self.early.expire(now);
    }

    /// Drops what belonged to sessions that ended.
    fn forget_finished(&mut self) {
        let driver = &self.driver;
        self.dkg_keys
            .retain(|session, _| driver.contains(&Route::Session(*session)));
        self.reshares
            .retain(|session, _| driver.contains(&Route::Session(*session)));
        let reshares = &self.reshares;
        self.aliases
            .retain(|_, session| reshares.contains_key(session));
    }

    fn follow_up(&mut self, follow: Vec<FollowUp>) {
        for action in follow {
            match action {
                FollowUp::StartSigner(key_id, epoch) => self.start_signer(&key_id, epoch),
                FollowUp::StopSigner(key_id) => {
                    self.driver.remove(&Route::Signer(key_id.clone()));
                    tracing::info!(key = %key_id, "signer stopped: this node no longer holds the key");
                }
            }
        }
    }

    fn holds_key(&self, key_id: &KeyId) -> bool {
        self.driver.contains(&Route::Signer(key_id.clone()))
            || self
                .keystore
                .shares()
                .map(|all| all.iter().any(|m| m.key_id == key_id.as_str()))
                .unwrap_or(true)
    }
}

/// An audit entry stamped with the time now.
fn audit_entry(
    kind: AuditKind,
    key_id: &str,
    epoch: u64,
    message_digest: Option<[u8; 32]>,
    requester: Option<String>,
    detail: String,
) -> AuditEntry {
    AuditEntry {
        time_unix_ms: unix_ms(),
        kind,
        key_id: key_id.to_owned(),
        epoch,
        message_digest,
        requester,
        detail,
    }
}

fn unix_ms() -> u64 {
    permafrost_runtime::now().0
}

impl Context<'_> {
    /// Carries out one event of a session, in order. Returning [`Handled::Abort`] drops the
    /// session with everything it would have sent after this event.
    fn handle(&mut self, route: &Route, event: AnyEvent) -> Handled {
        let keystore = self.keystore;
        let reshare = match route {
            Route::Session(session) => self.reshares.get(session).map(|r| (*session, r)),
            Route::Signer(_) => None,
        };
        match event {
            AnyEvent::KeyPending(share) => store_pending(keystore, &share),
            AnyEvent::KeyActivated { key_id, epoch } => {
                if let Err(e) = keystore.set_state(key_id.as_str(), epoch.0, ShareState::Active) {
                    tracing::error!(key = %key_id, error = %e, "cannot activate share");
                    return Handled::Abort;
                }
                audit(
                    keystore,
                    AuditKind::Dkg,
                    &key_id,
                    epoch,
                    None,
                    None,
                    "key activated",
                );
                tracing::info!(key = %key_id, epoch = %epoch, "key active");
                self.follow.push(FollowUp::StartSigner(key_id, epoch));
                Handled::Continue
            }
            AnyEvent::Dealt { key_id, session } => {
                // Durable before the dealing leaves: a restart never deals twice.
                let Some((_, record)) = reshare else {
                    return Handled::Abort;
                };
                let record = ReshareRecord {
                    dealt: true,
                    ..record.clone()
                };
                match record
                    .encode()
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        keystore
                            .put_reshare(&session.0, &bytes)
                            .map_err(|e| e.to_string())
                    }) {
                    Ok(()) => {
                        tracing::info!(key = %key_id, %session, "dealt");
                        Handled::Continue
                    }
                    Err(e) => {
                        tracing::error!(key = %key_id, %session, error = %e, "cannot record the dealing; not dealing");
                        Handled::Abort
                    }
                }
            }
            AnyEvent::ReshareCommitted { key_id, epoch } => {
                let Some((session, _)) = reshare else {
                    return Handled::Abort;
                };
                let detail = format!(
                    "reshare {session} committed: epoch {epoch} active, older epochs deleted"
                );
                if !conclude(
                    keystore,
                    &key_id,
                    epoch,
                    ReshareConclusion::Promote { epoch: epoch.0 },
                    &session,
                    &detail,
                ) {
                    return Handled::Abort;
                }
                tracing::info!(key = %key_id, epoch = %epoch, "reshare committed; new share active, old share deleted");
                self.follow.push(FollowUp::StartSigner(key_id, epoch));
                Handled::Continue
            }
            AnyEvent::ShareRetired { key_id, epoch } => {
                let Some((session, _)) = reshare else {
                    return Handled::Abort;
                };
                let detail = format!(
                    "reshare {session} committed without this node: epoch {epoch} share deleted"
                );
                if !conclude(
                    keystore,
                    &key_id,
                    epoch,
                    ReshareConclusion::Retire { epoch: epoch.0 },
                    &session,
                    &detail,
                ) {
                    return Handled::Abort;
                }
                tracing::info!(key = %key_id, epoch = %epoch, "left the committee; share deleted");
                self.follow.push(FollowUp::StopSigner(key_id));
                Handled::Continue
            }
            AnyEvent::ShareProduced {
                key_id,
                epoch,
                message_digest,
                requester,
            } => {
                // The audit record is written before the share is sent.
                let requester = identity::peer_id(&requester).map(|p| p.to_string());
                if audit(
                    keystore,
                    AuditKind::SignatureShare,
                    &key_id,
                    epoch,
                    Some(message_digest),
                    requester,
                    "signature share produced",
                ) {
                    Handled::Continue
                } else {
                    Handled::Abort
                }
            }
            AnyEvent::Failed(error) => {
                tracing::warn!(?route, %error, culprits = ?error.culprits(), "session failed");
                if let Some((session, record)) = reshare {
                    // Aborted (or impossible to commit): the PENDING share goes, the old
                    // epoch stays in force.
                    let next = Epoch(record.epoch().0 + 1);
                    let detail = format!("reshare {session} aborted: {error}");
                    conclude(
                        keystore,
                        record.key_id(),
                        next,
                        ReshareConclusion::Discard { epoch: next.0 },
                        &session,
                        &detail,
                    );
                } else if let Route::Session(session) = route {
                    if let Some(key_id) = self.dkg_keys.get(session) {
                        discard_pending(keystore, key_id, &error);
                    }
                }
                Handled::Continue
            }
            AnyEvent::KeyCreated { .. }
            | AnyEvent::SignatureReady { .. }
            | AnyEvent::KeyReshared { .. } => Handled::Continue,
        }
    }
}

/// Stores a new share as PENDING. Persist before acknowledging: the confirmation after this
/// event promises the share is on disk.
fn store_pending(keystore: &KeyStore, share: &any::StoredShare) -> Handled {
    // Never over an ACTIVE share: a PENDING one only ever fills an epoch not yet in force.
    match keystore.share(share.key_id.as_str(), share.epoch.0) {
        Ok(Some(existing)) if existing.state == ShareState::Active => {
            tracing::error!(key = %share.key_id, epoch = %share.epoch, "refusing to store a pending share over the active share of the same epoch");
            return Handled::Abort;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(key = %share.key_id, error = %e, "cannot read the keystore");
            return Handled::Abort;
        }
    }
    let public = match serde_json::to_vec(&share.public_info()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(key = %share.key_id, error = %e, "cannot encode share metadata");
            return Handled::Abort;
        }
    };
    let record = ShareRecord {
        key_id: share.key_id.as_str().to_owned(),
        epoch: share.epoch.0,
        state: ShareState::Pending,
        identifier: share.identifier.clone(),
        public,
        secret: Zeroizing::new(share.key_package.to_vec()),
    };
    match keystore.put_share(&record) {
        Ok(()) => {
            tracing::info!(key = %share.key_id, epoch = %share.epoch, "share stored as pending");
            Handled::Continue
        }
        Err(e) => {
            tracing::error!(key = %share.key_id, error = %e, "cannot store share; leaving the session");
            Handled::Abort
        }
    }
}

/// Concludes a reshare in the keystore (one transaction, audited); false if it failed.
fn conclude(
    keystore: &KeyStore,
    key_id: &KeyId,
    epoch: Epoch,
    change: ReshareConclusion,
    session: &SessionId,
    detail: &str,
) -> bool {
    let entry = audit_entry(
        AuditKind::Reshare,
        key_id.as_str(),
        epoch.0,
        None,
        None,
        detail.to_owned(),
    );
    match keystore.conclude_reshare(key_id.as_str(), change, &session.0, &entry) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(key = %key_id, %session, error = %e, "cannot conclude the reshare on disk; both epochs kept");
            false
        }
    }
}

/// A failed DKG leaves nothing behind, except when the failure is a missing commit: then the
/// other members may have activated the key, so the pending share is kept for an operator.
fn discard_pending(keystore: &KeyStore, key_id: &KeyId, error: &ProtocolError) {
    if matches!(
        error,
        ProtocolError::Timeout {
            phase: "DKG commit",
            ..
        }
    ) {
        tracing::error!(key = %key_id, "DKG commit never arrived; the pending share is kept");
        return;
    }
    match keystore.share(key_id.as_str(), 0) {
        Ok(Some(record)) if record.state == ShareState::Pending => {
            if let Err(e) = keystore.delete_share(key_id.as_str(), 0) {
                tracing::error!(key = %key_id, error = %e, "cannot discard pending share");
            }
        }
        _ => {}
    }
}

fn audit(
    keystore: &KeyStore,
    kind: AuditKind,
    key_id: &KeyId,
    epoch: Epoch,
    message_digest: Option<[u8; 32]>,
    requester: Option<String>,
    detail: &str,
) -> bool {
    let entry = audit_entry(
        kind,
        key_id.as_str(),
        epoch.0,
        message_digest,
        requester,
        detail.to_owned(),
    );
    match keystore.append_audit(&entry) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(key = %key_id, error = %e, "cannot write the audit log");
            false
        }
    }
}

/// Creates a node's identity in `dir` and returns its PeerId.
pub fn init(dir: &std::path::Path) -> Result<PeerId, NodeError> {
    let keypair = identity::create_identity_file(&dir.join("identity.key"))
        .map_err(|e| NodeError::Identity(e.to_string()))?;
    Ok(keypair.public().to_peer_id())
}
