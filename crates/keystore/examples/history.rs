//! What a keystore's history costs a signature's group commit: one store is filled with the
//! writes of `FILL` sequential signatures (per signature, as a node writes them: one durable
//! batch with the client request's admission, its audit entry and the signature share's audit
//! entry; the clock advancing 2.5 ms per signature, so admissions expire after their 600 s as in
//! a node), then durable batches are timed on a fresh store and on the filled one,
//! alternating, in this one process: wall time and this process's CPU time per batch, and the
//! wall time of the slowest (p99, max; a checkpoint's cost shows there).
//!
//! ```sh
//! cargo run --release -p permafrost-keystore --example history -- 100000 2000 5 /tmp
//! ```
//! (signatures to fill with, batches per timed round, rounds, the directory for the stores.)

use std::path::Path;
use std::time::{Duration, Instant};

use permafrost_keystore::{
    AuditClient, AuditEntry, AuditKind, ClientRequestRow, KdfParams, KeyStore, KeystoreError,
};

/// What a node's request ids are kept for (`REQUEST_ID_RETENTION`).
const RETENTION_MS: u64 = 600_000;

/// The batch a node writes for signature `i` at `now_ms`.
fn batch(i: u64, now_ms: u64) -> (ClientRequestRow, AuditEntry, AuditEntry) {
    let mut request_id = [0u8; 16];
    request_id[..8].copy_from_slice(&i.to_be_bytes());
    let mut session = [7u8; 32];
    session[..8].copy_from_slice(&i.to_be_bytes());
    let client = AuditClient {
        public_key: [3; 32],
        request_id,
        timestamp_ms: now_ms,
        session,
        path: Vec::new(),
    };
    let entry = |kind| AuditEntry {
        time_unix_ms: now_ms,
        kind,
        key_id: "load-key".into(),
        epoch: 0,
        message_digest: Some([9; 32]),
        requester: Some("12D3KooWAmy4Hx9rYrNEAwzdWn9kSayKwSQ7P4uU1A1J9kzsguUy".into()),
        detail: String::new(),
        client: Some(client.clone()),
    };
    let row = ClientRequestRow {
        client: [3; 32],
        request_id,
        session,
        expires_unix_ms: now_ms + RETENTION_MS,
    };
    (
        row,
        entry(AuditKind::ClientRequest),
        entry(AuditKind::SignatureShare),
    )
}

/// A store and the next signature it writes.
struct Store {
    store: KeyStore,
    next: u64,
    start_ms: u64,
    step_ms: u64,
}

impl Store {
    fn open(dir: &Path, step_ms: u64) -> Result<Store, KeystoreError> {
        let store =
            KeyStore::open_with_params(dir, b"history", KdfParams::FAST_INSECURE_FOR_TESTS)?;
        Ok(Store {
            store,
            next: 0,
            start_ms: 1_800_000_000_000,
            step_ms,
        })
    }

    /// Writes the next signature's batch, durable.
    fn write_next(&mut self) -> Result<(), KeystoreError> {
        let now_ms = self.start_ms + self.next * self.step_ms;
        let (row, admitted, share) = batch(self.next, now_ms);
        self.store
            .write_batch(&[(row, admitted)], &[share], true, now_ms)?;
        self.next += 1;
        Ok(())
    }
}

/// This process's CPU time (user + system, from /proc/self/stat, in clock ticks of 10 ms):
/// `None` where /proc cannot be read.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// What timing a round of batches measured: wall and CPU time per batch (means), and the
/// wall time of the slowest batches.
struct Timed {
    wall: Duration,
    cpu: Duration,
    p99: Duration,
    max: Duration,
    /// Batches slower than 2 ms.
    slow: usize,
}

/// Times `count` batches on `store`.
fn time(store: &mut Store, count: u64) -> Result<Timed, KeystoreError> {
    let (wall, cpu) = (Instant::now(), process_cpu().unwrap_or_default());
    let mut each = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        let started = Instant::now();
        store.write_next()?;
        each.push(started.elapsed());
    }
    let cpu = process_cpu().unwrap_or_default().saturating_sub(cpu);
    each.sort_unstable();
    let at = |q: f64| {
        each.get(((each.len() as f64 * q) as usize).min(each.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let n = u32::try_from(count).unwrap_or(u32::MAX).max(1);
    Ok(Timed {
        wall: wall.elapsed() / n,
        cpu: cpu / n,
        p99: at(0.99),
        max: each.last().copied().unwrap_or_default(),
        slow: each
            .iter()
            .filter(|d| **d > Duration::from_millis(2))
            .count(),
    })
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (fill, per_round, rounds, step_ms) = (arg(1, 100_000), arg(2, 2000), arg(3, 6), arg(4, 10));
    let base = args.get(5).map_or("/tmp", String::as_str);
    let dir = tempfile::Builder::new()
        .prefix("keystore-history-")
        .tempdir_in(base)?;
    let mut used = Store::open(&dir.path().join("used"), step_ms)?;
    let started = Instant::now();
    for _ in 0..fill {
        used.write_next()?;
    }
    println!(
        "filled with {fill} signatures in {:.1} s: {:.1} MB",
        started.elapsed().as_secs_f64(),
        dir_bytes(&dir.path().join("used")) as f64 / 1e6
    );
    let mut fresh = Store::open(&dir.path().join("fresh"), step_ms)?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for round in 1..=rounds {
        let f = time(&mut fresh, per_round)?;
        let u = time(&mut used, per_round)?;
        println!(
            "round {round}: fresh {:.0} µs wall (p99 {:.0}, max {:.0}, {} over 2 ms), {:.0} µs CPU; used {:.0} µs wall (p99 {:.0}, max {:.0}, {} over 2 ms), {:.0} µs CPU per batch ({per_round} each)",
            us(f.wall),
            us(f.p99),
            us(f.max),
            f.slow,
            us(f.cpu),
            us(u.wall),
            us(u.p99),
            us(u.max),
            u.slow,
            us(u.cpu)
        );
    }
    Ok(())
}
