//! `permafrost demo`: the key life cycle on a fresh 5-node localnet.
//!
//! For every curve: a DKG for a 3-of-5 key, three signatures, each checked with
//! `permafrost_verifiers` (standard, non-FROST verifiers) against the key's public key.
//! Prints a table and exits 0 only if every step succeeded and every signature verified.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use permafrost_api::{decode_hex, Client, CreateKeyRequest, Curve};

use crate::localnet::Localnet;
use crate::shutdown::Shutdown;

/// Nodes in the demo's localnet.
const NODES: usize = 5;
/// The demo keys' threshold.
const THRESHOLD: u16 = 3;
/// Signatures per key.
const SIGNATURES: usize = 3;

/// What the demo did with one curve.
struct CurveReport {
    curve: Curve,
    public_key: String,
    dkg: Duration,
    signs: Vec<Duration>,
    /// Signers of each signature (all have at least t).
    signers: Vec<usize>,
    /// Committee size.
    nodes: usize,
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
    let localnet = Localnet::start(dir.path(), NODES, 0, &shutdown).await?;
    println!(
        "All {NODES} nodes connected in {} ms (API {})",
        started.elapsed().as_millis(),
        localnet.info().api
    );
    println!();

    let outcome = tokio::select! {
        outcome = exercise(&localnet) => outcome,
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
            "All {} signatures verified with standard verifiers (RFC 8032, RFC 9591, BIP-340).",
            Curve::ALL.len() * SIGNATURES
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

async fn exercise(localnet: &Localnet) -> anyhow::Result<Vec<CurveOutcome>> {
    let client = Client::from_localnet(localnet.info())?;
    let nodes: Vec<String> = localnet
        .info()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let mut reports = Vec::new();
    for curve in Curve::ALL {
        let report = exercise_curve(&client, curve, &nodes)
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

async fn exercise_curve(
    client: &Client,
    curve: Curve,
    nodes: &[String],
) -> anyhow::Result<CurveReport> {
    let request = CreateKeyRequest {
        curve,
        threshold: THRESHOLD,
        nodes: Some(nodes.to_vec()),
    };
    let started = Instant::now();
    let key = client.create_key(&request).await.context("DKG")?;
    let dkg = started.elapsed();
    println!(
        "{curve}: {}-of-{} key created in {} ms, public key {}",
        key.threshold,
        key.nodes.len(),
        dkg.as_millis(),
        key.public_key
    );
    let public_key = decode_hex("public_key", &key.public_key)?;
    let mut report = CurveReport {
        curve,
        public_key: key.public_key.clone(),
        dkg,
        signs: Vec::new(),
        signers: Vec::new(),
        nodes: key.nodes.len(),
        verified: 0,
    };
    for i in 1..=SIGNATURES {
        let message = format!("demo settlement {curve} #{i}");
        let started = Instant::now();
        let signed = client
            .sign(&key.key_id, message.as_bytes())
            .await
            .with_context(|| format!("signature {i}"))?;
        let elapsed = started.elapsed();
        report.signs.push(elapsed);
        if signed.public_key != key.public_key {
            bail!(
                "signature {i} names public key {} but the key is {}",
                signed.public_key,
                key.public_key
            );
        }
        let signature = decode_hex("signature", &signed.signature)?;
        permafrost_verifiers::verify(curve, &public_key, message.as_bytes(), &signature)
            .with_context(|| format!("signature {i} does not verify"))?;
        if signed.signers.len() < usize::from(THRESHOLD) {
            bail!("signature {i} has only {} signers", signed.signers.len());
        }
        report.verified += 1;
        report.signers.push(signed.signers.len());
        println!(
            "  signature {i}: {:>4} ms, signers {}, verified ({})",
            elapsed.as_millis(),
            signed.signers.join(","),
            standard(curve)
        );
    }
    Ok(report)
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
        "{:<13} {:>7} {:>14}  {:<8} {:<9} public key",
        "curve", "DKG ms", "sign ms median", "signers", "verified"
    );
    for report in reports {
        match report {
            Ok(r) => {
                let fewest = r.signers.iter().min().copied().unwrap_or_default();
                println!(
                    "{:<13} {:>7} {:>14}  {:<8} {:<9} {}",
                    r.curve.as_str(),
                    r.dkg.as_millis(),
                    median(&r.signs).as_millis(),
                    format!("{fewest} of {}", r.nodes),
                    format!("yes {}/{SIGNATURES}", r.verified),
                    r.public_key
                );
            }
            Err((curve, _)) => println!("{:<13} FAILED", curve.as_str()),
        }
    }
}
