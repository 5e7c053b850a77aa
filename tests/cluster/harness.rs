//! A cluster of four hosts for the cluster tests: two per site (p1, p2 at
//! prod; s1, s2 at the standby site), each really apart from its storage
//! (see `hbcluster/hosts.rs`): its hbd in a network namespace of its own on
//! one LAN, with a client namespace, reaching its site's mirrord (in a
//! storage namespace of its own) only over a veth of its own, its volumes
//! from its own `hbfs --storage` mount, mirrord's control over the host
//! link. hbd pairs: p1 ↔ s1 and p2 ↔ s2 (heartbeats over the LAN). Two
//! applications, each a script writing its node's name to its data volume
//! (a data pair PVOL at prod) through its host's mount every 100 ms, with a
//! floating IP:
//!
//! ```text
//!  app1: pair app1, 10.90.0.101/24, active p1, standby s1
//!  app2: pair app2, 10.90.0.102/24, active p2, standby s2
//! ```
//!
//! Each host's self-check is `test -e out/<host>.ok` (SERIOUS). Fields drop
//! in order: the applications (killed by their pid files), then the hosts
//! (hbd, hbfs), the sites, the namespaces.

use std::path::Path;

use crate::common::{ensure_tool, run_hbctl, wait_for, Hbd};
use crate::hbcluster::hosts::{Apart, HostSpec, StorageSite};
use crate::hbcluster::netns::End;

/// The members at start, in LAN order.
pub const HOSTS: [&str; 4] = ["p1", "p2", "s1", "s2"];
/// Every namespace on the LAN: the members, two hosts to add later (s3
/// lacks the application's executable, then gets one whose check fails;
/// s4 has a good one), the client.
pub const LAN: [&str; 7] = ["p1", "p2", "s1", "s2", "s3", "s4", "client"];
/// The client's index on the LAN.
pub const CLIENT: usize = 6;
/// The notices' port.
pub const PORT: u16 = 7791;

pub struct Members {
    /// The hosts of [`LAN`] but the client, each with its hbd and mount;
    /// the sites; the namespaces; `out`.
    pub apart: Apart,
}

/// Index of `host` in [`LAN`].
pub fn at(host: &str) -> usize {
    LAN.iter()
        .position(|h| *h == host)
        .expect("a host of the LAN")
}

/// The application's one executable at `host` (`app start|stop|check`),
/// writing the node's name to the head of its volume every 100 ms.
fn install_app(out: &Path, host: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = out.join("bin").join(host);
    std::fs::create_dir_all(&dir).expect("bin dir");
    // A trial run (validation) keeps a pid file of its own and writes nothing.
    let pid = format!(
        "{}/$HBD_CLUSTER_APP.$HBD_CLUSTER_NODE${{HBD_CLUSTER_VALIDATION:+.trial}}.pid",
        out.display()
    );
    // Each round of a running application, "node ns", in out/APP.runs.
    let runs = format!("{}/$HBD_CLUSTER_APP.runs", out.display());
    let script = format!(
        r#"#!/bin/sh
case "$1" in
start) if [ -n "$HBD_CLUSTER_VALIDATION" ]; then nohup sleep 600 >/dev/null 2>&1 &
  else nohup sh -c 'while :; do printf "%-4095s\n" "$HBD_CLUSTER_NODE $(date +%s%N)" | dd of="$HBD_VOLUME_DIR/$HBD_CLUSTER_APP" bs=4096 count=1 conv=notrunc,fsync 2>/dev/null; echo "$HBD_CLUSTER_NODE $(date +%s%N)" >> {runs}; sleep 0.1; done' >/dev/null 2>&1 &
  fi
  echo $! > {pid} ;;
stop) kill $(cat {pid}) ;;
check) kill -0 $(cat {pid}) ;;
esac
"#
    );
    let path = dir.join("app");
    std::fs::write(&path, script).expect("app script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn mib(out: &Path, apart: &Apart) -> serde_json::Value {
    let app = format!("{}/bin/$HBD_CLUSTER_NODE/app", out.display());
    let exe = serde_json::json!({
        "start": format!("{app} start"),
        "stop": format!("{app} stop"),
        "check": format!("{app} check"),
    });
    let nodes: Vec<_> = HOSTS
        .iter()
        .enumerate()
        .map(|(i, h)| {
            serde_json::json!({
                "number": i + 1, "id": h, "primary_ip": apart.lan.addr(i),
                "site": if h.starts_with('p') { "prod" } else { "standby" },
                "status": if h.starts_with('p') { "ACTIVE" } else { "STANDBY" },
            })
        })
        .collect();
    serde_json::json!({
        "cluster_id": "c1",
        "version": 1,
        "nodes": nodes,
        "applications": [
            {"number": 1, "name": "app1", "volumes": ["app1"], "executables": exe,
             "ips": ["10.90.0.101/24"], "active": "p1", "standby": ["s1"]},
            {"number": 2, "name": "app2", "volumes": ["app2"], "executables": exe,
             "ips": ["10.90.0.102/24"], "active": "p2", "standby": ["s2"]},
        ],
        "storage": [
            {"number": 1, "id": "prod", "address": "prod", "volumes": ["app1", "app2"], "status": "ACTIVE"},
            {"number": 2, "id": "standby", "address": "standby", "volumes": ["app1", "app2"], "status": "ACTIVE"},
        ],
    })
}

