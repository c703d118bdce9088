//! The command line: options, subcommands, and the dispatch to their modules.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use permafrost_api::{ApiError, Curve, DerivationPath};

use crate::output::Format;
use crate::{commands, demo, internal, interval, localnet};

/// The API base URL when neither `--api` nor `PERMAFROST_API` says otherwise.
pub const DEFAULT_API: &str = "http://127.0.0.1:8700";

/// `permafrost`: the Permafrost client and operator CLI. No `Debug`: it holds the token.
#[derive(Parser)]
#[command(
    name = "permafrost",
    version,
    about = "Permafrost threshold-signature custody: client, localnet and demo"
)]
pub struct Cli {
    /// The coordinator's API base URL.
    #[arg(long, global = true, env = "PERMAFROST_API", default_value = DEFAULT_API, value_name = "URL")]
    pub api: String,
    /// A bearer token the coordinator accepts.
    #[arg(
        long,
        global = true,
        env = "PERMAFROST_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    pub token: Option<String>,
    /// Take the API URL and token from DIR/localnet.json (overrides --api and --token).
    #[arg(long, global = true, value_name = "DIR")]
    pub localnet: Option<PathBuf>,
    /// Print the API's JSON answer even on a terminal (it is printed whenever standard output
    /// is not a terminal; on a terminal, tables and sentences).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list and show keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Get a threshold signature over a message.
    Sign {
        /// The key id.
        #[arg(long, value_name = "ID")]
        key: String,
        /// The message, hex.
        #[arg(long, value_name = "HEX", required_unless_present = "message_file")]
        message: Option<String>,
        /// Read the message's bytes, as they are, from FILE (`-`: standard input); at most
        /// 64 KiB, the API's limit.
        #[arg(long, value_name = "FILE", conflicts_with = "message")]
        message_file: Option<PathBuf>,
        /// Sign with the key's child at this path (`m/0/17`: non-hardened indices, at most 16
        /// levels); the approval covers it. Default: the key itself.
        #[arg(long, value_name = "PATH", default_value = "m")]
        path: DerivationPath,
        /// Approve the signature with this client key file (`permafrost client-key create`);
        /// the nodes must list its public key. Without it, the coordinator approves with its
        /// gateway key, if it has one.
        #[arg(long, env = "PERMAFROST_CLIENT_KEY", value_name = "FILE")]
        client_key: Option<PathBuf>,
        /// With `--client-key`: the network id the approval must be for. The approval covers
        /// the network id and the key's public key, which otherwise come from the coordinator
        /// (`GET /v1/keys/{id}`); pinned, a different answer is refused before anything is
        /// approved.
        #[arg(long, value_name = "ID", requires = "client_key")]
        network_id: Option<String>,
        /// With `--client-key`: the key's group public key (hex) the approval must be for,
        /// pinned like `--network-id`.
        #[arg(long, value_name = "HEX", requires = "client_key")]
        public_key: Option<String>,
    },
    /// Create or show a client key, which approves signatures (nodes list its public key in
    /// their `[clients]` config).
    #[command(subcommand)]
    ClientKey(KeyFileCommand),
    /// Create or show an operator key, which approves DKGs and reshares (nodes list its public
    /// key in their `[operators]` config).
    #[command(subcommand)]
    OperatorKey(KeyFileCommand),
    /// Move a key to a new committee and/or threshold (or refresh its shares with the same
    /// ones); the public key stays the same. Prints the new epoch's key record.
    Reshare {
        /// The key id.
        #[arg(long, value_name = "ID")]
        key: String,
        /// Signers needed for a signature after the reshare (t').
        #[arg(long, value_name = "T")]
        threshold: u16,
        /// The new committee, by node name.
        #[arg(long, value_delimiter = ',', value_name = "a,b,c", required = true)]
        nodes: Vec<String>,
        /// Approve the reshare with this operator key file (repeatable; `permafrost
        /// operator-key create`); every old and new member requires an approval from a key it
        /// lists. Without any, the coordinator approves with its gateway operator key, if any.
        #[arg(long = "operator-key", value_name = "FILE")]
        operator_keys: Vec<PathBuf>,
    },
    /// Show the coordinator's health: each node's connection and liveness probe. A table on a
    /// terminal; JSON with `--json` or when the output is not a terminal.
    Health,
    /// Run a network of nodes and a coordinator on this machine.
    #[command(subcommand)]
    Localnet(LocalnetCommand),
    /// Run the key life cycle on a fresh 6-node localnet, for every curve: DKG, verified
    /// signatures, a reshare that evicts a node and raises the threshold, more signatures
    /// under the same public key.
    Demo,
    /// Run one signer node (used by `localnet up`; `permafrost-node run` in production).
    #[command(hide = true)]
    InternalNode(internal::InternalArgs),
    /// Run one coordinator (used by `localnet up`; `permafrost-coordinator run` in production).
    #[command(hide = true)]
    InternalCoordinator(internal::InternalArgs),
}

