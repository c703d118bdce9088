//! The API commands: `keys create|list|show`, `sign`, `reshare`, `health`, and
//! `client-key|operator-key create|show`. Each prints the JSON answer,
//! pretty; an API error comes back as [`permafrost_api::ApiError`] for the caller to print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use permafrost_api::{
    decode_hex, Client, ClientKey, CreateKeyRequest, Curve, Health, LocalnetInfo, ReshareRequest,
};
use permafrost_wire::{Digest, Epoch, KeyId, LifecycleAction, LifecycleKind, NodeId};
use rand_core::{OsRng, RngCore};
use serde::Serialize;

/// Where the API is and how to authenticate, from the global options. No `Debug`: it holds
/// the token.
pub struct Target {
    /// `--api` / `PERMAFROST_API`.
    pub api: String,
    /// `--token` / `PERMAFROST_TOKEN`.
    pub token: Option<String>,
    /// `--localnet DIR`: overrides both.
    pub localnet: Option<PathBuf>,
}

impl Target {
    /// A client for the target API.
    pub fn client(&self) -> anyhow::Result<Client> {
        if let Some(dir) = &self.localnet {
            let info = read_localnet_info(dir)?;
            return Ok(Client::from_localnet(&info)?);
        }
        let Some(token) = &self.token else {
            anyhow::bail!(
                "no API token: pass --token, set PERMAFROST_TOKEN, or use --localnet DIR"
            );
        };
        Ok(Client::new(self.api.clone(), token.clone())?)
    }
}

