//! Hosts really apart from their storage: each site's mirrord in a storage
//! namespace of its own (the two joined by a router, [`Hosts`], as a WAN),
//! each host in a namespace of its own that reaches its site's mirrord only
//! over a veth of its own, and the hosts of both sites on one LAN ([`Lan`])
//! for hbd's heartbeats and the cluster's notices:
//!
//! ```text
//!  host ns (p1)  st0 10.101.i.2/30 ── hi 10.101.i.1/30  prod storage ns ── router ── standby storage ns
//!                eth0 10.90.0.(i+1)/24 ── LAN bridge ── the other hosts' eth0
//! ```
//!
//! No shared socket, no shared mount: a host's volumes come from its own
//! `hbfs --storage` mount (run in its namespace with `nsenter --net`, so the
//! mount lands in the test's mount namespace, one mountpoint per host), and
//! its hbd reaches mirrord's control over `[failover] mirrord = "tcp://..."`.
//! mirrord's own mount stays for the test to read the bytes at a site.
//! A host's storage path is cut with an nftables drop in the storage
//! namespace (both ends stay up: only silence tells) or by taking its veth
//! down. Fields drop in order: the hosts (hbd, then hbfs), the sites, the
//! namespaces, the directory. Everything runs on the test's thread.

mod host;
mod storage;

#[allow(unused_imports)]
pub use host::{Hbfs, Host};
pub use storage::StorageSite;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{can_mount, ensure_tool, succeeded, Hbd};
use crate::hbcluster::netns::{must, End, Hosts, Lan};

/// mirrord's port for hosts, in every storage namespace.
pub const HOST_PORT: u16 = 7789;
/// mirrord's remote link port.
pub const LINK_PORT: u16 = 7788;
/// hbd's heartbeat port on the LAN.
pub const HB_PORT: u16 = 7790;

/// A host to set up: its id, its site, the volumes mirrord lets it use
/// (`["*"]` for all) and its control (`none`, `read`, `full`).
#[derive(Debug, Clone, Copy)]
pub struct HostSpec {
    pub id: &'static str,
    pub site: End,
    pub volumes: &'static [&'static str],
    pub control: &'static str,
}

impl HostSpec {
    /// A host allowed every volume of its site and full control.
    pub const fn full(id: &'static str, site: End) -> HostSpec {
        HostSpec {
            id,
            site,
            volumes: &["*"],
            control: "full",
        }
    }
}

/// Both sites' storage, the hosts, the LAN (with one client namespace
/// after the hosts), the heartbeat key and the hooks' directory `out`.
pub struct Apart {
    pub hosts: Vec<Host>,
    pub prod: StorageSite,
    pub standby: StorageSite,
    pub storage_net: Hosts,
    pub lan: Lan,
    /// hbd's heartbeat key.
    pub hb_key: PathBuf,
    /// Where hooks and alerts leave their traces.
    pub out: PathBuf,
    pub root: tempfile::TempDir,
}

/// Writes `text` to `path` with `mode`.
pub fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The `[hosts]` section for the hosts of `site` among `specs`.
fn hosts_section(root: &Path, specs: &[HostSpec], site: End) -> String {
    let mut text = format!("[hosts]\nlisten = \"0.0.0.0:{HOST_PORT}\"\n");
    for s in specs.iter().filter(|s| s.site == site) {
        let volumes = if s.volumes == ["*"] {
            "\"*\"".to_string()
        } else {
            let quoted: Vec<String> = s.volumes.iter().map(|v| format!("\"{v}\"")).collect();
            format!("[{}]", quoted.join(", "))
        };
        text += &format!(
            "[[hosts.allow]]\nhost = \"{id}\"\nkey_file = \"{key}\"\nvolumes = {volumes}\ncontrol = \"{control}\"\n",
            id = s.id,
            key = root.join(s.id).join("host.key").display(),
            control = s.control,
        );
    }
    text
}

