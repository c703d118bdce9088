//! The node's configuration file.
//!
//! ```toml
//! data_dir = "/var/lib/permafrost"        # identity.key and the keystore live here
//! listen = "/ip4/0.0.0.0/tcp/7000"
//! network_file = "network.toml"           # relative paths are relative to this file
//! passphrase_file = "passphrase"        # optional; else $PERMAFROST_PASSPHRASE; a relative
//!                                        # path is under $CREDENTIALS_DIRECTORY when set
//! # metrics_listen = "127.0.0.1:9101"    # optional: GET /metrics for Prometheus (off when absent)
//!
//! # The clients whose signing requests this node accepts (ed25519 public keys, hex). With
//! # none listed, the node signs nothing.
//! [clients]
//! all_keys = ["<hex ed25519 public key of a client: permafrost client-key create>"]
//! max_clock_skew_secs = 120                # optional; at most 600
//! [clients.per_key]
//! "k-3f9c…" = ["<hex ed25519 public key accepted for this key only>"]
//!
//! # The operators whose approval a DKG or a reshare needs on this node (ed25519 public keys,
//! # hex), and the node's floors. With none listed, the node joins no DKG and no reshare.
//! [operators]
//! all_keys = ["<hex ed25519 public key of an operator: permafrost operator-key create>"]
//! max_clock_skew_secs = 120                # optional; at most 600
//! min_threshold = 2                        # optional; at least 2
//! min_committee = 2                        # optional
//! [operators.per_key]
//! "k-3f9c…" = ["<hex ed25519 public key accepted for this key only>"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use permafrost_protocol::lifecycle::{
    OperatorKey, OperatorPolicy, DEFAULT_MIN_COMMITTEE, DEFAULT_MIN_THRESHOLD,
};
use permafrost_protocol::sign::client::{
    ClientKey, ClientPolicy, DEFAULT_MAX_CLOCK_SKEW, REQUEST_ID_RETENTION,
};
use permafrost_runtime::credentials::{
    credentials_directory, refuse_if_readable_by_others, resolve_secret_path,
};
use permafrost_wire::KeyId;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::NodeError;

/// The environment variable holding the keystore passphrase when no file is configured.
pub const PASSPHRASE_ENV: &str = "PERMAFROST_PASSPHRASE";

/// A node's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory holding `identity.key` and `keystore/`.
    pub data_dir: PathBuf,
    /// The multiaddr to listen on.
    pub listen: String,
    /// The network file.
    pub network_file: PathBuf,
    /// A file holding the keystore passphrase; without it, `$PERMAFROST_PASSPHRASE`. A relative
    /// path is under `$CREDENTIALS_DIRECTORY` when the process has that variable.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// Per-peer limit on inbound protocol messages (default: a burst of 512, then 4096/s).
    #[serde(default)]
    pub rate_limit: Option<permafrost_runtime::network::RateLimitConfig>,
    /// Where to serve `GET /metrics` for Prometheus (port 0 picks a free port). Absent: no
    /// metrics listener.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The clients whose signing requests this node accepts (default: none).
    #[serde(default)]
    pub clients: ClientsConfig,
    /// The operators whose approval a DKG or reshare needs on this node (default: none), and
    /// the node's floors.
    #[serde(default)]
    pub operators: OperatorsConfig,
}

/// The `[clients]` section: which client keys may approve signatures on this node.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsConfig {
    /// ed25519 public keys (hex) accepted for every key.
    #[serde(default)]
    pub all_keys: Vec<String>,
    /// Key id → ed25519 public keys (hex) accepted for that key only.
    #[serde(default)]
    pub per_key: BTreeMap<String, Vec<String>>,
    /// Largest accepted difference between a request's timestamp and this node's clock
    /// (default 120 s).
    #[serde(default)]
    pub max_clock_skew_secs: Option<u64>,
}

