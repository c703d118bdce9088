#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `permafrost-node audit show|verify` through the binary: on a data directory fresh from
//! `init`, on a keystore with entries, on a tampered one, and while the keystore is locked.

use std::path::Path;
use std::process::{Command, Output};

use permafrost_keystore::raw_audit;
use permafrost_keystore::{
    AuditClient, AuditEntry, AuditKind, KdfParams, KeyStore, DATABASE_FILE_NAME,
};
use redb::ReadableTable;

const BIN: &str = env!("CARGO_BIN_EXE_permafrost-node");
const PASS: &str = "audit test passphrase";

fn node(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("PERMAFROST_PASSPHRASE", PASS)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A data directory made by `permafrost-node init`, and a config file naming it.
fn initialised(dir: &Path) -> String {
    let data = dir.join("data");
    let init = node(&["init", "--dir", data.to_str().unwrap()]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nnetwork_file = \"network.toml\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    config.to_str().unwrap().to_owned()
}

fn keystore(config_dir: &Path) -> KeyStore {
    KeyStore::open_with_params(
        &config_dir.join("data").join("keystore"),
        PASS.as_bytes(),
        KdfParams::FAST_INSECURE_FOR_TESTS,
    )
    .unwrap()
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        time_unix_ms: 1_700_000_000_000 + i,
        kind: AuditKind::SignatureShare,
        key_id: "k-1".into(),
        epoch: 0,
        message_digest: Some([i as u8; 32]),
        requester: Some("12D3KooWcoordinator".into()),
        detail: format!("signed {i}"),
        client: None,
    }
}

#[test]
fn verify_succeeds_on_a_fresh_data_dir_from_init() {
    let dir = tempfile::tempdir().unwrap();
    let config = initialised(dir.path());
    let verify = node(&["audit", "verify", "--config", &config]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert!(
        text(&verify.stdout).contains("audit log verified: 0 entries"),
        "{}",
        text(&verify.stdout)
    );
    let show = node(&["audit", "show", "--config", &config]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    assert_eq!(text(&show.stdout), "");
    // Neither command created a keystore: init's directory stays as init left it.
    assert!(!dir.path().join("data").join("keystore").exists());
}

#[test]
fn show_prints_entries_and_verify_names_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = initialised(dir.path());
    {
        let store = keystore(dir.path());
        for i in 1..=2 {
            store.append_audit(&entry(i)).unwrap();
        }
        // A one-round signature's entry: the share, with the client approval.
        store
            .append_audit(&AuditEntry {
                detail: String::new(),
                client: Some(AuditClient {
                    public_key: [0xc1; 32],
                    request_id: [0x5e; 16],
                    timestamp_ms: 1_700_000_000_002,
                    session: [0x77; 32],
                    path: vec![0, 17],
                }),
                ..entry(3)
            })
            .unwrap();
        // An admission for the key itself: the empty path.
        store
            .append_audit(&AuditEntry {
                kind: AuditKind::ClientRequest,
                message_digest: None,
                detail: String::new(),
                client: Some(AuditClient {
                    public_key: [0xc1; 32],
                    request_id: [0x5f; 16],
                    timestamp_ms: 1_700_000_000_004,
                    session: [0x78; 32],
                    path: Vec::new(),
                }),
                ..entry(4)
            })
            .unwrap();
    }
    let verify = node(&["audit", "verify", "--config", &config]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let stdout = text(&verify.stdout);
    assert!(stdout.contains("audit log verified: 4 entries"), "{stdout}");
    assert!(stdout.contains("last entry: 4"), "{stdout}");

    let show = node(&["audit", "show", "--config", &config]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let lines: Vec<String> = text(&show.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        lines[0],
        "1 2023-11-14T22:13:20.001Z signature-share key=k-1 epoch=0 peer=12D3KooWcoordinator \
         \"signed 1\""
    );
    let json = node(&["audit", "show", "--json", "--config", &config]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let first: serde_json::Value =
        serde_json::from_str(text(&json.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["detail"], "signed 1");
    assert_eq!(first["client"], serde_json::Value::Null);
    assert_eq!(
        lines[2],
        format!(
            "3 2023-11-14T22:13:20.003Z signature-share key=k-1 epoch=0 peer=12D3KooWcoordinator \
             client={} request={} timestamp=1700000000002 session={} path=m/0/17 \"\"",
            "c1".repeat(32),
            "5e".repeat(16),
            "77".repeat(32)
        )
    );
    assert_eq!(
        lines[3],
        format!(
            "4 2023-11-14T22:13:20.004Z client-request key=k-1 epoch=0 peer=12D3KooWcoordinator \
             client={} request={} timestamp=1700000000004 session={} path=m \"\"",
            "c1".repeat(32),
            "5f".repeat(16),
            "78".repeat(32)
        )
    );
    let third: serde_json::Value =
        serde_json::from_str(text(&json.stdout).lines().nth(2).unwrap()).unwrap();
    assert_eq!(third["client"]["request_id"], "5e".repeat(16));
    assert_eq!(third["client"]["timestamp_ms"], 1_700_000_000_002u64);
    assert_eq!(third["client"]["path"], "m/0/17");
    let fourth: serde_json::Value =
        serde_json::from_str(text(&json.stdout).lines().nth(3).unwrap()).unwrap();
    assert_eq!(fourth["client"]["path"], "m");

    // Entry 2's detail edited on disk, in the block that holds it.
    {
        let db = redb_database(dir.path());
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new(
                    raw_audit::AUDIT_TABLE,
                ))
                .unwrap();
            let block = table.get(1).unwrap().unwrap().value().to_vec();
            let mut entries = raw_audit::entries_of_row(1, &block).unwrap();
            // The last byte of the detail, before the (absent) client field.
            let body = &mut entries[1].body;
            let last = body.len() - 2;
            body[last] = b'9';
            let (key, block) = raw_audit::block_row(&entries).unwrap();
            table.insert(key, block.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let verify = node(&["audit", "verify", "--config", &config]);
    assert_eq!(verify.status.code(), Some(2), "{}", text(&verify.stderr));
    let stdout = text(&verify.stdout);
    assert!(stdout.contains("NOT verified: entry 2 "), "{stdout}");
    let show = node(&["audit", "show", "--config", &config]);
    assert_eq!(show.status.code(), Some(2));
    assert!(
        text(&show.stderr).contains("entry 2"),
        "{}",
        text(&show.stderr)
    );
    assert_eq!(text(&show.stdout).lines().count(), 4);
}

fn redb_database(dir: &Path) -> redb::Database {
    redb::Database::create(dir.join("data").join("keystore").join(DATABASE_FILE_NAME)).unwrap()
}

#[test]
fn a_locked_keystore_fails_fast_saying_to_stop_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = initialised(dir.path());
    let store = keystore(dir.path());
    store.append_audit(&entry(1)).unwrap();
    // `store` holds the lock, as a running node does.
    let started = std::time::Instant::now();
    let verify = node(&["audit", "verify", "--config", &config]);
    assert_eq!(verify.status.code(), Some(1));
    let stderr = text(&verify.stderr);
    assert!(stderr.contains("Stop the node first"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    drop(store);
    let verify = node(&["audit", "verify", "--config", &config]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
}

#[test]
fn a_wrong_passphrase_is_an_error_not_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let config = initialised(dir.path());
    drop(keystore(dir.path()));
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--config", &config])
        .env("PERMAFROST_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        text(&verify.stderr).contains("wrong passphrase"),
        "{}",
        text(&verify.stderr)
    );
}

/// `audit usage` lists the audit table with its entries and the file's size; on a data
/// directory whose node never ran it creates nothing.
#[test]
fn usage_reports_the_tables_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = initialised(dir.path());
    let usage = node(&["audit", "usage", "--config", &config]);
    assert!(usage.status.success(), "{}", text(&usage.stderr));
    assert!(!dir.path().join("data").join("keystore").exists());
    {
        let store = keystore(dir.path());
        for i in 1..=25 {
            store.append_audit(&entry(i)).unwrap();
        }
    }
    let usage = node(&["audit", "usage", "--config", &config]);
    assert!(usage.status.success(), "{}", text(&usage.stderr));
    let out = text(&usage.stdout);
    let audit = out
        .lines()
        .find(|l| l.starts_with("audit "))
        .unwrap_or_else(|| panic!("no audit row in\n{out}"));
    let columns: Vec<&str> = audit.split_whitespace().collect();
    assert_eq!(columns[1], "25", "{out}");
    // 25 entries of about 150 bytes in one block: one leaf page (and no branch page yet).
    let per_entry: f64 = columns[5].parse().unwrap();
    assert_eq!(per_entry, (4096.0_f64 / 25.0).round(), "{out}");
    let file = std::fs::metadata(
        dir.path()
            .join("data")
            .join("keystore")
            .join(DATABASE_FILE_NAME),
    )
    .unwrap()
    .len();
    assert!(
        out.contains(&format!("database file: {file} bytes")),
        "{out}"
    );
}
