//! `permafrost-load`: the end-to-end load tool. Against a running network (a localnet's
//! `localnet.json`, or `--api`/`--token`), for each curve: times one DKG, then sends
//! `--requests` sign requests (`--concurrency` at a time) through the HTTP API, verifies every
//! signature independently, and prints median, p99 and throughput. With `--reshares N`, it
//! also times N reshares per curve of a fresh key held by all nodes but the last with the
//! given threshold t, to every node with t + 1 ((3,5) → (4,6) on a 6-node localnet), checking
//! the public key is unchanged and the new epoch signs.
//!
//! ```sh
//! permafrost localnet up --nodes 5 --dir /tmp/pf &
//! cargo run --release -p permafrost-benches --bin permafrost-load -- --localnet /tmp/pf --requests 200
//! permafrost localnet up --nodes 6 --dir /tmp/pf6 &
//! cargo run --release -p permafrost-benches --bin permafrost-load -- --localnet /tmp/pf6 --requests 0 --reshares 5
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use permafrost_api::{Client, CreateKeyRequest, LocalnetInfo, ReshareRequest};
use permafrost_verifiers::Curve;

#[derive(Parser)]
#[command(
    name = "permafrost-load",
    about = "End-to-end latency of DKG and signing through the HTTP API"
)]
struct Args {
    /// A localnet directory (reads localnet.json for the API and token).
    #[arg(long)]
    localnet: Option<PathBuf>,
    /// API base URL (without --localnet).
    #[arg(long, env = "PERMAFROST_API")]
    api: Option<String>,
    /// Bearer token (without --localnet).
    #[arg(long, env = "PERMAFROST_TOKEN")]
    token: Option<String>,
    /// Threshold of the keys created.
    #[arg(long, default_value_t = 3)]
    threshold: u16,
    /// Sign requests per curve.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Reshares to time per curve: (t, n−1) → (t+1, n), each of a fresh key.
    #[arg(long, default_value_t = 0)]
    reshares: usize,
}

/// Times `count` reshares of fresh keys from the first n−1 nodes with `threshold` to all n
/// nodes with `threshold + 1`; each reshared key must keep its public key and sign.
async fn time_reshares(
    client: &Client,
    curve: Curve,
    nodes: &[String],
    threshold: u16,
    count: usize,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let key = client
            .create_key(&CreateKeyRequest {
                curve,
                threshold,
                nodes: Some(nodes[..nodes.len() - 1].to_vec()),
                key_id: None,
                approvals: Vec::new(),
            })
            .await
            .context("DKG before the reshare failed")?;
        let started = Instant::now();
        let reshared = client
            .reshare(
                &key.key_id,
                &ReshareRequest {
                    threshold: threshold + 1,
                    nodes: nodes.to_vec(),
                    approvals: Vec::new(),
                },
            )
            .await
            .with_context(|| format!("reshare {i} failed"))?;
        times.push(started.elapsed());
        if reshared.public_key != key.public_key {
            bail!("reshare {i} changed the public key");
        }
        let message = format!("after reshare {i}");
        let signed = client.sign(&key.key_id, message.as_bytes()).await?;
        let public_key = hex::decode(&key.public_key)?;
        let signature = hex::decode(&signed.signature)?;
        permafrost_verifiers::verify(curve, &public_key, message.as_bytes(), &signature)
            .with_context(|| format!("signature after reshare {i} does not verify"))?;
    }
    times.sort();
    Ok(times)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn sign_all(
    client: &Client,
    key_id: &str,
    public_key: &[u8],
    curve: Curve,
    args: &Args,
) -> Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(args.requests);
    let mut next = 0usize;
    while next < args.requests {
        let batch: Vec<usize> = (next..(next + args.concurrency).min(args.requests)).collect();
        next += batch.len();
        let tasks = batch.into_iter().map(|i| {
            let client = client.clone();
            let key_id = key_id.to_owned();
            async move {
                let message = format!("load {curve} {i}").into_bytes();
                let t = Instant::now();
                let answer = client.sign(&key_id, &message).await;
                (message, t.elapsed(), answer)
            }
        });
        for (message, elapsed, answer) in futures_join(tasks).await {
            let answer = answer.context("sign request failed")?;
            let signature = hex::decode(&answer.signature)?;
            permafrost_verifiers::verify(curve, public_key, &message, &signature)
                .map_err(|e| anyhow::anyhow!("signature failed independent verification: {e}"))?;
            latencies.push(elapsed);
        }
    }
    Ok((latencies, started.elapsed()))
}

/// Runs the futures as tasks and collects what they return.
async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (api, token) = match &args.localnet {
        Some(dir) => {
            let text = std::fs::read(dir.join("localnet.json")).context("reading localnet.json")?;
            let info: LocalnetInfo = serde_json::from_slice(&text)?;
            (info.api, info.token)
        }
        None => match (&args.api, &args.token) {
            (Some(a), Some(t)) => (a.clone(), t.clone()),
            _ => bail!("give --localnet DIR, or --api and --token"),
        },
    };
    let client = Client::new(api, token)?;
    let health = client.health().await?;
    let nodes = health.nodes.len();
    println!(
        "network: {nodes} nodes, {} connected",
        health.nodes.iter().filter(|n| n.connected).count()
    );
    println!(
        "{:<13} {:>9} {:>10} {:>10} {:>10} {:>9}",
        "curve", "DKG ms", "sign p50", "sign p99", "sign max", "sig/s"
    );
    for curve in Curve::ALL {
        let t = Instant::now();
        let key = client
            .create_key(&CreateKeyRequest {
                curve,
                threshold: args.threshold,
                nodes: None,
                key_id: None,
                approvals: Vec::new(),
            })
            .await
            .context("DKG failed")?;
        let dkg = t.elapsed();
        let public_key = hex::decode(&key.public_key)?;
        let (mut latencies, total) =
            sign_all(&client, &key.key_id, &public_key, curve, &args).await?;
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:<13} {:>9.1} {:>10.2} {:>10.2} {:>10.2} {:>9.1}",
            curve.as_str(),
            ms(dkg),
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 99.0)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
            latencies.len() as f64 / total.as_secs_f64()
        );
    }
    println!("({} requests per curve, concurrency {}, threshold {} of {nodes}; every signature verified independently)", args.requests, args.concurrency, args.threshold);
    if args.reshares > 0 {
        let names: Vec<String> = health.nodes.iter().map(|n| n.name.clone()).collect();
        println!();
        println!(
            "reshare ({},{}) -> ({},{}), {} per curve:",
            args.threshold,
            nodes - 1,
            args.threshold + 1,
            nodes,
            args.reshares
        );
        println!(
            "{:<13} {:>10} {:>10} {:>10}",
            "curve", "p50 ms", "min ms", "max ms"
        );
        for curve in Curve::ALL {
            let times =
                time_reshares(&client, curve, &names, args.threshold, args.reshares).await?;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "{:<13} {:>10.1} {:>10.1} {:>10.1}",
                curve.as_str(),
                ms(percentile(&times, 50.0)),
                ms(*times.first().unwrap_or(&Duration::ZERO)),
                ms(*times.last().unwrap_or(&Duration::ZERO))
            );
        }
    }
    Ok(())
}
