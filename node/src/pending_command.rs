//! `permafrost-node pending show|discard --config FILE`: the PENDING shares a stopped node
//! keeps, and an operator's discarding of one.
//!
//! A node that confirmed a DKG or a reshare keeps its PENDING share until it sees the session's
//! certificate: no abort and no timeout deletes it, because the other members may already hold
//! the key on it. When no certificate will ever come (the coordinator recorded an abort, or
//! lost the session), an operator decides: `show` lists what is pending, `discard` shows what
//! it would delete and deletes it only with `--yes`, concluding the reshare so it is never
//! joined again, and writes the decision to the audit log.

use std::io::Write;
use std::path::PathBuf;

use permafrost_engine::node::{discard_pending, pending_shares, PendingShare};
use permafrost_wire::{Epoch, KeyId};

use crate::NodeError;

/// `pending show` or `pending discard`.
#[derive(Debug, clap::Subcommand)]
pub enum PendingCommand {
    /// List the PENDING shares and the reshares they belong to (the node must be stopped).
    Show {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Discard the PENDING share of KEY at EPOCH, with its unconcluded reshare (the node must
    /// be stopped). Without --yes, only shows what would be deleted.
    Discard {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// The key id.
        #[arg(long)]
        key: String,
        /// The epoch of the pending share.
        #[arg(long)]
        epoch: u64,
        /// Delete it (without this, nothing changes).
        #[arg(long)]
        yes: bool,
    },
}

fn describe(p: &PendingShare) -> String {
    match p.reshare {
        Some(session) => format!(
            "key {} epoch {}: pending share of reshare {session}",
            p.key_id, p.epoch
        ),
        None => format!(
            "key {} epoch {}: pending share of its DKG",
            p.key_id, p.epoch
        ),
    }
}

/// Runs a pending command, printing its report to `out` and notes to `err`.
pub fn run_pending(
    command: &PendingCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), NodeError> {
    let io = |e: std::io::Error| NodeError::Config(format!("cannot write the report: {e}"));
    let store_error = |e: permafrost_engine::node::StoreError| NodeError::Config(e.to_string());
    match command {
        PendingCommand::Show { config } => {
            let Some(store) = crate::audit_command::open(config, err)? else {
                return Ok(());
            };
            let pending = pending_shares(&store).map_err(store_error)?;
            if pending.is_empty() {
                writeln!(out, "no pending shares").map_err(io)?;
            }
            for p in &pending {
                writeln!(out, "{}", describe(p)).map_err(io)?;
            }
            Ok(())
        }
        PendingCommand::Discard {
            config,
            key,
            epoch,
            yes,
        } => {
            let key_id = KeyId::new(key.clone())
                .map_err(|e| NodeError::Config(format!("--key {key:?}: {e}")))?;
            let epoch = Epoch(*epoch);
            let Some(mut store) = crate::audit_command::open(config, err)? else {
                return Err(NodeError::Config("this node holds no keystore yet".into()));
            };
            let Some(found) = pending_shares(&store)
                .map_err(store_error)?
                .into_iter()
                .find(|p| p.key_id == key_id && p.epoch == epoch)
            else {
                return Err(NodeError::Config(format!(
                    "no pending share of key {key_id} at epoch {epoch} (see `pending show`)"
                )));
            };
            if !yes {
                writeln!(
                    out,
                    "would delete {} (run again with --yes to delete it)",
                    describe(&found)
                )
                .map_err(io)?;
                return Ok(());
            }
            let discarded = discard_pending(&mut store, &key_id, epoch, permafrost_runtime::now())
                .map_err(store_error)?;
            writeln!(
                out,
                "deleted {} (written to the audit log)",
                describe(&discarded)
            )
            .map_err(io)?;
            Ok(())
        }
    }
}
