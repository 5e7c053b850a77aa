//! The integration-test harness: two real sites (mirrord processes with
//! their own directories, sockets, ports and FUSE mounts) on loopback,
//! driven through the real `hbctl`, optionally with a fault-injecting TCP
//! proxy on the remote link.
//!
//! Needs root and /dev/fuse (it mounts hbfs); [`TwoSites::start`] returns
//! `None` after printing a loud SKIPPED line when they are missing.
//!
//! One file per kind of part: [`process`] (running the binaries and
//! daemons), [`site`] (mirrord sites, two sites and their pairs), [`hbd`]
//! (hbd processes), [`net`] (proxies and taps between them), [`host`] (what
//! a test changes on this machine: the FUSE uring switch, a notify socket,
//! OCF agents, a tiny filesystem), [`solo`] (a daemon a test starts on its
//! own), [`watchdog`] (a FIFO standing in for hbd's watchdog device).
//! Everything is re-exported here: a test says `use common::*;`.

#![allow(dead_code)]

pub mod hbd;
pub mod host;
pub mod net;
pub mod process;
pub mod site;
pub mod solo;
pub mod watchdog;

// Each test uses some of the parts, none all of them.
#[allow(unused_imports)]
pub use hbd::*;
#[allow(unused_imports)]
pub use host::*;
#[allow(unused_imports)]
pub use net::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use site::*;
#[allow(unused_imports)]
pub use solo::*;
#[allow(unused_imports)]
pub use watchdog::*;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
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

/// Trials of each torture, from HBMIRROR_TORTURE_TRIALS (default: `short`,
/// the test suite's short form; `scripts/torture.sh N` sets N).
pub fn trials(short: u32) -> u32 {
    std::env::var("HBMIRROR_TORTURE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(short)
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

/// Whether the program `tool` is on the PATH.
pub fn has_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
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