/// `permafrost keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Run a DKG for a new key.
    Create {
        /// The signature scheme.
        #[arg(long)]
        curve: CurveArg,
        /// Signers needed for a signature (t).
        #[arg(long, value_name = "T")]
        threshold: u16,
        /// The committee, by node name (default: every node).
        #[arg(long, value_delimiter = ',', value_name = "a,b,c")]
        nodes: Option<Vec<String>>,
        /// The new key's id (default: a random one).
        #[arg(long, value_name = "ID")]
        key_id: Option<String>,
        /// Approve the DKG with this operator key file (repeatable; `permafrost operator-key
        /// create`); every member requires an approval from a key it lists. Without any, the
        /// coordinator approves with its gateway operator key, if it has one.
        #[arg(long = "operator-key", value_name = "FILE")]
        operator_keys: Vec<PathBuf>,
    },
    /// List every key.
    List,
    /// Show one key.
    Show {
        /// The key id.
        id: String,
    },
    /// Show a child key: the public key a signature with `sign --path` verifies under.
    Derive {
        /// The key id.
        id: String,
        /// The child's path, `m/0/17` (non-hardened indices, at most 16 levels).
        #[arg(long, value_name = "PATH")]
        path: DerivationPath,
    },
    /// Show, set or clear a key's scheduled share rotation: a refresh of its shares, keeping
    /// its committee and threshold, that the coordinator runs on schedule and every member
    /// checks against the operators' approval of the policy.
    #[command(subcommand)]
    Rotation(RotationCommand),
}

/// `permafrost keys rotation …`.
#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Refresh the key's shares every DURATION, keeping its current committee and threshold
    /// (replaces any policy it had); the first refresh is due one interval from now. Prints
    /// the key's rotation.
    Set {
        /// The key id.
        #[arg(long, value_name = "ID")]
        key: String,
        /// The interval: `24h`, `90m`, `3600s`, `7d` or plain seconds; at least 60 s.
        #[arg(long, value_name = "DURATION", value_parser = interval::parse_rotation_interval)]
        every: u64,
        /// Approve the policy with this operator key file (repeatable; `permafrost
        /// operator-key create`); at every refresh, every member requires an approval of it
        /// from a key it lists. Without any, the coordinator approves with its gateway
        /// operator key, if it has one.
        #[arg(long = "operator-key", value_name = "FILE")]
        operator_keys: Vec<PathBuf>,
    },
    /// Show the key's rotation policy, or that it has none.
    Show {
        /// The key id.
        #[arg(long, value_name = "ID")]
        key: String,
    },
    /// Remove the key's rotation policy (nothing to do if it has none). A refresh already
    /// running goes on to its end.
    Clear {
        /// The key id.
        #[arg(long, value_name = "ID")]
        key: String,
    },
}