impl Apart {
    /// The namespaces, both sites' mirrord with the link up and a `[hosts]`
    /// listener for `specs`, each host's namespace, veth and key (nothing
    /// mounted, no hbd yet). None (SKIPPED; a failure under CI=true)
    /// without root, FUSE, ip, nsenter or nft.
    pub fn start(test: &str, specs: &[HostSpec]) -> Option<Apart> {
        if !can_mount(test)
            || !ensure_tool(test, "nsenter", "util-linux")
            || !ensure_tool(test, "nft", "nftables")
        {
            return None;
        }
        let storage_net = Hosts::create(test, 1)?;
        let lan = Lan::create(test, specs.len() + 1)?;
        let root = tempfile::Builder::new()
            .prefix("hbmirror-apart-")
            .tempdir()
            .expect("tempdir");
        let link_key = root.path().join("link.key");
        write_mode(&link_key, "test-key-0123456789abcdef\n", 0o600);
        let hb_key = root.path().join("hb.key");
        write_mode(&hb_key, "heartbeat-key-0123456789\n", 0o600);
        let out = root.path().join("out");
        std::fs::create_dir_all(&out).expect("out dir");
        let mut hosts = vec![];
        for (i, s) in specs.iter().enumerate() {
            let dir = root.path().join(s.id);
            std::fs::create_dir_all(&dir).expect("host dir");
            let key = dir.join("host.key");
            write_mode(
                &key,
                &format!("host-key-{}-0123456789abcdef\n", s.id),
                0o600,
            );
            let net = match s.site {
                End::Prod => 101,
                End::Standby => 102,
            };
            let (storage_addr, addr) = (format!("10.{net}.{i}.1"), format!("10.{net}.{i}.2"));
            let storage_ns = storage_net.ns(s.site).to_string();
            let storage_if = format!("h{i}");
            let ns = lan.hosts[i].clone();
            must(
                "ip",
                &[
                    "link",
                    "add",
                    "st0",
                    "netns",
                    &ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &storage_if,
                    "netns",
                    &storage_ns,
                ],
            );
            let (sa, ha) = (format!("{storage_addr}/30"), format!("{addr}/30"));
            must(
                "ip",
                &["-n", &storage_ns, "addr", "add", &sa, "dev", &storage_if],
            );
            must("ip", &["-n", &storage_ns, "link", "set", &storage_if, "up"]);
            must("ip", &["-n", &ns, "addr", "add", &ha, "dev", "st0"]);
            must("ip", &["-n", &ns, "link", "set", "st0", "up"]);
            hosts.push(Host {
                hbd: None,
                hbfs: None,
                id: s.id.to_string(),
                site: s.site,
                lan_index: i,
                ns,
                storage_ns,
                storage_if,
                storage_addr,
                key,
                mount: dir.join("hbfs"),
                dir,
            });
        }
        let site = |end: End| {
            let (name, peer, other) = match end {
                End::Prod => ("prod", "standby", End::Standby),
                End::Standby => ("standby", "prod", End::Prod),
            };
            let dir = root.path().join(format!("storage-{name}"));
            std::fs::create_dir_all(&dir).expect("site dir");
            let (socket, mount, config) = (
                dir.join("mirrord.sock"),
                dir.join("hbfs"),
                dir.join("mirrord.toml"),
            );
            let text = format!(
                "site = \"{name}\"\ndata_dir = \"{data}\"\ncontrol_socket = \"{sock}\"\nmount = \"{mnt}\"\n\
                 [link]\nlisten = \"0.0.0.0:{LINK_PORT}\"\npsk_file = \"{key}\"\ntimeout_ms = 2000\n\
                 [[peers]]\nsite = \"{peer}\"\naddress = \"{addr}:{LINK_PORT}\"\n{hosts}",
                data = dir.join("data").display(),
                sock = socket.display(),
                mnt = mount.display(),
                key = link_key.display(),
                addr = storage_net.addr(other, 0),
                hosts = hosts_section(root.path(), specs, end),
            );
            std::fs::write(&config, text).expect("mirrord config");
            StorageSite {
                name: name.into(),
                ns: storage_net.ns(end).to_string(),
                log: dir.join("mirrord.log"),
                dir,
                socket,
                mount,
                config,
                child: None,
            }
        };
        let (mut prod, mut standby) = (site(End::Prod), site(End::Standby));
        standby.start();
        prod.start();
        prod.wait_log_line(&["remote link up", "lane=bulk"]);
        prod.wait_log_line(&["remote link up", "lane=heartbeat"]);
        Some(Apart {
            hosts,
            prod,
            standby,
            storage_net,
            lan,
            hb_key,
            out,
            root,
        })
    }

    /// The host `id`.
    pub fn host(&self, id: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .unwrap_or_else(|| panic!("no host {id}"))
    }

    pub fn host_mut(&mut self, id: &str) -> &mut Host {
        self.hosts
            .iter_mut()
            .find(|h| h.id == id)
            .unwrap_or_else(|| panic!("no host {id}"))
    }

    /// The hbd of host `id` (it must run).
    pub fn hbd(&self, id: &str) -> &Hbd {
        self.host(id).hbd()
    }

    /// The storage of `end`.
    pub fn site(&self, end: End) -> &StorageSite {
        match end {
            End::Prod => &self.prod,
            End::Standby => &self.standby,
        }
    }

    /// The LAN index of the client namespace (after the hosts).
    pub fn client(&self) -> usize {
        self.hosts.len()
    }

    /// Volume `name` of `size` at both sites, paired prod → standby (extra
    /// `pair create` arguments: `--kind`, `--mode`), waited for PAIR.
    pub fn pair(&self, name: &str, size: &str, extra: &[&str]) {
        for s in [&self.prod, &self.standby] {
            s.ok(&["volume", "create", name, "--size", size]);
        }
        let mut args = vec!["pair", "create", name, "--pvol", name, "--peer", "standby"];
        args.extend_from_slice(extra);
        self.prod.ok(&args);
        self.prod.wait_state(name, "PAIR");
        self.standby.wait_state(name, "PAIR");
    }

