//! The API commands: `keys create|list|show|derive`, `keys rotation set|show|clear`, `sign`,
//! `reshare`, `health`, and `client-key|operator-key create|show`. Each prints its answer in
//! the [`Format`] it is given: the API's JSON, pretty, or for people (see [`crate::output`]);
//! an API error comes back as [`permafrost_api::ApiError`] for the caller to print.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use permafrost_api::{
    decode_hex, Client, ClientKey, CreateKeyRequest, Curve, Health, KeyRecord, LocalnetInfo,
    ReshareRequest, RotationRequest,
};
use permafrost_protocol::sign::MAX_SIGN_MESSAGE_LEN;
use permafrost_wire::{
    DerivationPath, Digest, Epoch, KeyId, LifecycleAction, LifecycleKind, NodeId,
};
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use crate::output::{self, Format};
use crate::progress::Progress;

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

/// `permafrost keys create`: with operator keys, the CLI names the key id and the committee
/// itself and signs the DKG with each key (the nodes check the approvals, not the coordinator).
pub async fn create_key(
    target: &Target,
    curve: Curve,
    threshold: u16,
    nodes: Option<Vec<String>>,
    key_id: Option<String>,
    operator_keys: &[PathBuf],
    format: Format,
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
    let key = client.create_key(&request).await?;
    output::print(format, &key, |key| output::key_record("created key", key))
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
    let what = match action.kind {
        LifecycleKind::Rotation { every_secs } => format!(
            "rotation of key {} ({}) every {every_secs} s, keeping threshold {} of [{}]",
            action.key_id,
            action.curve,
            action.threshold,
            committee.join(", ")
        ),
        kind => format!(
            "{} of key {} ({}) at epoch {}, threshold {} of [{}]",
            kind.as_str(),
            action.key_id,
            action.curve,
            action.epoch,
            action.threshold,
            committee.join(", ")
        ),
    };
    operator_keys
        .iter()
        .map(|path| {
            let key = ClientKey::load(path)?;
            eprintln!(
                "operator {} approves on network {network_id:?}: {what}",
                key.public_hex(),
            );
            Ok(permafrost_api::OperatorApproval::from_wire(
                &key.approve(network_id, action),
            ))
        })
        .collect()
}

/// `permafrost keys list`.
pub async fn list_keys(target: &Target, format: Format) -> anyhow::Result<ExitCode> {
    let list = target.client()?.keys().await?;
    output::print(format, &list, output::key_list_table)
}

/// `permafrost keys show ID`.
pub async fn show_key(target: &Target, key_id: &str, format: Format) -> anyhow::Result<ExitCode> {
    let key = target.client()?.key(key_id).await?;
    output::print(format, &key, |key| output::key_record("key", key))
}

/// `permafrost keys derive ID --path PATH`.
pub async fn derive_key(
    target: &Target,
    key_id: &str,
    path: &DerivationPath,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let child = target.client()?.derive(key_id, path).await?;
    output::print(format, &child, output::child_key)
}

/// `permafrost keys rotation set --key ID --every DURATION [--operator-key FILE …]`: with
/// operator keys, the CLI reads the key (curve, group key, committee, threshold) and the
/// network id, and signs the policy with each key: a refresh every `every_secs` that keeps the
/// key's committee and threshold.
pub async fn set_rotation(
    target: &Target,
    key_id: &str,
    every_secs: u64,
    operator_keys: &[PathBuf],
    format: Format,
) -> anyhow::Result<ExitCode> {
    let client = target.client()?;
    let mut approved = None;
    let mut approvals = Vec::new();
    if !operator_keys.is_empty() {
        let health = client.health().await?;
        let key = client.key(key_id).await?;
        let action = permafrost_protocol::lifecycle::rotation_policy_action(
            &KeyId::new(key.key_id.clone())?,
            key.curve,
            &decode_hex("public_key", &key.public_key)?,
            committee_ids(&health, &key.nodes)?,
            key.threshold,
            every_secs,
        );
        approvals = approve(&health.network_id, &action, operator_keys)?;
        approved = Some(key);
    }
    let request = RotationRequest {
        every_secs,
        approvals,
    };
    let key = client.set_rotation(key_id, &request).await?;
    if let Some(approved) = approved {
        same_committee(&approved, &key)?;
    }
    output::print(format, &key, output::rotation)
}

