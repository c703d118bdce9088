//! `permafrost-node audit show|verify|usage --config FILE`: read and check the node's audit
//! log, and show the keystore's disk use, while the node is stopped.
//!
//! The keystore's database is locked by a running node; opening it here never waits for the
//! lock: a locked keystore is an error telling the operator to stop the node first. A data
//! directory whose node never ran has no keystore yet, so an empty log: it is not created.

use std::io::Write;
use std::path::{Path, PathBuf};

use permafrost_keystore::{
    AuditEntry, AuditKind, AuditMigration, AuditVerification, KeyStore, KeystoreError, TableUsage,
    DATABASE_FILE_NAME,
};

use crate::{NodeConfig, NodeError};

/// `audit show` or `audit verify`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print every audit entry, one line each (the node must be stopped).
    ///
    /// Fields: sequence number, time (UTC), kind, key id, epoch, peer, detail (quoted). A log
    /// that does not verify is printed all the same, with a warning, and exit status 2.
    Show {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// One JSON object per line instead.
        #[arg(long)]
        json: bool,
    },
    /// Check the audit log's MAC chain (the node must be stopped).
    ///
    /// Prints "audit log verified: N entries" and exits 0, or names the first bad entry (edited,
    /// removed, reordered) and exits 2. Exit status 1: the log could not be read.
    Verify {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show how the keystore's disk is used, table by table (the node must be stopped).
    ///
    /// Per table: entries (rows; the audit log's entries, several to a row), bytes of keys and
    /// values, bytes of bookkeeping, bytes of partly filled or free pages, and their sum per
    /// entry; then the database file's size.
    Usage {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// How an audit command ended (an `Err` is a failure to check at all).
#[derive(Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Done; for `verify`, the log verified.
    Ok,
    /// `verify` found a bad entry (or `show` printed a log that does not verify).
    NotVerified,
}

/// Runs an audit command, printing its report to `out` and warnings to `err`.
pub fn run_audit(
    command: &AuditCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<AuditOutcome, NodeError> {
    let io = |e: std::io::Error| NodeError::Config(format!("cannot write the report: {e}"));
    match command {
        AuditCommand::Show { config, json } => {
            let Some(store) = open(config, err)? else {
                return Ok(AuditOutcome::Ok);
            };
            for (seq, entry) in store.audit()? {
                let line = if *json {
                    json_line(seq, &entry)
                } else {
                    text_line(seq, &entry)
                };
                writeln!(out, "{line}").map_err(io)?;
            }
            let verification = store.verify_audit()?;
            if let Some(fault) = &verification.fault {
                writeln!(
                    err,
                    "warning: the audit log does not verify: {fault} (see `audit verify`)"
                )
                .map_err(io)?;
                return Ok(AuditOutcome::NotVerified);
            }
            Ok(AuditOutcome::Ok)
        }
        AuditCommand::Verify { config } => {
            let Some(store) = open(config, err)? else {
                writeln!(out, "audit log verified: 0 entries").map_err(io)?;
                return Ok(AuditOutcome::Ok);
            };
            let verification = store.verify_audit()?;
            let last = store
                .audit()
                .ok()
                .and_then(|entries| entries.last().cloned());
            report(&verification, last.as_ref(), out).map_err(io)
        }
        AuditCommand::Usage { config } => {
            let Some(store) = open(config, err)? else {
                return Ok(AuditOutcome::Ok);
            };
            let file = NodeConfig::load(config)?
                .keystore_path()
                .join(DATABASE_FILE_NAME);
            let file_bytes = std::fs::metadata(&file).map(|m| m.len()).map_err(|e| {
                NodeError::Config(format!("cannot read the size of {}: {e}", file.display()))
            })?;
            write_usage(&store.usage()?, file_bytes, out).map_err(io)?;
            Ok(AuditOutcome::Ok)
        }
    }
}

/// Writes the table of `audit usage`.
fn write_usage(tables: &[TableUsage], file_bytes: u64, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<22} {:>10} {:>12} {:>12} {:>12} {:>10}",
        "table", "entries", "stored B", "metadata B", "unused B", "B/entry"
    )?;
    for table in tables {
        let per_entry = match table.entries {
            0 => "-".to_string(),
            entries => format!("{:.0}", table.total_bytes() as f64 / entries as f64),
        };
        writeln!(
            out,
            "{:<22} {:>10} {:>12} {:>12} {:>12} {:>10}",
            table.table,
            table.entries,
            table.stored_bytes,
            table.metadata_bytes,
            table.fragmented_bytes,
            per_entry
        )?;
    }
    let in_tables: u64 = tables.iter().map(TableUsage::total_bytes).sum();
    writeln!(
        out,
        "database file: {file_bytes} bytes, {in_tables} of them in tables (the rest is free \
         space redb keeps for reuse, and its own bookkeeping)"
    )
}

