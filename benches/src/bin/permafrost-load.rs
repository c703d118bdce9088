//! `permafrost-load`: the end-to-end load tool. Against a running network (a localnet's
//! `localnet.json`, or `--api`/`--token`), for each curve: times one DKG, then sends
//! `--requests` sign requests (`--concurrency` at a time) through the HTTP API, verifies every
//! signature independently, and prints median, p99 and throughput.
//!
//! ```sh
//! permafrost localnet up --nodes 5 --dir /tmp/pf &
//! cargo run --release -p permafrost-benches --bin permafrost-load -- --localnet /tmp/pf --requests 200
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use permafrost_api::{Client, CreateKeyRequest, LocalnetInfo};
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
    Ok(())
}