impl Members {
    /// The four members running, each application on its active node.
    pub fn start(test: &str) -> Option<Members> {
        Members::start_with(test, |_, _, _| {}, |_| {})
    }

    /// As [`Members::start`], each host's hbd config (TOML text) changed by
    /// `edit(host, config, apart)` and the seed MIB by `edit_mib` first.
    /// Every host mounts its site's volumes, the data pairs app1 and app2
    /// and prod's unpaired volume `tbl` among them, and each site's unpaired
    /// group volume `grp`.
    pub fn start_with(
        test: &str,
        edit: impl Fn(&str, &mut String, &Apart),
        edit_mib: impl FnOnce(&mut serde_json::Value),
    ) -> Option<Members> {
        if !ensure_tool(test, "ping", "iputils-ping")
            || !ensure_tool(test, "arping", "iputils-arping")
        {
            return None;
        }
        let specs: Vec<HostSpec> = LAN[..CLIENT]
            .iter()
            .map(|h| {
                let site = if h.starts_with('p') {
                    End::Prod
                } else {
                    End::Standby
                };
                HostSpec::full(h, site)
            })
            .collect();
        let mut apart = Apart::start(test, &specs)?;
        apart.pair("app1", "1MiB", &[]);
        apart.pair("app2", "1MiB", &[]);
        apart
            .prod
            .ok(&["volume", "create", "tbl", "--size", "64KiB"]);
        // Each site's group volume (the slots of its group's hosts).
        for site in [&apart.prod, &apart.standby] {
            site.ok(&["volume", "create", "grp", "--size", "64KiB"]);
        }
        for host in &LAN[..CLIENT] {
            apart.host_mut(host).mount();
        }
        let out = apart.out.clone();
        let key = apart.hb_key.clone();
        let seed = apart.root.path().join("mib.json");
        let mut seeded = mib(&out, &apart);
        edit_mib(&mut seeded);
        std::fs::write(&seed, seeded.to_string()).expect("mib");
        for (i, host) in LAN[..CLIENT].iter().enumerate() {
            std::fs::write(out.join(format!("{host}.ok")), "").expect("ok file");
            if *host != "s3" {
                install_app(&out, host);
            }
            // s3 and s4 are added later; their hbd has no live peer.
            let (group, peer, them) = match *host {
                "p1" => ("production", "s1", apart.lan.addr(at("s1"))),
                "p2" => ("production", "s2", apart.lan.addr(at("s2"))),
                "s1" => ("standby", "p1", apart.lan.addr(at("p1"))),
                "s2" => ("standby", "p2", apart.lan.addr(at("p2"))),
                _ => ("standby", "nobody", "10.90.0.250".to_string()),
            };
            let h = apart.host(host);
            let dir = h.dir.join("hbd");
            let config = format!(
                "host = \"{host}\"\ngroup = \"{group}\"\npeers = [\"{peer}\"]\ndata_dir = \"{data}\"\ncontrol_socket = \"{dir}/hbd.sock\"\n\
                 psk_file = \"{key}\"\ninterval_ms = 100\ntimeout_ms = 1000\nvolume_dir = \"{mount}\"\n\
                 [[networks]]\nname = \"lan\"\nlisten = \"{me}:7790\"\npeers = [\"{them}:7790\"]\n\
                 [failover]\nmirrord = \"tcp://{storage}\"\nmirrord_key = \"{host_key}\"\n\
                 [[checks]]\npart = \"self\"\nlevel = \"SERIOUS\"\ncommand = \"test -e {out}/{host}.ok\"\n\
                 [cluster]\nport = {PORT}\ncontrol_socket = \"{dir}/cluster.sock\"\nmib = \"{seed}\"\n",
                data = dir.join("data").display(),
                dir = dir.display(),
                key = key.display(),
                mount = h.mount.display(),
                me = apart.lan.addr(i),
                them = them,
                storage = h.storage(),
                host_key = h.key.display(),
                out = out.display(),
                seed = seed.display(),
            );
            let mut config = config;
            edit(host, &mut config, &apart);
            apart.host_mut(host).prepare_hbd(&config);
        }
        let mut m = Members { apart };
        for host in ["s1", "s2", "p1", "p2"] {
            m.start_host(host);
        }
        Some(m)
    }

