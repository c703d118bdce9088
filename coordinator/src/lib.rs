//! # permafrost-coordinator
//!
//! The coordinator: the HTTP API clients call, and the driver of DKG and signing sessions over
//! libp2p. It is trusted for liveness only: it relays and aggregates, it never holds or sees a
//! share, and its database holds public metadata only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod engine;
mod http;
mod metrics;
mod openapi;
mod probe;
mod request_id;
mod store;

pub use config::CoordinatorConfig;
pub use permafrost_engine::coordinator::KeyMeta;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use permafrost_net::{NetConfig, PeerId};
use permafrost_runtime::identity;
use permafrost_runtime::network::NetworkFile;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Why the coordinator could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The config is unusable.
    #[error("config: {0}")]
    Config(String),
    /// The identity key is missing or unusable.
    #[error("identity: {0} (create one with `permafrost-coordinator init --dir DIR`)")]
    Identity(String),
    /// The network file is unusable or does not list this coordinator.
    #[error("network: {0}")]
    Network(String),
    /// The metadata database failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The API could not bind.
    #[error("api: {0}")]
    Api(String),
    /// The metrics listener (`metrics_listen`) could not bind.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A worker thread could not start.
    #[error("threads: {0}")]
    Threads(String),
}

/// A running coordinator.
pub struct Coordinator {
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    /// Where `GET /metrics` is served without a token (`metrics_listen`), if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Its PeerId.
    pub peer_id: PeerId,
    metrics_listener: Option<permafrost_runtime::metrics::MetricsListener>,
    _peer_watch: permafrost_runtime::metrics::PeerWatch,
    stop_engine: Option<oneshot::Sender<()>>,
    stop_api: Option<oneshot::Sender<()>>,
    stop_probes: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    client: permafrost_net::Client,
}