/// Writes the verdict of `verify`.
fn report(
    verification: &AuditVerification,
    last: Option<&(u64, AuditEntry)>,
    out: &mut dyn Write,
) -> std::io::Result<AuditOutcome> {
    let migrated = |out: &mut dyn Write, migration: &AuditMigration| {
        writeln!(
            out,
            "note: {} entries written before the audit chain existed were chained at {}; they \
             were not authenticated before then",
            migration.entries,
            utc(migration.at_unix_ms)
        )
    };
    match &verification.fault {
        None => {
            writeln!(out, "audit log verified: {} entries", verification.verified)?;
            if let Some((seq, entry)) = last {
                writeln!(
                    out,
                    "last entry: {seq} at {} (entries removed from the end cannot be detected: \
                     compare with your own record of the last entry)",
                    utc(entry.time_unix_ms)
                )?;
            }
            if let Some(migration) = &verification.migrated {
                migrated(out, migration)?;
            }
            Ok(AuditOutcome::Ok)
        }
        Some(fault) => {
            writeln!(
                out,
                "audit log NOT verified: {fault} ({} of {} entries verified before it)",
                verification.verified, verification.entries
            )?;
            Ok(AuditOutcome::NotVerified)
        }
    }
}

/// Opens the keystore of the node configured in `config`, or `None` if the node never ran
/// (no keystore yet). A keystore held by a running node is an error saying to stop it.
/// The keystore of the stopped node configured in `config` (`None`: the node never ran, so
/// there is none); a running node's locked keystore is an error saying to stop it first.
pub(crate) fn open(config: &Path, err: &mut dyn Write) -> Result<Option<KeyStore>, NodeError> {
    let config = NodeConfig::load(config)?;
    let dir = config.keystore_path();
    if !dir.join(DATABASE_FILE_NAME).exists() {
        let _ = writeln!(
            err,
            "no keystore at {} yet (the node has not run): nothing is recorded",
            dir.display()
        );
        return Ok(None);
    }
    let passphrase = config.passphrase()?;
    let store = match KeyStore::open(&dir, passphrase.as_bytes()) {
        Ok(store) => store,
        Err(KeystoreError::AlreadyOpen { path }) => {
            return Err(NodeError::Config(format!(
                "the keystore at {} is locked: the node is running (or another command has it \
                 open). Stop the node first; this command works only while it is stopped",
                path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    drop(passphrase);
    if store.journal_replayed_on_open() > 0 {
        let _ = writeln!(
            err,
            "note: the keystore replayed {} journal records (the node's last writes before it \
             stopped without closing the keystore)",
            store.journal_replayed_on_open()
        );
    }
    if let Some(migration) = store.audit_migrated_on_open() {
        let _ = writeln!(
            err,
            "note: this keystore's audit log was written before the audit chain existed; its {} \
             entries are now chained (once)",
            migration.entries
        );
    }
    if let Some(moved) = store.request_ids_migrated_on_open() {
        let _ = writeln!(
            err,
            "note: this keystore was converted from format version 1 to 2 ({moved} admitted \
             request ids moved into one table); builds before this one no longer open it"
        );
    }
    Ok(Some(store))
}

/// The kind as a word.
fn kind_name(kind: &AuditKind) -> &'static str {
    match kind {
        AuditKind::Dkg => "dkg",
        AuditKind::Reshare => "reshare",
        AuditKind::SignatureShare => "signature-share",
        AuditKind::Refused => "refused",
        AuditKind::ClientRequest => "client-request",
    }
}

/// A field that may hold anything: as is when it is one plain word, quoted and escaped
/// otherwise, so that one entry is always one line.
fn word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if plain {
        text.to_owned()
    } else {
        format!("{text:?}")
    }
}

/// A child-key derivation path as `m/0/17` (`m` for the key itself).
fn path_text(path: &[u32]) -> String {
    let indices: String = path.iter().map(|index| format!("/{index}")).collect();
    format!("m{indices}")
}

/// `seq time kind key=… epoch=… peer=… [client=… request=… timestamp=… session=… path=…]
/// detail`, one line.
fn text_line(seq: u64, entry: &AuditEntry) -> String {
    let client = entry.client.as_ref().map_or_else(String::new, |client| {
        format!(
            " client={} request={} timestamp={} session={} path={}",
            hex::encode(client.public_key),
            hex::encode(client.request_id),
            client.timestamp_ms,
            hex::encode(client.session),
            path_text(&client.path)
        )
    });
    format!(
        "{seq} {} {} key={} epoch={} peer={}{client} {:?}",
        utc(entry.time_unix_ms),
        kind_name(&entry.kind),
        word(&entry.key_id),
        entry.epoch,
        entry.requester.as_deref().map_or_else(|| "-".into(), word),
        entry.detail
    )
}

/// One JSON object.
fn json_line(seq: u64, entry: &AuditEntry) -> String {
    serde_json::json!({
        "seq": seq,
        "time_unix_ms": entry.time_unix_ms,
        "time": utc(entry.time_unix_ms),
        "kind": kind_name(&entry.kind),
        "key_id": entry.key_id,
        "epoch": entry.epoch,
        "peer": entry.requester,
        "message_digest": entry.message_digest.map(hex::encode),
        "client": entry.client.as_ref().map(|client| serde_json::json!({
            "public_key": hex::encode(client.public_key),
            "request_id": hex::encode(client.request_id),
            "timestamp_ms": client.timestamp_ms,
            "session": hex::encode(client.session),
            "path": path_text(&client.path),
        })),
        "detail": entry.detail,
    })
    .to_string()
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian).
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        // Never panics, even at the end of u64.
        let _ = utc(u64::MAX);
    }

    #[test]
    fn one_entry_is_one_line_whatever_it_holds() {
        let entry = AuditEntry {
            time_unix_ms: 1_700_000_000_000,
            kind: AuditKind::Refused,
            key_id: "k 1\nforged line".into(),
            epoch: 3,
            message_digest: Some([0xab; 32]),
            requester: Some("12D3KooW".into()),
            detail: "wrong epoch\n2 forged".into(),
            client: None,
        };
        let line = text_line(7, &entry);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(
            line,
            "7 2023-11-14T22:13:20.000Z refused key=\"k 1\\nforged line\" epoch=3 \
             peer=12D3KooW \"wrong epoch\\n2 forged\""
        );
        let json: serde_json::Value = serde_json::from_str(&json_line(7, &entry)).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["kind"], "refused");
        assert_eq!(json["peer"], "12D3KooW");
        assert_eq!(json["message_digest"], "ab".repeat(32));
    }

    #[test]
    fn a_client_approval_prints_its_path() {
        assert_eq!(path_text(&[]), "m");
        assert_eq!(path_text(&[0, 17]), "m/0/17");
        assert_eq!(path_text(&[2_147_483_647]), "m/2147483647");
        let entry = AuditEntry {
            time_unix_ms: 1_700_000_000_000,
            kind: AuditKind::ClientRequest,
            key_id: "k".into(),
            epoch: 0,
            message_digest: None,
            requester: None,
            detail: String::new(),
            client: Some(permafrost_keystore::AuditClient {
                public_key: [1; 32],
                request_id: [2; 16],
                timestamp_ms: 3,
                session: [4; 32],
                path: vec![0, 17],
            }),
        };
        assert_eq!(
            text_line(1, &entry),
            format!(
                "1 2023-11-14T22:13:20.000Z client-request key=k epoch=0 peer=- client={} \
                 request={} timestamp=3 session={} path=m/0/17 \"\"",
                "01".repeat(32),
                "02".repeat(16),
                "04".repeat(32)
            )
        );
        let json: serde_json::Value = serde_json::from_str(&json_line(1, &entry)).unwrap();
        assert_eq!(json["client"]["path"], "m/0/17");
    }
}
