//! The member agent inside hbd, as state: this host's node, the MIB it
//! holds (kept in `data_dir/cluster.json`), its notice sockets, and what
//! its roles keep; and how it changes the MIB and sends notices (on state
//! changes only, over every network, to every member's every address).
//! What it does with them is in `agent` (its run task and the notice
//! receiver), `forming`, `master`, `liveness`, `membership` and `storage`.
//! The notice receiver, the run task and the control server's tasks share
//! it (an `Arc`); each lock is held briefly, never across an await.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::api::{Takeover, View};
use super::group::disk::GroupVolume;
use super::group::slot::ON_TABLE_VOLUME;
use super::group::Seen;
use super::mib::{Mib, NodeState};
use super::notice::{Kind, Notice};
use super::roles::{Forming, MasterView};
use crate::hb::api::Source;
use crate::hb::daemon::checks::Checks;
use crate::hb::daemon::lock::lock;
use crate::hb::daemon::shared::Shared;
use crate::hb::daemon::watchdog::Petting;
use crate::hb::logic::table::now_ms;
use hbcore::report;
use hbcore::vocab::Level;

/// One member of the cluster: this host.
pub struct Member {
    /// What hbd's tasks share: its config (checks, networks, where mirrord
    /// is), key, verdict (the checker) and events.
    pub shared: Arc<Shared>,
    /// The last outcomes of hbd's local checks (the self-check).
    pub(super) checks: Arc<Checks>,
    /// Whether hbd may pet its watchdog: this host stays connected while
    /// it hears its group on the LAN or writes its slot.
    pub(super) petting: Arc<Petting>,
    /// This node's id (hbd's `host`).
    pub me: String,
    pub(super) port: u16,
    pub(super) path: PathBuf,
    pub(super) mib: Mutex<Mib>,
    pub(super) sockets: Vec<Arc<UdpSocket>>,
    pub(super) conflicts: Mutex<Vec<String>>,
    pub(super) takeovers: Mutex<Vec<Takeover>>,
    /// The applications whose takeover is under way (each taken over once).
    pub(super) taking_over: Mutex<HashSet<String>>,
    /// The start-up wait for a newer MIB is over: takeovers may begin.
    pub(super) synced: AtomicBool,
    /// hbd's all-channels-dead verdict already acted on (until re-armed).
    pub(super) saw_silence: AtomicBool,
    /// What is wrong with this site's storage (mirrord), if anything.
    pub(super) storage_problem: Mutex<Option<String>>,
    /// When a failed validation is tried again.
    pub(super) next_validation: Mutex<Instant>,
    /// At the console, a start of day under way: the answers and confirmations.
    pub(super) forming: Mutex<Option<Forming>>,
    /// This host's view of its group's master (seed 000), if it has a group.
    pub(super) master: Mutex<Option<MasterView>>,
    /// When this host's own tick last ran (see `master`: a stalled host).
    pub(super) ticked: Mutex<Option<Instant>>,
    /// When word last came from each member (see `liveness`).
    pub(super) heard: Mutex<HashMap<String, Instant>>,
    /// The group volume and what this host saw on it (see `channels`),
    /// if its group keeps one.
    pub(super) group_seen: Option<Mutex<Seen>>,
}

impl Member {
    /// The member around a loaded MIB and bound sockets.
    pub fn new(
        shared: Arc<Shared>,
        checks: Arc<Checks>,
        petting: Arc<Petting>,
        mib: Mib,
        path: PathBuf,
        port: u16,
        socket: UdpSocket,
    ) -> Member {
        let group_seen = group_volume(&shared).map(|v| Mutex::new(Seen::new(Arc::new(v))));
        if group_seen.is_some() {
            // A master's gate opens only with a lease, renewed by each good slot write.
            shared.master_gate.lease_until(Instant::now());
        }
        Member {
            group_seen,
            me: shared.config.host.clone(),
            shared,
            checks,
            petting,
            port,
            path,
            mib: Mutex::new(mib),
            sockets: vec![Arc::new(socket)],
            forming: Mutex::new(None),
            master: Mutex::new(None),
            heard: Mutex::new(HashMap::new()),
            ticked: Mutex::new(None),
            conflicts: Mutex::new(vec![]),
            takeovers: Mutex::new(vec![]),
            taking_over: Mutex::new(HashSet::new()),
            synced: AtomicBool::new(false),
            saw_silence: AtomicBool::new(false),
            storage_problem: Mutex::new(None),
            next_validation: Mutex::new(Instant::now()),
        }
    }

    /// The MIB's lock (hold it briefly, never across an await).
    pub fn mib_lock(&self) -> &Mutex<Mib> {
        &self.mib
    }

    /// The notices' port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The hosts of this host's group (`[cluster] group_members`), in the
    /// order they become master; empty: this host is always its own master.
    pub(super) fn group(&self) -> Vec<String> {
        self.shared
            .config
            .cluster
            .as_ref()
            .map(|c| c.group_members.clone())
            .unwrap_or_default()
    }

    /// The MIB now.
    pub fn mib(&self) -> Mib {
        lock(&self.mib).clone()
    }

