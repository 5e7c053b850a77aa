//! The integration-test harness: two real sites (mirrord processes with
//! their own directories, sockets, ports and FUSE mounts) on loopback,
//! driven through the real `hbctl`, optionally with a fault-injecting TCP
//! proxy on the remote link.
//!
//! Needs root and /dev/fuse (it mounts hbfs); [`TwoSites::start`] returns
//! `None` after printing a loud SKIPPED line when they are missing.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A built binary of the workspace (they all land beside hbctl).
pub fn bin(name: &str) -> PathBuf {
    let hbctl = PathBuf::from(env!("CARGO_BIN_EXE_hbctl"));
    let path = hbctl.with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Polls `cond` until it holds or [`DEADLINE`] passes; panics with `what` then.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this process may mount FUSE filesystems; prints SKIPPED when not.
/// Under `CI=true` nothing may skip: a missing prerequisite fails the test.
pub fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let fuse = Path::new("/dev/fuse").exists();
    if !(root && fuse) {
        skip(
            test,
            &format!("needs root and /dev/fuse (root: {root}, /dev/fuse: {fuse})"),
        );
    }
    root && fuse
}

/// Records that `test` cannot run here and returns to let it end early.
/// Under `CI=true` nothing may skip: this fails the test instead.
/// `scripts/test.sh` counts the skips (through `HBMIRROR_SKIP_LOG`) and
/// reports them as skipped, never as passed.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} {why}, and CI=true allows no skipping"
    );
    eprintln!("SKIPPED {test}: {why}");
    if let Ok(log) = std::env::var("HBMIRROR_SKIP_LOG") {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{test}: {why}"));
        if let Err(e) = appended {
            eprintln!("cannot record the skip in {log}: {e}");
        }
    }
}

/// A free port on loopback (TCP and UDP) for a daemon to listen on.
///
/// Taken below the kernel's ephemeral range (32768 and up), so no outgoing
/// connection of a test running beside this one can take it between this
/// check and the daemon's bind; each test process starts at its own place
/// and never hands the same port out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 10_000 + (std::process::id() % 1000) * 20;
    for _ in 0..20_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (10_000 + (start - 10_000 + offset) % 22_000) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port)).is_ok();
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if tcp && udp {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between 10000 and 32000");
}

/// Starts a daemon of the workspace with its stderr appended to `log`.
fn spawn_daemon(program: &str, config: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(bin(program))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
}

/// Runs hbctl against the daemon at `socket`.
pub fn run_hbctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(bin("hbctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run hbctl")
}

/// Runs hbctl and returns its stdout; panics with its stderr (naming `who`) on failure.
pub fn hbctl_ok(socket: &Path, who: &str, args: &[&str]) -> String {
    let out = run_hbctl(socket, args);
    assert!(
        out.status.success(),
        "hbctl {args:?} at {who} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kill -9 of a daemon, if it runs.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Waits until a started daemon answers; panics with its log if it exits first.
fn wait_ready(child: &mut Option<Child>, what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    wait_for(&format!("{what} to answer"), || {
        if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
            panic!(
                "{what} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        ready()
    });
}

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
        let out = self.hbctl(args);
        assert!(
            !out.status.success(),
            "hbctl {args:?} at {} should have failed",
            self.name
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
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

/// A TCP proxy between the sites that can corrupt, stall or cut the link.
pub struct Proxy {
    pub port: u16,
    /// Flip a byte in the next chunk forwarded towards the listener.
    pub corrupt_next: Arc<AtomicBool>,
    /// Hold all traffic (both directions) while set, without closing anything.
    pub hold: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream>.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let corrupt_next = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (corrupt, held, cut, conns) = (
            Arc::clone(&corrupt_next),
            Arc::clone(&hold),
            Arc::clone(&down),
            Arc::clone(&open),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let Ok(mut c) = conns.lock() {
                    c.extend([
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ]);
                }
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (corrupt, h1, h2) =
                    (Arc::clone(&corrupt), Arc::clone(&held), Arc::clone(&held));
                std::thread::spawn(move || pump(client, server, Some(corrupt), h1));
                std::thread::spawn(move || pump(s2, c2, None, h2));
            }
        });
        Proxy {
            port,
            corrupt_next,
            hold,
            down,
            open,
        }
    }

    /// Cuts the link: closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        if let Ok(mut conns) = self.open.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    corrupt: Option<Arc<AtomicBool>>,
    hold: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(flag) = &corrupt {
            if flag.swap(false, Ordering::SeqCst) {
                buf[n - 1] ^= 0x5a;
            }
        }
        while hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
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
        let (prod_port, standby_port) = (free_port(), free_port());
        let proxy = options.proxy.then(|| Proxy::start(standby_port));
        let via = proxy.as_ref().map_or(standby_port, |p| p.port);
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
}

/// Writes `data` at `offset` of `path` with plain file I/O (no truncation).
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for writing: {e}", path.display()));
    f.write_all_at(data, offset)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The whole contents of `path`.
pub fn read_all(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Deterministic, non-repeating test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(u32::from(seed % 31)) as u8
                ^ seed
        })
        .collect()
}

