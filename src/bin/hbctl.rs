//! hbctl: the command-line tool for mirrord (volumes and pairs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hbcore::control::{self, PairInfo, Reply, Request, VolumeInfo};
use hbcore::jsonl::{self, ClientError};
use hbcore::size::Bytes;
use hbcore::vocab::{Kind, PairState};
use hbmirror::hb;
use hbmirror::hb::api::{Event, HbReply, HbRequest};
use hbmirror::hb::message::Procedure;
use hbmirror::hb::table::{Seen, Table};
use indicatif::{ProgressBar, ProgressStyle};

/// Drive this site's mirrord (volumes, remote-copy pairs) and hbd (the heartbeat check).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Control socket of the daemon addressed [default: /run/hbmirror/mirrord.sock
    /// for `volume` and `pair`, /run/hbmirror/hbd.sock for `hb`].
    #[arg(long, global = true, env = "HBCTL_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Volumes of this site: fixed-size files or block devices, shown as files on hbfs.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Remote-copy pairs: a local PVOL mirrored to an SVOL at a peer site.
    #[command(subcommand, after_help = PAIR_HELP)]
    Pair(PairCommand),
    /// The heartbeat check (hbd): status table, events, heartbeat mirrors, procedure.
    #[command(subcommand)]
    Hb(HbCommand),
}

