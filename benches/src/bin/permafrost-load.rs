//! `permafrost-load`: the end-to-end load tool. Against a running network (a localnet's
//! `localnet.json`, or `--api`/`--token`), for each curve (or those given with `--curve`):
//! times one DKG, then sends `--requests` sign requests through the HTTP API keeping
//! `--concurrency` in flight (or, with `--rate`, offering a fixed rate), verifies every
//! signature independently, and prints p50, p99, p99.9, throughput and the failed requests by
//! answer, beside the in-process cost of the same FROST operations; with `--localnet`, also the
//! CPU per signature summed over the localnet's processes (from /proc), the ratio of the two,
//! the nodes' disk growth per signature and the processes' peak RSS (docs/BENCHMARKS.md). With
//! `--dkgs N`, it also times N more DKGs per curve over every node, each key checked by one
//! signature. With `--reshares N`, it times N reshares per curve of a fresh key held by all
//! nodes but the last with the given threshold t, to every node with t + 1 ((3,5) → (4,6) on a
//! 6-node localnet), checking the public key is unchanged and the new epoch signs. Both run one
//! at a time, or `--lifecycle-concurrency K` at once, and report p50, p99, min, max, how many a
//! second, and (with `--localnet`) the CPU each one cost the localnet's processes.
//!
//! ```sh
//! permafrost localnet up --nodes 5 --dir /tmp/pf &
//! cargo run --release -p permafrost-benches --bin permafrost-load -- --localnet /tmp/pf --requests 200
//! cargo run --release -p permafrost-benches --bin permafrost-load -- --localnet /tmp/pf --requests 0 --dkgs 30
//! cargo run --release -p permafrost-benches --bin permafrost-load -- --localnet /tmp/pf --requests 0 --dkgs 100 --lifecycle-concurrency 4
//! permafrost localnet up --nodes 6 --dir /tmp/pf6 &
//! cargo run --release -p permafrost-benches --bin permafrost-load -- --localnet /tmp/pf6 --requests 0 --reshares 5
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use permafrost_api::{ApiError, Client, CreateKeyRequest, KeyRecord, LocalnetInfo, ReshareRequest};
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
    /// Offer a fixed rate instead: start this many requests per second whatever the answers
    /// (open loop; latency counted from each request's scheduled start, so a stalled network
    /// shows as latency, not as a lower rate). `--concurrency` then caps the requests in
    /// flight; a request that would exceed it is counted as failed ("over the in-flight cap").
    #[arg(long)]
    rate: Option<f64>,
    /// DKGs to time per curve (t of every node), after the signing run; each new key signs
    /// once, checked independently.
    #[arg(long, default_value_t = 0)]
    dkgs: usize,
    /// Reshares to time per curve: (t, n−1) → (t+1, n), each of a fresh key.
    #[arg(long, default_value_t = 0)]
    reshares: usize,
    /// DKGs (or reshares) in flight at once; above 1, the CPU per operation is the run's
    /// (the checking signatures, and a reshare's DKG, included) divided by the operations.
    #[arg(long, default_value_t = 1)]
    lifecycle_concurrency: usize,
    /// Only these curves (repeat the flag; all three by default).
    #[arg(long = "curve", value_parser = parse_curve)]
    curves: Vec<Curve>,
    /// Signatures measured in this process to price the FROST operations alone.
    #[arg(long, default_value_t = 500)]
    in_process: u32,
    /// Sign with the key's child at this path (`m/0/17`) instead of the key itself; each
    /// signature is checked under the child key the API derives.
    #[arg(long, default_value = "m")]
    path: permafrost_api::DerivationPath,
}

fn parse_curve(s: &str) -> Result<Curve, String> {
    Curve::ALL
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| format!("unknown curve {s:?} (ed25519, secp256k1, secp256k1-tr)"))
}

/// Latencies of a series of DKGs or reshares, sorted, and the CPU the localnet's processes
/// used during them: one at a time, each one's window summed (the signature that checks it
/// left out); several in flight, the whole run's.
struct Timed {
    times: Vec<Duration>,
    cpu: Option<Duration>,
    /// Wall time of a run with several in flight (one at a time: the latencies' sum).
    wall: Option<Duration>,
}