/// A UDP forwarder for the network heartbeat channel that can drop everything.
pub struct UdpProxy {
    /// Where the sender sends.
    pub port: u16,
    /// Drop every datagram while set.
    pub blocked: Arc<AtomicBool>,
}

impl UdpProxy {
    /// Forwards datagrams arriving at 127.0.0.1:<port> to 127.0.0.1:<target>.
    pub fn start(target: u16) -> UdpProxy {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = socket.local_addr().expect("addr").port();
        let blocked = Arc::new(AtomicBool::new(false));
        let drop_all = Arc::clone(&blocked);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                if !drop_all.load(Ordering::SeqCst) {
                    let _ = socket.send_to(&buf[..n], ("127.0.0.1", target));
                }
            }
        });
        UdpProxy { port, blocked }
    }
}

/// One host's hbd process.
pub struct Hbd {
    pub name: String,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub dir: PathBuf,
    /// Extra environment of the process (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Hbd {
    /// Writes `config_text` as this hbd's config (under `dir`).
    pub fn new(dir: &Path, name: &str, config_text: &str) -> Hbd {
        std::fs::create_dir_all(dir).expect("hbd dir");
        let config = dir.join("hbd.toml");
        std::fs::write(&config, config_text).expect("hbd config");
        Hbd {
            name: name.into(),
            socket: dir.join("hbd.sock"),
            config,
            log: dir.join("hbd.log"),
            dir: dir.to_path_buf(),
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts hbd and waits until it answers.
    pub fn start(&mut self) {
        self.child = Some(spawn_daemon("hbd", &self.config, &self.log, &self.env));
        let (what, log) = (format!("hbd of {}", self.name), self.log.clone());
        let socket = self.socket.clone();
        wait_ready(&mut self.child, &what, &log, || {
            run_hbctl(&socket, &["hb", "status"]).status.success()
        });
    }

    /// kill -9.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Runs `hbctl hb ...` against this hbd.
    pub fn hbctl(&self, args: &[&str]) -> Output {
        run_hbctl(&self.socket, args)
    }

    /// Runs hbctl and returns its stdout; panics with its stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        hbctl_ok(&self.socket, &format!("hbd {}", self.name), args)
    }

    /// The status table as JSON.
    pub fn table(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["hb", "status", "--json"])).expect("table JSON")
    }

    /// The device entry of mirror `name`, if installed.
    pub fn device(&self, name: &str) -> Option<serde_json::Value> {
        let t = self.table();
        t["devices"].as_array().and_then(|d| {
            d.iter()
                .find(|d| d["name"] == name && d["status"] != "NULL")
                .cloned()
        })
    }

    /// Waits until `pred` holds for the table.
    pub fn wait_table(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        wait_for(&format!("{what} at hbd {}", self.name), || {
            pred(&self.table())
        });
    }

    /// hbd's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Hbd {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Site {
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
}

/// The WARN lines of a daemon's log text.
pub fn warn_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN ")).collect()
}

/// A blocking TCP connection to 127.0.0.1:<port> from the loopback address
/// `source` (any of 127.0.0.0/8), to look like another host.
pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((source, 0).into())?;
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// The process id of a running daemon, if it runs.
fn pid_of(child: &Option<Child>) -> Option<u32> {
    child.as_ref().map(Child::id)
}

impl Site {
    /// mirrord's process id, while it runs (for SIGSTOP / SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        pid_of(&self.child)
    }
}

