//! A Permafrost cluster in one process, over real loopback sockets: N nodes and a coordinator
//! started through their `run` functions on free ports in a temporary directory.
#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use permafrost_api::Client;
use permafrost_coordinator::{Coordinator, CoordinatorConfig};
use permafrost_node::NodeConfig;
use permafrost_runtime::network::{CoordinatorEntry, NetworkFile, NodeEntry};
use rand_core::{OsRng, RngCore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use permafrost_api::{CreateKeyRequest, KeyRecord};
pub use permafrost_wire::Curve;

/// A free TCP port on 127.0.0.1 that no other cluster of this process was given.
///
/// Ports from the OS's ephemeral range (`bind(0)`) can be handed to a parallel test in the
/// window between release and the node's own bind; so ports come from a per-process range
/// below the ephemeral one, each handed out once, and checked free by binding.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 24;
    loop {
        // Stay below the ephemeral range (32768 and up on Linux).
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % (32_700 - base);
        let port = u16::try_from(base + offset).unwrap_or(20_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Writes a file readable by its owner only (as a passphrase file must be).
pub fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Sends the log of every node and the coordinator of this process's clusters to the test
/// harness, which shows it only for a test that fails (with `--nocapture`, always). The level
/// is INFO, or what `PERMAFROST_TEST_LOG` says (an `EnvFilter` directive, e.g. `debug`). Each
/// node's lines carry its name.
pub fn capture_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("PERMAFROST_TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber installed first (by a test of its own) is left in place.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// One node of the cluster: its files and, while running, its task.
pub struct TestNode {
    pub name: String,
    pub dir: PathBuf,
    pub peer_id: String,
    pub config_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), permafrost_node::NodeError>>>,
}

impl TestNode {
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Starts the node through `permafrost_node::run`.
    pub fn start(&mut self) {
        let config = NodeConfig::load(&self.config_path).expect("node config");
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        let span = tracing::info_span!("node", name = %self.name);
        self.task = Some(tokio::spawn(
            permafrost_node::run(config, async move {
                let _ = stopped.await;
            })
            .instrument(span),
        ));
    }

    /// Stops the node and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub coordinator: Option<Coordinator>,
    pub coordinator_config: CoordinatorConfig,
    pub token: String,
    pub network_id: String,
}

impl Cluster {
    /// Writes identities, passphrases, configs and the network file for `n` nodes and a
    /// coordinator; starts nothing. The nodes accept the coordinator's gateway operator key.
    pub fn prepare(n: usize) -> Cluster {
        Self::prepare_with(n, true)
    }

    /// [`prepare`](Self::prepare); with `trust_gateway_operator` false, the nodes list only the
    /// tests' operator key (`operator.key`) in `[operators]`, not the coordinator's gateway
    /// operator key, so a DKG or reshare needs an approval made with `operator.key`.
    pub fn prepare_with(n: usize, trust_gateway_operator: bool) -> Cluster {
        capture_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let network_id = format!("test-{}", random_hex(4));
        // The coordinator's gateway client key and a client key for the tests: every node
        // accepts both, for every key.
        let gateway_key = dir.path().join("coordinator").join("gateway.key");
        let accepted = [
            permafrost_api::ClientKey::create_file(&gateway_key).expect("gateway key"),
            permafrost_api::ClientKey::create_file(&dir.path().join("client.key"))
                .expect("client key"),
        ]
        .map(|k| format!("\"{}\"", k.public_hex()))
        .join(", ");
        // The coordinator's gateway operator key and an operator key for the tests.
        let gateway_operator = dir.path().join("coordinator").join("operator.key");
        let gateway_operator_key =
            permafrost_api::ClientKey::create_file(&gateway_operator).expect("gateway operator");
        let operator_key = permafrost_api::ClientKey::create_file(&dir.path().join("operator.key"))
            .expect("operator key");
        let mut operators = vec![format!("\"{}\"", operator_key.public_hex())];
        if trust_gateway_operator {
            operators.push(format!("\"{}\"", gateway_operator_key.public_hex()));
        }
        let operators = operators.join(", ");
        let mut nodes = Vec::new();
        let mut entries = Vec::new();
        for i in 1..=n {
            let name = format!("node{i}");
            let node_dir = dir.path().join(&name);
            let peer_id = permafrost_node::init(&node_dir)
                .expect("node init")
                .to_string();
            let port = free_port();
            write_private(&node_dir.join("passphrase"), &random_hex(16));
            let config_path = node_dir.join("node.toml");
            std::fs::write(
                &config_path,
                format!(
                    "data_dir = \".\"\nlisten = \"/ip4/127.0.0.1/tcp/{port}\"\nnetwork_file = \"../network.toml\"\npassphrase_file = \"passphrase\"\n\n[clients]\nall_keys = [{accepted}]\n\n[operators]\nall_keys = [{operators}]\n"
                ),
            )
            .expect("node config");
            entries.push(NodeEntry {
                name: name.clone(),
                peer_id: peer_id.clone(),
                addr: format!("/ip4/127.0.0.1/tcp/{port}"),
            });
            nodes.push(TestNode {
                name,
                dir: node_dir,
                peer_id,
                config_path,
                stop: None,
                task: None,
            });
        }
        let coordinator_dir = dir.path().join("coordinator");
        let coordinator_peer = permafrost_coordinator::init(&coordinator_dir)
            .expect("coordinator init")
            .to_string();
        let coordinator_port = free_port();
        let network = NetworkFile {
            network_id: network_id.clone(),
            nodes: entries,
            coordinators: vec![CoordinatorEntry {
                peer_id: coordinator_peer,
                addr: format!("/ip4/127.0.0.1/tcp/{coordinator_port}"),
            }],
        };
        std::fs::write(
            dir.path().join("network.toml"),
            toml::to_string(&network).expect("network toml"),
        )
        .expect("network file");
        let token = random_hex(16);
        let coordinator_config = CoordinatorConfig {
            data_dir: coordinator_dir,
            listen: format!("/ip4/127.0.0.1/tcp/{coordinator_port}"),
            api_listen: "127.0.0.1:0".parse().expect("addr"),
            network_file: dir.path().join("network.toml"),
            tokens: vec![token.clone()],
            tokens_file: None,
            body_limit_bytes: 1 << 20,
            rate_limit: None,
            gateway_client_key_file: Some(gateway_key),
            gateway_operator_key_file: Some(gateway_operator),
            probe_interval_ms: CoordinatorConfig::DEFAULT_PROBE_INTERVAL_MS,
            unhealthy_after_ms: CoordinatorConfig::DEFAULT_UNHEALTHY_AFTER_MS,
            metrics_listen: None,
        };
        Cluster {
            dir,
            nodes,
            coordinator: None,
            coordinator_config,
            token,
            network_id,
        }
    }

    /// Prepares and starts everything, and waits until the coordinator sees every node.
    pub async fn start(n: usize) -> Cluster {
        let mut cluster = Cluster::prepare(n);
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster.start_coordinator().await;
        cluster.wait_connected(Duration::from_secs(30)).await;
        cluster
    }

    pub async fn start_coordinator(&mut self) {
        let coordinator = Coordinator::start(self.coordinator_config.clone())
            .await
            .expect("coordinator start");
        self.coordinator = Some(coordinator);
    }

    pub fn api_url(&self) -> String {
        let addr = self
            .coordinator
            .as_ref()
            .expect("coordinator running")
            .api_addr;
        format!("http://{addr}")
    }

    pub fn client(&self) -> Client {
        Client::new(self.api_url(), self.token.clone()).expect("api client")
    }

    pub fn network_file(&self) -> PathBuf {
        self.dir.path().join("network.toml")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The test client key every node accepts.
    pub fn client_key(&self) -> permafrost_api::ClientKey {
        permafrost_api::ClientKey::load(&self.dir.path().join("client.key")).expect("client key")
    }

    /// Waits until the coordinator reports every running node connected and answering: a
    /// probe sent since this call began came back from it. A connection alone is not enough
    /// after a restart: the coordinator may not have noticed yet that the old process's
    /// connection died, and a message written to it is lost.
    pub async fn wait_connected(&self, limit: Duration) {
        let client = self.client();
        let began = Instant::now();
        let deadline = began + limit;
        loop {
            let running: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .map(|n| n.name.as_str())
                .collect();
            // Measured before asking: a probe counts only if sent after `began`.
            let since = began.elapsed().as_millis();
            if let Ok(health) = client.health().await {
                let ready = health
                    .nodes
                    .iter()
                    .filter(|n| {
                        n.connected
                            && n.healthy
                            && n.last_probe_age_ms
                                .is_some_and(|age| u128::from(age) < since)
                            && running.contains(&n.name.as_str())
                    })
                    .count();
                if ready == running.len() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nodes did not connect and answer a probe within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every node, leaving the coordinator up.
    pub async fn stop_nodes(&mut self) {
        for node in &mut self.nodes {
            node.stop().await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(c) = self.coordinator.take() {
            c.stop().await;
        }
        for node in &mut self.nodes {
            node.stop().await;
        }
    }
}

/// A key-creation request: `curve`, `threshold`, and the committee by node name (`None`: every
/// node).
pub fn create(curve: Curve, threshold: u16, nodes: Option<Vec<&str>>) -> CreateKeyRequest {
    CreateKeyRequest {
        curve,
        threshold,
        nodes: nodes.map(|n| n.into_iter().map(str::to_owned).collect()),
        key_id: None,
        approvals: Vec::new(),
    }
}

/// Checks a signature from the API with the independent verifier of its curve.
pub fn verify(curve: Curve, public_key_hex: &str, message: &[u8], signature_hex: &str) {
    let public_key = hex::decode(public_key_hex).expect("public key hex");
    let signature = hex::decode(signature_hex).expect("signature hex");
    permafrost_verifiers::verify(curve, &public_key, message, &signature)
        .unwrap_or_else(|e| panic!("{curve} signature rejected by the independent verifier: {e}"));
}
