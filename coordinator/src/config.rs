//! The coordinator's configuration file.
//!
//! ```toml
//! data_dir = "/var/lib/permafrost-coordinator"   # identity.key and coordinator.redb
//! listen = "/ip4/0.0.0.0/tcp/7100"              # libp2p
//! api_listen = "127.0.0.1:8700"                 # HTTP API
//! network_file = "network.toml"
//! tokens = ["change-me"]                        # bearer tokens accepted by the API
//! body_limit_bytes = 1048576
//! # rate_limit = { burst = 512, per_second = 4096 }  # per node, inbound protocol messages
//! # gateway_client_key_file = "gateway.key"   # approves sign requests that carry no client
//! # gateway_operator_key_file = "operator.key" # approves DKGs and reshares that carry no approvals
//! # probe_interval_ms = 1000    # liveness probe of every node
//! # unhealthy_after_ms = 3000   # a node whose last answered probe is older is unhealthy
//! # metrics_listen = "127.0.0.1:9100"  # GET /metrics without a token (off when absent)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::CoordinatorError;

fn default_body_limit() -> usize {
    1 << 20
}

fn default_probe_interval_ms() -> u64 {
    CoordinatorConfig::DEFAULT_PROBE_INTERVAL_MS
}

fn default_unhealthy_after_ms() -> u64 {
    CoordinatorConfig::DEFAULT_UNHEALTHY_AFTER_MS
}

/// The coordinator's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Directory holding `identity.key` and `coordinator.redb`.
    pub data_dir: PathBuf,
    /// The libp2p multiaddr to listen on.
    pub listen: String,
    /// The HTTP API address (port 0 picks a free port).
    pub api_listen: SocketAddr,
    /// The network file.
    pub network_file: PathBuf,
    /// Accepted bearer tokens; at least one.
    pub tokens: Vec<String>,
    /// Largest accepted request body.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Per-peer limit on inbound protocol messages (default: a burst of 512, then 4096/s).
    #[serde(default)]
    pub rate_limit: Option<permafrost_runtime::network::RateLimitConfig>,
    /// A client key (`permafrost client-key create`) the coordinator approves sign requests
    /// with when they carry no client authorization of their own. Nodes accept it only if
    /// their `[clients]` lists its public key. Without it, such requests are 400.
    #[serde(default)]
    pub gateway_client_key_file: Option<PathBuf>,
    /// An operator key (`permafrost operator-key create`) the coordinator approves DKGs and
    /// reshares with when they carry no approvals of their own. Nodes accept it only if their
    /// `[operators]` lists its public key: the same trust decision as the gateway client key.
    /// Without it, such requests are 400.
    #[serde(default)]
    pub gateway_operator_key_file: Option<PathBuf>,
    /// How often every node is sent a liveness probe, in milliseconds (at least 100).
    #[serde(default = "default_probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// A node whose last answered probe is older than this (in milliseconds, at least
    /// `probe_interval_ms`) is reported unhealthy; it is also each probe's timeout.
    #[serde(default = "default_unhealthy_after_ms")]
    pub unhealthy_after_ms: u64,
    /// Where to serve `GET /metrics` for Prometheus, without a token (port 0 picks a free
    /// port). Absent: no such listener (the API's `/metrics`, behind the token, stays).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

impl CoordinatorConfig {
    /// Default `probe_interval_ms`: a probe of every node each second.
    pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 1000;
    /// Default `unhealthy_after_ms`: a node unanswered for 3 s is unhealthy.
    pub const DEFAULT_UNHEALTHY_AFTER_MS: u64 = 3000;

    /// Reads a config file; relative paths are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, CoordinatorError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CoordinatorError::Config(format!("cannot read {}: {e}", path.display()))
        })?;
        let mut config: CoordinatorConfig = toml::from_str(&text)
            .map_err(|e| CoordinatorError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        if config.network_file.is_relative() {
            config.network_file = base.join(&config.network_file);
        }
        for p in [
            config.gateway_client_key_file.as_mut(),
            config.gateway_operator_key_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.probe_interval_ms < 100 || config.unhealthy_after_ms < config.probe_interval_ms {
            return Err(CoordinatorError::Config(format!(
                "{}: probe_interval_ms must be at least 100 and unhealthy_after_ms at least \
                 probe_interval_ms (got {} and {})",
                path.display(),
                config.probe_interval_ms,
                config.unhealthy_after_ms
            )));
        }
        Ok(config)
    }

    /// The identity key file.
    pub fn identity_path(&self) -> PathBuf {
        self.data_dir.join("identity.key")
    }

    /// The metadata database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("coordinator.redb")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const BASE: &str = r#"
data_dir = "."
listen = "/ip4/127.0.0.1/tcp/0"
api_listen = "127.0.0.1:0"
network_file = "network.toml"
tokens = ["0123456789abcdef"]
"#;

    fn load(text: &str) -> Result<CoordinatorConfig, CoordinatorError> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("coordinator.toml");
        std::fs::write(&path, text).unwrap();
        CoordinatorConfig::load(&path)
    }

    #[test]
    fn metrics_listen_is_off_unless_given_and_must_be_an_address() {
        assert_eq!(load(BASE).unwrap().metrics_listen, None);
        let on = load(&format!("{BASE}metrics_listen = \"127.0.0.1:9100\"\n")).unwrap();
        assert_eq!(on.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let Err(CoordinatorError::Config(error)) =
            load(&format!("{BASE}metrics_listen = \"localhost\"\n"))
        else {
            panic!("a bad address was accepted");
        };
        assert!(error.contains("metrics_listen"), "{error}");
    }
}
