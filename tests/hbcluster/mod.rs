//! Two sites on loopback for hbd's integration tests, each with mirrord, an
//! hbfs mount and hbd; heartbeat mirrors both ways (hb0: prod → standby,
//! hb1: standby → prod), a data pair "app", a counting, recording UDP tap on
//! the network channel each way and a TCP proxy on the remote link. Needs
//! root and /dev/fuse.
//!
//! The standby's failover hook and production's step-down hook leave their
//! environment and a line per run in `out/`.

#![allow(dead_code)]

pub mod hosts;
pub mod netns;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{ensure_tool, free_port, Hbd, Options, TwoSites, UdpTap};
use netns::{End, Hosts};

pub const INTERVAL_MS: u64 = 100;
pub const TIMEOUT_MS: u64 = 1000;

pub struct Cluster {
    pub sites: TwoSites,
    pub prod: Hbd,
    pub standby: Hbd,
    /// prod's network heartbeats pass here on their way to the standby.
    pub to_standby: UdpTap,
    /// The standby's, on their way to prod.
    pub to_prod: UdpTap,
    /// Where prod's hbd listens.
    pub prod_port: u16,
    /// Where the standby's hbd listens.
    pub standby_port: u16,
    /// Where hooks and alerts leave their traces.
    pub out: PathBuf,
}

/// Lines in `out/NAME` (runs of a hook).
fn lines(out: &Path, name: &str) -> usize {
    std::fs::read_to_string(out.join(name))
        .unwrap_or_default()
        .lines()
        .count()
}

