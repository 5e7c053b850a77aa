//! hbctl's command line: one subcommand tree for mirrord (`volume`, `pair`,
//! `link`; on this machine, or over the host link) and hbd (`hb`). The
//! arguments of each request are the request's own struct
//! ([`hbcore::control`], [`hbmirror::hb::api`]); what is here only picks
//! the daemon and how to print.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hbcore::control;
use hbmirror::hb::api;

/// Drive this site's mirrord (volumes, remote-copy pairs) and hbd (the heartbeat check).
#[derive(Parser)]
#[command(version, name = "hbctl", bin_name = "hbctl")]
pub struct Cli {
    /// Control socket of the daemon addressed [default: /run/hbmirror/mirrord.sock
    /// for `volume`, `pair`, `link` and `monitor`, /run/hbmirror/hbd.sock for `hb`,
    /// /run/hbmirror/cluster.sock for `cluster`].
    #[arg(long, global = true, env = "HBCTL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// mirrord on another machine, over the host link, for `volume`, `pair`,
    /// `link` and `monitor` (instead of --socket): its `[hosts] listen`
    /// address, and a second one tried when the first does not answer.
    /// Needs --key.
    #[arg(
        long,
        global = true,
        env = "HBCTL_STORAGE",
        value_name = "ADDR[,ADDR2]"
    )]
    pub storage: Option<String>,
    /// With --storage: this host's key file (mode 0600 or stricter), the one
    /// mirrord's `[[hosts.allow]]` entry for this host names.
    #[arg(long, global = true, env = "HBCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// With --storage: this host's id, as mirrord's `[[hosts.allow]] host`
    /// names it [default: this machine's host name].
    #[arg(long, global = true, env = "HBCTL_HOST", value_name = "ID")]
    pub host: Option<String>,
    /// With --storage: how long a request waits for mirrord in all,
    /// reconnecting meanwhile, before hbctl gives up (exit 3).
    #[arg(
        long,
        global = true,
        env = "HBCTL_IO_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 5000
    )]
    pub io_timeout_ms: u64,
    /// Print JSON: results as JSON, errors as {"error": {"kind", "message"}}
    /// (kinds: refused, unreachable, invalid_input, io, protocol).
    #[arg(long, global = true)]
    pub json: bool,
    /// Write the man pages and shell completions into DIR and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    pub generate_docs: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Volumes of this site: fixed-size files or block devices, shown as files on hbfs.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Remote-copy pairs: a local PVOL mirrored to an SVOL at a peer site.
    #[command(subcommand, after_help = PAIR_HELP)]
    Pair(PairCommand),
    /// The remote link to each peer site: its two lanes and its network paths.
    #[command(subcommand)]
    Link(LinkCommand),
    /// The heartbeat check (hbd): status table, events, heartbeat mirrors, procedure.
    #[command(subcommand)]
    Hb(HbCommand),
    /// The cluster of many hosts (member agent in hbd): MIB, node states.
    #[command(subcommand)]
    Cluster(crate::cluster::ClusterCommand),
    /// A live full-screen view of pairs, link RTT, hbd's channels and events
    /// (q quits, Tab or 1-4 switch views); plain output when not on a terminal.
    Monitor(crate::monitor::MonitorArgs),
}

const PAIR_HELP: &str = "\
States: SMPL no pair | COPY copying | PAIR in sync | PSUS split by a person |
        PSUE suspended by an error (link or peer lost) | SSWS SVOL taken over.
In PSUS, PSUE and SSWS every changed block is tracked (dirty bitmap, kept across
restarts); a resync copies exactly the blocks changed on either side.