impl Coordinator {
    /// Starts the network, the protocol engine and the HTTP API.
    pub async fn start(config: CoordinatorConfig) -> Result<Self, CoordinatorError> {
        let tokens = config.api_tokens()?;
        let keypair = identity::load_identity_file(&config.identity_path())
            .map_err(|e| CoordinatorError::Identity(e.to_string()))?;
        let me = keypair.public().to_peer_id();
        let network = NetworkFile::load(&config.network_file)
            .and_then(|f| f.validate())
            .map_err(|e| CoordinatorError::Network(e.to_string()))?;
        if !network.is_coordinator(&me) {
            return Err(CoordinatorError::Network(format!(
                "this coordinator ({me}) is not listed in {}",
                config.network_file.display()
            )));
        }
        let gateway = match &config.gateway_client_key_file {
            Some(path) => {
                let key = permafrost_api::ClientKey::load(path)
                    .map_err(|e| CoordinatorError::Config(e.to_string()))?;
                tracing::info!(public_key = %key.public_hex(), "gateway client key loaded");
                Some(key)
            }
            None => None,
        };
        let gateway_operator = match &config.gateway_operator_key_file {
            Some(path) => {
                let key = permafrost_api::ClientKey::load(path)
                    .map_err(|e| CoordinatorError::Config(e.to_string()))?;
                tracing::info!(public_key = %key.public_hex(), "gateway operator key loaded");
                Some(Arc::new(key.signing_key().clone()))
            }
            None => None,
        };
        let network = Arc::new(network);
        let store = store::MetadataDb::open(&config.database_path())?;
        let mut nodes = std::collections::BTreeMap::new();
        for member in &network.nodes {
            let id = identity::node_id(&member.peer_id)
                .map_err(|e| CoordinatorError::Network(e.to_string()))?;
            nodes.insert(
                id,
                member
                    .name
                    .clone()
                    .unwrap_or_else(|| member.peer_id.to_string()),
            );
        }
        let node_names = nodes.clone();
        let setup = permafrost_engine::coordinator::CoordinatorSetup {
            verifier: Arc::new(identity::Libp2pVerifier::default()),
            nodes,
            network_id: network.network_id.clone(),
            gateway_operator,
        };
        let core = permafrost_engine::coordinator::CoordinatorCore::open(setup, store.clone())
            .map_err(|e| CoordinatorError::Storage(e.to_string()))?;

        let mut net_config = NetConfig::new(keypair, network.network_id.clone());
        net_config.listen = vec![config
            .listen
            .parse()
            .map_err(|e| CoordinatorError::Config(format!("listen {:?}: {e}", config.listen)))?];
        net_config.peers = network.peers_except(&me);
        net_config.inbound_rate_limit = Some(
            permafrost_runtime::network::RateLimitConfig::or_default(config.rate_limit),
        );
        let (client, inbound) = permafrost_net::start(net_config)
            .await
            .map_err(|e| CoordinatorError::Network(e.to_string()))?;
        let _ = client.dial_all().await;

        let probes = Arc::new(probe::Probes::new(
            network.nodes.iter().map(|node| node.peer_id),
            Duration::from_millis(config.probe_interval_ms),
            Duration::from_millis(config.unhealthy_after_ms),
        ));
        let mut registry = permafrost_runtime::metrics::registry();
        let metrics = Arc::new(metrics::CoordinatorMetrics::register(
            &mut registry,
            node_names,
            network
                .nodes
                .iter()
                .map(|m| {
                    let name = m.name.clone().unwrap_or_else(|| m.peer_id.to_string());
                    (m.peer_id, name)
                })
                .collect(),
            Arc::clone(&probes),
            store.clone(),
        ));
        let peer_watch = permafrost_runtime::metrics::PeerWatch::start(
            &mut registry,
            client.clone(),
            &network,
            &me,
        );
        let registry = Arc::new(registry);
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                permafrost_runtime::metrics::MetricsListener::start(addr, Arc::clone(&registry))
                    .await
                    .map_err(|e| {
                        CoordinatorError::Metrics(format!("cannot bind metrics_listen {addr}: {e}"))
                    })?,
            ),
            None => None,
        };

        let aggregations = engine::Aggregations::start().map_err(|e| {
            CoordinatorError::Threads(format!("cannot start the aggregation workers: {e}"))
        })?;
        let (commands, command_rx) = mpsc::channel(256);
        let (stop_engine, stop_engine_rx) = oneshot::channel();
        let engine = tokio::spawn(engine::run(
            client.clone(),
            core,
            inbound,
            command_rx,
            stop_engine_rx,
            Arc::clone(&metrics),
            aggregations,
        ));
        let (stop_probes, stop_probes_rx) = oneshot::channel();
        let prober = probe::spawn(client.clone(), Arc::clone(&probes), stop_probes_rx);

        let state = Arc::new(http::ApiState {
            tokens: http::token_digests(&tokens),
            store,
            network,
            resharing: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            client: client.clone(),
            commands,
            metrics,
            registry,
            gateway,
            probes,
            ready: std::sync::Mutex::new(None),
            children: std::sync::Mutex::new(permafrost_protocol::cache::BoundedCache::new(
                http::CHILD_KEYS_KEPT,
            )),
        });
        let listener = tokio::net::TcpListener::bind(config.api_listen)
            .await
            .map_err(|e| {
                CoordinatorError::Api(format!("cannot bind {}: {e}", config.api_listen))
            })?;
        let api_addr = listener
            .local_addr()
            .map_err(|e| CoordinatorError::Api(e.to_string()))?;
        let (stop_api, stop_api_rx) = oneshot::channel::<()>();
        let app = http::router(state, config.body_limit_bytes);
        let api = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_api_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP API stopped");
            }
        });
        let metrics_addr = metrics_listener.as_ref().map(|l| l.addr());
        tracing::info!(peer_id = %me, api = %api_addr, metrics = ?metrics_addr, "coordinator started");
        Ok(Coordinator {
            api_addr,
            metrics_addr,
            peer_id: me,
            metrics_listener,
            _peer_watch: peer_watch,
            stop_engine: Some(stop_engine),
            stop_api: Some(stop_api),
            stop_probes: Some(stop_probes),
            tasks: vec![engine, api, prober],
            client,
        })
    }

    /// Stops the API, the engine and the network.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        if let Some(listener) = self.metrics_listener.take() {
            listener.stop().await;
        }
        if let Some(stop) = self.stop_engine.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.stop_probes.take() {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.client.shutdown().await;
    }
}

/// Runs a coordinator until `shutdown` completes.
pub async fn run(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let coordinator = Coordinator::start(config).await?;
    shutdown.await;
    coordinator.stop().await;
    Ok(())
}

/// Creates a coordinator identity in `dir` and returns its PeerId.
pub fn init(dir: &std::path::Path) -> Result<PeerId, CoordinatorError> {
    let keypair = identity::create_identity_file(&dir.join("identity.key"))
        .map_err(|e| CoordinatorError::Identity(e.to_string()))?;
    Ok(keypair.public().to_peer_id())
}
