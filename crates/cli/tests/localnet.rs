//! End-to-end: the real `permafrost` binary runs a localnet of separate processes, and the
//! HTTP API is driven against it; `permafrost demo` runs to completion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use permafrost_api::{ApiError, Client, CreateKeyRequest, Curve, LocalnetInfo};

const BIN: &str = env!("CARGO_BIN_EXE_permafrost");
const START_DEADLINE: Duration = Duration::from_secs(90);
const STOP_DEADLINE: Duration = Duration::from_secs(20);
const DEMO_DEADLINE: Duration = Duration::from_secs(120);

/// A child process that is killed if the test ends early.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn start(args: &[&str], logs: &Path, name: &str) -> Running {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let child = Command::new(BIN)
            .args(args)
            .env_remove("PERMAFROST_API")
            .env_remove("PERMAFROST_TOKEN")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits for the process to exit, failing the test after `deadline`.
    fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "still running after {deadline:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGKILL: its children see their stdin close and stop on their own.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` is a running (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) => Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

fn http_status(error: &ApiError) -> Option<u16> {
    error.status()
}

/// The two tests each start a network of processes on ports picked by the OS; run them one
/// at a time so one cannot be handed a port the other just picked but has not bound yet.
static ONE_NETWORK_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

// Holding the guard across awaits is the point: the lock spans the whole test, and the only
// other holder is a synchronous test.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread")]
async fn localnet_up_serves_the_api_and_stops_on_sigterm() {
    let _serial = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("localnet");
    let mut localnet = Running::start(
        &[
            "localnet",
            "up",
            "--nodes",
            "3",
            "--dir",
            dir.to_str().unwrap(),
            "--api-port",
            "0",
        ],
        tmp.path(),
        "localnet",
    );

    // localnet.json appears once every node is connected.
    let info_path = dir.join("localnet.json");
    let until = Instant::now() + START_DEADLINE;
    let info: LocalnetInfo = loop {
        if let Ok(text) = std::fs::read_to_string(&info_path) {
            break serde_json::from_str(&text).unwrap();
        }
        if let Some(status) = localnet.child.try_wait().unwrap() {
            panic!("localnet exited early ({status})\n{}", localnet.output());
        }
        assert!(
            Instant::now() < until,
            "no localnet.json after {START_DEADLINE:?}\n{}",
            localnet.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(info.api.starts_with("http://127.0.0.1:"), "{}", info.api);
    assert!(info.token.len() >= 16);
    assert_eq!(
        info.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["node1", "node2", "node3"]
    );
    let mut pids: Vec<u32> = info.nodes.iter().map(|n| n.pid).collect();
    pids.push(info.coordinator.pid);
    for pid in &pids {
        assert!(alive(*pid), "pid {pid} is not running");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&info_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "localnet.json holds the token: {mode:o}");
        let mode = std::fs::metadata(dir.join("node1/passphrase"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "passphrase file: {mode:o}");
    }

    let client = Client::from_localnet(&info)
        .unwrap()
        .with_timeout(Duration::from_secs(60));

    // Health: every node connected.
    let health = client.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.nodes.len(), 3);
    assert!(health.nodes.iter().all(|n| n.connected), "{health:?}");
    for node in &info.nodes {
        assert!(health
            .nodes
            .iter()
            .any(|h| h.name == node.name && h.peer_id == node.peer_id));
    }

    // A 2-of-3 taproot key.
    let key = client
        .create_key(&CreateKeyRequest {
            curve: Curve::Secp256k1Tr,
            threshold: 2,
            nodes: None,
        })
        .await
        .unwrap();
    assert!(!key.key_id.is_empty());
    assert_eq!(key.curve, Curve::Secp256k1Tr);
    assert_eq!(key.threshold, 2);
    assert_eq!(key.epoch, 0);
    let mut committee = key.nodes.clone();
    committee.sort();
    assert_eq!(committee, ["node1", "node2", "node3"]);
    let public_key = hex::decode(&key.public_key).unwrap();
    assert_eq!(public_key.len(), 33);
    assert_eq!(client.key(&key.key_id).await.unwrap(), key);
    assert!(client.keys().await.unwrap().keys.contains(&key));

    // A signature any BIP-340 verifier accepts.
    let message = b"settlement batch 42";
    let signed = client.sign(&key.key_id, message).await.unwrap();
    assert_eq!(signed.public_key, key.public_key);
    assert_eq!(signed.epoch, 0);
    assert!(signed.signers.len() >= 2, "{:?}", signed.signers);
    assert!(signed.signers.iter().all(|s| committee.contains(s)));
    let signature = hex::decode(&signed.signature).unwrap();
    assert_eq!(signature.len(), 64);
    permafrost_verifiers::verify(Curve::Secp256k1Tr, &public_key, message, &signature).unwrap();
    assert!(
        permafrost_verifiers::verify(Curve::Secp256k1Tr, &public_key, b"other", &signature)
            .is_err()
    );

    // 401 without a token, and with a wrong one.
    let answer = reqwest::get(format!("{}/v1/health", info.api))
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = Client::new(info.api.clone(), "not-the-right-token-at-all").unwrap();
    let error = wrong.keys().await.unwrap_err();
    assert_eq!(http_status(&error), Some(401), "{error}");

    // 404 for an unknown key.
    let error = client.key("k-no-such-key").await.unwrap_err();
    assert_eq!(http_status(&error), Some(404), "{error}");
    assert_eq!(error.code(), Some("not_found"));
    let error = client.sign("k-no-such-key", message).await.unwrap_err();
    assert_eq!(http_status(&error), Some(404), "{error}");

    // The CLI's own API commands against this localnet.
    let show = Command::new(BIN)
        .args([
            "--localnet",
            dir.to_str().unwrap(),
            "keys",
            "show",
            &key.key_id,
        ])
        .output()
        .unwrap();
    assert!(show.status.success(), "{show:?}");
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["public_key"], key.public_key.as_str());
    let missing = Command::new(BIN)
        .args([
            "--localnet",
            dir.to_str().unwrap(),
            "keys",
            "show",
            "k-no-such-key",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).starts_with("error: not_found: "),
        "{missing:?}"
    );

    // SIGTERM stops the localnet and every process it started.
    let status = Command::new("kill")
        .args(["-TERM", &localnet.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = localnet.wait(STOP_DEADLINE);
    assert!(status.success(), "{status}\n{}", localnet.output());
    let until = Instant::now() + STOP_DEADLINE;
    while pids.iter().any(|pid| alive(*pid)) {
        assert!(
            Instant::now() < until,
            "still running after the localnet stopped: {:?}",
            pids.iter().filter(|pid| alive(**pid)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!info_path.exists(), "localnet.json is left behind");
}

#[test]
fn demo_runs_every_curve_and_exits_zero() {
    let _serial = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Running::start(&["demo"], tmp.path(), "demo");
    let status = demo.wait(DEMO_DEADLINE);
    let output = demo.output();
    assert!(status.success(), "{status}\n{output}");
    let stdout = std::fs::read_to_string(&demo.stdout).unwrap();
    for curve in ["ed25519", "secp256k1", "secp256k1-tr"] {
        let row = stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(curve))
            .unwrap_or_else(|| panic!("no table row for {curve}\n{output}"));
        assert!(row.contains("yes 6/6"), "{row}\n{output}");
    }
}
