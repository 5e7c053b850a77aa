//! mirrord sites for a test: one [`Site`] (its directory, config, process
//! and hbctl), and [`TwoSites`], "prod" and "standby" on loopback with the
//! link up, optionally through a fault-injecting [`Proxy`] (or a relay of the
//! test's own: [`Options::relay`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// One site: its directory, config and mirrord process.
pub struct Site {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub mount: PathBuf,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Extra environment for mirrord.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Site {
    fn new(root: &Path, name: &str, port: u16, key: &Path, peer: &str, peer_addr: &str) -> Site {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("site dir");
        let socket = dir.join("mirrord.sock");
        let mount = dir.join("hbfs");
        let config = dir.join("mirrord.toml");
        let text = format!(
            "site = \"{name}\"\ndata_dir = \"{data}\"\ncontrol_socket = \"{sock}\"\nmount = \"{mount}\"\n\
             [link]\nlisten = \"127.0.0.1:{port}\"\npsk_file = \"{key}\"\ntimeout_ms = 2000\n\
             [[peers]]\nsite = \"{peer}\"\naddress = \"{peer_addr}\"\n",
            data = dir.join("data").display(),
            sock = socket.display(),
            mount = mount.display(),
            key = key.display(),
        );
        std::fs::write(&config, text).expect("config");
        Site {
            name: name.into(),
            log: dir.join("mirrord.log"),
            dir,
            socket,
            mount,
            port,
            config,
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts mirrord and waits until its control socket answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        self.child = Some(spawn_daemon("mirrord", &self.config, &self.log, &self.env));
        let (what, log) = (format!("mirrord of {}", self.name), self.log.clone());
        let socket = self.socket.clone();
        wait_ready(&mut self.child, &what, &log, || {
            run_hbctl(&socket, &["volume", "list"]).status.success()
        });
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "mirrord of {} exited with {status}:\n{}",
                    self.name,
                    self.log_text()
                );
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "mirrord of {} ignored SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Runs hbctl against this site.
    pub fn hbctl(&self, args: &[&str]) -> Output {
        run_hbctl(&self.socket, args)
    }

    /// Runs hbctl and returns its stdout; panics with its stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        hbctl_ok(&self.socket, &self.name, args)
    }