#[derive(Subcommand)]
enum HbCommand {
    /// Show the heartbeat status table (Fig 2): channels, peer status, mirrors, counts.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show recent events: channel failures and recoveries, failure notices, failover.
    Events {
        /// How many, newest last.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Install or de-install heartbeat mirrors while heartbeat checking runs.
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// Turn the network channel, the mirror channel, or one mirror on or off,
    /// here and (over a working channel) at the peer (Fig 8).
    Procedure {
        /// Send and check heartbeats over the network.
        #[arg(long, value_enum)]
        network: Option<OnOff>,
        /// Send and check heartbeats through the heartbeat mirrors.
        #[arg(long, value_enum)]
        mirrors: Option<OnOff>,
        /// One mirror: NAME on|off.
        #[arg(long, num_args = 2, value_names = ["NAME", "on|off"])]
        mirror: Option<Vec<String>>,
    },
    /// Allow another failover, after a failback to the production site.
    Rearm,
}

#[derive(Subcommand)]
enum MirrorCommand {
    /// Install a heartbeat mirror whose PVOL this host writes (Fig 4): registers
    /// it, enables it, protects its mirrord pair from split, and tells the peer
    /// hbd, which registers its SVOL.
    Install {
        /// The heartbeat PVOL as a file here (usually on hbfs).
        #[arg(long)]
        pvol: PathBuf,
        /// The mirrord pair behind it (must be a heartbeat pair with its PVOL here).
        #[arg(long)]
        pair: Option<String>,
        /// Mirror name. Default: the pair's name, else the PVOL file's name.
        #[arg(long)]
        name: Option<String>,
        /// SVOL volume name at the peer (found in its volume_dir). Default: the pair's SVOL.
        #[arg(long)]
        svol: Option<String>,
        /// Or the SVOL's full path at the peer.
        #[arg(long)]
        svol_path: Option<String>,
    },
    /// De-install a heartbeat mirror (Fig 5): stops using it here and at the peer,
    /// and lifts its pair's split protection.
    Uninstall {
        /// Mirror name.
        name: String,
    },
}

const PAIR_HELP: &str = "\
States: SMPL no pair | COPY copying | PAIR in sync | PSUS split by a person |
        PSUE suspended by an error (link or peer lost) | SSWS SVOL taken over.
In PSUS, PSUE and SSWS every changed block is tracked (dirty bitmap, kept across
restarts); a resync copies exactly the blocks changed on either side.

Backup from the SVOL:   pair split NAME  ...  pair resync NAME
Link lost (PSUE):       heartbeat pairs resync by themselves; data pairs: pair resync NAME
Failover to the SVOL:   pair takeover NAME            (at the SVOL's site)
Fail back:              pair resync NAME --reverse    (there, once both sites are up)
                        then, to return home: pair takeover NAME and pair resync NAME --reverse
                        at the original site
Heartbeat pairs refuse split and delete while installed: pair uninstall NAME first.";

#[derive(Subcommand)]
enum VolumeCommand {
    Create(control::VolumeCreate),
    /// List the volumes of this site.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    Delete(control::VolumeDelete),
}

#[derive(Subcommand)]
enum PairCommand {
    Create(control::PairCreate),
    Set(control::PairSet),
    /// Show pairs: role, state (SMPL COPY PAIR PSUS PSUE SSWS), mode, lag, copy progress.
    Status {
        #[command(flatten)]
        request: control::PairStatus,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Follow a running copy with a progress bar until it ends (needs NAME).
        #[arg(long, requires = "name")]
        watch: bool,
    },
    Split(control::PairSplit),
    Resync(control::PairResync),
    Takeover(control::PairTakeover),
    /// Mark a heartbeat pair installed for heartbeats: split and delete are refused.
    /// (Heartbeat pairs are installed when created; hbd installs and de-installs them too.)
    Install(control::PairInstall),
    /// De-install a heartbeat pair: it may then be split or deleted.
    Uninstall(control::PairInstall),
    Delete(control::PairDelete),
}

/// A switch.
#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

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
    let socket_or = |default: &str| cli.socket.clone().unwrap_or_else(|| PathBuf::from(default));
    let socket = socket_or(control::DEFAULT_SOCKET);
    let (request, json) = match cli.command {
        Command::Hb(command) => return run_hb(&socket_or(hb::api::DEFAULT_SOCKET), command),
        Command::Volume(VolumeCommand::Create(r)) => (Request::VolumeCreate(r), false),
        Command::Volume(VolumeCommand::List { json }) => (Request::VolumeList, json),
        Command::Volume(VolumeCommand::Delete(r)) => (Request::VolumeDelete(r), false),
        Command::Pair(PairCommand::Create(r)) => (Request::PairCreate(r), false),
        Command::Pair(PairCommand::Set(r)) => (Request::PairSet(r), false),
        Command::Pair(PairCommand::Status {
            request: control::PairStatus { name: Some(name) },
            watch: true,
            ..
        }) => return watch(&socket, &name),
        Command::Pair(PairCommand::Status { request, json, .. }) => {
            (Request::PairStatus(request), json)
        }
        Command::Pair(PairCommand::Split(r)) => (Request::PairSplit(r), false),
        Command::Pair(PairCommand::Resync(r)) => (Request::PairResync(r), false),
        Command::Pair(PairCommand::Takeover(r)) => (Request::PairTakeover(r), false),
        Command::Pair(PairCommand::Install(r)) => (
            Request::PairInstall(control::PairInstall {
                installed: true,
                ..r
            }),
            false,
        ),
        Command::Pair(PairCommand::Uninstall(r)) => (
            Request::PairInstall(control::PairInstall {
                installed: false,
                ..r
            }),
            false,
        ),
        Command::Pair(PairCommand::Delete(r)) => (Request::PairDelete(r), false),
    };
    let reply: Reply = jsonl::call(&socket, &request)?;
    match reply {
        Reply::Done(message) => println!("{message}"),
        Reply::Volumes(v) if json => print_json(&v),
        Reply::Volumes(v) => print_volumes(&v),
        Reply::Pairs(p) if json => print_json(&p),
        Reply::Pairs(p) if p.len() == 1 => print_pair(&p[0]),
        Reply::Pairs(p) => print_pairs(&p),
    }
    Ok(())
}

/// Follows a pair's copy with a progress bar until it is no longer in COPY.
fn watch(socket: &Path, name: &str) -> Result<(), ClientError> {
    let status = || -> Result<PairInfo, ClientError> {
        match jsonl::call(
            socket,
            &Request::PairStatus(control::PairStatus {
                name: Some(name.to_string()),
            }),
        )? {
            Reply::Pairs(mut p) if !p.is_empty() => Ok(p.remove(0)),
            _ => Err(ClientError::Refused(format!("no pair '{name}'"))),
        }
    };
    let mut pair = status()?;
    if pair.state == PairState::Copy {
        let bar = ProgressBar::new(pair.copy.total_bytes.max(1));
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{name} COPY"));
        while pair.state == PairState::Copy {
            bar.set_length(pair.copy.total_bytes.max(1));
            bar.set_position(pair.copy.copied_bytes);
            std::thread::sleep(Duration::from_millis(200));
            pair = status()?;
        }
        bar.set_position(pair.copy.copied_bytes);
        bar.finish_with_message(pair.state.to_string());
    }
    print_pair(&pair);
    Ok(())
}

fn run_hb(socket: &Path, command: HbCommand) -> Result<(), ClientError> {
    let (request, json) = match command {
        HbCommand::Status { json } => (HbRequest::Status, json),
        HbCommand::Events { limit, json } => (HbRequest::Events { limit }, json),
        HbCommand::Mirror(MirrorCommand::Install {
            pvol,
            pair,
            name,
            svol,
            svol_path,
        }) => {
            let pvol = std::path::absolute(&pvol).unwrap_or(pvol);
            (
                HbRequest::Install {
                    pvol,
                    pair,
                    name,
                    svol,
                    svol_path,
                },
                false,
            )
        }
        HbCommand::Mirror(MirrorCommand::Uninstall { name }) => {
            (HbRequest::Uninstall { name }, false)
        }
        HbCommand::Procedure {
            network,
            mirrors,
            mirror,
        } => {
            let mirror = match mirror.as_deref() {
                None => None,
                Some([name, state]) => match state.as_str() {
                    "on" => Some((name.clone(), true)),
                    "off" => Some((name.clone(), false)),
                    other => {
                        return Err(ClientError::Refused(format!(
                            "--mirror {name} {other}: say on or off"
                        )))
                    }
                },
                Some(_) => return Err(ClientError::Refused("--mirror takes NAME on|off".into())),
            };
            if network.is_none() && mirrors.is_none() && mirror.is_none() {
                return Err(ClientError::Refused(
                    "nothing to change: give --network, --mirrors or --mirror NAME on|off".into(),
                ));
            }
            (
                HbRequest::Procedure(Procedure {
                    network: network.map(OnOff::on),
                    mirrors: mirrors.map(OnOff::on),
                    mirror,
                }),
                false,
            )
        }
        HbCommand::Rearm => (HbRequest::Rearm, false),
    };
    match jsonl::call::<_, HbReply>(socket, &request)? {
        HbReply::Done(text) => println!("{text}"),
        HbReply::Table(t) if json => print_json(&t),
        HbReply::Table(t) => print_table(&t),
        HbReply::Events(e) if json => print_json(&e),
        HbReply::Events(e) => print_events(&e),
    }
    Ok(())
}

fn ago(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!(
            "{:.1}s ago",
            hb::table::now_ms().saturating_sub(ms) as f64 / 1000.0
        ),
        None => "never".into(),
    }
}