/// Refuses `recorded` (the answer to a policy approved for `approved`'s committee and
/// threshold) if its policy keeps another committee or threshold: every member would refuse
/// each of its refreshes (the key was reshared in between).
fn same_committee(approved: &KeyRecord, recorded: &KeyRecord) -> anyhow::Result<()> {
    let sorted = |names: &[String]| {
        let mut names = names.to_vec();
        names.sort();
        names
    };
    let Some(rotation) = &recorded.rotation else {
        anyhow::bail!("the coordinator answered without the rotation policy it was asked to set");
    };
    anyhow::ensure!(
        rotation.threshold == approved.threshold
            && sorted(&rotation.nodes) == sorted(&approved.nodes),
        "the coordinator recorded a policy keeping {} of [{}], but the operators approved {} of \
         [{}] (was the key reshared meanwhile?): every refresh would be refused; set it again",
        rotation.threshold,
        output::natural_list(&rotation.nodes),
        approved.threshold,
        output::natural_list(&approved.nodes)
    );
    Ok(())
}

/// `permafrost keys rotation show --key ID`: the `rotation` of the key's record (JSON `null`
/// when it has none).
pub async fn show_rotation(
    target: &Target,
    key_id: &str,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let key = target.client()?.key(key_id).await?;
    output::print(format, &key.rotation, |_| output::rotation(&key))
}

/// `permafrost keys rotation clear --key ID`.
pub async fn clear_rotation(
    target: &Target,
    key_id: &str,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let key = target.client()?.clear_rotation(key_id).await?;
    output::print(format, &key, output::rotation)
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

/// Where `sign` takes the message from: exactly one of `--message HEX` and
/// `--message-file PATH` (`-`: standard input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSource {
    /// `--message`: the bytes in hex.
    Hex(String),
    /// `--message-file PATH`: the file's bytes, as they are.
    File(PathBuf),
    /// `--message-file -`: standard input's bytes, as they are.
    Stdin,
}

impl MessageSource {
    /// The source `--message` or `--message-file` names; an error unless exactly one is given.
    pub fn from_args(hex: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Self> {
        match (hex, file) {
            (Some(hex), None) => Ok(MessageSource::Hex(hex)),
            (None, Some(file)) if file.as_os_str() == "-" => Ok(MessageSource::Stdin),
            (None, Some(file)) => Ok(MessageSource::File(file)),
            _ => anyhow::bail!("give the message with exactly one of --message and --message-file"),
        }
    }

    /// The message's bytes: decoded from hex, or read from the file or standard input, never
    /// more than the API's limit of [`MAX_SIGN_MESSAGE_LEN`] bytes (a longer one is an error
    /// before anything is approved or sent).
    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        let message = match self {
            MessageSource::Hex(hex) => decode_hex("message", hex)?,
            MessageSource::File(path) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot open the message file {}", path.display()))?;
                read_capped(file).with_context(|| format!("cannot read {}", self.name()))?
            }
            MessageSource::Stdin => read_capped(std::io::stdin().lock())
                .with_context(|| format!("cannot read {}", self.name()))?,
        };
        anyhow::ensure!(
            message.len() <= MAX_SIGN_MESSAGE_LEN,
            "the message from {} is longer than {MAX_SIGN_MESSAGE_LEN} bytes, the API's limit: \
             nothing was approved or sent",
            self.name()
        );
        Ok(message)
    }

    /// Where the message comes from, for errors.
    fn name(&self) -> String {
        match self {
            MessageSource::Hex(_) => "--message".to_owned(),
            MessageSource::File(path) => path.display().to_string(),
            MessageSource::Stdin => "standard input".to_owned(),
        }
    }
}