    /// Runs hbctl expecting failure; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        failed(
            &format!("hbctl {args:?} at {}", self.name),
            self.hbctl(args),
        )
    }

    /// The JSON of `pair status NAME --json` (first entry), or None if the pair is unknown.
    pub fn pair(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.hbctl(&["pair", "status", name, "--json"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pair status JSON");
        v.get(0).cloned()
    }

    /// A number field of `pair status NAME --json` (`copy.total_bytes` reaches into objects).
    pub fn pair_u64(&self, name: &str, field: &str) -> u64 {
        let v = self.pair(name).expect("pair");
        let mut at = &v;
        for part in field.split('.') {
            at = &at[part];
        }
        at.as_u64()
            .unwrap_or_else(|| panic!("{field} of pair {name} is not a number: {v}"))
    }

    /// Waits until pair `name` is in `state` here.
    pub fn wait_state(&self, name: &str, state: &str) {
        wait_for(
            &format!("pair {name} at {} to be {state}", self.name),
            || self.pair(name).is_some_and(|p| p["state"] == state),
        );
    }

    /// The path of a volume's file on this site's hbfs.
    pub fn file(&self, volume: &str) -> PathBuf {
        self.mount.join(volume)
    }

    /// mirrord's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_for(&format!("'{needle}' in the log of {}", self.name), || {
            self.log_text().contains(needle)
        });
    }

    /// Waits until both lanes of the remote link (bulk, heartbeat) are up.
    pub fn wait_link_up(&self) {
        wait_for(&format!("both link lanes up at {}", self.name), || {
            let log = self.log_text();
            let up = |lane: &str| {
                log.lines()
                    .any(|l| l.contains("remote link up") && l.contains(&format!("lane={lane}")))
            };
            up("bulk") && up("heartbeat")
        });
    }

    /// The process id of the running mirrord (it must run).
    pub fn running_pid(&self) -> u32 {
        self.pid().expect("mirrord running")
    }

    /// mirrord's resident set size now, in KiB (VmRSS of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        vm_rss_kib(self.running_pid())
    }

    /// The log written since it was `offset` bytes long.
    pub fn log_since(&self, offset: usize) -> String {
        self.log_text()
            .get(offset..)
            .unwrap_or_default()
            .to_string()
    }

    /// mirrord's process id, while it runs (for SIGSTOP / SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        pid_of(&self.child)
    }

    /// A field of `pair status NAME --json` by JSON pointer (`/verdict/kind`); Null if absent.
    pub fn pair_at(&self, name: &str, pointer: &str) -> serde_json::Value {
        self.pair(name)
            .and_then(|p| p.pointer(pointer).cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Waits until `pair status NAME --json` at `pointer` equals `want`.
    pub fn wait_field(&self, name: &str, pointer: &str, want: serde_json::Value) {
        wait_for(
            &format!("{pointer} of pair {name} at {} to be {want}", self.name),
            || self.pair_at(name, pointer) == want,
        );
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.kill();
        // A killed mirrord leaves its mount behind; never leave one on the machine.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status();
    }
}

/// Two sites, "prod" (which dials) and "standby", in one temporary directory.
pub struct TwoSites {
    pub prod: Site,
    pub standby: Site,
    pub proxy: Option<Proxy>,
    pub root: tempfile::TempDir,
}

/// How to build the pair of sites.
#[derive(Default)]
pub struct Options {
    /// Give the standby a different link key.
    pub wrong_key: bool,
    /// Put a fault-injecting proxy on the link.
    pub proxy: bool,
    /// A relay of the test's own on the link: prod dials the first port, the
    /// standby listens on the second (instead of a free port).
    pub relay: Option<(u16, u16)>,
    /// Extra environment for the standby's mirrord.
    pub standby_env: Vec<(String, String)>,
    /// Extra environment for both mirrords (before `standby_env`).
    pub env: Vec<(String, String)>,
}

impl TwoSites {
    /// Both sites running with the link up; None (SKIPPED printed) without root or FUSE.
    pub fn start(test: &str) -> Option<TwoSites> {
        TwoSites::start_with(test, Options::default())
    }

    /// As [`TwoSites::start`], with options; with `wrong_key` it does not wait for the link.
    pub fn start_with(test: &str, options: Options) -> Option<TwoSites> {
        if !can_mount(test) {
            return None;
        }
        let root = tempfile::Builder::new()
            .prefix("hbmirror-test-")
            .tempdir()
            .expect("tempdir");
        let key = root.path().join("link.key");
        std::fs::write(&key, "test-key-0123456789abcdef\n").expect("key");
        let standby_key = if options.wrong_key {
            let k = root.path().join("other.key");
            std::fs::write(&k, "another-key-0123456789abcdef\n").expect("key");
            k
        } else {
            key.clone()
        };
        let prod_port = free_port();
        let standby_port = options.relay.map_or_else(free_port, |(_, standby)| standby);
        let proxy = options.proxy.then(|| Proxy::start(standby_port));
        let via = match (options.relay, &proxy) {
            (Some((relay, _)), _) => relay,
            (None, Some(p)) => p.port,
            (None, None) => standby_port,
        };
        let mut prod = Site::new(
            root.path(),
            "prod",
            prod_port,
            &key,
            "standby",
            &format!("127.0.0.1:{via}"),
        );
        let mut standby = Site::new(
            root.path(),
            "standby",
            standby_port,
            &standby_key,
            "prod",
            &format!("127.0.0.1:{prod_port}"),
        );
        prod.env = options.env.clone();
        standby.env = options.env;
        standby.env.extend(options.standby_env);
        standby.start();
        prod.start();
        if !options.wrong_key {
            prod.wait_link_up();
        }
        Some(TwoSites {
            prod,
            standby,
            proxy,
            root,
        })
    }

    /// Creates volume `name` of `size` at both sites and pairs them (sync, data), waiting for PAIR.
    pub fn paired_volume(&self, name: &str, size: &str) {
        self.pair(name, size, &[]);
    }

    /// As [`TwoSites::paired_volume`], with extra `pair create` arguments (`--mode`, `--kind`, ...).
    pub fn pair(&self, name: &str, size: &str, extra: &[&str]) {
        self.prod.ok(&["volume", "create", name, "--size", size]);
        self.standby.ok(&["volume", "create", name, "--size", size]);
        let mut args = vec!["pair", "create", name, "--pvol", name, "--peer", "standby"];
        args.extend_from_slice(extra);
        self.prod.ok(&args);
        self.prod.wait_state(name, "PAIR");
        self.standby.wait_state(name, "PAIR");
    }

    /// The fault-injecting proxy (the sites were started with one).
    pub fn proxy(&self) -> &Proxy {
        self.proxy
            .as_ref()
            .expect("started with Options { proxy: true }")
    }

    /// Whether both sites' copies of `volume` are byte-identical.
    pub fn identical(&self, volume: &str) -> bool {
        read_all(&self.prod.file(volume)) == read_all(&self.standby.file(volume))
    }

    /// As [`TwoSites::start`], with both mirrords serving hbfs over
    /// `transport` (`classic`, `uring` or `auto`, through HBMIRROR_FUSE_TRANSPORT).
    pub fn start_on(test: &str, transport: &str) -> Option<TwoSites> {
        let env = vec![("HBMIRROR_FUSE_TRANSPORT".to_string(), transport.to_string())];
        TwoSites::start_with(
            test,
            Options {
                env,
                ..Options::default()
            },
        )
    }
}

/// The WARN lines of a daemon's log text.
pub fn warn_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN ")).collect()
}

/// The backing file of a volume mirrord created at `site` (under its data_dir).
pub fn backing_file(site: &Site, volume: &str) -> PathBuf {
    site.dir
        .join("data")
        .join("volumes")
        .join(format!("{volume}.vol"))
}
