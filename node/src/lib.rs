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

pub use config::{NodeConfig, PASSPHRASE_ENV};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use permafrost_keystore::{
    AuditEntry, AuditKind, KeyStore, KeystoreError, ShareRecord, ShareState,
};
use permafrost_net::{InboundRequest, NetConfig, PeerId};
use permafrost_protocol::{ProtocolError, Refusal};
use permafrost_runtime::any::{self, AnyEvent, PublicShareInfo, StoredShare};
use permafrost_runtime::driver::{Driver, Handled, Route};
use permafrost_runtime::identity::{self, Libp2pIdentity, Libp2pVerifier};
use permafrost_runtime::network::{Network, NetworkFile};
use permafrost_wire::{decode, Epoch, KeyId, Message, SessionId, SignRefusal};
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
    };
    node.load_active_shares()?;
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
}

/// Work an event asks for that needs the driver itself (done after the session's outputs).
enum FollowUp {
    StartSigner(KeyId, Epoch),
}

impl Node {
    fn load_active_shares(&mut self) -> Result<(), NodeError> {
        for meta in self.keystore.shares()? {
            if meta.state != ShareState::Active {
                if meta.state == ShareState::Pending {
                    tracing::warn!(key = %meta.key_id, epoch = meta.epoch, "pending share from an unfinished DKG kept, not used");
                }
                continue;
            }
            let (Ok(key_id), epoch) = (KeyId::new(meta.key_id.clone()), Epoch(meta.epoch)) else {
                continue;
            };
            self.start_signer(&key_id, epoch);
        }
        Ok(())
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
        let peer = request.peer;
        let answer = match self.dispatch(peer, &request.payload) {
            Ok(()) => Vec::new(),
            Err(e) => {
                tracing::info!(%peer, error = %e, "message refused");
                e.to_string().into_bytes()
            }
        };
        request.respond(answer);
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
                let mut follow = Vec::new();
                let (keystore, dkg_keys) = (&self.keystore, &self.dkg_keys);
                let mut handler =
                    |r: &Route, e: AnyEvent| handle_event(keystore, dkg_keys, r, e, &mut follow);
                self.driver.insert(route, session, &mut handler);
                self.follow_up(follow);
                return Ok(());
            }
            Message::SignRequest(m) => (Route::Signer(m.key_id.clone()), m.session),
            Message::SignPackage(m) => (Route::Signer(m.key_id.clone()), m.session),
            Message::DkgRound1Set(_)
            | Message::DkgRound2(_)
            | Message::DkgCommit(_)
            | Message::DkgAbort(_) => (Route::Session(message.session()), message.session()),
            other => return Err(Refusal::Unexpected(other.kind()).into()),
        };
        let (route, session) = route;
        if let Route::Signer(_) = &route {
            if !from_coordinator {
                return Err(Refusal::NotFromCoordinator(from).into());
            }
            if !self.driver.contains(&route) {
                // Tell the coordinator now rather than let it wait for its deadline.
                self.driver.send(
                    from,
                    Message::SignRefusal(SignRefusal {
                        session,
                        reason: Refusal::WrongKey.to_string(),
                    }),
                );
                return Err(Refusal::WrongKey.into());
            }
        }
        let mut follow = Vec::new();
        let (keystore, dkg_keys) = (&self.keystore, &self.dkg_keys);
        let mut handler =
            |r: &Route, e: AnyEvent| handle_event(keystore, dkg_keys, r, e, &mut follow);
        let result = self
            .driver
            .deliver(&route, &from, message, now, &mut handler);
        self.follow_up(follow);
        result
    }

    fn tick(&mut self) {
        let mut follow = Vec::new();
        let (keystore, dkg_keys) = (&self.keystore, &self.dkg_keys);
        let mut handler =
            |r: &Route, e: AnyEvent| handle_event(keystore, dkg_keys, r, e, &mut follow);
        self.driver.tick(permafrost_runtime::now(), &mut handler);
        self.follow_up(follow);
        let driver = &self.driver;
        self.dkg_keys
            .retain(|session, _| driver.contains(&Route::Session(*session)));
    }

    fn follow_up(&mut self, follow: Vec<FollowUp>) {
        for action in follow {
            match action {
                FollowUp::StartSigner(key_id, epoch) => self.start_signer(&key_id, epoch),
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

fn unix_ms() -> u64 {
    permafrost_runtime::now().0
}

/// Carries out one event of a session, in order. Returning [`Handled::Abort`] drops the
/// session with everything it would have sent after this event.
fn handle_event(
    keystore: &KeyStore,
    dkg_keys: &BTreeMap<SessionId, KeyId>,
    route: &Route,
    event: AnyEvent,
    follow: &mut Vec<FollowUp>,
) -> Handled {
    match event {
        AnyEvent::KeyPending(share) => {
            // Persist before acknowledging: the confirmation after this event promises the
            // share is on disk.
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
                    tracing::error!(key = %share.key_id, error = %e, "cannot store share; leaving the DKG");
                    Handled::Abort
                }
            }
        }
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
            follow.push(FollowUp::StartSigner(key_id, epoch));
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
            if let Route::Session(session) = route {
                if let Some(key_id) = dkg_keys.get(session) {
                    discard_pending(keystore, key_id, &error);
                }
            }
            Handled::Continue
        }
        AnyEvent::KeyCreated { .. } | AnyEvent::SignatureReady { .. } => Handled::Continue,
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
    let entry = AuditEntry {
        time_unix_ms: unix_ms(),
        kind,
        key_id: key_id.as_str().to_owned(),
        epoch: epoch.0,
        message_digest,
        requester,
        detail: detail.to_owned(),
    };
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