impl Timed {
    fn new(count: usize) -> Self {
        Timed {
            times: Vec::with_capacity(count),
            cpu: Some(Duration::ZERO),
            wall: None,
        }
    }

    /// Runs `count` operations, `in_flight` at once (a new one starts as one ends); each
    /// returns the latency of its timed part.
    async fn in_flight<F, Fut>(
        processes: Option<&Processes>,
        count: usize,
        in_flight: usize,
        operation: F,
    ) -> Result<Self>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<Duration>> + Send + 'static,
    {
        let mut timed = Timed::new(count);
        let cpu_before = processes.and_then(Processes::cpu_time);
        let started = Instant::now();
        let mut running = tokio::task::JoinSet::new();
        let mut next = 0;
        loop {
            while next < count && running.len() < in_flight.max(1) {
                running.spawn(operation(next));
                next += 1;
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            timed.times.push(done.context("a task panicked")??);
        }
        timed.wall = Some(started.elapsed());
        let cpu_after = processes.and_then(Processes::cpu_time);
        timed.cpu = match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        Ok(timed)
    }

    /// Runs `operation`, adding its latency and the CPU the processes used meanwhile.
    async fn time<T>(
        &mut self,
        processes: Option<&Processes>,
        operation: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let cpu_before = processes.and_then(Processes::cpu_time);
        let started = Instant::now();
        let out = operation.await?;
        self.times.push(started.elapsed());
        let cpu_after = processes.and_then(Processes::cpu_time);
        self.cpu = match (self.cpu, cpu_before, cpu_after) {
            (Some(sum), Some(a), Some(b)) => Some(sum + b.saturating_sub(a)),
            _ => None,
        };
        Ok(out)
    }

    /// One table row: p50, p99, min, max, operations per second, and the mean CPU per
    /// operation.
    fn row(mut self, curve: Curve) -> String {
        self.times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let wall = self.wall.unwrap_or_else(|| self.times.iter().sum());
        let per_second = self.times.len() as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE);
        let cpu = match self.cpu {
            Some(cpu) if !self.times.is_empty() => {
                format!("{:.1}", ms(cpu) / self.times.len() as f64)
            }
            _ => "-".into(),
        };
        format!(
            "{:<13} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8.1} {:>10}",
            curve.as_str(),
            ms(percentile(&self.times, 50.0)),
            ms(percentile(&self.times, 99.0)),
            ms(*self.times.first().unwrap_or(&Duration::ZERO)),
            ms(*self.times.last().unwrap_or(&Duration::ZERO)),
            per_second,
            cpu
        )
    }

    const HEADER: &'static str =
        "curve             p50 ms     p99 ms     min ms     max ms    per s    CPU ms";
}

/// Signs one message with `key_id` and checks the signature under `public_key` independently.
async fn check_signs(client: &Client, curve: Curve, key_id: &str, public_key: &str) -> Result<()> {
    let message = format!("check {key_id}");
    let signed = client.sign(key_id, message.as_bytes()).await?;
    let public_key = hex::decode(public_key)?;
    let signature = hex::decode(&signed.signature)?;
    permafrost_verifiers::verify(curve, &public_key, message.as_bytes(), &signature)
        .with_context(|| format!("a signature of key {key_id} does not verify"))?;
    Ok(())
}

/// Times `count` DKGs of `threshold` over every node, `in_flight` at once; each new key must
/// sign.
async fn time_dkgs(
    client: &Client,
    processes: Option<&Processes>,
    curve: Curve,
    threshold: u16,
    count: usize,
    in_flight: usize,
) -> Result<Timed> {
    let request = CreateKeyRequest {
        curve,
        threshold,
        nodes: None,
        key_id: None,
        approvals: Vec::new(),
    };
    if in_flight > 1 {
        return Timed::in_flight(processes, count, in_flight, |i| {
            let (client, request) = (client.clone(), request.clone());
            async move {
                let started = Instant::now();
                let key = dkg(&client, &request, i).await?;
                let latency = started.elapsed();
                check_signs(&client, curve, &key.key_id, &key.public_key).await?;
                Ok(latency)
            }
        })
        .await;
    }
    let mut timed = Timed::new(count);
    for i in 0..count {
        let key = timed.time(processes, dkg(client, &request, i)).await?;
        check_signs(client, curve, &key.key_id, &key.public_key).await?;
    }
    Ok(timed)
}