    /// The heartbeat mirrors hb0 (prod → standby) and hb1 (standby → prod).
    pub fn heartbeat_pairs(&self) {
        self.pair("hb0", "64KiB", &["--kind", "heartbeat"]);
        for s in [&self.prod, &self.standby] {
            s.ok(&["volume", "create", "hb1", "--size", "64KiB"]);
        }
        self.standby.ok(&[
            "pair",
            "create",
            "hb1",
            "--pvol",
            "hb1",
            "--peer",
            "prod",
            "--kind",
            "heartbeat",
        ]);
        self.prod.wait_state("hb1", "PAIR");
        self.standby.wait_state("hb1", "PAIR");
    }

    /// hbd's config for host `id` in `group`, approving `peers` and sending
    /// its heartbeats to their LAN addresses, its volumes on its own mount
    /// and mirrord's control over the host link with its key; `[failover]`
    /// last but for what the caller appends (mirrors, checks).
    pub fn hbd_config(&self, id: &str, group: &str, peers: &[&str]) -> String {
        let h = self.host(id);
        let dir = h.dir.join("hbd");
        let approved: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
        let addresses: Vec<String> = peers
            .iter()
            .map(|p| format!("\"{}:{HB_PORT}\"", self.lan.addr(self.host(p).lan_index)))
            .collect();
        format!(
            "host = \"{id}\"\ngroup = \"{group}\"\npeers = [{approved}]\ndata_dir = \"{data}\"\n\
             control_socket = \"{sock}\"\npsk_file = \"{key}\"\ninterval_ms = 100\ntimeout_ms = 1000\n\
             volume_dir = \"{mount}\"\n\
             [[networks]]\nname = \"lan\"\nlisten = \"{me}:{HB_PORT}\"\npeers = [{addresses}]\n\
             [failover]\nmirrord = \"tcp://{storage}\"\nmirrord_key = \"{host_key}\"\n",
            approved = approved.join(", "),
            data = dir.join("data").display(),
            sock = dir.join("hbd.sock").display(),
            key = self.hb_key.display(),
            mount = h.mount.display(),
            me = self.lan.addr(h.lan_index),
            addresses = addresses.join(", "),
            storage = h.storage(),
            host_key = h.key.display(),
        )
    }

    /// The mirrors of host `id`: at prod it writes hb0 and reads hb1, at
    /// the standby site the other way round.
    pub fn mirrors(&self, id: &str) -> String {
        let h = self.host(id);
        let m = h.mount.display();
        if h.site == End::Prod {
            format!(
                "[[mirrors]]\nname = \"hb0\"\npvol = \"{m}/hb0\"\npair = \"hb0\"\n\
                 [[mirrors]]\nname = \"hb1\"\nsvol = \"{m}/hb1\"\n"
            )
        } else {
            format!(
                "[[mirrors]]\nname = \"hb0\"\nsvol = \"{m}/hb0\"\n\
                 [[mirrors]]\nname = \"hb1\"\npvol = \"{m}/hb1\"\npair = \"hb1\"\n"
            )
        }
    }

    /// p1 at prod and s1 at the standby site, each mounted from its own
    /// site's mirrord (p1's hbfs with `p1_hbfs` options), the heartbeat
    /// pairs and the data pair "app"; hbd on both over the LAN and the
    /// mirrors, each seeing the other alive on both channels, the standby
    /// armed. The standby's failover hook counts its runs in
    /// `out/failover.count`; it would take "app" over.
    pub fn two_hosts(test: &str, p1_hbfs: &[&str]) -> Option<Apart> {
        let specs = [
            HostSpec::full("p1", End::Prod),
            HostSpec::full("s1", End::Standby),
        ];
        let mut a = Apart::start(test, &specs)?;
        a.heartbeat_pairs();
        a.pair("app", "1MiB", &[]);
        a.host_mut("p1").mount_with(p1_hbfs);
        a.host_mut("s1").mount();
        let p1 = a.hbd_config("p1", "production", &["s1"]) + &a.mirrors("p1");
        let failover = format!(
            "[failover]\nhook = \"echo ran >> {o}/failover.count\"\ntake_over = [\"app\"]\n",
            o = a.out.display()
        );
        let s1 = a
            .hbd_config("s1", "standby", &["p1"])
            .replace("[failover]\n", &failover)
            + &a.mirrors("s1");
        a.host_mut("s1").start_hbd(&s1);
        a.host_mut("p1").start_hbd(&p1);
        for id in ["p1", "s1"] {
            a.hbd(id)
                .wait_table("the peer ALIVE on both channels", |t| {
                    t["remote_group_via_network"] == "ALIVE"
                        && t["remote_group_via_mirrors"] == "ALIVE"
                });
        }
        a.hbd("s1")
            .wait_table("the standby armed", |t| t["armed"] == true);
        Some(a)
    }

    /// Lines in `out/NAME` (runs of a hook).
    pub fn lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.out.join(name))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

/// Runs `command` expecting it to fail; its stderr and stdout together.
pub fn fails_saying(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !out.status.success(),
        "{command:?} should have failed; it printed: {text}"
    );
    text
}

/// Runs `command`, which must succeed; its stdout.
pub fn runs(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    succeeded(&format!("{command:?}"), out)
}
