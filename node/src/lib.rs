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

mod audit_command;
mod config;
mod identity_key;
mod metrics;
mod pending_command;

pub use audit_command::{run_audit, utc, AuditCommand, AuditOutcome};
pub use config::{ClientsConfig, NodeConfig, PASSPHRASE_ENV};
pub use pending_command::{run_pending, PendingCommand};

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use permafrost_engine::node::{NodeCore, NodeNotice, NodeOutput, NodeSetup, StoreError};
use permafrost_keystore::{KeyStore, KeystoreError};
use permafrost_net::{InboundRequest, NetConfig, PeerId};
use permafrost_protocol::ProtocolError;
use permafrost_runtime::driver::{self, Outbox};
use permafrost_runtime::identity::{self, Libp2pIdentity, Libp2pVerifier};
use permafrost_runtime::network::{Member, NetworkFile, RateLimitConfig};
use permafrost_runtime::process::SESSION_LOG_TARGET;
use permafrost_wire::{decode, encode, Message, MessageKind, NodeId, SessionId};
use rand_core::OsRng;
use thiserror::Error;

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
    /// The keystore could not be read at start.
    #[error("keystore: {0}")]
    Store(#[from] StoreError),
    /// The identity key is missing or unusable.
    #[error("identity: {0} (create one with `permafrost-node init --dir DIR`)")]
    Identity(String),
    /// The network file is unusable, or does not list this node.
    #[error("network: {0}")]
    Network(String),
    /// The metrics listener (`metrics_listen`) could not bind.
    #[error("metrics: {0}")]
    Metrics(String),
}

/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// Most inbound requests handled in one batch (one keystore sync for all their shares).
const MAX_BATCH: usize = 256;

/// Runs a node until `shutdown` completes: the network and the clock feed the node core
/// ([`NodeCore`], every rule of the node), and what the core asks for is sent and logged.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let passphrase = config.passphrase()?;
    let network = NetworkFile::load(&config.network_file)
        .and_then(|f| f.validate())
        .map_err(|e| NodeError::Network(e.to_string()))?;
    let clients = config.clients.policy()?;
    let operators = config.operators.policy()?;
    let keystore = KeyStore::open(&config.keystore_path(), passphrase.as_bytes())?;
    drop(passphrase);
    if keystore.journal_replayed_on_open() > 0 {
        tracing::info!(
            records = keystore.journal_replayed_on_open(),
            "the keystore replayed its journal: admissions and audit entries made durable by the \
             journal before the node last stopped are now in the database"
        );
    }
    if let Some(migration) = keystore.audit_migrated_on_open() {
        tracing::warn!(
            entries = migration.entries,
            "the audit log was written before the audit chain existed: its entries are now \
             chained (once); `permafrost-node audit verify` reports this migration"
        );
    }
    if let Some(moved) = keystore.request_ids_migrated_on_open() {
        tracing::warn!(
            request_ids = moved,
            "the keystore was converted from format version 1 to 2 (the admitted request ids \
             in one table): builds before this one no longer open it"
        );
    }
    let keypair = identity_key::load(&config.data_dir, &keystore)?;
    let me = keypair.public().to_peer_id();
    let Some(name) = network.name_of(&me).map(str::to_owned) else {
        return Err(NodeError::Network(format!(
            "this node ({me}) is not listed in {}",
            config.network_file.display()
        )));
    };
    if clients.all_keys.is_empty() && clients.per_key.is_empty() {
        tracing::warn!("no client keys in [clients]: this node will refuse every signing request");
    }
    if operators.all_keys.is_empty() && operators.per_key.is_empty() {
        tracing::warn!(
            "no operator keys in [operators]: this node will refuse every DKG and reshare"
        );
    }

    let identity = Arc::new(
        Libp2pIdentity::new(keypair.clone()).map_err(|e| NodeError::Identity(e.to_string()))?,
    );
    let node_ids = |members: &[Member]| {
        members
            .iter()
            .map(|m| identity::node_id(&m.peer_id))
            .collect::<Result<BTreeSet<NodeId>, _>>()
            .map_err(|e| NodeError::Network(e.to_string()))
    };
    let coordinators = node_ids(&network.coordinators)?;
    let nodes = node_ids(&network.nodes)?;
    // Every known peer's PeerId, encoded once: the audit log names the requester of every
    // signature share.
    let known_names: BTreeMap<NodeId, String> = coordinators
        .iter()
        .chain(&nodes)
        .filter_map(|node| Some((node.clone(), identity::peer_id(node)?.to_string())))
        .collect();
    let setup = NodeSetup {
        identity,
        verifier: Arc::new(Libp2pVerifier::default()),
        coordinators,
        nodes,
        network_id: network.network_id.clone(),
        clients,
        operators,
        peer_name: Arc::new(move |node: &NodeId| {
            known_names
                .get(node)
                .cloned()
                .or_else(|| identity::peer_id(node).map(|p| p.to_string()))
        }),
    };
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
    let mut registry = permafrost_runtime::metrics::registry();
    let metrics = metrics::NodeMetrics::register(&mut registry);
    // Unless metrics are served, the registry is dropped and nothing watches the peers.
    let (metrics_listener, _peer_watch) = match config.metrics_listen {
        Some(addr) => {
            let watch = permafrost_runtime::metrics::PeerWatch::start(
                &mut registry,
                client.clone(),
                &network,
                &me,
            );
            let listener =
                permafrost_runtime::metrics::MetricsListener::start(addr, Arc::new(registry))
                    .await
                    .map_err(|e| {
                        NodeError::Metrics(format!("cannot bind metrics_listen {addr}: {e}"))
                    })?;
            (Some(listener), Some(watch))
        }
        None => (None, None),
    };
    let metrics_addr = metrics_listener.as_ref().map(|l| l.addr());
    tracing::info!(node = %name, peer_id = %me, metrics = ?metrics_addr, "node started");

    // The journal's sync thread says when a sync ends: the shares waiting on it go out then,
    // while the loop goes on with the next requests. (Should that fail, the tick finds it.)
    let synced = Arc::new(tokio::sync::Notify::new());
    let wake = Arc::clone(&synced);
    if let Err(error) = keystore.set_sync_waker(Arc::new(move || wake.notify_one())) {
        tracing::warn!(%error, "the keystore cannot report its syncs: shares wait for the tick");
    }
    let mut shell = Shell {
        core: NodeCore::open(setup, keystore, permafrost_runtime::now())?,
        outbox: Outbox::new(client.clone()),
        metrics,
        waiting: Vec::new(),
        sync_started: None,
    };
    shell.carry_out(&mut []);
    if let Err(e) = client.dial_all().await {
        tracing::warn!(error = %e, "cannot dial peers yet");
    }

    let mut ticker = tokio::time::interval(TICK);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            request = inbound.recv() => match request {
                Some(request) => {
                    // Everything that arrived meanwhile goes in the same batch: one sync of
                    // the keystore for all of its signature shares (group commit).
                    let mut batch = vec![request];
                    while batch.len() < MAX_BATCH {
                        match inbound.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    shell.handle_requests(batch);
                }
                None => break,
            },
            () = synced.notified() => shell.sync_ended(),
            _ = ticker.tick() => shell.tick(),
        }
    }
    tracing::info!(node = %name, "node stopping");
    if let Some(listener) = metrics_listener {
        listener.stop().await;
    }
    client.shutdown().await;
    Ok(())
}

