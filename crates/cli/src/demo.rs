//! `permafrost demo`: the key life cycle on a fresh 6-node localnet.
//!
//! For every curve: a DKG for a 3-of-5 key on node1..node5, three signatures; then a reshare
//! that evicts node5, brings in node6 and raises the threshold to 4 (4-of-5), and three more
//! signatures from the new committee. Every signature is approved by the localnet's client key
//! (`D/client.key`, which every node lists), and a request approved by a key no node lists
//! must be refused by the nodes (403). Every signature is checked with `permafrost_verifiers`
//! (standard, non-FROST verifiers) against the one public key, which the reshare must not
//! change. Reports each step as progress on standard error, then prints a table on standard
//! output, and exits 0 only if every step succeeded and every signature verified.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use permafrost_api::{
    codes, decode_hex, ApiError, Client, ClientKey, CreateKeyRequest, Curve, DerivationPath,
    KeyRecord, ReshareRequest,
};

use crate::localnet::Localnet;
use crate::output::{natural_list, Align, Table};
use crate::progress::Progress;
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
    let progress = Progress::on_stderr();
    let dir = tempfile::Builder::new()
        .prefix("permafrost-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    progress.line(format!(
        "Starting a localnet of {NODES} nodes and a coordinator in {}",
        dir.path().display()
    ));
    let started = Instant::now();
    let localnet = Localnet::start(dir.path(), NODES, 0, true, &shutdown, &progress).await?;
    progress.line(format!(
        "All {NODES} nodes connected in {} ms (API {})",
        started.elapsed().as_millis(),
        localnet.info().api
    ));

    let approver = ClientKey::load(&dir.path().join(crate::localnet::CLIENT_KEY))?;
    let outcome = tokio::select! {
        outcome = exercise(&localnet, &approver, &progress) => outcome,
        () = shutdown.wait() => Err(anyhow::anyhow!("interrupted")),
    };
    progress.step("stopping the localnet");
    localnet.stop().await;
    drop(dir);
    progress.finish();

    let reports = outcome?;
    print!("{}", table(&reports));
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