impl Hbd {
    /// hbd's process id, while it runs (for SIGSTOP / SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        pid_of(&self.child)
    }

    /// Runs hbctl expecting failure; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.hbctl(args);
        assert!(
            !out.status.success(),
            "hbctl {args:?} at hbd {} should have failed",
            self.name
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A number in the status table, found by a path of keys (`network.count`)
    /// or, for a mirror, `mirror:NAME` then keys in its device entry
    /// (`mirror:hb0.seen.count`). Zero when absent.
    pub fn number(&self, path: &str) -> u64 {
        let t = self.table();
        let mut parts = path.split('.');
        let mut at = match parts.next() {
            Some(first) if first.starts_with("mirror:") => {
                let name = &first["mirror:".len()..];
                t["devices"]
                    .as_array()
                    .and_then(|d| {
                        d.iter()
                            .find(|d| d["name"] == name && d["status"] != "NULL")
                            .cloned()
                    })
                    .unwrap_or_default()
            }
            Some(first) => t[first].clone(),
            None => t,
        };
        for part in parts {
            at = at[part].clone();
        }
        at.as_u64().unwrap_or(0)
    }

    /// Waits until the number at `path` (see [`Hbd::number`]) has grown by
    /// `by`: a positive sign that this hbd is making progress.
    pub fn wait_advance(&self, path: &str, by: u64) {
        let start = self.number(path);
        wait_for(
            &format!(
                "{path} at hbd {} to advance by {by} from {start}",
                self.name
            ),
            || self.number(path) >= start + by,
        );
    }
}

/// Sends signal `sig` (`STOP`, `CONT`, ...) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// A UDP forwarder for the network heartbeat channel that counts what it
/// forwards, can drop everything, and can record datagrams to replay them
/// later (as an attacker with a capture would).
pub struct UdpTap {
    /// Where the sender sends.
    pub port: u16,
    /// Drop every datagram while set.
    pub blocked: Arc<AtomicBool>,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
    recording: Arc<AtomicBool>,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl UdpTap {
    /// Forwards datagrams arriving at 127.0.0.1:<port> to 127.0.0.1:<target>.
    pub fn start(target: u16) -> UdpTap {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = socket.local_addr().expect("addr").port();
        let tap = UdpTap {
            port,
            blocked: Arc::new(AtomicBool::new(false)),
            forwarded: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            recording: Arc::new(AtomicBool::new(false)),
            recorded: Arc::new(Mutex::new(Vec::new())),
        };
        let (blocked, forwarded, recording, recorded) = (
            Arc::clone(&tap.blocked),
            Arc::clone(&tap.forwarded),
            Arc::clone(&tap.recording),
            Arc::clone(&tap.recorded),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                if recording.load(Ordering::SeqCst) {
                    if let Ok(mut r) = recorded.lock() {
                        r.push(buf[..n].to_vec());
                    }
                }
                if !blocked.load(Ordering::SeqCst) {
                    forwarded.fetch_add(1, Ordering::SeqCst);
                    let _ = socket.send_to(&buf[..n], ("127.0.0.1", target));
                }
            }
        });
        tap
    }

    /// Datagrams forwarded so far.
    pub fn count(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// Starts or stops recording what passes.
    pub fn record(&self, on: bool) {
        self.recording.store(on, Ordering::SeqCst);
    }

    /// The datagrams recorded so far.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.recorded.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Sends `datagrams` to 127.0.0.1:<port> from a socket of its own.
pub fn replay(datagrams: &[Vec<u8>], port: u16) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    for d in datagrams {
        socket
            .send_to(d, ("127.0.0.1", port))
            .expect("replay a datagram");
    }
}

/// The backing file of a volume mirrord created at `site` (under its data_dir).
pub fn backing_file(site: &Site, volume: &str) -> PathBuf {
    site.dir
        .join("data")
        .join("volumes")
        .join(format!("{volume}.vol"))
}