/// The IO around the node core: inbound requests in, messages out, notices to the log and
/// the metrics.
struct Shell {
    core: NodeCore<KeyStore>,
    /// Sends what the core queued.
    outbox: Outbox,
    /// Counts the notices and times the group commits.
    metrics: metrics::NodeMetrics,
    /// Requests whose answer carries a signature share that waits for the store's sync.
    waiting: Vec<Handled>,
    /// When the running sync's group commit began.
    sync_started: Option<Instant>,
}

impl Shell {
    /// Handles a batch of requests, then syncs once and sends what they produced; each is
    /// answered after that, a signer's commitment or share within the answer to the request
    /// that asked for it ([`driver::rides_answer`]).
    fn handle_requests(&mut self, batch: Vec<InboundRequest>) {
        // A request that comes alone has its sync started before its share is computed; many
        // share one sync at the end.
        self.core.sync_early(batch.len() == 1);
        let mut handled: Vec<Handled> = batch
            .into_iter()
            .map(|request| {
                let mut asked = None;
                let outcome = self.dispatch(request.peer, &request.payload, &mut asked);
                Handled {
                    request,
                    asked,
                    outcome,
                    reply: None,
                }
            })
            .collect();
        self.carry_out(&mut handled);
        self.answer(handled);
    }

    /// Answers each handled request, but keeps those whose signature share waits for the
    /// store's sync: they are answered, with the share, when it ends.
    fn answer(&mut self, handled: Vec<Handled>) {
        for h in handled {
            let share_waits = h.reply.is_none()
                && h.outcome.is_ok()
                && h.asked
                    .as_ref()
                    .is_some_and(|asked| self.core.share_pending(&asked.from, asked.session));
            if share_waits {
                self.waiting.push(h);
            } else {
                driver::answer_with(h.request, h.outcome, h.reply);
            }
        }
    }