    /// What `hbctl cluster show` prints.
    pub fn view(&self) -> View {
        View {
            mib: self.mib(),
            member: self.me.clone(),
            conflicts: lock(&self.conflicts).clone(),
            takeovers: lock(&self.takeovers).clone(),
            group: self.seen().map(|s| s.view(Instant::now())),
        }
    }

    pub(super) fn persist(&self, mib: &Mib) {
        if let Err(e) = mib.save(&self.path) {
            tracing::error!("cannot keep the cluster MIB: {}", report::chain(&e));
        }
    }

    pub(super) fn event(&self, level: Option<Level>, text: String) {
        self.shared.event(Source::Local, level, "cluster", text);
    }

    /// Makes the change `notice` says in the MIB ([`Notice::apply`]), or
    /// `edit` when given; bumps and keeps the MIB, and sends the notice
    /// with it to every member (and to `also`). Nothing is sent if nothing changed.
    pub fn change(
        &self,
        mut notice: Notice,
        edit: Option<&dyn Fn(&mut Mib) -> bool>,
        also: Vec<SocketAddr>,
    ) {
        let mib = {
            let mut mib = lock(&self.mib);
            let changed = match edit {
                Some(edit) => edit(&mut mib),
                None => notice.apply(&mut mib),
            };
            if !changed {
                return;
            }
            mib.bump(now_ms());
            mib.clone()
        };
        self.persist(&mib);
        notice.mib = mib;
        let mut targets = self.targets(&notice.mib);
        targets.extend(also);
        self.send_to(notice, targets);
    }

    /// A notice from this member about `about` (its MIB filled in by [`Member::change`]).
    pub fn notice(&self, about: &str, kind: Kind, reason: Option<String>) -> Notice {
        Notice {
            from: self.me.clone(),
            about: about.into(),
            kind,
            reason,
            application: None,
            site: None,
            instance: None,
            time_ms: None,
            run: None,
            uptime_ms: None,
            mib: lock(&self.mib).clone(),
        }
    }

    /// Every address of every other member, at the notice port.
    pub(super) fn targets(&self, mib: &Mib) -> Vec<SocketAddr> {
        mib.nodes
            .iter()
            .filter(|n| n.id != self.me)
            .flat_map(|n| n.all_addresses())
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect()
    }

    /// Sends `notice` to `targets` once (a periodic heartbeat needs no repeat).
    pub fn send_once(&self, notice: Notice, targets: Vec<SocketAddr>) {
        let Ok(bytes) = notice.encode(&self.shared.key) else {
            return;
        };
        let sockets = self.sockets.clone();
        tokio::spawn(async move {
            for s in &sockets {
                for t in &targets {
                    let _ = s.send_to(&bytes, t).await;
                }
            }
        });
    }

    /// Sends `notice` over every network to `targets` (twice more an
    /// interval apart: a lost datagram is not a lost state change).
    pub fn send_to(&self, notice: Notice, targets: Vec<SocketAddr>) {
        let bytes = match notice.encode(&self.shared.key) {
            Ok(b) => b,
            Err(e) => {
                return tracing::error!("cannot send a cluster notice: {}", report::chain(&e))
            }
        };
        let sockets = self.sockets.clone();
        let gap = self.shared.config.interval();
        tokio::spawn(async move {
            for round in 0..3 {
                if round > 0 {
                    tokio::time::sleep(gap).await;
                }
                for s in &sockets {
                    for t in &targets {
                        if let Err(e) = s.send_to(&bytes, t).await {
                            tracing::debug!("cluster notice to {t}: {e}");
                        }
                    }
                }
            }
        });
    }

    /// `node` was silent on every channel (`how` it was found): it is DOWN,
    /// and that is sent (nothing if it is DOWN already).
    pub(super) fn silent(&self, node: &str, how: &str) {
        let why = format!("silent on every channel ({how})");
        if lock(&self.mib).state(node) != NodeState::Down {
            tracing::error!(node = %node, "{why}: DOWN");
            self.event(Some(Level::SystemDown), format!("{node} is DOWN: {why}"));
        }
        let down = self.notice(node, Kind::State(NodeState::Down), Some(why));
        self.change(down, None, vec![]);
    }
}

/// The group volume of this host's group, if it has a group: `[cluster]
/// group_volume` (slots from offset 0), or else hbd's `table_volume`
/// (slots from 1 MiB, after the table).
fn group_volume(shared: &Shared) -> Option<GroupVolume> {
    let cluster = shared.config.cluster.as_ref()?;
    if cluster.group_members.is_empty() {
        return None;
    }
    let (path, base) = match (&cluster.group_volume, &shared.config.table_volume) {
        (Some(v), _) => (v.clone(), 0),
        (None, Some(t)) => (t.clone(), ON_TABLE_VOLUME),
        (None, None) => return None,
    };
    // Past half the master timeout a master's lease is gone anyway.
    let deadline =
        Duration::from_millis(cluster.master_timeout_ms / 2).max(shared.config.interval());
    Some(GroupVolume::new(
        path,
        base,
        cluster.group_members.clone(),
        shared.key.clone(),
        deadline,
    ))
}
