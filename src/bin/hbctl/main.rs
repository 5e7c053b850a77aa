//! hbctl: the command-line tool for this site's mirrord (volumes and pairs)
//! and hbd (the heartbeat check).
//!
//! - `cli`: the command tree (each request's arguments are its own struct).
//! - `mirrord`: where mirrord is: its control socket, or the host link;
//!   `remote`: the host link's options (`--storage`, `--key`, `--host`) checked.
//! - `storage`: `volume`, `pair` and `link` commands, sent to mirrord.
//! - `hb`: `hb` commands, sent to hbd; `events`: `hb events --follow`;
//!   `check`: `hb check`, the survival verdict as an exit status.
//! - `cluster`: `cluster` commands, sent to the member agent in hbd.
//! - `monitor`: `monitor`, the live full-screen view.
//! - `print`: tables and JSON on stdout.
//! - `output`: `--json` for results and errors, and the exit statuses.

mod check;
mod cli;
mod cluster;
mod events;
mod hb;
mod mirrord;
mod monitor;
mod output;
mod print;
mod remote;
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use hbcore::control;
use hbcore::jsonl::ClientError;
use hbmirror::hb::api;

use cli::{Cli, Command, HbCommand, LinkCommand, PairCommand, VolumeCommand};
use mirrord::Mirrord;

fn main() -> ExitCode {
    // SAFETY: restoring the default SIGPIPE action before any thread starts;
    // a closed pipe (`hbctl ... | head`) then ends hbctl quietly, as for any
    // Unix filter, instead of a panic in println!.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let (cli, matches) = match Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)))
    {
        Ok(parsed) => parsed,
        Err(e) => return output::usage_error(e),
    };
    output::set_json(cli.json);
    if let Some(dir) = &cli.generate_docs {
        return match hbcore::docs::generate(Cli::command(), dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => output::fail("io", &hbcore::report::chain(&e), output::EXIT_IO),
        };
    }
    if cli.command.is_none() {
        return output::fail(
            "invalid_input",
            "a command is needed: volume, pair or hb (see hbctl --help)",
            output::EXIT_INVALID_INPUT,
        );
    }
    if let (Some(Command::Monitor(args)), Some(socket)) = (&cli.command, &cli.socket) {
        if args.mirrord.as_ref().is_some_and(|m| m != socket) {
            let text = format!(
                "monitor: --mirrord and --socket (or HBCTL_SOCKET) name two different sockets for mirrord ({} and {}): give one",
                args.mirrord.as_ref().map_or_else(String::new, |m| m.display().to_string()),
                socket.display()
            );
            return output::fail("invalid_input", &text, output::EXIT_INVALID_INPUT);
        }
    }
    let remote = match remote::from_cli(&cli, &matches) {
        Ok(remote) => remote,
        Err(text) => return output::fail("invalid_input", &text, output::EXIT_INVALID_INPUT),
    };
    match run(cli, remote) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output::client_error(&e),
    }
}

/// Runs the command; `remote`: mirrord over the host link (`--storage`).
fn run(cli: Cli, remote: Option<Mirrord>) -> Result<(), ClientError> {
    let socket = |default: &str| cli.socket.clone().unwrap_or_else(|| PathBuf::from(default));
    let Some(mut command) = cli.command else {
        return Ok(());
    };
    if cli.json {
        json_everywhere(&mut command);
    }
    let mirrord = |remote: Option<Mirrord>| {
        remote.unwrap_or_else(|| Mirrord::Socket(socket(control::DEFAULT_SOCKET)))
    };
    match command {
        Command::Volume(command) => storage::volume(&mirrord(remote), command),
        Command::Pair(command) => storage::pair(&mirrord(remote), command),
        Command::Link(command) => storage::link(&mirrord(remote), command),
        Command::Hb(command) => hb::run(&socket(api::DEFAULT_SOCKET), command),
        Command::Cluster(command) => {
            cluster::run(&socket(hbmirror::cluster::config::DEFAULT_SOCKET), command)
        }
        Command::Monitor(mut args) => {
            // The global --socket addresses mirrord here, as for `volume` and `pair`.
            args.mirrord = args.mirrord.or(cli.socket);
            args.remote = remote;
            monitor::run(args)
        }
    }
}

/// The global `--json` turns on each command's own `--json`.
fn json_everywhere(command: &mut Command) {
    match command {
        Command::Volume(VolumeCommand::List { json })
        | Command::Pair(PairCommand::Status { json, .. })
        | Command::Link(LinkCommand::Status { json })
        | Command::Hb(HbCommand::Status { json })
        | Command::Hb(HbCommand::Events { json, .. })
        | Command::Cluster(cluster::ClusterCommand::Show { json }) => *json = true,
        _ => {}
    }
}