    /// The store's sync ended (or may have): the shares it made durable go out, in the
    /// answers that wait for them, and what came meanwhile is written and synced next.
    fn sync_ended(&mut self) {
        if !self.core.sync_ended() {
            // None ran, or it still runs (the wake-up was an earlier one's).
            return;
        }
        if let Some(started) = self.sync_started.take() {
            self.metrics.keystore_commit(started.elapsed());
        }
        if self.core.sync_running() {
            self.sync_started = Some(Instant::now());
        }
        let mut waiting = std::mem::take(&mut self.waiting);
        self.carry_out(&mut waiting);
        self.answer(waiting);
    }

    /// Decodes and handles one request; `asked` is set to what it was once it decodes.
    fn dispatch(
        &mut self,
        peer: PeerId,
        payload: &[u8],
        asked: &mut Option<Asked>,
    ) -> Result<(), ProtocolError> {
        let message = decode(payload)?;
        let from = identity::node_id(&peer)?;
        *asked = Some(Asked {
            from: from.clone(),
            session: message.session(),
            kind: message.kind(),
        });
        let span = tracing::debug_span!(
            target: SESSION_LOG_TARGET,
            "session",
            session = %message.session(),
            kind = ?message.kind(),
            from = %peer,
        );
        let _entered = span.enter();
        tracing::debug!(target: SESSION_LOG_TARGET, "message received");
        self.core
            .handle_message(&from, message, permafrost_runtime::now(), &mut OsRng)
    }

    fn tick(&mut self) {
        self.metrics.prune(Instant::now());
        self.sync_ended();
        if let Some(error) = self.core.store().take_checkpoint_failure() {
            tracing::warn!(
                %error,
                "a keystore checkpoint in the background failed: its writes stay in the journal \
                 and go to the database with the next checkpoint, made in the foreground"
            );
        }
        let now = permafrost_runtime::now();
        if self.core.poll_timeout().is_some_and(|due| due <= now) {
            self.core.handle_timeout(now);
            self.carry_out(&mut []);
        }
    }

    /// Syncs the store for the shares waiting on it, then sends what the core queued and logs
    /// what it noticed, in order. A message that answers one of the `answering` requests goes
    /// in its answer instead.
    fn carry_out(&mut self, answering: &mut [Handled]) {
        if self.core.has_unflushed() && !self.core.sync_running() {
            let started = Instant::now();
            self.core.flush();
            if self.core.sync_running() {
                self.sync_started = Some(started);
            } else {
                self.metrics.keystore_commit(started.elapsed());
            }
        }
        while let Some(output) = self.core.poll_output() {
            match output {
                NodeOutput::Transmit { to, message } => {
                    if let Some(slot) = answering.iter_mut().find(|h| h.answered_by(&to, &message))
                    {
                        match encode(&message) {
                            Ok(frame) => {
                                slot.reply = Some(frame);
                                continue;
                            }
                            Err(e) => {
                                tracing::warn!(%to, error = %e, "cannot encode a reply; sending it");
                            }
                        }
                    }
                    self.outbox.send(to, message);
                }
                NodeOutput::Notice(notice) => {
                    self.metrics.notice(&notice, Instant::now());
                    log(&notice);
                }
            }
        }
    }
}

/// A request of the batch being handled, with what its answer will carry.
struct Handled {
    request: InboundRequest,
    /// What it asked, once it decoded.
    asked: Option<Asked>,
    outcome: Result<(), ProtocolError>,
    /// The message its answer carries, if one rides it.
    reply: Option<Vec<u8>>,
}

/// Who sent a request, in which session, of which kind.
struct Asked {
    from: NodeId,
    session: SessionId,
    kind: MessageKind,
}

impl Handled {
    /// Whether `message` to `to` travels as this request's answer: the request was taken, its
    /// answer carries nothing yet, and `message` is what it asked of this node (same peer,
    /// same session, [`driver::rides_answer`]).
    fn answered_by(&self, to: &NodeId, message: &Message) -> bool {
        self.outcome.is_ok()
            && self.reply.is_none()
            && self.asked.as_ref().is_some_and(|asked| {
                asked.from == *to
                    && asked.session == message.session()
                    && driver::rides_answer(asked.kind, message.kind())
            })
    }
}

/// Writes a notice to the log at the level its meaning calls for, with the session it
/// concerns as a field; routine ones (once per signature) are DEBUG events of the session
/// target.
fn log(notice: &NodeNotice) {
    let session = notice.session().map(tracing::field::display);
    if notice.is_error() {
        tracing::error!(session, "{notice}");
    } else if notice.is_warning() {
        tracing::warn!(session, "{notice}");
    } else if notice.is_routine() {
        tracing::debug!(target: SESSION_LOG_TARGET, session, "{notice}");
    } else {
        tracing::info!(session, "{notice}");
    }
}

pub use identity_key::{init, peer_id, IDENTITY_FILE, PEER_ID_FILE};
