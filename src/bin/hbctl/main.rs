//! hbctl: the command-line tool for this site's mirrord (volumes and pairs)
//! and hbd (the heartbeat check).
//!
//! - `cli`: the command tree (each request's arguments are its own struct).
//! - `storage`: `volume` and `pair` commands, sent to mirrord.
//! - `hb`: `hb` commands, sent to hbd.
//! - `print`: tables and JSON on stdout.

mod cli;
mod hb;
mod print;
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hbcore::control;
use hbcore::jsonl::ClientError;
use hbmirror::hb::api;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // SAFETY: restoring the default SIGPIPE action before any thread starts;
    // a closed pipe (`hbctl ... | head`) then ends hbctl quietly, as for any
    // Unix filter, instead of a panic in println!.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hbctl: {}", hbcore::report::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), ClientError> {
    let socket = |default: &str| cli.socket.clone().unwrap_or_else(|| PathBuf::from(default));
    match cli.command {
        Command::Volume(command) => storage::volume(&socket(control::DEFAULT_SOCKET), command),
        Command::Pair(command) => storage::pair(&socket(control::DEFAULT_SOCKET), command),
        Command::Hb(command) => hb::run(&socket(api::DEFAULT_SOCKET), command),
    }
}