/// DKG number `i` of a series.
async fn dkg(client: &Client, request: &CreateKeyRequest, i: usize) -> Result<KeyRecord> {
    client
        .create_key(request)
        .await
        .with_context(|| format!("DKG {i} failed"))
}

/// Times `count` reshares of fresh keys from the first n−1 nodes with `threshold` to all n
/// nodes with `threshold + 1`, `in_flight` at once; each reshared key must keep its public
/// key and sign.
async fn time_reshares(
    client: &Client,
    processes: Option<&Processes>,
    curve: Curve,
    nodes: &[String],
    threshold: u16,
    count: usize,
    in_flight: usize,
) -> Result<Timed> {
    let series = Reshares {
        curve,
        old: CreateKeyRequest {
            curve,
            threshold,
            nodes: Some(nodes[..nodes.len() - 1].to_vec()),
            key_id: None,
            approvals: Vec::new(),
        },
        new: ReshareRequest {
            threshold: threshold + 1,
            nodes: nodes.to_vec(),
            approvals: Vec::new(),
        },
    };
    if in_flight > 1 {
        let series = std::sync::Arc::new(series);
        return Timed::in_flight(processes, count, in_flight, |i| {
            let (client, series) = (client.clone(), std::sync::Arc::clone(&series));
            async move {
                let key = series.fresh_key(&client).await?;
                let started = Instant::now();
                let reshared = series.reshare(&client, &key, i).await?;
                let latency = started.elapsed();
                series.check(&client, &key, &reshared, i).await?;
                Ok(latency)
            }
        })
        .await;
    }
    let mut timed = Timed::new(count);
    for i in 0..count {
        let key = series.fresh_key(client).await?;
        let reshared = timed
            .time(processes, series.reshare(client, &key, i))
            .await?;
        series.check(client, &key, &reshared, i).await?;
    }
    Ok(timed)
}

/// A series of reshares (t, n−1) → (t+1, n), each of a fresh key.
struct Reshares {
    curve: Curve,
    /// The DKG of each key reshared.
    old: CreateKeyRequest,
    /// The reshare.
    new: ReshareRequest,
}

impl Reshares {
    /// A fresh key to reshare.
    async fn fresh_key(&self, client: &Client) -> Result<KeyRecord> {
        client
            .create_key(&self.old)
            .await
            .context("DKG before the reshare failed")
    }

    /// Reshare number `i`, of `key`.
    async fn reshare(&self, client: &Client, key: &KeyRecord, i: usize) -> Result<KeyRecord> {
        client
            .reshare(&key.key_id, &self.new)
            .await
            .with_context(|| format!("reshare {i} failed"))
    }

