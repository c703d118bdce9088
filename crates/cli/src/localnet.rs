//! `permafrost localnet up`: a whole Permafrost network on loopback, every node and the
//! coordinator in its own OS process.
//!
//! Layout of the localnet directory `D`:
//!
//! ```text
//! D/network.toml                 network_id, every node, the coordinator
//! D/localnet.json                written once every node is connected; removed on stop
//! D/node{i}/identity.key         libp2p identity (permafrost_node::init), mode 0600, until
//!                                the node's first start moves it into its encrypted keystore
//! D/node{i}/peer_id              the node's PeerId (public)
//! D/node{i}/passphrase           random keystore passphrase, mode 0600
//! D/node{i}/node.toml            data_dir ".", listen and metrics_listen on free loopback ports
//! D/node{i}/node{i}.log          the process's stdout and stderr
//! D/coordinator/identity.key, coordinator.toml (API token, mode 0600; metrics_listen on a
//!                                free loopback port), coordinator.log
//! D/coordinator/gateway.key      the gateway client key: approves sign requests without a client
//! D/coordinator/operator.key     the gateway operator key: approves DKGs and reshares without
//!                                approvals
//! D/client.key                   a client key for you (`permafrost sign --client-key D/client.key`)
//! D/operator.key                 an operator key for you (`permafrost reshare --operator-key …`)
//! ```
//!
//! Every node accepts both client keys for every key (`[clients] all_keys` in its node.toml),
//! and both operator keys (`[operators] all_keys`). The gateway keys are a localnet's
//! convenience and a trust decision: nodes that list them let the coordinator approve on its
//! own.
//!
//! Running `localnet up` again on a directory whose localnet has stopped reuses its
//! identities, passphrases, token and network id (so its keys are still there) with fresh
//! ports. Every process is `permafrost internal-node|internal-coordinator` of this same
//! executable, in its own process group (Ctrl-C in the terminal reaches only the localnet,
//! which then stops its children in order), with a pipe on stdin so that it also stops if
//! the localnet process dies without stopping it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use permafrost_api::{
    process_running, Client, Health, LocalnetInfo, LocalnetMetrics, LocalnetNode, ProcessInfo,
};
use permafrost_runtime::network::{CoordinatorEntry, NetworkFile, NodeEntry};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, ChildStdin, Command};

use crate::progress::Progress;
use crate::shutdown::Shutdown;

/// The file `localnet up` writes once the network is up.
pub const INFO_FILE: &str = "localnet.json";
/// Fewest and most nodes of a localnet.
pub const NODE_RANGE: std::ops::RangeInclusive<usize> = 2..=16;
/// How long the processes get to start and connect.
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// How often the health endpoint is polled while starting.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a process gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Deadline of one health request while starting.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

const NETWORK_FILE: &str = "network.toml";
const NODE_CONFIG: &str = "node.toml";
const COORDINATOR_CONFIG: &str = "coordinator.toml";
const COORDINATOR: &str = "coordinator";
/// The gateway client key, in the coordinator's directory.
const GATEWAY_KEY: &str = "gateway.key";
/// The client key for the localnet's user, in the localnet directory.
pub const CLIENT_KEY: &str = "client.key";
/// The gateway operator key, in the coordinator's directory.
const GATEWAY_OPERATOR_KEY: &str = "operator.key";
/// The operator key for the localnet's user, in the localnet directory.
pub const OPERATOR_KEY: &str = "operator.key";

/// `D/node{i}/node.toml`, in the shape `permafrost_node::NodeConfig` reads.
#[derive(Serialize)]
struct NodeToml {
    data_dir: String,
    listen: String,
    network_file: String,
    passphrase_file: String,
    metrics_listen: String,
    clients: AcceptedKeysToml,
    operators: AcceptedKeysToml,
}

/// The `[clients]` or `[operators]` section of a node's config.
#[derive(Serialize)]
struct AcceptedKeysToml {
    all_keys: Vec<String>,
}

