//! hbctl: the command-line tool for mirrord (volumes and pairs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hbmirror::control::{self, Kind, Mode, PairInfo, Reply, Request, VolumeInfo};
use hbmirror::size::{parse_size, Bytes};

/// Drive the mirrord of this site: volumes and remote-copy pairs.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// mirrord's control socket.
    #[arg(long, global = true, env = "HBCTL_SOCKET", default_value = control::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Volumes of this site: fixed-size files or block devices, shown as files on hbfs.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Remote-copy pairs: a local PVOL mirrored to an SVOL at a peer site.
    #[command(subcommand)]
    Pair(PairCommand),
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// Create a volume: a new file of --size bytes, or an existing block device given by --path.
    Create {
        /// Volume name; also its file name on hbfs.
        name: String,
        /// Size: 4096, 64KiB, 1MiB, 1GiB (a multiple of 4KiB). Not needed for a block device.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Backing file to create, or an existing block device such as /dev/loop0.
        /// Default: <data_dir>/volumes/NAME.vol.
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// List the volumes of this site.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a volume (refused while it is paired); its backing file is kept.
    Delete {
        /// Volume name.
        name: String,
    },
}

#[derive(Subcommand)]
enum PairCommand {
    /// Pair a local PVOL with an SVOL at a peer site, copy it in full (COPY), then mirror it (PAIR).
    ///
    /// The SVOL must already exist at the peer with exactly the PVOL's size.
    Create {
        /// Pair name, the same at both sites.
        name: String,
        /// Local volume to mirror (the PVOL).
        #[arg(long)]
        pvol: String,
        /// Peer site that holds the SVOL (a [[peers]] entry of mirrord's config).
        #[arg(long)]
        peer: String,
        /// SVOL name at the peer. Default: the PVOL's name.
        #[arg(long)]
        svol: Option<String>,
        /// Remote-copy mode.
        #[arg(long, value_enum, default_value_t = Mode::Sync)]
        mode: Mode,
        /// Heartbeat pairs carry heartbeats and are protected from split; data pairs carry data.
        #[arg(long, value_enum, default_value_t = Kind::Data)]
        kind: Kind,
    },
    /// Show pairs: role, state (SMPL COPY PAIR PSUS PSUE SSWS), mode, peer, copy progress.
    Status {
        /// Pair name; all pairs when omitted.
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Dissolve a pair at both sites; both volumes stay, in state SMPL.
    Delete {
        /// Pair name.
        name: String,
        /// Dissolve it here even if the peer site cannot be told (it keeps its half until deleted there).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hbctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), control::ClientError> {
    let (request, json) = match cli.command {
        Command::Volume(VolumeCommand::Create { name, size, path }) => {
            (Request::VolumeCreate { name, size, path }, false)
        }
        Command::Volume(VolumeCommand::List { json }) => (Request::VolumeList, json),
        Command::Volume(VolumeCommand::Delete { name }) => (Request::VolumeDelete { name }, false),
        Command::Pair(PairCommand::Create {
            name,
            pvol,
            peer,
            svol,
            mode,
            kind,
        }) => (
            Request::PairCreate {
                name,
                pvol,
                peer,
                svol,
                mode,
                kind,
            },
            false,
        ),
        Command::Pair(PairCommand::Status { name, json }) => (Request::PairStatus { name }, json),
        Command::Pair(PairCommand::Delete { name, force }) => {
            (Request::PairDelete { name, force }, false)
        }
    };
    let reply = control::call(&cli.socket, &request)?;
    match reply {
        Reply::Done(message) => println!("{message}"),
        Reply::Volumes(v) if json => print_json(&v),
        Reply::Volumes(v) => print_volumes(&v),
        Reply::Pairs(p) if json => print_json(&p),
        Reply::Pairs(p) => print_pairs(&p),
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("hbctl: cannot print JSON: {e}"),
    }
}

fn print_volumes(volumes: &[VolumeInfo]) {
    if volumes.is_empty() {
        println!("no volumes; create one with `hbctl volume create NAME --size 1MiB`");
        return;
    }
    println!(
        "{:<16} {:>10} {:<6} {:<12} {:<5} {:<3} PATH",
        "NAME", "SIZE", "KIND", "PAIR", "ROLE", "RW"
    );
    for v in volumes {
        println!(
            "{:<16} {:>10} {:<6} {:<12} {:<5} {:<3} {}",
            v.name,
            Bytes(v.size).to_string(),
            format!("{:?}", v.backing).to_lowercase(),
            v.pair.as_deref().unwrap_or("-"),
            v.role.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            if v.writable { "rw" } else { "ro" },
            v.path.display()
        );
    }
}

fn print_pairs(pairs: &[PairInfo]) {
    if pairs.is_empty() {
        println!("no pairs; create one with `hbctl pair create NAME --pvol VOL --peer SITE`");
        return;
    }
    println!(
        "{:<12} {:<5} {:<5} {:<5} {:<9} {:<10} {:<12} {:<12} {:>8} LINK",
        "PAIR", "ROLE", "STATE", "MODE", "KIND", "PEER", "PVOL", "SVOL", "COPIED"
    );
    for p in pairs {
        let copied = (p.copied_bytes * 100)
            .checked_div(p.copy_total_bytes)
            .map_or_else(|| "-".to_string(), |pct| format!("{pct}%"));
        println!(
            "{:<12} {:<5} {:<5} {:<5} {:<9} {:<10} {:<12} {:<12} {:>8} {}",
            p.name,
            p.role.to_string(),
            p.state.to_string(),
            p.mode.to_string(),
            p.kind.to_string(),
            p.peer,
            p.pvol,
            p.svol,
            copied,
            if p.link_up { "up" } else { "down" }
        );
    }
}
