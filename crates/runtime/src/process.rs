//! What every Permafrost binary does at start and stop: logging, and waiting for a signal.

/// The log target of the events that follow one session (a signature, a DKG, a reshare)
/// through every process: each carries the session id, and on the coordinator the request id
/// of the HTTP request that started it. They are DEBUG events (a busy network signs hundreds
/// of times a second), turned on with `RUST_LOG=info,permafrost::session=debug`.
pub const SESSION_LOG_TARGET: &str = "permafrost::session";

/// The environment variable that chooses the log format: `json` (JSON lines, for log
/// shippers) or `text`. `--log-json` chooses JSON too. Children inherit it, so
/// `PERMAFROST_LOG_FORMAT=json permafrost localnet up …` logs every process as JSON.
pub const LOG_FORMAT_ENV: &str = "PERMAFROST_LOG_FORMAT";

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); as JSON lines when `json` or when
/// [`LOG_FORMAT_ENV`] says `json`.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let from_env = match std::env::var(LOG_FORMAT_ENV) {
        Ok(format) if format == "json" => true,
        Ok(format) if format == "text" => false,
        Ok(format) => {
            eprintln!(
                "{LOG_FORMAT_ENV}={format:?}: expected \"json\" or \"text\"; logging as text"
            );
            false
        }
        Err(_) => false,
    };
    let _ = if json || from_env {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The command line shared by `permafrost-node` and `permafrost-coordinator`.
#[derive(clap::Parser)]
pub struct ServiceCli {
    /// Log as JSON lines (for log shippers).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: ServiceCommand,
}

/// `init` or `run`.
#[derive(clap::Subcommand)]
pub enum ServiceCommand {
    /// Create the identity key (mode 0600) in DIR and print its PeerId.
    Init {
        /// The data directory.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Run until SIGTERM or Ctrl-C.
    Run {
        /// The config file.
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

/// The tokio runtime a node or a coordinator runs on: one thread for the process's loop, its
/// network connections and its HTTP server (a current-thread runtime), with IO and timers.
///
/// A node's core is one loop whatever the runtime: a request waits for it in any case. On a
/// multi-threaded runtime each message also crossed threads twice (a connection's task on a
/// worker reads it, the loop handles it elsewhere, the answer goes back), and every crossing
/// woke a parked thread. On one thread a message is read, handled and answered without a
/// wake-up: about 10 % less CPU per signature over every process of a localnet, as fast or
/// faster at 32 in flight (docs/BENCHMARKS.md, "One thread per process"). The cost: a long
/// piece of work (a checkpoint of the keystore, a DKG's arithmetic) holds up that process's
/// network reads meanwhile, which were waiting for the loop anyway; and one process uses at
/// most one core.
pub fn service_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A shutdown future as a service's `run` takes it.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The whole `main` of a service binary: parse `init`/`run`, set up logging, run on a tokio
/// runtime until a signal, and turn every error into a message and exit status 1.
pub fn service_main<C, P, E, F>(
    name: &'static str,
    about: &'static str,
    init: impl FnOnce(&std::path::Path) -> Result<P, E>,
    load: impl FnOnce(&std::path::Path) -> Result<C, E>,
    run: impl FnOnce(C, Shutdown) -> F,
) -> std::process::ExitCode
where
    P: std::fmt::Display,
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
{
    use clap::{CommandFactory, FromArgMatches};

    let matches = ServiceCli::command().name(name).about(about).get_matches();
    let cli = match ServiceCli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_json);
    run_service_command(cli.command, init, load, run)
}

/// Carries out a parsed `init` or `run` (logging already set up): for a binary that adds
/// commands of its own around [`ServiceCommand`] and so parses its command line itself.
pub fn run_service_command<C, P, E, F>(
    command: ServiceCommand,
    init: impl FnOnce(&std::path::Path) -> Result<P, E>,
    load: impl FnOnce(&std::path::Path) -> Result<C, E>,
    run: impl FnOnce(C, Shutdown) -> F,
) -> std::process::ExitCode
where
    P: std::fmt::Display,
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
{
    use std::process::ExitCode;

    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    };
    match command {
        ServiceCommand::Init { dir } => match init(&dir) {
            Ok(peer_id) => {
                println!("{peer_id}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        ServiceCommand::Run { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            let runtime = match service_runtime() {
                Ok(r) => r,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match runtime.block_on(run(config, Box::pin(shutdown_signal()))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}
