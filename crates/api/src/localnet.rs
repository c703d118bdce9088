//! `DIR/localnet.json`, written by `permafrost localnet up` once every process is up.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The contents of `DIR/localnet.json`:
/// `{"api":"http://127.0.0.1:PORT","token":"…","coordinator":{"pid":…},"nodes":[…],
/// "metrics":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalnetInfo {
    /// The coordinator's API base URL, e.g. `http://127.0.0.1:8700`.
    pub api: String,
    /// A bearer token the coordinator accepts.
    pub token: String,
    /// The coordinator process.
    pub coordinator: ProcessInfo,
    /// The node processes.
    pub nodes: Vec<LocalnetNode>,
    /// Where each process serves `GET /metrics` (absent in files written before metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<LocalnetMetrics>,
}

/// The metrics listeners of a localnet: base URLs, scraped at `{url}/metrics`, no token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalnetMetrics {
    /// The coordinator's, e.g. `http://127.0.0.1:9100`.
    pub coordinator: String,
    /// Each node's, by node name.
    pub nodes: BTreeMap<String, String>,
}

/// A process started by the localnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its process id.
    pub pid: u32,
}

/// One node of a localnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalnetNode {
    /// Its name (`node1` … `nodeN`).
    pub name: String,
    /// Its libp2p PeerId (base58).
    pub peer_id: String,
    /// Its listen multiaddr.
    pub addr: String,
    /// Its process id.
    pub pid: u32,
}

/// Whether process `pid` is running, for whoever manages or watches a localnet's processes. A
/// zombie (exited, not yet reaped) does not count, but a zombie thread group leader whose other
/// threads are still finishing does: a thread group's leader turns zombie as soon as it exits,
/// and its other threads keep the process's files open (a SIGKILL waits for an fsync in
/// progress), its keystore lock included. It is gone only when every thread is. Reads `/proc`
/// where there is one, else asks `kill -0`.
pub fn process_running(pid: u32) -> bool {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        return tasks.flatten().any(|task| {
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                // `pid (comm) S …`: the state follows the last `)`.
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                !matches!(state, Some('Z' | 'X') | None)
            })
        });
    }
    if Path::new("/proc/self/stat").exists() {
        return false;
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_processes_are_running() {
        assert!(process_running(std::process::id()));
        assert!(!process_running(u32::MAX - 1));
    }
}