Backup from the SVOL:   pair split NAME  ...  pair resync NAME
Link lost (PSUE):       heartbeat pairs resync by themselves; data pairs: pair resync NAME
Failover to the SVOL:   pair takeover NAME            (at the SVOL's site)
                        the old PVOL is then outdated: it refuses host writes
                        (EROFS) from the moment it learns it, until resolved:
                        pair resync NAME --discard-local (there) or --reverse (here)
Fail back:              pair resync NAME --reverse    (there, once both sites are up)
                        then, to return home: pair takeover NAME and pair resync NAME --reverse
                        at the original site
Heartbeat pairs refuse split and delete while installed: pair uninstall NAME first.

Integrity: generations are compared at every reconnect and resync (`pair status`
shows the verdict: in sync, ahead, split brain, unrelated). After a split brain:
                        pair resync NAME --discard-local | --discard-remote
Prove both copies equal: pair verify NAME --watch    (then pair resync NAME if any differ)
Send only what differs:  pair set NAME --checksum-resync on";

#[derive(Subcommand)]
pub enum VolumeCommand {
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
pub enum PairCommand {
    Create(control::PairCreate),
    Set(control::PairSet),
    /// Show pairs: role, state (SMPL COPY PAIR PSUS PSUE SSWS), mode, lag, copy progress.
    ///
    /// A PVOL whose SVOL was taken over is `outdated` (state PSUE, shown as
    /// `PSUE (outdated)` and with `outdated: true` and `outdated_reason` in
    /// JSON): it refuses host writes with EROFS, also across restarts, until
    /// `pair resync NAME --discard-local` here or `pair resync NAME --reverse`
    /// at the site that took over (or `--discard-remote` here, keeping this
    /// site's data and discarding that site's).
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
    Outdate(control::PairOutdate),
    /// Mark a heartbeat pair installed for heartbeats: split and delete are refused.
    /// (Heartbeat pairs are installed when created; hbd installs and de-installs them too.)
    Install(control::PairInstall),
    /// De-install a heartbeat pair: it may then be split or deleted.
    Uninstall(control::PairInstall),
    Delete(control::PairDelete),
    /// At the PVOL's site: compare both copies of a PAIR pair block by block
    /// (digests) while writes go on; differing blocks are marked dirty and
    /// reported, and `pair resync NAME` copies them.
    Verify {
        #[command(flatten)]
        request: control::PairVerify,
        /// Follow the verify with a progress bar until it ends, then print its result.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Subcommand)]
pub enum LinkCommand {
    /// Show each peer's lanes (bulk, heartbeat: up, path, round trip,
    /// sessions, resumed sessions, refused frames by reason) and paths
    /// (state up/down/standby, since, round trip, bytes each way, lanes).
    ///
    /// A lane runs over one path at a time; when its path dies it moves to
    /// the next within the link timeout and re-sends what was in flight
    /// (`sessions_resumed`), each request applied once at the peer.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum HbCommand {
    /// Show the heartbeat status table (Fig 2): channels (each network, each
    /// mirror) with their counters, peer status, the last fault analysis.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show recent events: channel failures and recoveries, failure notices, failover.
    Events {
        #[command(flatten)]
        request: api::Events,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
        /// Keep printing new events as JSON lines as they happen (until interrupted).
        #[arg(long)]
        follow: bool,
    },
    /// Install or de-install heartbeat mirrors while heartbeat checking runs.
    #[command(subcommand)]
    Mirror(MirrorCommand),
    Procedure(api::SetProcedure),
    /// Exit 0 if the peer is alive on some channel or this is the site that
    /// should survive, 1 if not (for a corosync-qdevice heuristics exec_ line).
    Check,
    /// At the standby: allow another failover, after a failback to the
    /// production site. At a production host that stepped down: end the
    /// step-down (re-arm the standby first).
    Rearm,
    /// Run a fault analysis now with the peer (seed 002): each host's local
    /// network check (NIC, echo), channels and counters, QoS; the verdict
    /// (link-fault, local-fault, remote-fault, node-dead, config-error,
    /// none) with its evidence.
    Analyze {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum MirrorCommand {
    Install(api::Install),
    Uninstall(api::Uninstall),
}