    /// Starts `host`'s hbd (and with it its member) in its namespace.
    pub fn start_host(&mut self, host: &str) {
        self.apart.host_mut(host).restart_hbd();
    }

    /// kill -9 of `host`'s hbd.
    pub fn kill_host(&mut self, host: &str) {
        if let Some(hbd) = self.apart.host_mut(host).hbd.as_mut() {
            hbd.kill();
        }
    }

    /// The hbd of `host`.
    pub fn hbd(&self, host: &str) -> &Hbd {
        self.apart.hbd(host)
    }

    /// Where hooks, applications and self-checks leave their traces.
    pub fn out(&self) -> &Path {
        &self.apart.out
    }

    /// Runs `hbctl cluster ARGS` at `host`.
    pub fn hbctl(&self, host: &str, args: &[&str]) -> std::process::Output {
        let socket = self.hbd(host).dir.join("cluster.sock");
        let mut all = vec!["cluster"];
        all.extend_from_slice(args);
        run_hbctl(&socket, &all)
    }

    /// `host`'s view (`hbctl cluster show --json`).
    pub fn view(&self, host: &str) -> serde_json::Value {
        let socket = self.hbd(host).dir.join("cluster.sock");
        let out = run_hbctl(&socket, &["cluster", "show", "--json"]);
        assert!(
            out.status.success(),
            "cluster show at {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("cluster show JSON")
    }

    /// Waits until `pred` holds for `host`'s view.
    pub fn wait_view(&self, host: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        wait_for(&format!("{what} at {host}"), || pred(&self.view(host)));
    }

    /// Waits until every running member holds the same MIB; that MIB.
    pub fn wait_same_mib(&self, hosts: &[&str]) -> serde_json::Value {
        let mib = |h: &str| {
            let mut v = self.view(h);
            if let Some(o) = v.as_object_mut() {
                for k in ["member", "conflicts", "takeovers"] {
                    o.remove(k);
                }
            }
            v
        };
        wait_for("the same MIB at every member", || {
            let first = mib(hosts[0]);
            hosts[1..].iter().all(|h| mib(h) == first)
        });
        mib(hosts[0])
    }

    /// Gives `host` an application executable that is present, starts, and
    /// whose check exits 1; each of its runs leaves `out/<host>.<verb>`.
    pub fn install_failing_check(&self, host: &str) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.out().join("bin").join(host);
        std::fs::create_dir_all(&dir).expect("bin dir");
        let script = format!(
            "#!/bin/sh\ntouch {out}/{host}.$1\n[ \"$1\" != check ]\n",
            out = self.out().display()
        );
        let path = dir.join("app");
        std::fs::write(&path, script).expect("app script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Whether `host`'s executable was run with `verb` (see [`Members::install_failing_check`]).
    pub fn ran(&self, host: &str, verb: &str) -> bool {
        self.out().join(format!("{host}.{verb}")).exists()
    }

    /// Creates or removes `host`'s self-check file.
    pub fn set_healthy(&self, host: &str, healthy: bool) {
        let path = self.out().join(format!("{host}.ok"));
        if healthy {
            std::fs::write(path, "").expect("ok file");
        } else {
            std::fs::remove_file(path).expect("ok file");
        }
    }

    /// The process of `app` run by `host` (its pid file), if any.
    pub fn app_pid(&self, app: &str, host: &str) -> Option<u32> {
        std::fs::read_to_string(self.out().join(format!("{app}.{host}.pid")))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    /// The node whose name `app` last wrote at the head of `volume` at
    /// `site` (mirrord's own mount at the site).
    pub fn writer(&self, site: &StorageSite, volume: &str) -> String {
        let bytes = std::fs::read(site.file(volume)).unwrap_or_default();
        String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// When (ms since the epoch) `hbd` recorded its first event containing `needle`.
pub fn event_ms(hbd: &Hbd, needle: &str) -> u64 {
    let events: serde_json::Value =
        serde_json::from_str(&hbd.ok(&["hb", "events", "--json", "--limit", "500"]))
            .expect("events JSON");
    events
        .as_array()
        .and_then(|e| {
            e.iter()
                .find(|e| e["text"].as_str().is_some_and(|t| t.contains(needle)))
        })
        .and_then(|e| e["time_ms"].as_u64())
        .unwrap_or_else(|| panic!("no event '{needle}' at hbd {}", hbd.name))
}

/// Now, in ms since the epoch (the clock of hbd's events).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The node of `v`'s MIB with id `id`.
pub fn node<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == id))
        .unwrap_or(&serde_json::Value::Null)
}

/// The application of `v`'s MIB named `name`.
pub fn app<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["applications"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

impl Drop for Members {
    fn drop(&mut self) {
        for h in &mut self.apart.hosts {
            if let Some(hbd) = h.hbd.as_mut() {
                hbd.kill();
            }
        }
        // The applications outlive hbd (as they would a crashed one): end them.
        if let Ok(dir) = std::fs::read_dir(self.out()) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.ends_with(".pid") {
                    continue;
                }
                if let Ok(pid) = std::fs::read_to_string(e.path()) {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", pid.trim()])
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
        }
    }
}

/// Groups of two hosts per site, each with a master (seed 000): prod {p1, p2}
/// keeping the table on the volume `tbl` (each host through its own
/// remote mount of it), standby {s1, s2}; each master's
/// heartbeats go to both hosts of the other group.
pub fn groups(host: &str, config: &mut String, apart: &Apart) {
    let (group, other) = if host.starts_with('p') {
        (["p1", "p2"], ["s1", "s2"])
    } else {
        (["s1", "s2"], ["p1", "p2"])
    };
    if !group.contains(&host) {
        return;
    }
    let approved = format!("peers = [\"{}\", \"{}\"]\n", other[0], other[1]);
    let addresses = format!(
        "peers = [\"{}:7790\", \"{}:7790\"]\n",
        apart.lan.addr(at(other[0])),
        apart.lan.addr(at(other[1]))
    );
    let mut out = String::new();
    let mut seen_peers = 0;
    for line in config.lines() {
        if line.starts_with("peers = ") {
            out += if seen_peers == 0 {
                &approved
            } else {
                &addresses
            };
            seen_peers += 1;
        } else if line.starts_with("timeout_ms") && host.starts_with('s') {
            // The standby outlasts prod's change of master (2 s) without failing over.
            out += "timeout_ms = 4000\n";
        } else if line.starts_with("volume_dir") && host.starts_with('p') {
            out += &format!(
                "{line}\ntable_volume = \"{}\"\n",
                apart.host(host).file("tbl").display()
            );
        } else {
            out += line;
            out += "\n";
        }
    }
    out += &format!(
        "group_members = [\"{}\", \"{}\"]\nmaster_timeout_ms = 2000\ngroup_volume = \"{}\"\n",
        group[0],
        group[1],
        apart.host(host).file("grp").display()
    );
    *config = out;
}
