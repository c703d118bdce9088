//! The API commands: `keys create|list|show`, `sign`, `reshare`, `health`, and
//! `client-key create|show`. Each prints the JSON answer,
//! pretty; an API error comes back as [`permafrost_api::ApiError`] for the caller to print.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use permafrost_api::{
    decode_hex, Client, ClientKey, CreateKeyRequest, Curve, LocalnetInfo, ReshareRequest,
};
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

/// `permafrost keys create`.
pub async fn create_key(
    target: &Target,
    curve: Curve,
    threshold: u16,
    nodes: Option<Vec<String>>,
) -> anyhow::Result<ExitCode> {
    let request = CreateKeyRequest {
        curve,
        threshold,
        nodes,
    };
    print_json(&target.client()?.create_key(&request).await?)
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

/// The public key of a client key, as `client-key create|show` print it.
#[derive(Serialize)]
struct ClientKeyInfo {
    file: String,
    public_key: String,
}

/// `permafrost client-key create --file FILE`.
pub fn create_client_key(file: &Path) -> anyhow::Result<ExitCode> {
    let key = ClientKey::create_file(file)?;
    print_json(&ClientKeyInfo {
        file: file.display().to_string(),
        public_key: key.public_hex(),
    })
}

/// `permafrost client-key show --file FILE`.
pub fn show_client_key(file: &Path) -> anyhow::Result<ExitCode> {
    let key = ClientKey::load(file)?;
    print_json(&ClientKeyInfo {
        file: file.display().to_string(),
        public_key: key.public_hex(),
    })
}

/// `permafrost reshare --key ID --threshold T --nodes a,b,c`.
pub async fn reshare(
    target: &Target,
    key_id: &str,
    threshold: u16,
    nodes: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let request = ReshareRequest { threshold, nodes };
    print_json(&target.client()?.reshare(key_id, &request).await?)
}

/// `permafrost health`.
pub async fn health(target: &Target) -> anyhow::Result<ExitCode> {
    print_json(&target.client()?.health().await?)
}