/// `D/coordinator/coordinator.toml`, in the shape `permafrost_coordinator::CoordinatorConfig`
/// reads (only `tokens` is read back, to reuse the token).
#[derive(Serialize, Deserialize)]
struct CoordinatorToml {
    data_dir: String,
    listen: String,
    api_listen: String,
    network_file: String,
    tokens: Vec<String>,
    #[serde(default)]
    gateway_client_key_file: Option<String>,
    #[serde(default)]
    gateway_operator_key_file: Option<String>,
    #[serde(default)]
    metrics_listen: Option<String>,
}

/// One started process.
struct Process {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Child,
    /// Held open so the child's `--exit-with-parent` watch sees end of file only when this
    /// process stops it or dies.
    stdin: Option<ChildStdin>,
    exited: bool,
}

/// A running localnet: its processes, and `localnet.json` once it is up.
///
/// Dropping it without [`Localnet::stop`] kills every process (SIGKILL) and removes
/// `localnet.json`.
///
/// No `Debug`: it holds the API token.
pub struct Localnet {
    dir: PathBuf,
    info: LocalnetInfo,
    processes: Vec<Process>,
    info_written: bool,
}

/// Everything `prepare` decided before any process starts.
struct Plan {
    /// The localnet directory, absolute.
    dir: PathBuf,
    info: LocalnetInfo,
    /// (name, config file, log file) per process, coordinator first.
    processes: Vec<(String, PathBuf, PathBuf)>,
}

impl Localnet {
    /// Creates (or reuses) `dir` for `nodes` nodes, starts every process, waits until the
    /// coordinator is connected to every node, then writes `dir/localnet.json`.
    ///
    /// `api_port` 0 picks a free port. Fails, having stopped everything it started, when a
    /// process exits early, when not every node is connected within [`START_DEADLINE`], or
    /// when `shutdown` fires first. Reports each stage to `progress`.
    pub async fn start(
        dir: &Path,
        nodes: usize,
        api_port: u16,
        trust_gateway_operator: bool,
        shutdown: &Shutdown,
        progress: &Progress,
    ) -> anyhow::Result<Localnet> {
        if !NODE_RANGE.contains(&nodes) {
            bail!(
                "a localnet has {} to {} nodes, not {nodes}",
                NODE_RANGE.start(),
                NODE_RANGE.end()
            );
        }
        progress.step("creating or reusing identities and configs");
        let plan = prepare(dir, nodes, api_port, trust_gateway_operator)?;
        progress.line("identities and configs ready");
        let mut localnet = Localnet {
            dir: plan.dir,
            info: plan.info,
            processes: Vec::new(),
            info_written: false,
        };
        let started = async {
            progress.step("starting the processes");
            localnet.spawn_all(&plan.processes)?;
            progress.line(format!(
                "started the coordinator and {nodes} nodes, each in its own process"
            ));
            localnet.await_connected(shutdown, progress).await?;
            localnet.write_info()
        };
        match started.await {
            Ok(()) => Ok(localnet),
            Err(e) => {
                localnet.stop().await;
                Err(e)
            }
        }
    }

    /// What `localnet.json` says: API URL, token, processes.
    pub fn info(&self) -> &LocalnetInfo {
        &self.info
    }

