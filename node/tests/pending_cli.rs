#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `permafrost-node pending show|discard` through the binary: a PENDING share is listed, a
//! discard without `--yes` changes nothing, with `--yes` deletes exactly that share and says so
//! in the audit log (which still verifies), and an unknown share is an error.

use std::path::Path;
use std::process::{Command, Output};

use permafrost_keystore::{KdfParams, KeyStore, ShareRecord, ShareState};
use zeroize::Zeroizing;

const BIN: &str = env!("CARGO_BIN_EXE_permafrost-node");
const PASS: &str = "pending test passphrase";

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

fn share(key_id: &str, epoch: u64, state: ShareState) -> ShareRecord {
    ShareRecord {
        key_id: key_id.into(),
        epoch,
        state,
        identifier: vec![1; 32],
        public: vec![2; 64],
        secret: Zeroizing::new(vec![3; 32]),
    }
}

fn keystore(dir: &Path) -> KeyStore {
    KeyStore::open_with_params(
        &dir.join("data").join("keystore"),
        PASS.as_bytes(),
        KdfParams::FAST_INSECURE_FOR_TESTS,
    )
    .unwrap()
}

#[test]
fn an_operator_sees_and_discards_a_pending_share() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = node(&["init", "--dir", data.to_str().unwrap()]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nnetwork_file = \"network.toml\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    {
        let store = keystore(dir.path());
        store
            .put_share(&share("k-kept", 0, ShareState::Active))
            .unwrap();
        store
            .put_share(&share("k-split", 0, ShareState::Pending))
            .unwrap();
    }

    let show = node(&["pending", "show", "--config", config]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let listed = text(&show.stdout);
    assert!(
        listed.contains("key k-split epoch 0: pending share of its DKG"),
        "{listed}"
    );
    assert!(!listed.contains("k-kept"), "{listed}");

    let dry = node(&[
        "pending", "discard", "--config", config, "--key", "k-split", "--epoch", "0",
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(text(&dry.stdout).contains("would delete key k-split epoch 0"));
    assert!(keystore(dir.path()).share("k-split", 0).unwrap().is_some());

    let wrong = node(&[
        "pending", "discard", "--config", config, "--key", "k-kept", "--epoch", "0", "--yes",
    ]);
    assert!(!wrong.status.success());
    assert!(text(&wrong.stderr).contains("no pending share of key k-kept at epoch 0"));

    let discard = node(&[
        "pending", "discard", "--config", config, "--key", "k-split", "--epoch", "0", "--yes",
    ]);
    assert!(discard.status.success(), "{}", text(&discard.stderr));
    assert!(text(&discard.stdout).contains("deleted key k-split epoch 0"));
    {
        let store = keystore(dir.path());
        assert!(store.share("k-split", 0).unwrap().is_none());
        assert!(store.share("k-kept", 0).unwrap().is_some());
        let audit = store.audit().unwrap();
        assert!(audit
            .iter()
            .any(|(_, e)| e.key_id == "k-split" && e.detail.contains("discarded by an operator")));
    }
    let verify = node(&["audit", "verify", "--config", config]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    let show = node(&["pending", "show", "--config", config]);
    assert!(text(&show.stdout).contains("no pending shares"));
}
