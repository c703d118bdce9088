//! The coordinator's configuration file.
//!
//! ```toml
//! data_dir = "/var/lib/permafrost-coordinator"   # identity.key and coordinator.redb
//! listen = "/ip4/0.0.0.0/tcp/7100"              # libp2p
//! api_listen = "127.0.0.1:8700"                 # HTTP API
//! network_file = "network.toml"
//! tokens = ["change-me"]                        # bearer tokens accepted by the API
//! # tokens_file = "tokens"                     # and/or one token per line in this file
//! body_limit_bytes = 1048576
//! # rate_limit = { burst = 512, per_second = 4096 }  # per node, inbound protocol messages
//! # gateway_client_key_file = "gateway.key"   # approves sign requests that carry no client
//! # gateway_operator_key_file = "operator.key" # approves DKGs and reshares that carry no approvals
//! # probe_interval_ms = 1000    # liveness probe of every node
//! # unhealthy_after_ms = 3000   # a node whose last answered probe is older is unhealthy
//! # metrics_listen = "127.0.0.1:9100"  # GET /metrics without a token (off when absent)
//! ```
//!
//! The secret files (`tokens_file`, `gateway_client_key_file`, `gateway_operator_key_file`)
//! are taken relative to `$CREDENTIALS_DIRECTORY` when the process has that variable
//! (systemd's `LoadCredential=`; see [`permafrost_runtime::credentials`]), other relative paths
//! relative to the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use permafrost_runtime::credentials::{
    credentials_directory, refuse_if_readable_by_others, resolve_secret_path,
};
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

/// The coordinator's configuration. Its `Debug` leaves the tokens out.
#[derive(Clone, Deserialize)]
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
    /// Accepted bearer tokens; with those of `tokens_file`, at least one.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// A file of more accepted bearer tokens, one a line (mode 0600 or stricter), read at
    /// start: a secret that can come from a credential store rather than this file.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
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

    /// Reads a config file; relative paths are relative to the file's directory, except the
    /// secret files', which are relative to `$CREDENTIALS_DIRECTORY` when the process has it.
    pub fn load(path: &Path) -> Result<Self, CoordinatorError> {
        Self::load_with_credentials(path, credentials_directory().as_deref())
    }

    /// [`CoordinatorConfig::load`] with the credentials directory given (`None`: there is
    /// none) rather than read from `$CREDENTIALS_DIRECTORY`.
    pub fn load_with_credentials(
        path: &Path,
        credentials: Option<&Path>,
    ) -> Result<Self, CoordinatorError> {
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
            config.tokens_file.as_mut(),
            config.gateway_client_key_file.as_mut(),
            config.gateway_operator_key_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve_secret_path(p, base, credentials);
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

    /// Every accepted bearer token: `tokens`, then each line of `tokens_file` (blank lines
    /// skipped). Refuses a tokens file that cannot be read or that group or others can access,
    /// no token at all, and a token shorter than 16 characters.
    pub fn api_tokens(&self) -> Result<Vec<String>, CoordinatorError> {
        let mut tokens = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            refuse_if_readable_by_others(path, "tokens file").map_err(CoordinatorError::Config)?;
            let text = std::fs::read_to_string(path).map_err(|e| {
                CoordinatorError::Config(format!("cannot read tokens file {}: {e}", path.display()))
            })?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned),
            );
        }
        if tokens.is_empty() || tokens.iter().any(|t| t.len() < 16) {
            return Err(CoordinatorError::Config(
                "tokens: at least one, each at least 16 characters".into(),
            ));
        }
        Ok(tokens)
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

impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("api_listen", &self.api_listen)
            .field("network_file", &self.network_file)
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("tokens_file", &self.tokens_file)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("rate_limit", &self.rate_limit)
            .field("gateway_client_key_file", &self.gateway_client_key_file)
            .field("gateway_operator_key_file", &self.gateway_operator_key_file)
            .field("probe_interval_ms", &self.probe_interval_ms)
            .field("unhealthy_after_ms", &self.unhealthy_after_ms)
            .field("metrics_listen", &self.metrics_listen)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const TOKEN_A: &str = "inline-token-0123456789";
    const TOKEN_B: &str = "file-token-0123456789ab";

    /// A coordinator.toml in `dir` with one inline token and `extra` lines.
    fn config_file(dir: &Path, extra: &str) -> PathBuf {
        let path = dir.join("coordinator.toml");
        std::fs::write(
            &path,
            format!(
                "data_dir = \"data\"\nlisten = \"/ip4/127.0.0.1/tcp/0\"\n\
                 api_listen = \"127.0.0.1:0\"\nnetwork_file = \"network.toml\"\n{extra}"
            ),
        )
        .unwrap();
        path
    }

    fn write_secret(path: &Path, contents: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The tokens file and both gateway key files are credentials: under systemd they are
    /// read from the credentials directory; the data directory stays beside the config.
    #[test]
    fn secret_files_are_under_the_credentials_directory_and_tokens_join() {
        let etc = tempfile::tempdir().unwrap();
        let credentials = tempfile::tempdir().unwrap();
        write_secret(
            &credentials.path().join("tokens"),
            &format!("\n{TOKEN_B}\n\n"),
            0o400,
        );
        let path = config_file(
            etc.path(),
            &format!(
                "tokens = [\"{TOKEN_A}\"]\ntokens_file = \"tokens\"\n\
                 gateway_client_key_file = \"gateway.key\"\n\
                 gateway_operator_key_file = \"/srv/operator.key\"\n"
            ),
        );
        let config =
            CoordinatorConfig::load_with_credentials(&path, Some(credentials.path())).unwrap();
        assert_eq!(config.data_dir, etc.path().join("data"));
        assert_eq!(
            config.gateway_client_key_file.as_deref(),
            Some(credentials.path().join("gateway.key").as_path())
        );
        assert_eq!(
            config.gateway_operator_key_file.as_deref(),
            Some(Path::new("/srv/operator.key"))
        );
        assert_eq!(config.api_tokens().unwrap(), vec![TOKEN_A, TOKEN_B]);

        let beside = CoordinatorConfig::load_with_credentials(&path, None).unwrap();
        assert_eq!(beside.tokens_file, Some(etc.path().join("tokens")));
    }

    /// A tokens file that others can read, or one holding a short token, stops the start; no
    /// token at all too.
    #[test]
    fn bad_tokens_files_and_no_token_are_refused() {
        let etc = tempfile::tempdir().unwrap();
        let path = config_file(etc.path(), "tokens_file = \"tokens\"\n");
        let config = CoordinatorConfig::load_with_credentials(&path, None).unwrap();

        let missing = config.api_tokens().unwrap_err().to_string();
        assert!(missing.contains("tokens file"), "{missing}");

        write_secret(&etc.path().join("tokens"), TOKEN_B, 0o644);
        let readable = config.api_tokens().unwrap_err().to_string();
        assert!(
            readable.contains("accessible by group or others"),
            "{readable}"
        );

        write_secret(&etc.path().join("tokens"), "short\n", 0o600);
        let short = config.api_tokens().unwrap_err().to_string();
        assert!(short.contains("at least 16 characters"), "{short}");

        write_secret(&etc.path().join("tokens"), TOKEN_B, 0o600);
        assert_eq!(config.api_tokens().unwrap(), vec![TOKEN_B]);

        let none = CoordinatorConfig::load_with_credentials(&config_file(etc.path(), ""), None)
            .unwrap()
            .api_tokens()
            .unwrap_err()
            .to_string();
        assert!(none.contains("at least one"), "{none}");
    }

    #[test]
    fn debug_leaves_the_tokens_out() {
        let etc = tempfile::tempdir().unwrap();
        let path = config_file(etc.path(), &format!("tokens = [\"{TOKEN_A}\"]\n"));
        let config = CoordinatorConfig::load_with_credentials(&path, None).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(TOKEN_A), "{debug}");
        assert!(debug.contains("<1 redacted>"), "{debug}");
    }

    #[test]
    fn metrics_listen_is_off_unless_given_and_must_be_an_address() {
        let etc = tempfile::tempdir().unwrap();
        let load = |extra: &str| {
            CoordinatorConfig::load_with_credentials(&config_file(etc.path(), extra), None)
        };
        assert_eq!(load("").unwrap().metrics_listen, None);
        let on = load("metrics_listen = \"127.0.0.1:9100\"\n").unwrap();
        assert_eq!(on.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let Err(CoordinatorError::Config(error)) = load("metrics_listen = \"localhost\"\n") else {
            panic!("a bad address was accepted");
        };
        assert!(error.contains("metrics_listen"), "{error}");
    }
}