impl ClientsConfig {
    /// The policy this section describes; a malformed key or key id is an error naming it.
    pub fn policy(&self) -> Result<ClientPolicy, NodeError> {
        let (all_keys, per_key) = approver_keys("clients", &self.all_keys, &self.per_key)?;
        Ok(ClientPolicy {
            all_keys: all_keys.into_iter().map(ClientKey).collect(),
            per_key: per_key
                .into_iter()
                .map(|(k, keys)| (k, keys.into_iter().map(ClientKey).collect()))
                .collect(),
            max_clock_skew: clock_skew("clients", self.max_clock_skew_secs)?,
        })
    }
}

/// The `[operators]` section: which operator keys may approve a DKG or a reshare on this
/// node, and the node's floors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorsConfig {
    /// ed25519 public keys (hex) accepted for every key.
    #[serde(default)]
    pub all_keys: Vec<String>,
    /// Key id → ed25519 public keys (hex) accepted for that key only.
    #[serde(default)]
    pub per_key: BTreeMap<String, Vec<String>>,
    /// Largest accepted difference between an approval's timestamp and this node's clock
    /// (default 120 s).
    #[serde(default)]
    pub max_clock_skew_secs: Option<u64>,
    /// The lowest threshold this node takes part in (default 2).
    #[serde(default)]
    pub min_threshold: Option<u16>,
    /// The smallest committee this node takes part in (default 2).
    #[serde(default)]
    pub min_committee: Option<usize>,
}

impl OperatorsConfig {
    /// The policy this section describes; a malformed key or key id is an error naming it.
    pub fn policy(&self) -> Result<OperatorPolicy, NodeError> {
        let (all_keys, per_key) = approver_keys("operators", &self.all_keys, &self.per_key)?;
        let min_threshold = self.min_threshold.unwrap_or(DEFAULT_MIN_THRESHOLD);
        if min_threshold < DEFAULT_MIN_THRESHOLD {
            return Err(NodeError::Config(format!(
                "operators.min_threshold = {min_threshold}: at least {DEFAULT_MIN_THRESHOLD} (no key is held by one node alone)"
            )));
        }
        let min_committee = self.min_committee.unwrap_or(DEFAULT_MIN_COMMITTEE);
        if min_committee < DEFAULT_MIN_COMMITTEE {
            return Err(NodeError::Config(format!(
                "operators.min_committee = {min_committee}: at least {DEFAULT_MIN_COMMITTEE}"
            )));
        }
        Ok(OperatorPolicy {
            all_keys: all_keys.into_iter().map(OperatorKey).collect(),
            per_key: per_key
                .into_iter()
                .map(|(k, keys)| (k, keys.into_iter().map(OperatorKey).collect()))
                .collect(),
            max_clock_skew: clock_skew("operators", self.max_clock_skew_secs)?,
            min_threshold,
            min_committee,
        })
    }
}

/// An approver key list of section `section`: the keys for every key id, and those per key id.
type ApproverKeys = (BTreeSet<[u8; 32]>, BTreeMap<KeyId, BTreeSet<[u8; 32]>>);

fn approver_keys(
    section: &str,
    all_keys: &[String],
    per_key: &BTreeMap<String, Vec<String>>,
) -> Result<ApproverKeys, NodeError> {
    let parse = |hex_key: &String| -> Result<[u8; 32], NodeError> {
        hex::decode(hex_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                NodeError::Config(format!(
                    "{section}: {hex_key:?} is not a 32-byte ed25519 public key in hex"
                ))
            })
    };
    let all = all_keys.iter().map(parse).collect::<Result<_, _>>()?;
    let mut each = BTreeMap::new();
    for (key_id, keys) in per_key {
        let key_id = KeyId::new(key_id.clone())
            .map_err(|e| NodeError::Config(format!("{section}.per_key: {key_id:?}: {e}")))?;
        let accepted: &mut BTreeSet<[u8; 32]> = each.entry(key_id).or_default();
        for key in keys {
            accepted.insert(parse(key)?);
        }
    }
    Ok((all, each))
}