/// Reads `DIR/localnet.json`.
pub fn read_localnet_info(dir: &Path) -> anyhow::Result<LocalnetInfo> {
    let path = dir.join(crate::localnet::INFO_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is `permafrost localnet up --dir {}` running?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a localnet file", path.display()))
}

fn print_json(value: &impl Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

/// `permafrost keys create`: with operator keys, the CLI names the key id and the committee
/// itself and signs the DKG with each key (the nodes check the approvals, not the coordinator).
pub async fn create_key(
    target: &Target,
    curve: Curve,
    threshold: u16,
    nodes: Option<Vec<String>>,
    key_id: Option<String>,
    operator_keys: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let client = target.client()?;
    let mut request = CreateKeyRequest {
        curve,
        threshold,
        nodes,
        key_id,
        approvals: Vec::new(),
    };
    if !operator_keys.is_empty() {
        let health = client.health().await?;
        let names = match &request.nodes {
            Some(names) => names.clone(),
            None => health.nodes.iter().map(|n| n.name.clone()).collect(),
        };
        let key_id = request.key_id.get_or_insert_with(|| {
            let mut id = [0u8; 12];
            OsRng.fill_bytes(&mut id);
            format!("k-{}", hex::encode(id))
        });
        let action = LifecycleAction {
            kind: LifecycleKind::Dkg,
            key_id: KeyId::new(key_id.clone())?,
            curve,
            epoch: Epoch(0),
            old_public_key_package: Digest([0; 32]),
            committee: committee_ids(&health, &names)?,
            threshold,
        };
        request.approvals = approve(&health.network_id, &action, operator_keys)?;
    }
    print_json(&client.create_key(&request).await?)
}

/// The node ids of the nodes named `names`, sorted (as the protocol orders a committee).
fn committee_ids(health: &Health, names: &[String]) -> anyhow::Result<Vec<NodeId>> {
    let mut ids = names
        .iter()
        .map(|name| {
            let node = health
                .nodes
                .iter()
                .find(|n| n.name == *name)
                .ok_or_else(|| anyhow::anyhow!("the coordinator lists no node {name:?}"))?;
            permafrost_runtime::identity::node_id_of_text(&node.peer_id)
                .map_err(|e| anyhow::anyhow!("node {name:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<NodeId>>>()?;
    ids.sort();
    Ok(ids)
}

/// Each operator key file's approval of `action` on `network_id`, printed to standard error
/// so the operator sees what was signed.
fn approve(
    network_id: &str,
    action: &LifecycleAction,
    operator_keys: &[PathBuf],
) -> anyhow::Result<Vec<permafrost_api::OperatorApproval>> {
    let committee: Vec<String> = action.committee.iter().map(ToString::to_string).collect();
    operator_keys
        .iter()
        .map(|path| {
            let key = ClientKey::load(path)?;
            eprintln!(
                "operator {} approves on network {network_id:?}: {} of key {} ({}) at epoch {}, threshold {} of [{}]",
                key.public_hex(),
                action.kind.as_str(),
                action.key_id,
                action.curve,
                action.epoch,
                action.threshold,
                committee.join(", ")
            );
            Ok(permafrost_api::OperatorApproval::from_wire(
                &key.approve(network_id, action),
            ))
        })
        .collect()
}

/// `permafrost keys list`.
pub async fn list_keys(target: &Target) -> anyhow::Result<ExitCode> {
    print_json(&target.client()?.keys().await?)
}

/// `permafrost keys show ID`.
pub async fn show_key(target: &Target, key_id: &str) -> anyhow::Result<ExitCode> {
    print_json(&target.client()?.key(key_id).await?)
}

/// Who approves a `sign` and what it insists on: the client key file, and optionally the
/// network id and public key the approval must be for.
pub struct Approver<'a> {
    /// `--client-key`.
    pub file: &'a Path,
    /// `--network-id`.
    pub network_id: Option<&'a str>,
    /// `--public-key`, hex.
    pub public_key: Option<&'a str>,
}

/// `permafrost sign --key ID --message HEX [--client-key FILE [--network-id ID]
/// [--public-key HEX]]`. With a client key, the key's group public key and the network id the
/// approval covers come from `GET /v1/keys/{id}`, checked against the pinned ones if given.
pub async fn sign(
    target: &Target,
    key_id: &str,
    message_hex: &str,
    approver: Option<Approver<'_>>,
) -> anyhow::Result<ExitCode> {
    let message = decode_hex("message", message_hex)?;
    let client = target.client()?;
    let answer = match approver {
        Some(approver) => {
            let client_key = ClientKey::load(approver.file)?;
            let key = client.key(key_id).await?;
            if let Some(pinned) = approver.network_id {
                anyhow::ensure!(
                    key.network_id == pinned,
                    "the coordinator says key {key_id} is on network {:?}, not {pinned:?}: nothing approved",
                    key.network_id
                );
            }
            if let Some(pinned) = approver.public_key {
                let pinned = decode_hex("--public-key", pinned)?;
                anyhow::ensure!(
                    decode_hex("public_key", &key.public_key)? == pinned,
                    "the coordinator says key {key_id} has public key {}, not {}: nothing approved",
                    key.public_key,
                    hex::encode(&pinned)
                );
            }
            client.sign_key_as(&client_key, &key, &message).await?
        }
        None => client.sign(key_id, &message).await?,
    };
    print_json(&answer)
}

/// The public key of a client or operator key, as `client-key|operator-key create|show`
/// print it.
#[derive(Serialize)]
struct KeyFileInfo {
    file: String,
    public_key: String,
}

/// `permafrost client-key|operator-key create --file FILE`.
pub fn create_key_file(file: &Path) -> anyhow::Result<ExitCode> {
    let key = ClientKey::create_file(file)?;
    print_json(&KeyFileInfo {
        file: file.display().to_string(),
        public_key: key.public_hex(),
    })
}

/// `permafrost client-key|operator-key show --file FILE`.
pub fn show_key_file(file: &Path) -> anyhow::Result<ExitCode> {
    let key = ClientKey::load(file)?;
    print_json(&KeyFileInfo {
        file: file.display().to_string(),
        public_key: key.public_hex(),
    })
}

/// `permafrost reshare --key ID --threshold T --nodes a,b,c [--operator-key FILE …]`: with
/// operator keys, the CLI reads the key's current epoch and public key package digest and signs
/// the reshare with each key.
pub async fn reshare(
    target: &Target,
    key_id: &str,
    threshold: u16,
    nodes: Vec<String>,
    operator_keys: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let client = target.client()?;
    let mut approvals = Vec::new();
    if !operator_keys.is_empty() {
        let health = client.health().await?;
        let key = client.key(key_id).await?;
        let digest = <[u8; 32]>::try_from(decode_hex(
            "public_key_package_digest",
            &key.public_key_package_digest,
        )?)
        .map_err(|_| {
            anyhow::anyhow!("the coordinator's public_key_package_digest is not 32 bytes")
        })?;
        let action = LifecycleAction {
            kind: LifecycleKind::Reshare,
            key_id: KeyId::new(key.key_id.clone())?,
            curve: key.curve,
            epoch: Epoch(key.epoch),
            old_public_key_package: Digest(digest),
            committee: committee_ids(&health, &nodes)?,
            threshold,
        };
        approvals = approve(&health.network_id, &action, operator_keys)?;
    }
    let request = ReshareRequest {
        threshold,
        nodes,
        approvals,
    };
    print_json(&client.reshare(key_id, &request).await?)
}

/// `permafrost health`.
pub async fn health(target: &Target, json: bool) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let health = target.client()?.health().await?;
    if json || !std::io::stdout().is_terminal() {
        return print_json(&health);
    }
    print!("{}", health_table(&health));
    Ok(ExitCode::SUCCESS)
}

/// The health as a table for people: one line per node, in natural order of their names
/// (`node2` before `node10`).
pub fn health_table(health: &Health) -> String {
    let mut nodes: Vec<&permafrost_api::NodeHealth> = health.nodes.iter().collect();
    nodes.sort_by_key(|node| natural_key(&node.name));
    let mut out = format!(
        "coordinator {} · network {}\n",
        health.status, health.network_id
    );
    out.push_str(&format!(
        "{:<12} {:<9} {:<9} {:>12} {:>10}  {}\n",
        "NODE", "HEALTHY", "CONNECTED", "ROUND TRIP", "LAST OK", "PROBE ERROR"
    ));
    for node in nodes {
        let yes_no = |b: bool| if b { "yes" } else { "NO" };
        let rtt = node.last_round_trip_us.map_or_else(
            || "-".to_owned(),
            |us| format!("{:.2} ms", us as f64 / 1000.0),
        );
        let age = node.last_probe_age_ms.map_or_else(
            || "never".to_owned(),
            |ms| format!("{:.1} s ago", ms as f64 / 1000.0),
        );
        out.push_str(&format!(
            "{:<12} {:<9} {:<9} {:>12} {:>10}  {}\n",
            node.name,
            yes_no(node.healthy),
            yes_no(node.connected),
            rtt,
            age,
            node.probe_error.as_deref().unwrap_or("")
        ));
    }
    out
}

/// Sorts names with numbers in them as people do: the digits compare as numbers.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                parts.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    parts.push((text, digits.parse().unwrap_or(0)));
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn node(name: &str, healthy: bool) -> permafrost_api::NodeHealth {
        permafrost_api::NodeHealth {
            name: name.into(),
            peer_id: format!("12D3KooW{name}"),
            connected: true,
            healthy,
            last_round_trip_us: healthy.then_some(1_250),
            last_probe_age_ms: Some(if healthy { 400 } else { 4_100 }),
            probe_error: (!healthy).then(|| "no answer within 3000 ms".to_owned()),
        }
    }

    #[test]
    fn the_health_table_lists_nodes_in_natural_order() {
        let health = Health {
            status: "ok".into(),
            network_id: "custody-1".into(),
            nodes: vec![
                node("node10", true),
                node("node2", false),
                node("node1", true),
            ],
        };
        let table = health_table(&health);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert_eq!(lines[0], "coordinator ok · network custody-1");
        let names: Vec<&str> = lines[2..]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(names, ["node1", "node2", "node10"]);
        assert!(
            lines[2].contains("yes") && lines[2].contains("1.25 ms"),
            "{table}"
        );
        assert!(
            lines[3].contains("NO") && lines[3].contains("4.1 s ago"),
            "{table}"
        );
        assert!(lines[3].ends_with("no answer within 3000 ms"), "{table}");
    }
}
