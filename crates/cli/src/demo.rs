//! `permafrost demo`: the key life cycle on a fresh 6-node localnet.
//!
//! For every curve: a DKG for a 3-of-5 key on node1..node5, three signatures; then a reshare
//! that evicts node5, brings in node6 and raises the threshold to 4 (4-of-5), and three more
//! signatures from the new committee. Every signature is approved by the localnet's client key
//! (`D/client.key`, which every node lists), and a request approved by a key no node lists
//! must be refused by the nodes (403). Every signature is checked with `permafrost_verifiers`
//! (standard, non-FROST verifiers) against the one public key, which the reshare must not
//! change. Prints a table and exits 0 only if every step succeeded and every signature verified.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use permafrost_api::{
    codes, decode_hex, ApiError, Client, ClientKey, CreateKeyRequest, Curve, KeyRecord,
    ReshareRequest,
};

use crate::localnet::Localnet;
use crate::shutdown::Shutdown;

/// Nodes in the demo's localnet.
const NODES: usize = 6;
/// The demo keys' committee and threshold at creation: node1..node5, 3-of-5.
const FIRST_COMMITTEE: &[&str] = &["node1", "node2", "node3", "node4", "node5"];
const THRESHOLD: u16 = 3;
/// After the reshare: node5 evicted, node6 in, 4-of-5.
const SECOND_COMMITTEE: &[&str] = &["node1", "node2", "node3", "node4", "node6"];
const RESHARED_THRESHOLD: u16 = 4;
/// Signatures per epoch.
const SIGNATURES: usize = 3;

/// What the demo did with one curve.
struct CurveReport {
    curve: Curve,
    public_key: String,
    dkg: Duration,
    reshare: Duration,
    signs: Vec<Duration>,
    verified: usize,
}