/// Reads `reader` to its end, but no more than one byte past the message limit.
fn read_capped(reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    reader
        .take(MAX_SIGN_MESSAGE_LEN as u64 + 1)
        .read_to_end(&mut message)?;
    Ok(message)
}

/// `permafrost sign --key ID (--message HEX | --message-file PATH|-) [--path PATH]
/// [--client-key FILE [--network-id ID] [--public-key HEX]]`. With a client key, the key's
/// group public key and the network id the approval covers come from `GET /v1/keys/{id}`,
/// checked against the pinned ones if given.
pub async fn sign(
    target: &Target,
    key_id: &str,
    path: &DerivationPath,
    source: &MessageSource,
    approver: Option<Approver<'_>>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let message = source.read()?;
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
            client
                .sign_key_as(&client_key, &key, path, &message)
                .await?
        }
        None => client.sign_at(key_id, path, &message).await?,
    };
    output::print(format, &answer, output::signature)
}

/// The public key of a client or operator key, as `client-key|operator-key create|show`
/// print it.
#[derive(Serialize)]
struct KeyFileInfo {
    file: String,
    public_key: String,
}

impl KeyFileInfo {
    fn print(key: &ClientKey, file: &Path, format: Format) -> anyhow::Result<ExitCode> {
        let info = KeyFileInfo {
            file: file.display().to_string(),
            public_key: key.public_hex(),
        };
        output::print(format, &info, |info| {
            format!("{}: public key {}\n", info.file, info.public_key)
        })
    }
}

/// `permafrost client-key|operator-key create --file FILE`.
pub fn create_key_file(file: &Path, format: Format) -> anyhow::Result<ExitCode> {
    KeyFileInfo::print(&ClientKey::create_file(file)?, file, format)
}

/// `permafrost client-key|operator-key show --file FILE`.
pub fn show_key_file(file: &Path, format: Format) -> anyhow::Result<ExitCode> {
    KeyFileInfo::print(&ClientKey::load(file)?, file, format)
}

/// `permafrost reshare --key ID --threshold T --nodes a,b,c [--operator-key FILE …]`: with
/// operator keys, the CLI reads the key's current epoch and public key package digest and signs
/// the reshare with each key. While the reshare runs, progress on standard error.
pub async fn reshare(
    target: &Target,
    key_id: &str,
    threshold: u16,
    nodes: Vec<String>,
    operator_keys: &[PathBuf],
    format: Format,
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
    let progress = Progress::on_stderr();
    progress.step(format!(
        "resharing key {key_id} to {threshold} of {}: waiting for the commit",
        output::natural_list(&nodes)
    ));
    let started = Instant::now();
    let request = ReshareRequest {
        threshold,
        nodes,
        approvals,
    };
    let key = client.reshare(key_id, &request).await?;
    progress.line(format!(
        "key {key_id} reshared: epoch {} committed in {:.1} s",
        key.epoch,
        started.elapsed().as_secs_f64()
    ));
    progress.finish();
    output::print(format, &key, |key| output::key_record("reshared key", key))
}