fn clock_skew(section: &str, secs: Option<u64>) -> Result<Duration, NodeError> {
    let Some(secs) = secs else {
        return Ok(DEFAULT_MAX_CLOCK_SKEW);
    };
    let skew = Duration::from_secs(secs);
    if skew > REQUEST_ID_RETENTION {
        return Err(NodeError::Config(format!(
            "{section}.max_clock_skew_secs = {secs}: at most {} (request ids are remembered that long)",
            REQUEST_ID_RETENTION.as_secs()
        )));
    }
    Ok(skew)
}

impl NodeConfig {
    /// Reads a config file; relative paths in it are taken relative to the file's directory,
    /// except `passphrase_file`, which is taken relative to `$CREDENTIALS_DIRECTORY` when the
    /// process has that variable (systemd's `LoadCredential=`; see
    /// [`permafrost_runtime::credentials`]).
    pub fn load(path: &Path) -> Result<Self, NodeError> {
        Self::load_with_credentials(path, credentials_directory().as_deref())
    }

    /// [`NodeConfig::load`] with the credentials directory given (`None`: there is none)
    /// rather than read from `$CREDENTIALS_DIRECTORY`.
    pub fn load_with_credentials(
        path: &Path,
        credentials: Option<&Path>,
    ) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NodeError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config: NodeConfig = toml::from_str(&text)
            .map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        absolute(&mut config.data_dir);
        absolute(&mut config.network_file);
        if let Some(p) = config.passphrase_file.as_mut() {
            resolve_secret_path(p, base, credentials);
        }
        Ok(config)
    }

    /// The keystore directory.
    pub fn keystore_path(&self) -> PathBuf {
        self.data_dir.join("keystore")
    }

    /// The passphrase, from the file or the environment. Refuses to go on without one.
    pub fn passphrase(&self) -> Result<Zeroizing<String>, NodeError> {
        let raw = match &self.passphrase_file {
            Some(path) => {
                refuse_if_readable_by_others(path, "passphrase file")
                    .map_err(NodeError::Passphrase)?;
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    NodeError::Passphrase(format!(
                        "cannot read passphrase file {}: {e}",
                        path.display()
                    ))
                })?)
            }
            None => Zeroizing::new(std::env::var(PASSPHRASE_ENV).map_err(|_| {
                NodeError::Passphrase(format!(
                    "no passphrase: set {PASSPHRASE_ENV} or passphrase_file in the node config"
                ))
            })?),
        };
        let trimmed = Zeroizing::new(raw.trim_end_matches(['\n', '\r']).to_owned());
        if trimmed.is_empty() {
            return Err(NodeError::Passphrase("the passphrase is empty".into()));
        }
        Ok(trimmed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// A node.toml in a fresh directory with `passphrase_file = "passphrase"`.
    fn config_file(dir: &Path) -> PathBuf {
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "data_dir = \"data\"\nlisten = \"/ip4/127.0.0.1/tcp/0\"\n\
             network_file = \"network.toml\"\npassphrase_file = \"passphrase\"\n",
        )
        .unwrap();
        path
    }

    fn write_secret(path: &Path, contents: &str, mode: u32) {
        std::fs::write(path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    /// Under systemd's `LoadCredential=passphrase:…` the passphrase is read from the credentials
    /// directory (mode 0400 there), not from beside the config; the other relative paths stay
    /// beside the config.
    #[test]
    fn a_relative_passphrase_file_is_read_from_the_credentials_directory() {
        let etc = tempfile::tempdir().unwrap();
        let credentials = tempfile::tempdir().unwrap();
        write_secret(&etc.path().join("passphrase"), "beside the config\n", 0o600);
        write_secret(
            &credentials.path().join("passphrase"),
            "from systemd\n",
            0o400,
        );
        let config =
            NodeConfig::load_with_credentials(&config_file(etc.path()), Some(credentials.path()))
                .unwrap();
        assert_eq!(
            config.passphrase_file.as_deref(),
            Some(credentials.path().join("passphrase").as_path())
        );
        assert_eq!(config.data_dir, etc.path().join("data"));
        assert_eq!(config.network_file, etc.path().join("network.toml"));
        assert_eq!(config.passphrase().unwrap().as_str(), "from systemd");
    }

    #[test]
    fn without_a_credentials_directory_the_passphrase_file_is_beside_the_config() {
        let etc = tempfile::tempdir().unwrap();
        write_secret(&etc.path().join("passphrase"), "beside the config\n", 0o600);
        let config = NodeConfig::load_with_credentials(&config_file(etc.path()), None).unwrap();
        assert_eq!(config.passphrase().unwrap().as_str(), "beside the config");
    }

    /// A credential that is not there (a unit without its `LoadCredential=`) is an error naming
    /// the path it was looked for at, not a fallback to another file.
    #[test]
    fn a_missing_credential_is_an_error_naming_where_it_was_looked_for() {
        let etc = tempfile::tempdir().unwrap();
        let credentials = tempfile::tempdir().unwrap();
        write_secret(&etc.path().join("passphrase"), "beside the config\n", 0o600);
        let config =
            NodeConfig::load_with_credentials(&config_file(etc.path()), Some(credentials.path()))
                .unwrap();
        let error = config.passphrase().unwrap_err().to_string();
        assert!(
            error.contains(&credentials.path().join("passphrase").display().to_string()),
            "{error}"
        );
    }

    const BASE: &str = r#"
data_dir = "."
listen = "/ip4/127.0.0.1/tcp/0"
network_file = "network.toml"
"#;

    fn load(text: &str) -> Result<NodeConfig, NodeError> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        NodeConfig::load(&path)
    }

    #[test]
    fn metrics_listen_is_off_unless_given_and_must_be_an_address() {
        assert_eq!(load(BASE).unwrap().metrics_listen, None);
        let on = load(&format!("{BASE}metrics_listen = \"127.0.0.1:9101\"\n")).unwrap();
        assert_eq!(on.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
        let Err(NodeError::Config(error)) = load(&format!("{BASE}metrics_listen = \"9101\"\n"))
        else {
            panic!("a bad address was accepted");
        };
        assert!(error.contains("metrics_listen"), "{error}");
    }

    /// An operator who raises the clock skew past the time request ids are remembered would
    /// reopen replays (an approval whose id is forgotten while its timestamp is still
    /// accepted): a config above 600 s is refused at load, naming the setting, in both
    /// sections; 600 s is the largest taken.
    #[test]
    fn a_clock_skew_past_the_request_id_retention_is_refused() {
        let retention = REQUEST_ID_RETENTION.as_secs();
        assert_eq!(retention, 600);
        for section in ["clients", "operators"] {
            let with = |secs: u64| format!("{BASE}\n[{section}]\nmax_clock_skew_secs = {secs}\n");
            let config = load(&with(retention)).unwrap();
            let taken = match section {
                "clients" => config.clients.policy().unwrap().max_clock_skew,
                _ => config.operators.policy().unwrap().max_clock_skew,
            };
            assert_eq!(taken, REQUEST_ID_RETENTION, "{section}");
            let refused = load(&with(retention + 1)).and_then(|config| match section {
                "clients" => config.clients.policy().map(|_| ()),
                _ => config.operators.policy().map(|_| ()),
            });
            let Err(NodeError::Config(error)) = refused else {
                panic!("{section}: a skew of {} s was accepted", retention + 1);
            };
            assert!(
                error.contains(&format!(
                    "{section}.max_clock_skew_secs = {}",
                    retention + 1
                )),
                "{error}"
            );
        }
    }
}
