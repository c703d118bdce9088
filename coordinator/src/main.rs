//! `permafrost-coordinator`: `init --dir D` creates an identity; `run --config F` runs the coordinator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "permafrost-coordinator",
    about = "Permafrost coordinator",
    version
)]
struct Cli {
    /// Log as JSON lines (for log shippers).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the coordinator's identity key (mode 0600) in DIR and print its PeerId.
    Init {
        /// The data directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run the coordinator.
    Run {
        /// The coordinator config file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    permafrost_runtime::process::init_logging(cli.log_json);
    match cli.command {
        Command::Init { dir } => match permafrost_coordinator::init(&dir) {
            Ok(peer_id) => {
                println!("{peer_id}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let config = match permafrost_coordinator::CoordinatorConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(permafrost_coordinator::run(
                config,
                permafrost_runtime::process::shutdown_signal(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