/// `permafrost health`.
pub async fn health(target: &Target, format: Format) -> anyhow::Result<ExitCode> {
    let health = target.client()?.health().await?;
    output::print(format, &health, output::health_table)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn refused(source: &MessageSource) -> String {
        match source.read() {
            Ok(message) => panic!("read {} bytes", message.len()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn the_message_is_one_of_hex_a_file_or_standard_input() {
        assert_eq!(
            MessageSource::from_args(Some("00ff".into()), None).unwrap(),
            MessageSource::Hex("00ff".into())
        );
        assert_eq!(
            MessageSource::from_args(None, Some("-".into())).unwrap(),
            MessageSource::Stdin
        );
        assert_eq!(
            MessageSource::from_args(None, Some("m.bin".into())).unwrap(),
            MessageSource::File("m.bin".into())
        );
        for (hex, file) in [
            (None, None),
            (Some("00".to_owned()), Some(PathBuf::from("-"))),
        ] {
            let error = MessageSource::from_args(hex, file).unwrap_err().to_string();
            assert!(error.contains("exactly one of"), "{error}");
        }
    }

    #[test]
    fn a_message_file_is_read_as_bytes_up_to_the_api_limit() {
        let tmp = tempfile::tempdir().unwrap();
        // Not UTF-8, with a NUL and a trailing newline: the bytes are signed as they are.
        let binary: Vec<u8> = (0..=255u8).chain([b'\n']).collect();
        let path = tmp.path().join("binary");
        std::fs::write(&path, &binary).unwrap();
        assert_eq!(MessageSource::File(path).read().unwrap(), binary);

        let path = tmp.path().join("largest");
        std::fs::write(&path, vec![7u8; MAX_SIGN_MESSAGE_LEN]).unwrap();
        assert_eq!(
            MessageSource::File(path).read().unwrap().len(),
            MAX_SIGN_MESSAGE_LEN
        );

        let path = tmp.path().join("too-long");
        std::fs::write(&path, vec![7u8; MAX_SIGN_MESSAGE_LEN + 1]).unwrap();
        let error = refused(&MessageSource::File(path.clone()));
        assert!(
            error.contains(&path.display().to_string())
                && error.contains("longer than 65536 bytes")
                && error.contains("nothing was approved or sent"),
            "{error}"
        );

        let error = refused(&MessageSource::File(tmp.path().join("missing")));
        assert!(error.contains("cannot open the message file"), "{error}");
    }

    #[test]
    fn a_hex_message_is_decoded_and_capped_too() {
        assert_eq!(
            MessageSource::Hex("00ff10".into()).read().unwrap(),
            [0x00, 0xff, 0x10]
        );
        let error = refused(&MessageSource::Hex("zz".into()));
        assert!(error.contains("message"), "{error}");
        let error = refused(&MessageSource::Hex("ab".repeat(MAX_SIGN_MESSAGE_LEN + 1)));
        assert!(error.contains("from --message is longer than"), "{error}");
    }

    fn key(threshold: u16, nodes: &[&str]) -> KeyRecord {
        KeyRecord {
            key_id: "k-1".into(),
            curve: Curve::Ed25519,
            public_key: "ab".repeat(32),
            network_id: "n".into(),
            threshold,
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            epoch: 0,
            public_key_package_digest: "cd".repeat(32),
            chain_code: "ef".repeat(32),
            xpub: None,
            rotation: None,
        }
    }

    #[test]
    fn a_policy_recorded_for_another_committee_than_approved_is_an_error() {
        let approved = key(2, &["node1", "node2", "node3"]);
        let mut recorded = approved.clone();
        let error = same_committee(&approved, &recorded)
            .unwrap_err()
            .to_string();
        assert!(error.contains("without the rotation policy"), "{error}");
        recorded.rotation = Some(permafrost_api::RotationRecord {
            every_secs: 3_600,
            last_ms: None,
            next_ms: 0,
            threshold: 2,
            // The same members in another order: the same committee.
            nodes: vec!["node3".into(), "node1".into(), "node2".into()],
        });
        same_committee(&approved, &recorded).unwrap();
        let mut other = recorded.clone();
        if let Some(rotation) = other.rotation.as_mut() {
            rotation.threshold = 3;
        }
        let error = same_committee(&approved, &other).unwrap_err().to_string();
        assert!(
            error.contains("keeping 3 of [node1, node2, node3]")
                && error.contains("approved 2 of [node1, node2, node3]"),
            "{error}"
        );
        if let Some(rotation) = recorded.rotation.as_mut() {
            rotation.nodes.pop();
        }
        assert!(same_committee(&approved, &recorded).is_err());
    }

    #[test]
    fn reading_stops_one_byte_past_the_limit() {
        let read = read_capped(std::io::repeat(1)).unwrap();
        assert_eq!(read.len(), MAX_SIGN_MESSAGE_LEN + 1);
    }
}