/// `permafrost client-key|operator-key …`.
#[derive(Debug, Subcommand)]
pub enum KeyFileCommand {
    /// Write a new ed25519 key to FILE (mode 0600; it must not exist) and print its public key.
    Create {
        /// The key file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the public key of the key in FILE.
    Show {
        /// The key file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// `permafrost localnet …`.
#[derive(Debug, Subcommand)]
pub enum LocalnetCommand {
    /// Create (or reuse) identities and configs in DIR, start every process, write
    /// DIR/localnet.json once all nodes are connected, and run until Ctrl-C or SIGTERM.
    Up {
        /// Number of signer nodes (`node1` … `nodeN`).
        #[arg(long, value_parser = clap::value_parser!(u16).range(2..=16))]
        nodes: u16,
        /// The localnet directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The coordinator's HTTP API port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8700, value_name = "P")]
        api_port: u16,
        /// The nodes do not list the coordinator's gateway operator key: every DKG and reshare
        /// needs an approval made with DIR/operator.key (`--operator-key`), as in production.
        #[arg(long)]
        require_operator_approval: bool,
    },
}

/// A curve as spelled on the command line (the API's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CurveArg {
    /// Ed25519 (RFC 8032 signatures).
    Ed25519,
    /// FROST(secp256k1, SHA-256) (RFC 9591 signatures).
    Secp256k1,
    /// BIP-340 Schnorr for Bitcoin taproot.
    #[value(name = "secp256k1-tr")]
    Secp256k1Tr,
}

impl From<CurveArg> for Curve {
    fn from(curve: CurveArg) -> Self {
        match curve {
            CurveArg::Ed25519 => Curve::Ed25519,
            CurveArg::Secp256k1 => Curve::Secp256k1,
            CurveArg::Secp256k1Tr => Curve::Secp256k1Tr,
        }
    }
}

/// Runs the parsed command line; errors are printed to stderr and give exit status 1.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::InternalNode(args) => internal::run_node(&args),
        Command::InternalCoordinator(args) => internal::run_coordinator(&args),
        command => {
            let target = commands::Target {
                api: cli.api,
                token: cli.token,
                localnet: cli.localnet,
            };
            dispatch(target, Format::for_stdout(cli.json), command)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

fn dispatch(
    target: commands::Target,
    format: Format,
    command: Command,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        match command {
            Command::Keys(KeysCommand::Create {
                curve,
                threshold,
                nodes,
                key_id,
                operator_keys,
            }) => {
                commands::create_key(
                    &target,
                    curve.into(),
                    threshold,
                    nodes,
                    key_id,
                    &operator_keys,
                    format,
                )
                .await
            }
            Command::Keys(KeysCommand::List) => commands::list_keys(&target, format).await,
            Command::Keys(KeysCommand::Show { id }) => {
                commands::show_key(&target, &id, format).await
            }
            Command::Keys(KeysCommand::Derive { id, path }) => {
                commands::derive_key(&target, &id, &path, format).await
            }
            Command::Keys(KeysCommand::Rotation(RotationCommand::Set {
                key,
                every,
                operator_keys,
            })) => commands::set_rotation(&target, &key, every, &operator_keys, format).await,
            Command::Keys(KeysCommand::Rotation(RotationCommand::Show { key })) => {
                commands::show_rotation(&target, &key, format).await
            }
            Command::Keys(KeysCommand::Rotation(RotationCommand::Clear { key })) => {
                commands::clear_rotation(&target, &key, format).await
            }
            Command::Sign {
                key,
                message,
                message_file,
                path,
                client_key,
                network_id,
                public_key,
            } => {
                let source = commands::MessageSource::from_args(message, message_file)?;
                let approver = client_key.as_deref().map(|file| commands::Approver {
                    file,
                    network_id: network_id.as_deref(),
                    public_key: public_key.as_deref(),
                });
                commands::sign(&target, &key, &path, &source, approver, format).await
            }
            Command::ClientKey(KeyFileCommand::Create { file })
            | Command::OperatorKey(KeyFileCommand::Create { file }) => {
                commands::create_key_file(&file, format)
            }
            Command::ClientKey(KeyFileCommand::Show { file })
            | Command::OperatorKey(KeyFileCommand::Show { file }) => {
                commands::show_key_file(&file, format)
            }
            Command::Reshare {
                key,
                threshold,
                nodes,
                operator_keys,
            } => commands::reshare(&target, &key, threshold, nodes, &operator_keys, format).await,
            Command::Health => commands::health(&target, format).await,
            Command::Localnet(LocalnetCommand::Up {
                nodes,
                dir,
                api_port,
                require_operator_approval,
            }) => {
                localnet::up(
                    &dir,
                    usize::from(nodes),
                    api_port,
                    !require_operator_approval,
                )
                .await
            }
            Command::Demo => demo::run().await,
            Command::InternalNode(_) | Command::InternalCoordinator(_) => Err(anyhow::anyhow!(
                "internal commands run without this runtime"
            )),
        }
    })
}

/// Prints an error: an API error answer as `error: <code>: <message>`, anything else with
/// its causes.
fn report(error: &anyhow::Error) {
    match error.downcast_ref::<ApiError>() {
        Some(ApiError::Http { code, message, .. }) => eprintln!("error: {code}: {message}"),
        _ => eprintln!("error: {error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn keys_create_parses_curve_threshold_and_nodes() {
        let cli = Cli::try_parse_from([
            "permafrost",
            "--api",
            "http://127.0.0.1:1",
            "keys",
            "create",
            "--curve",
            "secp256k1-tr",
            "--threshold",
            "2",
            "--nodes",
            "node1,node3",
        ])
        .unwrap();
        assert_eq!(cli.api, "http://127.0.0.1:1");
        let Command::Keys(KeysCommand::Create {
            curve,
            threshold,
            nodes,
            ..
        }) = cli.command
        else {
            panic!("not keys create: {:?}", cli.command);
        };
        assert_eq!(Curve::from(curve), Curve::Secp256k1Tr);
        assert_eq!(threshold, 2);
        assert_eq!(nodes, Some(vec!["node1".to_owned(), "node3".to_owned()]));
        assert!(Cli::try_parse_from([
            "permafrost",
            "keys",
            "create",
            "--curve",
            "p256",
            "--threshold",
            "2"
        ])
        .is_err());
    }

    #[test]
    fn keys_rotation_parses_its_interval_and_operator_keys() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["permafrost", "keys", "rotation"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let cli = parse(&[
            "set",
            "--key",
            "k-1",
            "--every",
            "24h",
            "--operator-key",
            "a.key",
            "--operator-key",
            "b.key",
        ])
        .unwrap();
        let Command::Keys(KeysCommand::Rotation(RotationCommand::Set {
            key,
            every,
            operator_keys,
        })) = cli.command
        else {
            panic!("not keys rotation set: {:?}", cli.command);
        };
        assert_eq!((key.as_str(), every), ("k-1", 86_400));
        assert_eq!(
            operator_keys,
            [PathBuf::from("a.key"), PathBuf::from("b.key")]
        );
        let Command::Keys(KeysCommand::Rotation(RotationCommand::Set { every, .. })) =
            parse(&["set", "--key", "k", "--every", "3600"])
                .unwrap()
                .command
        else {
            panic!("not keys rotation set");
        };
        assert_eq!(every, 3_600);

        // Under a minute: refused by the parser, saying why, before anything is sent.
        let short = parse(&["set", "--key", "k", "--every", "59s"])
            .err()
            .unwrap();
        assert_eq!(short.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            short
                .to_string()
                .contains("shortest rotation interval, 60 s"),
            "{short}"
        );
        let missing = parse(&["set", "--key", "k"]).err().unwrap();
        assert_eq!(
            missing.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(matches!(
            parse(&["show", "--key", "k"]).unwrap().command,
            Command::Keys(KeysCommand::Rotation(RotationCommand::Show { key })) if key == "k"
        ));
        assert!(matches!(
            parse(&["clear", "--key", "k", "--json"]).unwrap().command,
            Command::Keys(KeysCommand::Rotation(RotationCommand::Clear { key })) if key == "k"
        ));
    }

    #[test]
    fn localnet_up_checks_the_node_count() {
        for (nodes, ok) in [("1", false), ("2", true), ("16", true), ("17", false)] {
            let parsed = Cli::try_parse_from([
                "permafrost",
                "localnet",
                "up",
                "--nodes",
                nodes,
                "--dir",
                "d",
            ]);
            assert_eq!(parsed.is_ok(), ok, "{nodes}");
        }
        let cli =
            Cli::try_parse_from(["permafrost", "localnet", "up", "--nodes", "3", "--dir", "d"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Command::Localnet(LocalnetCommand::Up { api_port: 8700, .. })
        ));
    }

    #[test]
    fn sign_takes_exactly_one_message_source() {
        let sign = |extra: &[&str]| {
            let mut args = vec!["permafrost", "sign", "--key", "k"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let source = |extra: &[&str]| {
            let Command::Sign {
                message,
                message_file,
                ..
            } = sign(extra).unwrap().command
            else {
                panic!("not sign");
            };
            commands::MessageSource::from_args(message, message_file).unwrap()
        };
        assert_eq!(
            source(&["--message", "00ff"]),
            commands::MessageSource::Hex("00ff".into())
        );
        assert_eq!(
            source(&["--message-file", "m.bin"]),
            commands::MessageSource::File("m.bin".into())
        );
        assert_eq!(
            source(&["--message-file", "-"]),
            commands::MessageSource::Stdin
        );
        let both = sign(&["--message", "00", "--message-file", "-"])
            .err()
            .unwrap();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(both.to_string().contains("--message-file"), "{both}");
        let neither = sign(&[]).err().unwrap();
        assert_eq!(
            neither.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(neither.to_string().contains("--message"), "{neither}");
    }

    #[test]
    fn json_is_an_option_of_every_command() {
        for args in [
            &["permafrost", "--json", "health"][..],
            &["permafrost", "health", "--json"],
            &["permafrost", "keys", "list", "--json"],
            &[
                "permafrost",
                "sign",
                "--key",
                "k",
                "--message",
                "00",
                "--json",
            ],
            &["permafrost", "client-key", "show", "--file", "f", "--json"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert!(cli.json, "{args:?}");
        }
        assert!(!Cli::try_parse_from(["permafrost", "health"]).unwrap().json);
    }

    #[test]
    fn internal_commands_are_hidden() {
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("internal"), "{help}");
    }
}