    /// The localnet directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs until `shutdown` fires (Ok) or the coordinator exits on its own (an error naming
    /// its log). A node that exits (crashed, or killed to try a failure) is reported once and
    /// the rest keep running: the network is built to go on without it.
    pub async fn run_until(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = shutdown.wait() => return Ok(()),
                _ = ticker.tick() => self.watch()?,
            }
        }
    }

    /// Reports nodes that exited since the last look; fails if the coordinator did.
    fn watch(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            if process.exited {
                continue;
            }
            let Some(status) = process
                .child
                .try_wait()
                .with_context(|| format!("cannot check on {}", process.name))?
            else {
                continue;
            };
            process.exited = true;
            if process.name == COORDINATOR {
                bail!(
                    "{} (pid {}) exited ({status}); see its log {}",
                    process.name,
                    process.pid,
                    process.log.display()
                );
            }
            eprintln!(
                "{} (pid {}) exited ({status}); the others keep running. Its log: {}",
                process.name,
                process.pid,
                process.log.display()
            );
        }
        Ok(())
    }

    /// Stops every process: SIGTERM (and closing its stdin), up to 5 s to exit, then
    /// SIGKILL. Removes `localnet.json`.
    pub async fn stop(mut self) {
        self.remove_info();
        for process in &mut self.processes {
            if process.exited || matches!(process.child.try_wait(), Ok(Some(_))) {
                process.exited = true;
                continue;
            }
            terminate(process.pid);
            process.stdin = None;
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for process in &mut self.processes {
            if process.exited {
                continue;
            }
            match tokio::time::timeout_at(deadline, process.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!(
                        "{} (pid {}) did not stop within {:?}; killing it",
                        process.name, process.pid, STOP_GRACE
                    );
                    let _ = process.child.start_kill();
                    let _ = process.child.wait().await;
                }
            }
            process.exited = true;
        }
    }

    fn spawn_all(&mut self, processes: &[(String, PathBuf, PathBuf)]) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        for (name, config, log) in processes {
            let subcommand = if name == COORDINATOR {
                "internal-coordinator"
            } else {
                "internal-node"
            };
            let process = spawn(&exe, subcommand, name, config, log)?;
            if name == COORDINATOR {
                self.info.coordinator.pid = process.pid;
            } else if let Some(node) = self.info.nodes.iter_mut().find(|n| &n.name == name) {
                node.pid = process.pid;
            }
            self.processes.push(process);
        }
        Ok(())
    }

    /// Fails naming the first process that has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            if let Some(status) = process
                .child
                .try_wait()
                .with_context(|| format!("cannot check on {}", process.name))?
            {
                process.exited = true;
                bail!(
                    "{} (pid {}) exited ({status}); see its log {}",
                    process.name,
                    process.pid,
                    process.log.display()
                );
            }
        }
        Ok(())
    }

    /// Waits until the coordinator reports every node connected, counting them on `progress`.
    async fn await_connected(
        &mut self,
        shutdown: &Shutdown,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let client = Client::new(self.info.api.clone(), self.info.token.clone())?
            .with_timeout(HEALTH_TIMEOUT);
        let deadline = Instant::now() + START_DEADLINE;
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        let mut last: Result<Health, String>;
        progress.step("waiting for the coordinator's API");
        loop {
            tokio::select! {
                () = shutdown.wait() => bail!("interrupted while starting"),
                _ = ticker.tick() => {}
            }
            self.check_alive()?;
            last = client.health().await.map_err(|e| e.to_string());
            if let Ok(health) = &last {
                let connected = self
                    .info
                    .nodes
                    .iter()
                    .filter(|n| health.nodes.iter().any(|h| h.name == n.name && h.connected))
                    .count();
                progress.count(
                    "nodes connected to the coordinator",
                    connected as u64,
                    self.info.nodes.len() as u64,
                );
                if connected == self.info.nodes.len() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let waiting_for = match &last {
            Ok(health) => {
                let missing: Vec<&str> = self
                    .info
                    .nodes
                    .iter()
                    .filter(|n| !health.nodes.iter().any(|h| h.name == n.name && h.connected))
                    .map(|n| n.name.as_str())
                    .collect();
                format!("not connected to the coordinator: {}", missing.join(", "))
            }
            Err(e) => format!("the coordinator API never answered: {e}"),
        };
        let logs: Vec<String> = self
            .processes
            .iter()
            .map(|p| format!("  {}: {}", p.name, p.log.display()))
            .collect();
        bail!(
            "the localnet did not come up within {START_DEADLINE:?}; {waiting_for}\nlogs:\n{}",
            logs.join("\n")
        )
    }

    fn info_path(&self) -> PathBuf {
        self.dir.join(INFO_FILE)
    }

    /// Writes `localnet.json` atomically (temp file, fsync, rename), mode 0600: it holds the
    /// API token.
    fn write_info(&mut self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.info)?;
        let path = self.info_path();
        let tmp = self.dir.join(format!("{INFO_FILE}.tmp"));
        write_private(&tmp, text.as_bytes(), true)?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
        self.info_written = true;
        Ok(())
    }

    fn remove_info(&mut self) {
        if self.info_written {
            let _ = std::fs::remove_file(self.info_path());
            self.info_written = false;
        }
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        // The children are `kill_on_drop`; only the file is left to clean up.
        self.remove_info();
    }
}