/// Both sites (mirrord, hbfs) with the heartbeat pairs hb0 (prod → standby)
/// and hb1 (standby → prod) and the data pair "app"; the hooks' directory
/// `out` (with the files the checks look for) and the heartbeat key.
fn prepare(test: &str) -> Option<(TwoSites, PathBuf, PathBuf)> {
    let sites = TwoSites::start_with(
        test,
        Options {
            proxy: true,
            ..Options::default()
        },
    )?;
    sites.pair("hb0", "64KiB", &["--kind", "heartbeat"]);
    sites.pair("app", "1MiB", &[]);
    sites
        .prod
        .ok(&["volume", "create", "hb1", "--size", "64KiB"]);
    sites
        .standby
        .ok(&["volume", "create", "hb1", "--size", "64KiB"]);
    sites.standby.ok(&[
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
    sites.prod.wait_state("hb1", "PAIR");
    let out = sites.root.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    for ok in ["db.ok", "cache.ok"] {
        std::fs::write(out.join(ok), "").expect("check file");
    }
    let key = sites.root.path().join("hb.key");
    std::fs::write(&key, "heartbeat-key-0123456789\n").expect("key");
    Some((sites, out, key))
}

impl Cluster {
    /// Both sites and both hbds running, each seeing the other alive on both channels.
    pub fn start(test: &str) -> Option<Cluster> {
        Cluster::start_with(test, |_, _, _| {})
    }

    /// As [`Cluster::start`], after `edit` had the sites and the configs of
    /// prod's and the standby's hbd (TOML text) to change.
    pub fn start_with(
        test: &str,
        edit: impl FnOnce(&TwoSites, &mut String, &mut String),
    ) -> Option<Cluster> {
        Cluster::start_env(test, edit, |_, _| {})
    }

    /// As [`Cluster::start_with`], `env` also setting prod's and the
    /// standby's hbd processes' environment before they start.
    pub fn start_env(
        test: &str,
        edit: impl FnOnce(&TwoSites, &mut String, &mut String),
        env: impl FnOnce(&mut Hbd, &mut Hbd),
    ) -> Option<Cluster> {
        let (sites, out, key) = prepare(test)?;
        let (prod_port, standby_port) = (free_port(), free_port());
        let to_standby = UdpTap::start(standby_port);
        let to_prod = UdpTap::start(prod_port);
        let common = |host: &str,
                      group: &str,
                      peer: &str,
                      dir: &Path,
                      mount: &Path,
                      port: u16,
                      via: u16,
                      mirrord: &Path| {
            format!(
                "host = \"{host}\"\ngroup = \"{group}\"\npeers = [\"{peer}\"]\ndata_dir = \"{data}\"\ncontrol_socket = \"{sock}\"\n\
                 psk_file = \"{key}\"\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = {TIMEOUT_MS}\nvolume_dir = \"{mount}\"\n\
                 [network]\nlisten = \"127.0.0.1:{port}\"\npeers = [\"127.0.0.1:{via}\"]\n",
                data = dir.join("data").display(),
                sock = dir.join("hbd.sock").display(),
                key = key.display(),
                mount = mount.display(),
            ) + &format!("[failover]\nmirrord_socket = \"{}\"\n", mirrord.display())
        };
        let prod_dir = sites.prod.dir.join("hbd");
        let mut prod_cfg = common(
            "prod-a",
            "production",
            "standby-a",
            &prod_dir,
            &sites.prod.mount,
            prod_port,
            to_standby.port,
            &sites.prod.socket,
        );
        prod_cfg = prod_cfg.replace(
            "[failover]\n",
            &format!(
                "[failover]\nstep_down = \"env | grep ^HBD_ > {o}/step_down.env; echo ran >> {o}/step_down.count\"\n",
                o = out.display()
            ),
        );
        prod_cfg += &format!(
            "[[mirrors]]\nname = \"hb0\"\npvol = \"{m}/hb0\"\npair = \"hb0\"\n[[mirrors]]\nname = \"hb1\"\nsvol = \"{m}/hb1\"\n\
             [[checks]]\npart = \"db\"\nlevel = \"SERIOUS\"\ncommand = \"test -e {o}/db.ok\"\n\
             [[checks]]\npart = \"cache\"\nlevel = \"MODERATE\"\ncommand = \"test -e {o}/cache.ok\"\n",
            m = sites.prod.mount.display(),
            o = out.display()
        );
        let standby_dir = sites.standby.dir.join("hbd");
        let mut standby_cfg = common(
            "standby-a",
            "standby",
            "prod-a",
            &standby_dir,
            &sites.standby.mount,
            standby_port,
            to_prod.port,
            &sites.standby.socket,
        );
        standby_cfg = standby_cfg.replace(
            "[failover]\n",
            &format!(
                "[failover]\nhook = \"env | grep ^HBD_ > {o}/failover.env; echo ran >> {o}/failover.count\"\ntake_over = [\"app\"]\nalert = \"echo $HBD_LEVEL $HBD_PART >> {o}/alerts\"\n",
                o = out.display()
            ),
        );
        standby_cfg += &format!("[[mirrors]]\nname = \"hb0\"\nsvol = \"{m}/hb0\"\n[[mirrors]]\nname = \"hb1\"\npvol = \"{m}/hb1\"\npair = \"hb1\"\n", m = sites.standby.mount.display());
        edit(&sites, &mut prod_cfg, &mut standby_cfg);
        let mut prod = Hbd::new(&prod_dir, "prod-a", &prod_cfg);
        let mut standby = Hbd::new(&standby_dir, "standby-a", &standby_cfg);
        env(&mut prod, &mut standby);
        standby.start();
        prod.start();
        let cluster = Cluster {
            sites,
            prod,
            standby,
            to_standby,
            to_prod,
            prod_port,
            standby_port,
            out,
        };
        for hbd in [&cluster.prod, &cluster.standby] {
            hbd.wait_table("the peer ALIVE on both channels", |t| {
                t["remote_group_via_network"] == "ALIVE" && t["remote_group_via_mirrors"] == "ALIVE"
            });
        }
        // Seen alive (two heartbeats since start): the standby may fail over.
        cluster
            .standby
            .wait_table("the standby armed", |t| t["armed"] == true);
        Some(cluster)
    }

    /// Runs of the standby's failover hook.
    pub fn failovers(&self) -> usize {
        lines(&self.out, "failover.count")
    }

    /// Runs of production's step-down hook.
    pub fn step_downs(&self) -> usize {
        lines(&self.out, "step_down.count")
    }

    /// The value of `name` in the environment a hook left in `out/FILE`.
    pub fn hook_var(&self, file: &str, name: &str) -> String {
        std::fs::read_to_string(self.out.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
            .unwrap_or_default()
    }

    /// Watches for `window` that no failover happens (absence can only be watched).
    pub fn assert_no_failover_for(&self, window: Duration) {
        let start = Instant::now();
        while start.elapsed() < window {
            assert_eq!(
                self.failovers(),
                0,
                "failed over:\n{}",
                self.standby.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(self.standby.table()["failed_over"], false);
    }

    pub fn block_network(&self, blocked: bool) {
        for p in [&self.to_standby, &self.to_prod] {
            p.blocked
                .store(blocked, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Rewrites the config of `hbd` through `edit` (takes effect at its next start).
pub fn edit_config(hbd: &Hbd, edit: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(&hbd.config).expect("hbd config");
    std::fs::write(&hbd.config, edit(&text)).expect("hbd config");
}

/// The JSON in `hbd`'s `data_dir/table.json`, as a clusterware reads it.
pub fn table_file(hbd: &Hbd) -> serde_json::Value {
    let text = std::fs::read(hbd.dir.join("data/table.json")).expect("table.json");
    serde_json::from_slice(&text).expect("table.json is JSON")
}

/// The two sites with each host's hbd in its own network namespace, joined
/// by `networks` IP networks through a router namespace (see [`netns`]),
/// plus the heartbeat mirrors hb0 and hb1 (on the storage's remote link,
/// outside the namespaces). Fields drop in order: the hbds, the sites, the
/// namespaces.
pub struct NetCluster {
    pub prod: Hbd,
    pub standby: Hbd,
    pub sites: TwoSites,
    pub hosts: Hosts,
    /// Where hooks and alerts leave their traces.
    pub out: PathBuf,
}

/// hbd's config at `end` over `hosts`' networks (the counters shortened:
/// 24 at most, so a silent channel is BAD within 3 s).
fn net_config(
    hosts: &Hosts,
    end: End,
    dir: &Path,
    mount: &Path,
    mirrord: &Path,
    key: &Path,
    out: &Path,
) -> String {
    let (host, group, peer, other) = match end {
        End::Prod => ("prod-a", "production", "standby-a", End::Standby),
        End::Standby => ("standby-a", "standby", "prod-a", End::Prod),
    };
    let mut text = format!(
        "host = \"{host}\"\ngroup = \"{group}\"\npeers = [\"{peer}\"]\ndata_dir = \"{data}\"\ncontrol_socket = \"{sock}\"\n\
         psk_file = \"{key}\"\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = {TIMEOUT_MS}\nvolume_dir = \"{mount}\"\n\
         [counter]\nstart = 20\nmax = 24\n[analysis]\necho_rounds = 3\necho_interval_ms = 200\n",
        data = dir.join("data").display(),
        sock = dir.join("hbd.sock").display(),
        key = key.display(),
        mount = mount.display(),
    );
    for k in 0..hosts.networks {
        text += &format!(
            "[[networks]]\nname = \"net{k}\"\nlisten = \"{}:7790\"\npeers = [\"{}:7790\"]\nprobe = \"{}\"\n",
            hosts.addr(end, k),
            hosts.addr(other, k),
            hosts.gateway(end, k)
        );
    }
    text += &format!("[failover]\nmirrord_socket = \"{}\"\n", mirrord.display());
    let m = mount.display();
    match end {
        End::Prod => {
            text = text.replace(
                "[failover]\n",
                &format!("[failover]\nstep_down = \"echo ran >> {o}/step_down.count\"\nalert = \"echo $HBD_LEVEL $HBD_PART $HBD_VERDICT >> {o}/prod_alerts\"\n", o = out.display()),
            );
            text += &format!("[[mirrors]]\nname = \"hb0\"\npvol = \"{m}/hb0\"\npair = \"hb0\"\n[[mirrors]]\nname = \"hb1\"\nsvol = \"{m}/hb1\"\n");
        }
        End::Standby => {
            text = text.replace(
                "[failover]\n",
                &format!(
                    "[failover]\nhook = \"env | grep ^HBD_ > {o}/failover.env; echo ran >> {o}/failover.count\"\ntake_over = [\"app\"]\nalert = \"echo $HBD_LEVEL $HBD_PART $HBD_VERDICT >> {o}/alerts\"\n",
                    o = out.display()
                ),
            );
            text += &format!("[[mirrors]]\nname = \"hb0\"\nsvol = \"{m}/hb0\"\n[[mirrors]]\nname = \"hb1\"\npvol = \"{m}/hb1\"\npair = \"hb1\"\n");
        }
    }
    text
}

impl NetCluster {
    /// Both sites, `networks` networks between the namespaces, and both
    /// hbds (configs changed by `edit` first), each seeing the other alive
    /// on every channel.
    pub fn start(
        test: &str,
        networks: usize,
        edit: impl FnOnce(&Hosts, &mut String, &mut String),
    ) -> Option<NetCluster> {
        if !ensure_tool(test, "nft", "nftables") {
            return None;
        }
        let hosts = Hosts::create(test, networks)?;
        let (sites, out, key) = prepare(test)?;
        let dirs = [sites.prod.dir.join("hbd"), sites.standby.dir.join("hbd")];
        let mut prod_cfg = net_config(
            &hosts,
            End::Prod,
            &dirs[0],
            &sites.prod.mount,
            &sites.prod.socket,
            &key,
            &out,
        );
        let mut standby_cfg = net_config(
            &hosts,
            End::Standby,
            &dirs[1],
            &sites.standby.mount,
            &sites.standby.socket,
            &key,
            &out,
        );
        edit(&hosts, &mut prod_cfg, &mut standby_cfg);
        let mut c = NetCluster {
            prod: Hbd::new(&dirs[0], "prod-a", &prod_cfg),
            standby: Hbd::new(&dirs[1], "standby-a", &standby_cfg),
            sites,
            hosts,
            out,
        };
        c.start_hbd(End::Standby);
        c.start_hbd(End::Prod);
        Some(c)
    }

    /// Starts the hbd of `end` in its namespace.
    pub fn start_hbd(&mut self, end: End) {
        let wrapper = self.hosts.exec(end);
        match end {
            End::Prod => self.prod.start_wrapped(&wrapper),
            End::Standby => self.standby.start_wrapped(&wrapper),
        }
    }

    /// Waits until both hbds see each other alive on every network and on the mirrors.
    pub fn wait_all_alive(&self) {
        for hbd in [&self.prod, &self.standby] {
            hbd.wait_table("the peer ALIVE on every channel", |t| {
                t["remote_group_via_mirrors"] == "ALIVE"
                    && t["networks"]
                        .as_array()
                        .is_some_and(|n| n.iter().all(|n| n["remote_group"] == "ALIVE"))
            });
        }
        // Seen alive (two heartbeats since start): the standby may fail over.
        self.standby
            .wait_table("the standby armed", |t| t["armed"] == true);
    }

    /// Runs of the standby's failover hook.
    pub fn failovers(&self) -> usize {
        lines(&self.out, "failover.count")
    }
}

/// The verdict of the last analysis in `t` and its networks.
pub fn verdict(t: &serde_json::Value) -> (String, Vec<String>) {
    let v = &t["analysis"]["verdict"];
    let networks = v["networks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (v["verdict"].as_str().unwrap_or("").to_string(), networks)
}

/// Waits until `hbd`'s last analysis is `kind` on `networks`.
pub fn wait_verdict(hbd: &Hbd, kind: &str, networks: &[&str]) {
    let want: Vec<String> = networks.iter().map(|n| n.to_string()).collect();
    let mut last = (String::new(), vec![]);
    let start = Instant::now();
    while start.elapsed() < crate::common::DEADLINE {
        last = verdict(&hbd.table());
        if last.0 == kind && last.1 == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "hbd {}: verdict {last:?}, not {kind} {want:?}; events:\n{}\nlog:\n{}",
        hbd.name,
        hbd.ok(&["hb", "events", "--limit", "20"]),
        hbd.log_text()
    );
}
