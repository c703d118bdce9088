//! `permafrost internal-node` and `permafrost internal-coordinator`: one node or one
//! coordinator in this process.
//!
//! These exist for `permafrost localnet up` and `permafrost demo`, so that one binary (the one
//! `cargo run --bin permafrost` builds) can start every process of a localnet. The production
//! entry points are the dedicated `permafrost-node run --config F` and
//! `permafrost-coordinator run --config F` binaries; these subcommands call the same
//! `permafrost_node::run` / `permafrost_coordinator::run` and are hidden from `--help`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio::sync::oneshot;

use crate::shutdown::Shutdown;

/// The options of both internal subcommands.
#[derive(Debug, Args)]
pub struct InternalArgs {
    /// The node or coordinator config file.
    #[arg(long, value_name = "F")]
    pub config: PathBuf,
    /// Also stop when standard input closes: the localnet keeps a pipe open to every child,
    /// so a child stops even if the localnet process is killed without a chance to stop it.
    #[arg(long)]
    pub exit_with_parent: bool,
}

/// Runs one signer node until Ctrl-C, SIGTERM (or, with `--exit-with-parent`, stdin closing).
pub fn run_node(args: &InternalArgs) -> anyhow::Result<ExitCode> {
    permafrost_runtime::process::init_logging(false);
    let config = permafrost_node::NodeConfig::load(&args.config)?;
    let exit_with_parent = args.exit_with_parent;
    runtime()?.block_on(async move {
        let shutdown = stop_signal(exit_with_parent)?;
        permafrost_node::run(config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs one coordinator until Ctrl-C, SIGTERM (or, with `--exit-with-parent`, stdin closing).
pub fn run_coordinator(args: &InternalArgs) -> anyhow::Result<ExitCode> {
    permafrost_runtime::process::init_logging(false);
    let config = permafrost_coordinator::CoordinatorConfig::load(&args.config)?;
    let exit_with_parent = args.exit_with_parent;
    runtime()?.block_on(async move {
        let shutdown = stop_signal(exit_with_parent)?;
        permafrost_coordinator::run(config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    permafrost_runtime::process::service_runtime().context("cannot start the async runtime")
}

/// A future that completes on Ctrl-C or SIGTERM, or when stdin closes if asked to.
fn stop_signal(exit_with_parent: bool) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let signals = Shutdown::on_signals()?;
    let parent_gone = if exit_with_parent {
        Some(stdin_closed()?)
    } else {
        None
    };
    Ok(async move {
        let parent_gone = async move {
            match parent_gone {
                // An error means the watcher thread is gone; treat that as the parent gone too.
                Some(closed) => {
                    let _ = closed.await;
                    tracing::info!(
                        "standard input closed (the localnet is stopping or gone), stopping"
                    );
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = signals.wait() => tracing::info!("signal received, stopping"),
            () = parent_gone => {}
        }
    })
}

/// Completes when standard input reaches end of file. Read on a plain thread (not a tokio
/// blocking task) so that it never holds up the runtime's shutdown.
fn stdin_closed() -> anyhow::Result<oneshot::Receiver<()>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 256];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        })
        .context("cannot start the stdin watcher")?;
    Ok(rx)
}
