//! `permafrost-node`: `init --dir D` creates the node's identity; `run --config F` runs it;
//! `audit show|verify --config F` reads and checks its audit log while it is stopped;
//! `pending show|discard --config F` lists and discards the pending shares an operator decides
//! on.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use permafrost_node::{AuditCommand, AuditOutcome, PendingCommand};
use permafrost_runtime::process::ServiceCommand;

/// The node's command line: the service commands every binary has, and `audit`.
#[derive(clap::Parser)]
struct NodeCli {
    /// Log as JSON lines (for log shippers).
    #[arg(long, global = true)]
    log_json: bool,
    /// What to do.
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(clap::Subcommand)]
enum NodeCommand {
    #[command(flatten)]
    Service(ServiceCommand),
    /// Read or verify the audit log (the node must be stopped).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show or discard pending shares no certificate will conclude (the node must be stopped).
    #[command(subcommand)]
    Pending(PendingCommand),
}

fn main() -> ExitCode {
    let matches = NodeCli::command()
        .name("permafrost-node")
        .about("Permafrost signer node")
        .get_matches();
    let cli = match NodeCli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    permafrost_runtime::process::init_logging(cli.log_json);
    match cli.command {
        NodeCommand::Service(command) => permafrost_runtime::process::run_service_command(
            command,
            permafrost_node::init,
            permafrost_node::NodeConfig::load,
            permafrost_node::run,
        ),
        NodeCommand::Audit(command) => {
            match permafrost_node::run_audit(
                &command,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            ) {
                Ok(AuditOutcome::Ok) => ExitCode::SUCCESS,
                Ok(AuditOutcome::NotVerified) => ExitCode::from(2),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        NodeCommand::Pending(command) => {
            match permafrost_node::run_pending(
                &command,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
