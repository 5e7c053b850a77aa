//! hbctl: the command-line tool for mirrord (volumes and pairs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hbmirror::control::{self, Fence, Kind, Mode, PairInfo, PairState, Reply, Request, VolumeInfo};
use hbmirror::hb;
use hbmirror::hb::api::{Event, HbReply, HbRequest};
use hbmirror::hb::message::Procedure;
use hbmirror::hb::table::{Seen, Table};
use hbmirror::size::{parse_size, Bytes};
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
    /// Modes: `sync` (a write returns once both volumes hold it), `semi-sync`
    /// (a write returns after the PVOL write; the next write waits for the
    /// previous one's acknowledgement), `adaptive` (writes ship in the
    /// background, at most --skew held in memory; the lag shows in `pair status`).
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
        /// Heartbeat pairs carry only heartbeats, resync by themselves, and are
        /// protected from split and delete while installed; data pairs carry data.
        #[arg(long, value_enum, default_value_t = Kind::Data)]
        kind: Kind,
        /// Sync mode: `data` fails a write that cannot reach the SVOL with EIO
        /// (PVOL untouched); `never` keeps writing the PVOL and tracks the blocks.
        #[arg(long, value_enum)]
        fence: Option<Fence>,
        /// Adaptive mode: most pending write data held in memory (default 4MiB);
        /// beyond it blocks are only marked dirty and read back when they ship.
        #[arg(long, value_parser = parse_size)]
        skew: Option<u64>,
        /// Resync by itself when the link returns after PSUE (default: on for heartbeat pairs, off for data pairs).
        #[arg(long, value_enum)]
        auto_resync: Option<OnOff>,
    },
    /// Change the mode, fence, skew or auto-resync of a live pair (at either site).
    Set {
        /// Pair name.
        name: String,
        /// New remote-copy mode.
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// New fence level (sync mode).
        #[arg(long, value_enum)]
        fence: Option<Fence>,
        /// New adaptive skew.
        #[arg(long, value_parser = parse_size)]
        skew: Option<u64>,
        /// Resync by itself after PSUE.
        #[arg(long, value_enum)]
        auto_resync: Option<OnOff>,
    },
    /// Show pairs: role, state (SMPL COPY PAIR PSUS PSUE SSWS), mode, lag, copy progress.
    Status {
        /// Pair name; all pairs when omitted.
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Follow a running copy with a progress bar until it ends (needs NAME).
        #[arg(long, requires = "name")]
        watch: bool,
    },
    /// Split a data pair (PSUS), e.g. for a backup: what is pending ships first, then the
    /// SVOL becomes readable and writable at its site; both sides track their changes.
    ///
    /// Refused for a heartbeat pair installed for heartbeats (a split heartbeat
    /// mirror freezes the heartbeat and looks like a dead site): de-install it
    /// first (`hbctl pair uninstall NAME`), or add --force (logged as a warning).
    Split {
        /// Pair name.
        name: String,
        /// Split even a pair installed for heartbeats.
        #[arg(long)]
        force: bool,
    },
    /// Join a split or suspended pair again: copy from the PVOL exactly the blocks
    /// changed on either side (COPY), then mirror (PAIR).
    ///
    /// After a takeover, run `pair resync NAME --reverse` at the site that took
    /// over: its volume becomes the PVOL and only the blocks changed on either
    /// side since the split are copied back to the old PVOL. A plain `pair resync`
    /// at the PVOL's site instead discards the SVOL's changes.
    Resync {
        /// Pair name.
        name: String,
        /// Swap the roles (run at the site that took over, SSWS).
        #[arg(long)]
        reverse: bool,
    },
    /// At the SVOL's site: make the SVOL writable (SSWS) and track its changes,
    /// also when the PVOL's site is unreachable (failover of a data pair).
    Takeover {
        /// Pair name.
        name: String,
    },
    /// Mark a heartbeat pair installed for heartbeats: split and delete are refused.
    /// (Heartbeat pairs are installed when created; hbd installs and de-installs them too.)
    Install {
        /// Pair name.
        name: String,
    },
    /// De-install a heartbeat pair: it may then be split or deleted.
    Uninstall {
        /// Pair name.
        name: String,
    },
    /// Dissolve a pair at both sites; both volumes stay, in state SMPL.
    Delete {
        /// Pair name.
        name: String,
        /// Dissolve it here even if the peer site cannot be told (it keeps its half
        /// until deleted there), and even a heartbeat pair installed for heartbeats.
        #[arg(long)]
        force: bool,
    },
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
            eprintln!("hbctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), control::ClientError> {
    let socket_or = |default: &str| cli.socket.clone().unwrap_or_else(|| PathBuf::from(default));
    let socket = socket_or(control::DEFAULT_SOCKET);
    let (request, json) = match cli.command {
        Command::Hb(command) => return run_hb(&socket_or(hb::api::DEFAULT_SOCKET), command),
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
            fence,
            skew,
            auto_resync,
        }) => (
            Request::PairCreate {
                name,
                pvol,
                peer,
                svol,
                kind,
                mode,
                fence,
                skew,
                auto_resync: auto_resync.map(OnOff::on),
            },
            false,
        ),
        Command::Pair(PairCommand::Set {
            name,
            mode,
            fence,
            skew,
            auto_resync,
        }) => (
            Request::PairSet {
                name,
                mode,
                fence,
                skew,
                auto_resync: auto_resync.map(OnOff::on),
            },
            false,
        ),
        Command::Pair(PairCommand::Status {
            name: Some(name),
            watch: true,
            ..
        }) => return watch(&socket, &name),
        Command::Pair(PairCommand::Status { name, json, .. }) => {
            (Request::PairStatus { name }, json)
        }
        Command::Pair(PairCommand::Split { name, force }) => {
            (Request::PairSplit { name, force }, false)
        }
        Command::Pair(PairCommand::Resync { name, reverse }) => {
            (Request::PairResync { name, reverse }, false)
        }
        Command::Pair(PairCommand::Takeover { name }) => (Request::PairTakeover { name }, false),
        Command::Pair(PairCommand::Install { name }) => (
            Request::PairInstall {
                name,
                installed: true,
            },
            false,
        ),
        Command::Pair(PairCommand::Uninstall { name }) => (
            Request::PairInstall {
                name,
                installed: false,
            },
            false,
        ),
        Command::Pair(PairCommand::Delete { name, force }) => {
            (Request::PairDelete { name, force }, false)
        }
    };
    let reply = control::call(&socket, &request)?;
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
fn watch(socket: &Path, name: &str) -> Result<(), control::ClientError> {
    let status = || -> Result<PairInfo, control::ClientError> {
        match control::call(
            socket,
            &Request::PairStatus {
                name: Some(name.to_string()),
            },
        )? {
            Reply::Pairs(mut p) if !p.is_empty() => Ok(p.remove(0)),
            _ => Err(control::ClientError::Refused(format!("no pair '{name}'"))),
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

fn run_hb(socket: &Path, command: HbCommand) -> Result<(), control::ClientError> {
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
                        return Err(control::ClientError::Refused(format!(
                            "--mirror {name} {other}: say on or off"
                        )))
                    }
                },
                Some(_) => {
                    return Err(control::ClientError::Refused(
                        "--mirror takes NAME on|off".into(),
                    ))
                }
            };
            if network.is_none() && mirrors.is_none() && mirror.is_none() {
                return Err(control::ClientError::Refused(
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
    match control::call_as::<_, HbReply>(socket, &request)? {
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
        let level = e
            .level
            .map(|l| format!(" [{}]", hb::daemon::level_name(l)))
            .unwrap_or_default();
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