fn upper<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn print_table(t: &Table) {
    println!(
        "host {} ({:?} group){}",
        t.host,
        t.group,
        if t.failed_over { "  FAILED OVER" } else { "" }
    );
    let seen = |s: &Seen| {
        let problem = s
            .problem
            .as_ref()
            .map(|p| format!("  ({p})"))
            .unwrap_or_default();
        format!("{} heartbeats, last {}{problem}", s.count, ago(s.last_ms))
    };
    println!(
        "network heartbeat enable     {:<8} remote group via network  {:<8} {}",
        upper(&t.network_enable),
        upper(&t.remote_group_via_network),
        seen(&t.network)
    );
    println!(
        "remote copy heartbeat enable {:<8} remote group via mirrors  {}",
        upper(&t.remote_copy_enable),
        upper(&t.remote_group_via_mirrors)
    );
    if t.devices.is_empty() {
        println!("no heartbeat mirrors; install one with `hbctl hb mirror install --pvol PATH --pair NAME`");
    }
    for d in &t.devices {
        let address = d
            .address
            .as_ref()
            .map(|a| a.display().to_string())
            .unwrap_or_else(|| "NULL".into());
        println!(
            "  mirror {:<10} {:<8} {:<7} {address}  {}",
            d.name,
            upper(&d.status),
            upper(&d.direction),
            seen(&d.seen)
        );
    }
    if !t.outbox.is_empty() {
        println!(
            "{} control message(s) not yet acknowledged by the peer",
            t.outbox.len()
        );
    }
}

fn print_events(events: &[Event]) {
    if events.is_empty() {
        println!("no events");
    }
    for e in events {
        let level = e.level.map(|l| format!(" [{}]", l)).unwrap_or_default();
        println!(
            "{} {:<5}{level} {}: {}",
            ago(Some(e.time_ms)),
            upper(&e.source),
            e.part,
            e.text
        );
    }
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
        "{:<12} {:<5} {:<5} {:<9} {:<9} {:<10} {:<12} {:<12} {:>9} {:>6} LINK",
        "PAIR", "ROLE", "STATE", "MODE", "KIND", "PEER", "PVOL", "SVOL", "PENDING", "COPY"
    );
    for p in pairs {
        println!(
            "{:<12} {:<5} {:<5} {:<9} {:<9} {:<10} {:<12} {:<12} {:>9} {:>6} {}",
            p.name,
            p.role.to_string(),
            p.state.to_string(),
            p.mode.to_string(),
            p.kind.to_string(),
            p.peer,
            p.pvol,
            p.svol,
            Bytes(p.pending_bytes).to_string(),
            if p.copy.running {
                format!("{:.0}%", p.copy.percent)
            } else {
                "-".into()
            },
            if p.link_up { "up" } else { "down" }
        );
    }
}

fn print_pair(p: &PairInfo) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("pair        {}", p.name);
    println!(
        "role        {} (peer site '{}', link {})",
        p.role,
        p.peer,
        if p.link_up { "up" } else { "down" }
    );
    println!("state       {}", p.state);
    println!(
        "volumes     PVOL {} -> SVOL {} ({})",
        p.pvol,
        p.svol,
        Bytes(p.size)
    );
    println!(
        "kind        {}{}",
        p.kind,
        if p.kind == Kind::Heartbeat {
            format!(", installed for heartbeats: {}", yes_no(p.installed))
        } else {
            String::new()
        }
    );
    println!(
        "mode        {} (fence {}, skew {}, auto-resync {})",
        p.mode,
        p.fence,
        Bytes(p.skew),
        if p.auto_resync { "on" } else { "off" }
    );
    let age = p
        .oldest_pending_ms
        .map(|ms| format!(", oldest {:.1}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    println!(
        "pending     {} not yet at the other side{age}; {} queued in memory",
        Bytes(p.pending_bytes),
        Bytes(p.queued_bytes)
    );
    let c = &p.copy;
    if c.total_bytes > 0 || c.running {
        println!(
            "copy        {}{:.1}%: {} of {} at {}/s",
            if c.running { "running, " } else { "last: " },
            c.percent,
            Bytes(c.copied_bytes),
            Bytes(c.total_bytes),
            Bytes(c.rate_bytes_per_s as u64)
        );
    }
}
