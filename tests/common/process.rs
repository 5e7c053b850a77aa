//! Running the workspace's binaries from a test: one-shot commands whose
//! success or failure is checked ([`run_ok`], [`run_fails`]), hbctl against a
//! daemon's socket, and the daemons' processes (started, awaited, signalled).
//! Called from the test's own thread.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use super::{bin, wait_for};

/// Starts a daemon of the workspace with its stderr appended to `log`.
pub fn spawn_daemon(program: &str, config: &Path, log: &Path, env: &[(String, String)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    command(program)
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
    command("hbctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run hbctl")
}

/// Runs hbctl and returns its stdout; panics with its stderr (naming `who`) on failure.
pub fn hbctl_ok(socket: &Path, who: &str, args: &[&str]) -> String {
    succeeded(&format!("hbctl {args:?} at {who}"), run_hbctl(socket, args))
}

/// A command running `program`, a binary of the workspace (stdin closed).
pub fn command(program: &str) -> Command {
    let mut command = Command::new(bin(program));
    command.stdin(Stdio::null());
    command
}

/// Runs `command` and returns its stdout; panics with its stderr on failure.
pub fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    succeeded(&format!("{command:?}"), out)
}

/// Runs `command` expecting it to fail; returns its stderr.
pub fn run_fails(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    failed(&format!("{command:?}"), out)
}

/// The stdout of `what`, which must have succeeded (else a panic with its stderr).
pub fn succeeded(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of `what`, which must have failed.
pub fn failed(what: &str, out: Output) -> String {
    assert!(
        !out.status.success(),
        "{what} should have failed; it printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kill -9 of a daemon, if it runs.
pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Waits until a started daemon answers; panics with its log if it exits first.
pub fn wait_ready(
    child: &mut Option<Child>,
    what: &str,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) {
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

/// The process id of a running daemon, if it runs.
pub fn pid_of(child: &Option<Child>) -> Option<u32> {
    child.as_ref().map(Child::id)
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

/// Starts a daemon of the workspace through `wrapper` (`ip netns exec NS`,
/// `setpriv ...`), its stderr appended to `log`.
pub fn spawn_wrapped(wrapper: &[String], program: &str, config: &Path, log: &Path) -> Child {
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
