//! `permafrost`: the Permafrost client and operator CLI.
//!
//! `keys`, `sign` and `health` call the coordinator's HTTP API; `localnet up` runs a whole
//! network (nodes and a coordinator, each its own process) on loopback; `demo` runs the key
//! life cycle on a fresh localnet. See [`cli`] for the commands and their options.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod demo;
mod internal;
mod interval;
mod localnet;
mod output;
mod progress;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::run(cli::Cli::parse())
}
