//! hbd's watchdog (issue 26, point 3) with real processes and a stand-in
//! for the device (a FIFO read by the test, `common::watchdog`), so that
//! nothing resets the test machine: hbd pets it while it runs; a hbd
//! stopped with SIGSTOP is no longer petted, and the stand-in kills it and
//! its "application"; a device that cannot be opened stops hbd's start
//! with a message naming it; a clean stop disarms it (the magic close).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    command, free_port, hbd_text, kill_child, pid_of, run_hbctl, signal, spawn_daemon, wait_for,
    wait_ready, WatchdogStandin,
};

/// The stand-in's timeout, and hbd's `watchdog_timeout_ms`: long beside
/// the 200 ms interval, so a loaded machine's late pet never fires it.
const TIMEOUT_MS: u64 = 4000;

/// A process killed (and reaped) when the test ends, however it ends.
struct Proc(Option<Child>);

impl Proc {
    fn pid(&self) -> u32 {
        pid_of(&self.0).expect("running")
    }

    /// Waits until the process has exited; its status.
    fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let child = self.0.as_mut().expect("started");
        let mut status = None;
        wait_for(what, || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }

    fn running(&mut self) -> bool {
        let child = self.0.as_mut().expect("started");
        child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill_child(&mut self.0);
    }
}

/// hbd's config under `dir` with `watchdog_device`; its path and log.
fn config(dir: &Path, device: &Path) -> (PathBuf, PathBuf) {
    let text = hbd_text(dir, "a", "production", "b", (free_port(), free_port()));
    let text = format!(
        "watchdog_device = \"{}\"\nwatchdog_timeout_ms = {TIMEOUT_MS}\n{text}",
        device.display()
    );
    let config = dir.join("hbd.toml");
    std::fs::write(&config, text).expect("config");
    (config, dir.join("hbd.log"))
}

/// hbd started on `config`, once it answers.
fn start_hbd(dir: &Path, config: &Path, log: &Path) -> Proc {
    let mut child = Some(spawn_daemon("hbd", config, log, &[]));
    let socket = dir.join("hbd.sock");
    wait_ready(&mut child, "hbd", log, || {
        run_hbctl(&socket, &["hb", "status"]).status.success()
    });
    Proc(child)
}

/// A stand-in whose victims are set later (hbd starts after it: hbd opens a FIFO only with a reader).
fn standin(fifo: &Path) -> (WatchdogStandin, Arc<Mutex<Vec<u32>>>) {
    let victims = Arc::new(Mutex::new(Vec::new()));
    let named = Arc::clone(&victims);
    let standin = WatchdogStandin::start(fifo, Duration::from_millis(TIMEOUT_MS), move || {
        named.lock().unwrap_or_else(|e| e.into_inner()).clone()
    });
    (standin, victims)
}

fn application() -> Proc {
    Proc(Some(
        Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("start sleep"),
    ))
}

#[test]
fn a_stopped_hbd_is_no_longer_petted_and_the_stand_in_kills_it_and_its_application() {
    let root = tempfile::tempdir().expect("tempdir");
    let fifo = root.path().join("watchdog");
    let (standin, victims) = standin(&fifo);
    let (config, log) = config(root.path(), &fifo);
    let mut hbd = start_hbd(root.path(), &config, &log);
    let mut app = application();
    victims
        .lock()
        .expect("victims")
        .extend([hbd.pid(), app.pid()]);
    standin.wait_pets(3);
    standin.wait_pets(3);
    assert!(!standin.fired(), "petted all along");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("watchdog armed"), "{text}");

    signal(hbd.pid(), "STOP");
    standin.wait_fired();
    let status = hbd.wait_exit("the stopped hbd to be killed");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "hbd: {status}");
    let status = app.wait_exit("the application to be killed");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "application: {status}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("watchdog disarmed"),
        "no magic close: {text}"
    );
}

#[test]
fn a_watchdog_device_that_cannot_be_opened_stops_the_start_naming_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let refused = |device: &Path, dir: &str| {
        let dir = root.path().join(dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (config, _) = config(&dir, device);
        let stderr = dir.join("stderr");
        let child = command("hbd")
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("spawn hbd");
        let mut hbd = Proc(Some(child));
        let status = hbd.wait_exit("hbd to refuse to start");
        assert!(!status.success(), "hbd started with {}", device.display());
        std::fs::read_to_string(&stderr).expect("hbd's stderr")
    };
    let missing = root.path().join("no-such-watchdog");
    let text = refused(&missing, "missing");
    assert!(
        text.contains(&format!(
            "cannot open the watchdog device {}",
            missing.display()
        )) && text.contains("modprobe softdog")
            && text.contains("remove watchdog_device"),
        "{text}"
    );
    // A FIFO nobody reads: refused at once, not waited on.
    let fifo = root.path().join("unread-fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: `c` is a NUL-terminated path alive for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let text = refused(&fifo, "unread");
    assert!(
        text.contains(&fifo.display().to_string()) && text.contains("no reader on the FIFO"),
        "{text}"
    );
}

#[test]
fn a_clean_stop_disarms_the_watchdog_and_nothing_is_killed() {
    let root = tempfile::tempdir().expect("tempdir");
    let fifo = root.path().join("watchdog");
    let (standin, victims) = standin(&fifo);
    let (config, log) = config(root.path(), &fifo);
    let mut hbd = start_hbd(root.path(), &config, &log);
    let mut app = application();
    victims
        .lock()
        .expect("victims")
        .extend([hbd.pid(), app.pid()]);
    standin.wait_pets(3);

    signal(hbd.pid(), "TERM");
    let status = hbd.wait_exit("hbd to stop");
    assert!(status.success(), "hbd: {status}");
    wait_for("the stand-in to be disarmed and closed", || {
        standin.stood_down() || standin.fired()
    });
    assert!(!standin.fired(), "a clean stop must not fire the watchdog");
    assert!(app.running(), "the application was left alone");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("watchdog disarmed (magic close)"), "{text}");
}