    /// The reshared key kept its public key and signs.
    async fn check(
        &self,
        client: &Client,
        key: &KeyRecord,
        reshared: &KeyRecord,
        i: usize,
    ) -> Result<()> {
        if reshared.public_key != key.public_key {
            bail!("reshare {i} changed the public key");
        }
        check_signs(client, self.curve, &key.key_id, &key.public_key).await
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What a run of sign requests gave: the latencies of those that signed, and the failed ones
/// counted by their answer (HTTP status and code, or the transport error).
struct SignRun {
    latencies: Vec<Duration>,
    failures: BTreeMap<String, usize>,
    wall: Duration,
    /// Open loop only: how late this tool started each request after its due time (the
    /// latencies, counted from the due times, include it).
    late_starts: Vec<Duration>,
}

/// Sends `args.requests` sign requests keeping `args.concurrency` in flight (a new one starts
/// as soon as one ends), or, with `--rate`, starting them at that fixed rate. A failed request
/// is counted and the run goes on; a signature that does not verify independently ends it with
/// an error.
async fn sign_all(
    client: &Client,
    key_id: &str,
    public_key: &[u8],
    curve: Curve,
    args: &Args,
) -> Result<SignRun> {
    let started = Instant::now();
    let mut run = SignRun {
        latencies: Vec::with_capacity(args.requests),
        failures: BTreeMap::new(),
        wall: Duration::ZERO,
        late_starts: Vec::new(),
    };
    let mut in_flight = tokio::task::JoinSet::new();
    let mut next = 0usize;
    let spawn = |in_flight: &mut tokio::task::JoinSet<_>, i: usize, scheduled: Instant| {
        let (client, key_id, path) = (client.clone(), key_id.to_owned(), args.path.clone());
        in_flight.spawn(async move {
            let message = format!("load {curve} {i}").into_bytes();
            let answer = client.sign_at(&key_id, &path, &message).await;
            (message, scheduled.elapsed(), answer)
        });
    };
    let mut due_requests = match args.rate {
        Some(rate) if rate > 0.0 => Some(metronome(
            started,
            Duration::from_secs_f64(1.0 / rate),
            args.requests,
        )?),
        Some(rate) => bail!("--rate must be above 0, not {rate}"),
        None => None,
    };
    loop {
        let done = match due_requests.as_mut() {
            None => {
                while next < args.requests && in_flight.len() < args.concurrency.max(1) {
                    spawn(&mut in_flight, next, Instant::now());
                    next += 1;
                }
                in_flight.join_next().await
            }
            // Open loop: request i is due at started + i × interval, whatever the answers.
            Some(due_requests) => tokio::select! {
                due = due_requests.recv() => match due {
                    Some((i, due)) => {
                        if in_flight.len() < args.concurrency.max(1) {
                            run.late_starts.push(due.elapsed());
                            spawn(&mut in_flight, i, due);
                        } else {
                            *run.failures
                                .entry("over the in-flight cap".into())
                                .or_default() += 1;
                        }
                        continue;
                    }
                    // Every request started: the rest are answers.
                    None => in_flight.join_next().await,
                },
                done = in_flight.join_next(), if !in_flight.is_empty() => done,
            },
        };
        let Some(done) = done else {
            break;
        };
        let (message, elapsed, answer) = done.context("a sign task panicked")?;
        match answer {
            Ok(answer) => {
                let signature = hex::decode(&answer.signature)?;
                permafrost_verifiers::verify(curve, public_key, &message, &signature).map_err(
                    |e| anyhow::anyhow!("signature failed independent verification: {e}"),
                )?;
                run.latencies.push(elapsed);
            }
            Err(error) => {
                let kind = match &error {
                    ApiError::Http { status, code, .. } => format!("HTTP {status} {code}"),
                    other => other.to_string(),
                };
                *run.failures.entry(kind).or_default() += 1;
            }
        }
    }
    run.wall = started.elapsed();
    Ok(run)
}

/// The open loop's clock: a thread of its own sends each request's index and due time
/// (`started + i × interval`, for i below `count`) as it comes due. Not tokio's timer, which
/// rounds every wait up to its next millisecond: with it this tool started requests 0.4–1.5 ms
/// late at the median, and counted that in their latencies.
fn metronome(
    started: Instant,
    interval: Duration,
    count: usize,
) -> Result<tokio::sync::mpsc::UnboundedReceiver<(usize, Instant)>> {
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("metronome".into())
        .spawn(move || {
            for i in 0..count {
                let due = started + interval.mul_f64(i as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if due_tx.send((i, due)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the open loop's clock thread")?;
    Ok(due_rx)
}

/// CPU time (user + system) and peak resident memory of the localnet's processes, read from
/// /proc (Linux); `None` where it cannot be read. And the bytes the nodes keep on disk.
struct Processes {
    pids: Vec<(String, u32)>,
    /// Each node's data directory.
    node_dirs: Vec<PathBuf>,
    /// The kernel's clock ticks per second, the unit of /proc's CPU times.
    ticks_per_second: f64,
}

impl Processes {
    fn of(info: &LocalnetInfo, dir: &std::path::Path) -> Self {
        let mut pids = vec![("coordinator".to_string(), info.coordinator.pid)];
        pids.extend(info.nodes.iter().map(|n| (n.name.clone(), n.pid)));
        let node_dirs = info.nodes.iter().map(|n| dir.join(&n.name)).collect();
        Processes {
            pids,
            node_dirs,
            ticks_per_second: ticks_per_second(),
        }
    }

    /// Bytes in the nodes' data directories, summed.
    fn node_disk_bytes(&self) -> u64 {
        self.node_dirs.iter().map(|d| dir_bytes(d)).sum()
    }

    /// utime + stime of every process, in clock ticks, summed.
    fn cpu_ticks(&self) -> Option<u64> {
        self.pids.iter().map(|(_, pid)| cpu_ticks(*pid)).sum()
    }

    /// utime + stime of every process, summed (`None` where one cannot be read).
    fn cpu_time(&self) -> Option<Duration> {
        let ticks = self.cpu_ticks()?;
        Some(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_second,
        ))
    }

    /// VmHWM (peak resident set) of each process, KiB.
    fn peak_rss_kib(&self) -> Vec<(String, Option<u64>)> {
        self.pids
            .iter()
            .map(|(name, pid)| {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmHWM:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    });
                (name.clone(), rss)
            })
            .collect()
    }
}

/// Bytes of the files under `dir` (0 where it cannot be read).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after
/// the parenthesised command name, which may contain spaces).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux where it cannot be read).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut processes = None;
    let (api, token) = match &args.localnet {
        Some(dir) => {
            let text = std::fs::read(dir.join("localnet.json")).context("reading localnet.json")?;
            let info: LocalnetInfo = serde_json::from_slice(&text)?;
            processes = Some(Processes::of(&info, dir));
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
        "{:<13} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>10} {:>9} {:>6} {:>10}",
        "curve",
        "DKG ms",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "sig/s",
        "failed",
        "CPU ms/sig",
        "FROST ms",
        "ratio",
        "disk B/sig"
    );
    let curves = if args.curves.is_empty() {
        Curve::ALL.to_vec()
    } else {
        args.curves.clone()
    };
    let members = u16::try_from(nodes).context("too many nodes")?;
    for curve in curves.iter().copied() {
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
        // The key the signatures verify under: the child's for a path.
        let public_key = if args.path.is_root() {
            hex::decode(&key.public_key)?
        } else {
            hex::decode(client.derive(&key.key_id, &args.path).await?.public_key)?
        };
        let cpu_before = processes.as_ref().and_then(Processes::cpu_time);
        let disk_before = processes.as_ref().map(Processes::node_disk_bytes);
        let mut run = sign_all(&client, &key.key_id, &public_key, curve, &args).await?;
        let cpu_after = processes.as_ref().and_then(Processes::cpu_time);
        let disk_after = processes.as_ref().map(Processes::node_disk_bytes);
        // The same operations in this process, measured now (the network is idle).
        let frost = permafrost_benches::frost_cost::per_signature(
            curve,
            args.threshold,
            members,
            args.in_process,
        )?;
        run.latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let signed = run.latencies.len();
        // CPU of every localnet process over the signing run, per signature made.
        let cpu_ms = match (cpu_before, cpu_after) {
            (Some(a), Some(b)) if signed > 0 => Some(ms(b.saturating_sub(a)) / signed as f64),
            _ => None,
        };
        let frost_ms = ms(frost);
        let (cpu, ratio) = match cpu_ms {
            Some(c) => (format!("{c:.2}"), format!("{:.1}", c / frost_ms)),
            None => ("-".into(), "-".into()),
        };
        // Bytes the nodes' data directories grew by, per signature and per node.
        let disk = match (disk_before, disk_after) {
            (Some(a), Some(b)) if signed > 0 && nodes > 0 => format!(
                "{:.0}",
                b.saturating_sub(a) as f64 / signed as f64 / nodes as f64
            ),
            _ => "-".into(),
        };
        let l = &run.latencies;
        println!(
            "{:<13} {:>7.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>7} {:>10} {:>9.3} {:>6} {:>10}",
            curve.as_str(),
            ms(dkg),
            ms(percentile(l, 50.0)),
            ms(percentile(l, 99.0)),
            ms(percentile(l, 99.9)),
            ms(*l.last().unwrap_or(&Duration::ZERO)),
            signed as f64 / run.wall.as_secs_f64(),
            run.failures.values().sum::<usize>(),
            cpu,
            frost_ms,
            ratio,
            disk
        );
        for (kind, count) in &run.failures {
            println!("    {count} failed: {kind}");
        }
        if !run.late_starts.is_empty() {
            run.late_starts.sort();
            let late = &run.late_starts;
            println!(
                "    this tool started the requests late by p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
                 after their due times; the latencies above, counted from the due times, include it",
                ms(percentile(late, 50.0)),
                ms(percentile(late, 99.0)),
                ms(*late.last().unwrap_or(&Duration::ZERO)),
            );
        }
    }
    let offered = match args.rate {
        Some(rate) => format!(
            "offered at {rate} per second, at most {} in flight",
            args.concurrency
        ),
        None => format!("{} in flight", args.concurrency),
    };
    println!("({} requests per curve, {offered}, threshold {} of {nodes}; every signature verified independently; latencies of the signed ones; CPU summed over the localnet's processes, this tool left out; FROST ms: the same operations (t commits, t shares, aggregate, verify) in this process, mean of {}; ratio = CPU ÷ FROST; disk: growth of the nodes' data directories per signature per node)", args.requests, args.threshold, args.in_process);
    if let Some(processes) = &processes {
        let rss: Vec<String> = processes
            .peak_rss_kib()
            .into_iter()
            .map(|(name, kib)| match kib {
                Some(kib) => format!("{name} {:.1} MiB", kib as f64 / 1024.0),
                None => format!("{name} -"),
            })
            .collect();
        println!("peak RSS: {}", rss.join(", "));
    }
    if args.dkgs > 0 {
        println!();
        let cpu = match args.lifecycle_concurrency {
            0 | 1 => "per DKG".to_owned(),
            n => format!("per DKG, the checking signatures included; {n} in flight"),
        };
        println!(
            "DKG {} of {nodes}, {} per curve (CPU: all localnet processes, {cpu}):",
            args.threshold, args.dkgs
        );
        println!("{}", Timed::HEADER);
        for curve in curves.iter().copied() {
            let timed = time_dkgs(
                &client,
                processes.as_ref(),
                curve,
                args.threshold,
                args.dkgs,
                args.lifecycle_concurrency,
            )
            .await?;
            println!("{}", timed.row(curve));
        }
    }
    if args.reshares > 0 {
        let names: Vec<String> = health.nodes.iter().map(|n| n.name.clone()).collect();
        println!();
        let cpu = match args.lifecycle_concurrency {
            0 | 1 => "per reshare".to_owned(),
            n => format!(
                "per reshare, the DKG before it and the checking signature included; {n} in flight"
            ),
        };
        println!(
            "reshare ({},{}) -> ({},{}), {} per curve (CPU: all localnet processes, {cpu}):",
            args.threshold,
            nodes - 1,
            args.threshold + 1,
            nodes,
            args.reshares
        );
        println!("{}", Timed::HEADER);
        for curve in curves.iter().copied() {
            let timed = time_reshares(
                &client,
                processes.as_ref(),
                curve,
                &names,
                args.threshold,
                args.reshares,
                args.lifecycle_concurrency,
            )
            .await?;
            println!("{}", timed.row(curve));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_metronome_sends_every_request_in_order_and_none_before_it_is_due() {
        let started = Instant::now();
        let interval = Duration::from_micros(700);
        let mut due_requests = metronome(started, interval, 25).expect("the clock thread");
        let mut seen = Vec::new();
        while let Some((i, due)) = due_requests.recv().await {
            assert_eq!(due, started + interval.mul_f64(i as f64));
            assert!(
                Instant::now() >= due,
                "request {i} was sent before it was due"
            );
            seen.push(i);
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }
}