/// `permafrost demo`.
pub async fn run() -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::on_signals()?;
    let dir = tempfile::Builder::new()
        .prefix("permafrost-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    println!(
        "Starting a localnet of {NODES} nodes and a coordinator in {}",
        dir.path().display()
    );
    let started = Instant::now();
    let localnet = Localnet::start(dir.path(), NODES, 0, true, &shutdown).await?;
    println!(
        "All {NODES} nodes connected in {} ms (API {})",
        started.elapsed().as_millis(),
        localnet.info().api
    );
    println!();

    let approver = ClientKey::load(&dir.path().join(crate::localnet::CLIENT_KEY))?;
    let outcome = tokio::select! {
        outcome = exercise(&localnet, &approver) => outcome,
        () = shutdown.wait() => Err(anyhow::anyhow!("interrupted")),
    };
    localnet.stop().await;
    drop(dir);

    let reports = outcome?;
    print_table(&reports);
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| r.as_ref().err().map(|(curve, e)| format!("{curve}: {e:#}")))
        .collect();
    println!();
    if failures.is_empty() {
        println!(
            "All {} signatures, before and after the reshare, verified with standard verifiers \
             (RFC 8032, RFC 9591, BIP-340) under unchanged public keys.",
            Curve::ALL.len() * 2 * SIGNATURES
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for failure in &failures {
            eprintln!("error: {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

type CurveOutcome = Result<CurveReport, (Curve, anyhow::Error)>;

async fn exercise(localnet: &Localnet, approver: &ClientKey) -> anyhow::Result<Vec<CurveOutcome>> {
    let client = Client::from_localnet(localnet.info())?;
    let mut reports = Vec::new();
    for curve in Curve::ALL {
        let report = exercise_curve(&client, approver, curve)
            .await
            .map_err(|e| (curve, e));
        if let Err((_, e)) = &report {
            println!("{curve}: FAILED: {e:#}");
        }
        reports.push(report);
    }
    println!();
    Ok(reports)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

async fn exercise_curve(
    client: &Client,
    approver: &ClientKey,
    curve: Curve,
) -> anyhow::Result<CurveReport> {
    let request = CreateKeyRequest {
        curve,
        threshold: THRESHOLD,
        nodes: Some(names(FIRST_COMMITTEE)),
        key_id: None,
        approvals: Vec::new(),
    };
    let started = Instant::now();
    let key = client.create_key(&request).await.context("DKG")?;
    let dkg = started.elapsed();
    println!(
        "{curve}: {}-of-{} key on {} created in {} ms, public key {}",
        key.threshold,
        key.nodes.len(),
        key.nodes.join(","),
        dkg.as_millis(),
        key.public_key
    );
    let mut report = CurveReport {
        curve,
        public_key: key.public_key.clone(),
        dkg,
        reshare: Duration::ZERO,
        signs: Vec::new(),
        verified: 0,
    };
    sign_epoch(client, approver, &key, &mut report).await?;
    refused_without_approval(client, &key).await?;

    let started = Instant::now();
    let reshared = client
        .reshare(
            &key.key_id,
            &ReshareRequest {
                threshold: RESHARED_THRESHOLD,
                nodes: names(SECOND_COMMITTEE),
                approvals: Vec::new(),
            },
        )
        .await
        .context("reshare")?;
    report.reshare = started.elapsed();
    if reshared.public_key != key.public_key {
        bail!(
            "the reshare changed the public key from {} to {}",
            key.public_key,
            reshared.public_key
        );
    }
    println!(
        "{curve}: reshared in {} ms to {}-of-{} on {} (node5 evicted), epoch {}, same public key",
        report.reshare.as_millis(),
        reshared.threshold,
        reshared.nodes.len(),
        reshared.nodes.join(","),
        reshared.epoch
    );
    sign_epoch(client, approver, &reshared, &mut report).await?;
    Ok(report)
}

/// A request approved by a client key no node lists must be refused by the nodes themselves
/// (the coordinator forwards it): 403 `client_not_authorized`.
async fn refused_without_approval(client: &Client, key: &KeyRecord) -> anyhow::Result<()> {
    let stranger = ClientKey::generate();
    match client
        .sign_key_as(&stranger, key, b"pay everything to mallory")
        .await
    {
        Err(ApiError::Http {
            status: 403, code, ..
        }) if code == codes::CLIENT_NOT_AUTHORIZED => {
            println!(
                "{}: a request approved by an unknown client key: refused by the nodes (403 {code})",
                key.curve
            );
            Ok(())
        }
        Ok(_) => bail!("the nodes signed a request no accepted client approved"),
        Err(e) => bail!("a request no accepted client approved: expected 403, got {e}"),
    }
}

/// Signs [`SIGNATURES`] messages approved by `approver` with `key` as it stands, checking each signature with a
/// standard verifier, the epoch, the public key and that the signers are t members.
async fn sign_epoch(
    client: &Client,
    approver: &ClientKey,
    key: &KeyRecord,
    report: &mut CurveReport,
) -> anyhow::Result<()> {
    let curve = key.curve;
    let public_key = decode_hex("public_key", &key.public_key)?;
    for i in 1..=SIGNATURES {
        let message = format!("demo settlement {curve} epoch {} #{i}", key.epoch);
        let started = Instant::now();
        let signed = client
            .sign_key_as(approver, key, message.as_bytes())
            .await
            .with_context(|| format!("signature {i} at epoch {}", key.epoch))?;
        let elapsed = started.elapsed();
        report.signs.push(elapsed);
        if signed.public_key != key.public_key || signed.epoch != key.epoch {
            bail!(
                "signature {i} names public key {} at epoch {}, expected {} at epoch {}",
                signed.public_key,
                signed.epoch,
                key.public_key,
                key.epoch
            );
        }
        let signature = decode_hex("signature", &signed.signature)?;
        permafrost_verifiers::verify(curve, &public_key, message.as_bytes(), &signature)
            .with_context(|| format!("signature {i} does not verify"))?;
        if signed.signers.len() < usize::from(key.threshold)
            || !signed.signers.iter().all(|s| key.nodes.contains(s))
        {
            bail!(
                "signature {i} signed by {:?}, not {} of {:?}",
                signed.signers,
                key.threshold,
                key.nodes
            );
        }
        report.verified += 1;
        println!(
            "  epoch {} signature {i}: {:>4} ms, signers {}, verified ({})",
            key.epoch,
            elapsed.as_millis(),
            signed.signers.join(","),
            standard(curve)
        );
    }
    Ok(())
}

/// The standard a curve's signatures follow.
fn standard(curve: Curve) -> &'static str {
    match curve {
        Curve::Ed25519 => "RFC 8032",
        Curve::Secp256k1 => "RFC 9591",
        Curve::Secp256k1Tr => "BIP-340",
    }
}

fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn print_table(reports: &[CurveOutcome]) {
    println!(
        "{:<13} {:>7} {:>11} {:>14}  {:<9} public key (unchanged by the reshare)",
        "curve", "DKG ms", "reshare ms", "sign ms median", "verified"
    );
    for report in reports {
        match report {
            Ok(r) => {
                println!(
                    "{:<13} {:>7} {:>11} {:>14}  {:<9} {}",
                    r.curve.as_str(),
                    r.dkg.as_millis(),
                    r.reshare.as_millis(),
                    median(&r.signs).as_millis(),
                    format!("yes {}/{}", r.verified, 2 * SIGNATURES),
                    r.public_key
                );
            }
            Err((curve, _)) => println!("{:<13} FAILED", curve.as_str()),
        }
    }
}