/// Sends SIGTERM to `pid` with the `kill` utility (this crate has no `unsafe` to call libc).
/// Failing that, closing the child's stdin still stops it.
fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn spawn(
    exe: &Path,
    subcommand: &str,
    name: &str,
    config: &Path,
    log: &Path,
) -> anyhow::Result<Process> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    let mut command = Command::new(exe);
    command
        .arg(subcommand)
        .arg("--config")
        .arg(config)
        .arg("--exit-with-parent")
        // Log files, not a terminal: no colour codes.
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {name} ({} {subcommand})", exe.display()))?;
    let pid = child
        .id()
        .with_context(|| format!("{name} exited at once; see {}", log.display()))?;
    let stdin = child.stdin.take();
    Ok(Process {
        name: name.to_owned(),
        pid,
        log: log.to_owned(),
        child,
        stdin,
        exited: false,
    })
}

/// Creates or reuses the directory: identities, passphrases, configs with fresh ports, the
/// network file. Starts nothing. The nodes list the coordinator's gateway operator key in
/// `[operators]` only if `trust_gateway_operator`; they always list `D/operator.key`.
fn prepare(
    dir: &Path,
    nodes: usize,
    api_port: u16,
    trust_gateway_operator: bool,
) -> anyhow::Result<Plan> {
    if api_port != 0 {
        TcpListener::bind(("127.0.0.1", api_port)).with_context(|| {
            format!(
                "API port {api_port} is in use; pick another with --api-port (0 picks a free one)"
            )
        })?;
    }
    let info_path = dir.join(INFO_FILE);
    if info_path.exists() {
        if let Ok(info) = crate::commands::read_localnet_info(dir) {
            let running: Vec<String> = std::iter::once(("coordinator", info.coordinator.pid))
                .chain(info.nodes.iter().map(|n| (n.name.as_str(), n.pid)))
                .filter(|(_, pid)| process_running(*pid))
                .map(|(name, pid)| format!("{name} (pid {pid})"))
                .collect();
            if !running.is_empty() {
                bail!(
                    "a localnet is already running in {}: {}; stop it first (Ctrl-C or SIGTERM)",
                    dir.display(),
                    running.join(", ")
                );
            }
        }
        std::fs::remove_file(&info_path)
            .with_context(|| format!("cannot remove the stale {}", info_path.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir =
        &std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;

    let network_path = dir.join(NETWORK_FILE);
    let previous = if network_path.exists() {
        let previous = NetworkFile::load(&network_path)?;
        if previous.nodes.len() != nodes {
            bail!(
                "{} holds a localnet of {} nodes; run with --nodes {} or use another directory",
                dir.display(),
                previous.nodes.len(),
                previous.nodes.len()
            );
        }
        Some(previous)
    } else {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty and holds no localnet; use a new or empty directory",
                dir.display()
            );
        }
        None
    };

    // One free port per node, one for the coordinator's libp2p listener, one per process for
    // its metrics, and the API port if asked to pick it. All are held until all are chosen,
    // so none is chosen twice.
    let ports = free_ports(2 * (nodes + 1) + usize::from(api_port == 0))?;
    let (node_ports, rest) = ports.split_at(nodes);
    let (metrics_ports, rest) = rest.split_at(nodes + 1);
    let (coordinator_metrics_port, node_metrics_ports) = metrics_ports
        .split_first()
        .context("no metrics port for the coordinator")?;
    let coordinator_port = rest
        .first()
        .copied()
        .context("no port for the coordinator")?;
    let api_port = if api_port == 0 {
        rest.get(1).copied().context("no port for the API")?
    } else {
        api_port
    };
    let mut metrics = LocalnetMetrics {
        coordinator: format!("http://127.0.0.1:{coordinator_metrics_port}"),
        nodes: Default::default(),
    };

    let coordinator_dir = dir.join(COORDINATOR);
    std::fs::create_dir_all(&coordinator_dir)
        .with_context(|| format!("cannot create {}", coordinator_dir.display()))?;
    let accepted_clients = vec![
        client_key(&coordinator_dir.join(GATEWAY_KEY))?.public_hex(),
        client_key(&dir.join(CLIENT_KEY))?.public_hex(),
    ];
    let gateway_operator = client_key(&coordinator_dir.join(GATEWAY_OPERATOR_KEY))?.public_hex();
    let mut accepted_operators = vec![client_key(&dir.join(OPERATOR_KEY))?.public_hex()];
    if trust_gateway_operator {
        accepted_operators.push(gateway_operator);
    }

    let mut processes = Vec::new();
    let mut node_entries = Vec::new();
    let mut node_infos = Vec::new();
    for ((i, port), metrics_port) in (1..=nodes).zip(node_ports).zip(node_metrics_ports) {
        let name = format!("node{i}");
        let node_dir = dir.join(&name);
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        let peer_id = node_identity(&node_dir)?;
        let passphrase = node_dir.join("passphrase");
        if !passphrase.exists() {
            write_private(&passphrase, random_hex(32).as_bytes(), false)?;
        }
        let addr = format!("/ip4/127.0.0.1/tcp/{port}");
        let config = NodeToml {
            data_dir: ".".into(),
            listen: addr.clone(),
            network_file: format!("../{NETWORK_FILE}"),
            passphrase_file: "passphrase".into(),
            metrics_listen: format!("127.0.0.1:{metrics_port}"),
            clients: AcceptedKeysToml {
                all_keys: accepted_clients.clone(),
            },
            operators: AcceptedKeysToml {
                all_keys: accepted_operators.clone(),
            },
        };
        let config_path = node_dir.join(NODE_CONFIG);
        write_file(&config_path, toml::to_string(&config)?.as_bytes())?;
        processes.push((
            name.clone(),
            config_path,
            node_dir.join(format!("{name}.log")),
        ));
        metrics
            .nodes
            .insert(name.clone(), format!("http://127.0.0.1:{metrics_port}"));
        node_entries.push(NodeEntry {
            name: name.clone(),
            peer_id: peer_id.clone(),
            addr: addr.clone(),
        });
        node_infos.push(LocalnetNode {
            name,
            peer_id,
            addr,
            pid: 0,
        });
    }

    let coordinator_peer_id = if coordinator_dir.join("identity.key").exists() {
        load_peer_id(&coordinator_dir)?
    } else {
        permafrost_coordinator::init(&coordinator_dir)?.to_string()
    };
    let coordinator_config_path = coordinator_dir.join(COORDINATOR_CONFIG);
    let token = std::fs::read_to_string(&coordinator_config_path)
        .ok()
        .and_then(|text| toml::from_str::<CoordinatorToml>(&text).ok())
        .and_then(|config| config.tokens.into_iter().next())
        .filter(|token| token.len() >= 16)
        .unwrap_or_else(|| random_hex(32));
    let coordinator_addr = format!("/ip4/127.0.0.1/tcp/{coordinator_port}");
    let config = CoordinatorToml {
        data_dir: ".".into(),
        listen: coordinator_addr.clone(),
        api_listen: format!("127.0.0.1:{api_port}"),
        network_file: format!("../{NETWORK_FILE}"),
        tokens: vec![token.clone()],
        gateway_client_key_file: Some(GATEWAY_KEY.into()),
        gateway_operator_key_file: Some(GATEWAY_OPERATOR_KEY.into()),
        metrics_listen: Some(format!("127.0.0.1:{coordinator_metrics_port}")),
    };
    write_private(
        &coordinator_config_path,
        toml::to_string(&config)?.as_bytes(),
        true,
    )?;
    processes.insert(
        0,
        (
            COORDINATOR.to_owned(),
            coordinator_config_path,
            coordinator_dir.join(format!("{COORDINATOR}.log")),
        ),
    );

    let network = NetworkFile {
        network_id: previous
            .map(|p| p.network_id)
            .unwrap_or_else(|| format!("localnet-{}", random_hex(8))),
        nodes: node_entries,
        coordinators: vec![CoordinatorEntry {
            peer_id: coordinator_peer_id,
            addr: coordinator_addr,
        }],
    };
    network
        .validate()
        .context("the generated network file is invalid")?;
    write_file(&network_path, toml::to_string(&network)?.as_bytes())?;

    Ok(Plan {
        dir: dir.clone(),
        info: LocalnetInfo {
            api: format!("http://127.0.0.1:{api_port}"),
            token,
            coordinator: ProcessInfo { pid: 0 },
            nodes: node_infos,
            metrics: Some(metrics),
        },
        processes,
    })
}

/// The client key in `path`, creating it if there is none.
fn client_key(path: &Path) -> anyhow::Result<permafrost_api::ClientKey> {
    Ok(if path.exists() {
        permafrost_api::ClientKey::load(path)?
    } else {
        permafrost_api::ClientKey::create_file(path)?
    })
}

/// The PeerId of the node identity in `dir`, creating the identity if there is none (once a
/// node has started, its key is sealed in its keystore and only `peer_id` is in the clear).
fn node_identity(dir: &Path) -> anyhow::Result<String> {
    if dir.join(permafrost_node::PEER_ID_FILE).exists()
        || dir.join(permafrost_node::IDENTITY_FILE).exists()
    {
        Ok(permafrost_node::peer_id(dir)?.to_string())
    } else {
        Ok(permafrost_node::init(dir)?.to_string())
    }
}

fn load_peer_id(dir: &Path) -> anyhow::Result<String> {
    let keypair = permafrost_runtime::identity::load_identity_file(&dir.join("identity.key"))?;
    Ok(keypair.public().to_peer_id().to_string())
}

/// `count` distinct free loopback TCP ports: bound to port 0 together, read, released.
/// Where the localnet's ports are picked: below Linux's default range of ephemeral ports
/// (32768-60999), which the kernel hands to outgoing connections. A port from that range, free
/// when picked, can be taken by any outgoing connection while its process is down (a node
/// restarted after a crash, say), and the process then cannot listen on it again.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// `count` distinct ports of [`PORT_RANGE`] that are free now (each bound once to check).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.saturating_mul(64).max(256) {
        if listeners.len() == count {
            break;
        }
        let offset = u16::try_from(OsRng.next_u32() % span).unwrap_or(0);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", PORT_RANGE.start + offset)) {
            listeners.push(listener);
        }
    }
    if listeners.len() < count {
        bail!(
            "cannot find {count} free ports in {}..{}",
            PORT_RANGE.start,
            PORT_RANGE.end
        );
    }
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn write_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a file only its owner can read (mode 0600 on unix), fsynced.
fn write_private(path: &Path, contents: &[u8], replace: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        // `mode` applies only to a new file; an existing one is tightened here.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `permafrost localnet up`.
pub async fn up(
    dir: &Path,
    nodes: usize,
    api_port: u16,
    trust_gateway_operator: bool,
) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::on_signals()?;
    let progress = Progress::on_stderr();
    progress.line(format!(
        "starting {nodes} nodes and a coordinator in {}",
        dir.display()
    ));
    let started = Instant::now();
    let mut localnet = Localnet::start(
        dir,
        nodes,
        api_port,
        trust_gateway_operator,
        &shutdown,
        &progress,
    )
    .await?;
    progress.finish();
    print_summary(&localnet, started.elapsed());
    let outcome = localnet.run_until(&shutdown).await;
    eprintln!("stopping the localnet");
    localnet.stop().await;
    outcome?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn print_summary(localnet: &Localnet, took: Duration) {
    let info = localnet.info();
    println!(
        "localnet up in {:.1} s: {} nodes and a coordinator, all connected",
        took.as_secs_f64(),
        info.nodes.len()
    );
    println!("  dir         {}", localnet.dir().display());
    println!("  api         {}", info.api);
    println!("  token       {}", info.token);
    println!("  coordinator pid {}", info.coordinator.pid);
    for node in &info.nodes {
        println!(
            "  {:<11} pid {:<7} {} {}",
            node.name, node.pid, node.addr, node.peer_id
        );
    }
    if let Some(metrics) = &info.metrics {
        println!("  metrics     coordinator {}/metrics", metrics.coordinator);
        for (name, url) in &metrics.nodes {
            println!("              {name:<11} {url}/metrics");
        }
    }
    println!("  logs        {}/*/*.log", localnet.dir().display());
    println!();
    println!("export PERMAFROST_API={}", info.api);
    println!("export PERMAFROST_TOKEN={}", info.token);
    println!();
    println!(
        "(or pass --localnet {} to any command)  Ctrl-C stops the localnet.",
        localnet.dir().display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use permafrost_protocol::lifecycle::OperatorKey;

    fn refused(result: anyhow::Result<Plan>) -> String {
        match result {
            Ok(_) => panic!("prepared"),
            Err(e) => format!("{e:#}"),
        }
    }

    /// With `--require-operator-approval` the nodes list only the user's operator key.
    #[test]
    fn prepare_without_the_gateway_operator_lists_only_yours() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = prepare(tmp.path(), 2, 0, false).unwrap();
        let yours = OperatorKey(
            client_key(&tmp.path().join(OPERATOR_KEY))
                .unwrap()
                .public_key(),
        );
        for node in &plan.info.nodes {
            let config =
                permafrost_node::NodeConfig::load(&tmp.path().join(&node.name).join(NODE_CONFIG))
                    .unwrap();
            let operators = config.operators.policy().unwrap().all_keys;
            assert_eq!(operators, [yours].into_iter().collect());
        }
    }

    #[test]
    fn prepare_writes_configs_the_node_and_coordinator_accept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ln");
        let plan = prepare(&dir, 3, 0, true).unwrap();
        assert_eq!(plan.processes.len(), 4);
        assert_eq!(plan.processes[0].0, COORDINATOR);

        let network = NetworkFile::load(&dir.join(NETWORK_FILE))
            .unwrap()
            .validate()
            .unwrap();
        assert!(network.network_id.starts_with("localnet-"));
        assert_eq!(network.nodes.len(), 3);
        assert_eq!(network.coordinators.len(), 1);

        let operator = |path: &Path| OperatorKey(client_key(path).unwrap().public_key());
        let (gateway, yours) = (
            operator(&dir.join(COORDINATOR).join(GATEWAY_OPERATOR_KEY)),
            operator(&dir.join(OPERATOR_KEY)),
        );
        for (i, node) in plan.info.nodes.iter().enumerate() {
            assert_eq!(node.name, format!("node{}", i + 1));
            let config =
                permafrost_node::NodeConfig::load(&dir.join(&node.name).join(NODE_CONFIG)).unwrap();
            let operators = config.operators.policy().unwrap().all_keys;
            assert_eq!(operators, [gateway, yours].into_iter().collect());
            assert_eq!(config.listen, node.addr);
            assert_eq!(config.passphrase().unwrap().len(), 64);
            assert_eq!(
                network
                    .node_by_name(&node.name)
                    .unwrap()
                    .peer_id
                    .to_string(),
                node.peer_id
            );
        }
        let coordinator = permafrost_coordinator::CoordinatorConfig::load(
            &dir.join(COORDINATOR).join(COORDINATOR_CONFIG),
        )
        .unwrap();
        assert_eq!(coordinator.tokens, vec![plan.info.token.clone()]);
        assert_eq!(
            plan.info.api,
            format!("http://127.0.0.1:{}", coordinator.api_listen.port())
        );
        assert_ne!(coordinator.api_listen.port(), 0);

        let mut ports: Vec<String> = plan.info.nodes.iter().map(|n| n.addr.clone()).collect();
        ports.push(coordinator.listen.clone());
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 4, "every process has its own port");

        // Every process serves metrics on its own port, and localnet.json says where.
        let metrics = plan.info.metrics.clone().unwrap();
        let coordinator_metrics = coordinator.metrics_listen.unwrap();
        assert_eq!(metrics.coordinator, format!("http://{coordinator_metrics}"));
        let mut metrics_ports = vec![coordinator_metrics.port(), coordinator.api_listen.port()];
        for node in &plan.info.nodes {
            let config =
                permafrost_node::NodeConfig::load(&dir.join(&node.name).join(NODE_CONFIG)).unwrap();
            let listen = config.metrics_listen.unwrap();
            assert_eq!(metrics.nodes[&node.name], format!("http://{listen}"));
            metrics_ports.push(listen.port());
        }
        metrics_ports.sort();
        metrics_ports.dedup();
        assert_eq!(metrics_ports.len(), 5, "every listener has its own port");
        assert!(!metrics_ports.contains(&0));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in ["node1/passphrase", "coordinator/coordinator.toml"] {
                let mode = std::fs::metadata(dir.join(file))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "{file}: {mode:o}");
            }
        }
    }

    #[test]
    fn prepare_again_reuses_identities_token_and_network_id() {
        let tmp = tempfile::tempdir().unwrap();
        let first = prepare(tmp.path(), 2, 0, true).unwrap();
        let network_id = NetworkFile::load(&tmp.path().join(NETWORK_FILE))
            .unwrap()
            .network_id;
        let passphrase = std::fs::read(tmp.path().join("node1/passphrase")).unwrap();
        let second = prepare(tmp.path(), 2, 0, true).unwrap();
        assert_eq!(first.info.token, second.info.token);
        let ids = |plan: &Plan| -> Vec<String> {
            plan.info.nodes.iter().map(|n| n.peer_id.clone()).collect()
        };
        assert_eq!(ids(&first), ids(&second));
        assert_eq!(
            NetworkFile::load(&tmp.path().join(NETWORK_FILE))
                .unwrap()
                .network_id,
            network_id
        );
        assert_eq!(
            std::fs::read(tmp.path().join("node1/passphrase")).unwrap(),
            passphrase
        );

        let error = refused(prepare(tmp.path(), 3, 0, true));
        assert!(error.contains("localnet of 2 nodes"), "{error}");
    }

    #[test]
    fn prepare_refuses_a_foreign_directory_and_a_running_localnet() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let error = refused(prepare(tmp.path(), 2, 0, true));
        assert!(error.contains("not empty"), "{error}");

        // A localnet.json naming a live process (this test) is refused; a stale one is not.
        let running = tempfile::tempdir().unwrap();
        let mut plan = prepare(running.path(), 2, 0, true).unwrap();
        plan.info.coordinator.pid = std::process::id();
        let info = serde_json::to_string(&plan.info).unwrap();
        std::fs::write(running.path().join(INFO_FILE), &info).unwrap();
        let error = refused(prepare(running.path(), 2, 0, true));
        assert!(error.contains("already running"), "{error}");

        plan.info.coordinator.pid = u32::MAX - 1;
        for node in &mut plan.info.nodes {
            node.pid = u32::MAX - 1;
        }
        let info = serde_json::to_string(&plan.info).unwrap();
        std::fs::write(running.path().join(INFO_FILE), &info).unwrap();
        prepare(running.path(), 2, 0, true).unwrap();
        assert!(!running.path().join(INFO_FILE).exists());
    }
}