impl Site {
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

/// `/sys/module/fuse/parameters/enable_uring` switched on while any guard
/// lives (within this test binary), then put back as it was.
pub struct UringSwitch(());

const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";
static URING_USERS: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

impl UringSwitch {
    /// Switches FUSE over io_uring on; None (SKIPPED printed, or a failure
    /// under CI=true) when this kernel has no such switch.
    pub fn on(test: &str) -> Option<UringSwitch> {
        let mut users = URING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if users.0 == 0 {
            let Ok(was) = std::fs::read_to_string(ENABLE_URING) else {
                skip(
                    test,
                    &format!("needs FUSE over io_uring (Linux 6.14+ with CONFIG_FUSE_IO_URING: {ENABLE_URING})"),
                );
                return None;
            };
            std::fs::write(ENABLE_URING, "Y").expect("switch enable_uring on");
            users.1 = Some(was.trim().to_string());
        }
        users.0 += 1;
        Some(UringSwitch(()))
    }
}

impl Drop for UringSwitch {
    fn drop(&mut self) {
        let mut users = URING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 {
            if let Some(was) = users.1.take() {
                let _ = std::fs::write(ENABLE_URING, was);
            }
        }
    }
}

impl TwoSites {
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

/// Whether `program` is on PATH; when it is not and this is root, installs
/// the Debian `package` that ships it (apt-get, waiting for the dpkg lock).
/// Prints SKIPPED (fails under CI=true) when it still cannot be had.
pub fn ensure_tool(test: &str, program: &str, package: &str) -> bool {
    let found = || {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {program}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found() {
        return true;
    }
    // One apt-get at a time: parallel tests would fight over apt's locks.
    static APT: Mutex<()> = Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(|e| e.into_inner());
    if found() {
        return true;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=300", "-q", "-y"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "--no-install-recommends", package]) {
            apt(&["update"]);
            apt(&["install", "--no-install-recommends", package]);
        }
    }
    if found() {
        return true;
    }
    skip(test, &format!("needs {program} (Debian package {package})"));
    false
}

/// A listener on a `NOTIFY_SOCKET` path, as systemd has for a `Type=notify`
/// service: each datagram is one notification (`READY=1\nSTATUS=...`).
pub struct NotifySocket {
    pub path: PathBuf,
    socket: std::os::unix::net::UnixDatagram,
}

impl NotifySocket {
    /// Binds a notify socket at `path`.
    pub fn bind(path: &Path) -> NotifySocket {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("bind NOTIFY_SOCKET");
        NotifySocket {
            path: path.to_path_buf(),
            socket,
        }
    }

    /// The next notification, or None after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("timeout");
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// Whether `path` is a mount point now (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// The OCF resource agents of `packaging/ocf` installed for Pacemaker under
/// a provider of their own (`/usr/lib/ocf/resource.d/PROVIDER`), removed on drop.
pub struct OcfProvider {
    pub name: String,
    pub dir: PathBuf,
}

impl OcfProvider {
    /// Links the agents under provider `name`.
    pub fn install(name: &str) -> OcfProvider {
        let dir = Path::new("/usr/lib/ocf/resource.d").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("OCF provider dir");
        let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ocf");
        for agent in ["pair", "hbd"] {
            std::os::unix::fs::symlink(agents.join(agent), dir.join(agent)).expect("link agent");
        }
        OcfProvider {
            name: name.into(),
            dir,
        }
    }
}

impl Drop for OcfProvider {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a daemon of the workspace through `wrapper` (`ip netns exec NS`,
/// `setpriv ...`), its stderr appended to `log`.
fn spawn_wrapped(wrapper: &[String], program: &str, config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let (first, rest) = wrapper.split_first().expect("a wrapper command");
    Command::new(first)
        .args(rest)
        .arg(bin(program))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program} through {wrapper:?}: {e}"))
}

impl Hbd {
    /// Starts hbd through `wrapper` (e.g. `ip netns exec NS`: the wrapper
    /// must exec hbd, so that its pid is hbd's) and waits until it answers.
    pub fn start_wrapped(&mut self, wrapper: &[String]) {
        self.child = Some(spawn_wrapped(wrapper, "hbd", &self.config, &self.log));
        let (what, log) = (format!("hbd of {}", self.name), self.log.clone());
        let socket = self.socket.clone();
        wait_ready(&mut self.child, &what, &log, || {
            run_hbctl(&socket, &["hb", "status"]).status.success()
        });
    }
}

/// Whether the program `tool` is on the PATH.
pub fn has_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// The resident set size of process `pid` now, in KiB (VmRSS of /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}"))
}

/// A link frame header that announces `len` bytes of payload.
pub fn header_stating(len: usize) -> Vec<u8> {
    let mut header = hbcore::link::FORMAT.encode(b"", None).expect("frame");
    header[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    header
}

/// Whether the other end has closed `stream`, waiting at most `within`.
pub fn closed_by_peer(mut stream: &TcpStream, within: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(within));
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A Refused frame may come first.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A tmpfs of a few hundred KiB, unmounted when dropped: a backing store
/// that runs out of space when told to.
pub struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    pub fn mount(dir: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs at {}", dir.display());
        SmallFs { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Fills the filesystem with a filler file until it is full.
    pub fn fill(&self) {
        use std::os::unix::fs::FileExt;
        let filler = std::fs::File::create(self.path("filler")).expect("filler");
        let chunk = vec![0x5a; 4096];
        let mut offset = 0u64;
        while filler.write_all_at(&chunk, offset).is_ok() {
            offset += chunk.len() as u64;
        }
    }

    pub fn free(&self) {
        std::fs::remove_file(self.path("filler")).expect("remove filler");
    }

    pub fn available(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        s.blocks_available() as u64 * s.fragment_size() as u64
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