async fn exercise(
    localnet: &Localnet,
    approver: &ClientKey,
    progress: &Progress,
) -> anyhow::Result<Vec<CurveOutcome>> {
    let client = Client::from_localnet(localnet.info())?;
    let mut reports = Vec::new();
    for curve in Curve::ALL {
        let report = exercise_curve(&client, approver, curve, progress)
            .await
            .map_err(|e| (curve, e));
        if let Err((_, e)) = &report {
            progress.line(format!("{curve}: FAILED: {e:#}"));
        }
        reports.push(report);
    }
    Ok(reports)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

async fn exercise_curve(
    client: &Client,
    approver: &ClientKey,
    curve: Curve,
    progress: &Progress,
) -> anyhow::Result<CurveReport> {
    let request = CreateKeyRequest {
        curve,
        threshold: THRESHOLD,
        nodes: Some(names(FIRST_COMMITTEE)),
        key_id: None,
        approvals: Vec::new(),
    };
    progress.step(format!(
        "{curve}: DKG of a {THRESHOLD}-of-{} key",
        FIRST_COMMITTEE.len()
    ));
    let started = Instant::now();
    let key = client.create_key(&request).await.context("DKG")?;
    let dkg = started.elapsed();
    progress.line(format!(
        "{curve}: {}-of-{} key on {} created in {} ms, public key {}",
        key.threshold,
        key.nodes.len(),
        natural_list(&key.nodes),
        dkg.as_millis(),
        key.public_key
    ));
    let mut report = CurveReport {
        curve,
        public_key: key.public_key.clone(),
        dkg,
        reshare: Duration::ZERO,
        signs: Vec::new(),
        verified: 0,
    };
    sign_epoch(client, approver, &key, &mut report, progress).await?;
    progress.step(format!(
        "{curve}: a request approved by an unknown client key"
    ));
    refused_without_approval(client, &key, progress).await?;

    progress.step(format!(
        "{curve}: resharing to {RESHARED_THRESHOLD}-of-{}, waiting for the commit",
        SECOND_COMMITTEE.len()
    ));
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
    progress.line(format!(
        "{curve}: reshared in {} ms to {}-of-{} on {} (node5 evicted), epoch {}, same public key",
        report.reshare.as_millis(),
        reshared.threshold,
        reshared.nodes.len(),
        natural_list(&reshared.nodes),
        reshared.epoch
    ));
    sign_epoch(client, approver, &reshared, &mut report, progress).await?;
    Ok(report)
}

/// A request approved by a client key no node lists must be refused by the nodes themselves
/// (the coordinator forwards it): 403 `client_not_authorized`.
async fn refused_without_approval(
    client: &Client,
    key: &KeyRecord,
    progress: &Progress,
) -> anyhow::Result<()> {
    let stranger = ClientKey::generate();
    match client
        .sign_key_as(
            &stranger,
            key,
            &DerivationPath::ROOT,
            b"pay everything to mallory",
        )
        .await
    {
        Err(ApiError::Http {
            status: 403, code, ..
        }) if code == codes::CLIENT_NOT_AUTHORIZED => {
            progress.line(format!(
                "{}: a request approved by an unknown client key: refused by the nodes (403 {code})",
                key.curve
            ));
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
    progress: &Progress,
) -> anyhow::Result<()> {
    let curve = key.curve;
    let public_key = decode_hex("public_key", &key.public_key)?;
    for i in 1..=SIGNATURES {
        let message = format!("demo settlement {curve} epoch {} #{i}", key.epoch);
        progress.step(format!(
            "{curve}: signature {i} of {SIGNATURES} at epoch {}",
            key.epoch
        ));
        let started = Instant::now();
        let signed = client
            .sign_key_as(approver, key, &DerivationPath::ROOT, message.as_bytes())
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
        progress.line(format!(
            "  epoch {} signature {i}: {:>4} ms, signers {}, verified ({})",
            key.epoch,
            elapsed.as_millis(),
            natural_list(&signed.signers),
            standard(curve)
        ));
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

/// The demo's result: one row per curve.
fn table(reports: &[CurveOutcome]) -> String {
    let mut table = Table::new(&[
        ("curve", Align::Left),
        ("DKG ms", Align::Right),
        ("reshare ms", Align::Right),
        ("sign ms median", Align::Right),
        ("verified", Align::Left),
        ("public key (unchanged by the reshare)", Align::Left),
    ]);
    for report in reports {
        match report {
            Ok(r) => table.row(vec![
                r.curve.as_str().to_owned(),
                r.dkg.as_millis().to_string(),
                r.reshare.as_millis().to_string(),
                median(&r.signs).as_millis().to_string(),
                format!("yes {}/{}", r.verified, 2 * SIGNATURES),
                r.public_key.clone(),
            ]),
            Err((curve, _)) => table.row(vec![curve.as_str().to_owned(), "FAILED".to_owned()]),
        }
    }
    table.render()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_curve_and_marks_failures() {
        let ms = Duration::from_millis;
        let reports: Vec<CurveOutcome> = vec![
            Ok(CurveReport {
                curve: Curve::Ed25519,
                public_key: "ab".repeat(32),
                dkg: ms(1234),
                reshare: ms(2345),
                signs: vec![ms(30), ms(10), ms(20), ms(50), ms(40), ms(60)],
                verified: 2 * SIGNATURES,
            }),
            Err((Curve::Secp256k1, anyhow::anyhow!("DKG failed"))),
        ];
        let text = table(&reports);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("curve"), "{text}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "ed25519",
                "1234",
                "2345",
                "40",
                "yes",
                "6/6",
                &"ab".repeat(32)
            ]
        );
        assert_eq!(lines[2], "secp256k1  FAILED");
    }
}
