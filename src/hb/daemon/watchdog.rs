//! The watchdog (issue 26, point 3): where `watchdog_device` is configured,
//! hbd opens it at start (refusing to start when it cannot) and pets it
//! every interval only while this host may run its applications: not
//! fenced, and connected (the cluster member heard its LAN or wrote its
//! slot lately). A host that stops being petted — fenced, cut off, or hbd
//! hung or stopped (SIGSTOP stops the petting task with it) — is reset by
//! the device within `watchdog_timeout_ms`. A clean stop writes the magic
//! close `V`, which disarms a Linux watchdog.
//!
//! Threads: [`Petting`] is written by the cluster member's tasks
//! (`connected_until`) and by whoever fences this host (`fence`), and read
//! by the petting task (atomics and one short lock, never held across an
//! await). [`Watchdog`] is opened on `run`'s task, petted by the petting
//! task ([`start`]) and disarmed when its [`Petter`] is dropped at the stop.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hbcore::throttle::{Throttle, Verdict};

use super::lock::lock;

/// Linux's `WDIOC_SETTIMEOUT`, `_IOWR('W', 6, int)` (the same number on
/// every architecture's ioctl encoding; the libc crate does not have it).
const WDIOC_SETTIMEOUT: u32 = 0xC004_5706;

/// Whether hbd may pet the watchdog: not fenced, and connected.
#[derive(Debug, Default)]
pub struct Petting {
    /// Sticky for this run: a fenced host is never petted again.
    fenced: AtomicBool,
    /// Connected until then; `None` while nobody set a connection condition.
    until: Mutex<Option<Instant>>,
}

impl Petting {
    /// Fences this host for the rest of this run: no more petting, so the
    /// watchdog resets it. Logged once, with the first `why`.
    pub fn fence(&self, why: &str) {
        if !self.fenced.swap(true, Ordering::SeqCst) {
            tracing::error!("this host is fenced ({why}): hbd stops petting the watchdog for the rest of this run");
        }
    }

    /// Whether this host was fenced in this run.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// This host is connected until `until` (the cluster member heard its
    /// LAN or wrote its slot). Never shortens an earlier promise.
    pub fn connected_until(&self, until: Instant) {
        let mut at = lock(&self.until);
        *at = Some(at.map_or(until, |old| old.max(until)));
    }

    /// Whether hbd may pet at `now`: not fenced and, once a connection
    /// condition was set, still connected.
    pub fn may_pet(&self, now: Instant) -> bool {
        self.withheld(now).is_none()
    }

    /// Why hbd may not pet at `now`, if it may not.
    fn withheld(&self, now: Instant) -> Option<String> {
        if self.is_fenced() {
            return Some("this host is fenced".into());
        }
        match *lock(&self.until) {
            Some(until) if now >= until => Some(format!(
                "this host lost its connection (neither its LAN heard nor its slot written) {} ms ago",
                now.duration_since(until).as_millis()
            )),
            _ => None,
        }
    }
}

/// A watchdog device that cannot be used: hbd does not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// The device is missing or refused the open.
    #[error("cannot open the watchdog device {} (load softdog: modprobe softdog, or remove watchdog_device from hbd.toml)", path.display())]
    Open {
        /// watchdog_device.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// A FIFO (a test's stand-in) that nobody reads.
    #[error("cannot open the watchdog device {}: no reader on the FIFO (start the program that reads it first, or remove watchdog_device from hbd.toml)", path.display())]
    NoReader {
        /// watchdog_device.
        path: PathBuf,
    },
    /// Neither a character device, a FIFO nor a regular file.
    #[error("the watchdog device {} is not a character device, FIFO or regular file (give /dev/watchdog, or remove watchdog_device from hbd.toml)", path.display())]
    Kind {
        /// watchdog_device.
        path: PathBuf,
    },
    /// The driver refused the timeout, or the descriptor its mode.
    #[error("cannot {what} of the watchdog device {} (give another watchdog_timeout_ms, or remove watchdog_device from hbd.toml)", path.display())]
    Setup {
        /// watchdog_device.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// OS error.
        source: io::Error,
    },
}

/// An open watchdog device, petted with `1` and disarmed with `V`.
pub struct Watchdog {
    path: PathBuf,
    /// `None` once disarmed: nothing is written after the magic close
    /// (a write after it would arm the watchdog again).
    file: Mutex<Option<File>>,
    /// Failed writes, logged at most once a minute.
    failures: Throttle,
    /// Petting is withheld now (its start and end are logged once each).
    withheld: AtomicBool,
}

impl Watchdog {
    /// Opens the watchdog at `path` and, for a character device, sets its
    /// timeout (whole seconds, rounded up). A FIFO or regular file (a
    /// test's stand-in) is only written. Opening a watchdog starts it.
    pub fn open(path: &Path, timeout: Duration) -> Result<Watchdog, WatchdogError> {
        let open_error = |source| WatchdogError::Open {
            path: path.to_path_buf(),
            source,
        };
        let kind = std::fs::metadata(path).map_err(open_error)?.file_type();
        if !(kind.is_char_device() || kind.is_fifo() || kind.is_file()) {
            return Err(WatchdogError::Kind {
                path: path.to_path_buf(),
            });
        }
        // Non-blocking, so that opening a FIFO nobody reads fails at once
        // (ENXIO) instead of waiting for a reader for ever.
        let file = OpenOptions::new()
            .write(true)
            .append(kind.is_file())
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENXIO) if kind.is_fifo() => WatchdogError::NoReader {
                    path: path.to_path_buf(),
                },
                _ => open_error(source),
            })?;
        let setup = |what: String, source| WatchdogError::Setup {
            path: path.to_path_buf(),
            what,
            source,
        };
        let configured = clear_nonblock(&file)
            .map_err(|e| setup("make the descriptor blocking".into(), e))
            .and_then(|()| {
                if !kind.is_char_device() {
                    return Ok(());
                }
                let asked = timeout.as_millis().div_ceil(1000).clamp(1, i32::MAX as u128) as i32;
                let set = set_timeout(&file, asked)
                    .map_err(|e| setup(format!("set the timeout to {asked} s"), e))?;
                if set != asked {
                    tracing::warn!(device = %path.display(), "the watchdog driver took a timeout of {set} s instead of {asked} s");
                }
                Ok(())
            });
        if let Err(e) = configured {
            // Opened means started: close it disarmed, or it resets the host.
            let _ = (&file).write_all(b"V");
            return Err(e);
        }
        tracing::info!(
            device = %path.display(),
            timeout_ms = timeout.as_millis() as u64,
            "watchdog armed: petted every interval while this host is healthy and connected"
        );
        Ok(Watchdog {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
            failures: Throttle::new(Duration::from_secs(60), 1),
            withheld: AtomicBool::new(false),
        })
    }

    /// Pets the watchdog (writes `1`); a failed write is logged, at most
    /// once a minute. Nothing after [`Watchdog::disarm`].
    pub fn pet(&self) {
        let file = lock(&self.file);
        let Some(f) = file.as_ref() else {
            return;
        };
        if let Err(e) = (&*f).write_all(b"1") {
            if let Verdict::Say { suppressed } = self.failures.note("watchdog", "write") {
                tracing::warn!(device = %self.path.display(), suppressed, "cannot pet the watchdog: {e}; the host will be reset unless a later write succeeds");
            }
        }
    }

    /// Disarms the watchdog for a clean stop: the magic close `V`, then
    /// close. Petting ends for good.
    pub fn disarm(&self) {
        let Some(f) = lock(&self.file).take() else {
            return;
        };
        match (&f).write_all(b"V") {
            Ok(()) => {
                tracing::info!(device = %self.path.display(), "watchdog disarmed (magic close)")
            }
            Err(e) => {
                tracing::warn!(device = %self.path.display(), "cannot write the watchdog's magic close ({e}): it may still reset this host")
            }
        }
    }
}

impl Drop for Watchdog {
    /// A watchdog dropped on a clean path is disarmed; one dropped while a
    /// panic unwinds stays armed (the host is reset, as for a hang).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.disarm();
        }
    }
}

/// Clears `O_NONBLOCK` on `file`'s descriptor.
fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` stays open (owned by `file`) for the call; F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; F_SETFL takes the flags as an int.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a watchdog character device's timeout; the seconds the driver took.
fn set_timeout(file: &File, secs: i32) -> io::Result<i32> {
    let mut value: libc::c_int = secs;
    // SAFETY: the descriptor stays open (owned by `file`) for the call, and
    // WDIOC_SETTIMEOUT reads and writes back one int, `value`, alive and
    // exclusively borrowed for the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut value) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Pets `watchdog` if `petting` allows it at `now`; logs when petting is
/// withheld and when it resumes.
pub fn pet_if_allowed(watchdog: &Watchdog, petting: &Petting, now: Instant) {
    match petting.withheld(now) {
        None => {
            watchdog.pet();
            if watchdog.withheld.swap(false, Ordering::SeqCst) {
                tracing::info!(device = %watchdog.path.display(), "petting the watchdog again");
            }
        }
        Some(why) => {
            if !watchdog.withheld.swap(true, Ordering::SeqCst) {
                tracing::warn!(device = %watchdog.path.display(), "not petting the watchdog: {why}; it resets this host unless petting resumes");
            }
        }
    }
}

/// The petting task; dropping it stops the task and disarms the watchdog.
pub struct Petter {
    watchdog: Arc<Watchdog>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Petter {
    fn drop(&mut self) {
        self.task.abort();
        // The task's pet and this disarm take the same lock: no `1` after the `V`.
        if !std::thread::panicking() {
            self.watchdog.disarm();
        }
    }
}

/// Starts petting `watchdog` every `every` (at once, then each interval)
/// while `petting` allows it.
pub fn start(watchdog: Watchdog, petting: Arc<Petting>, every: Duration) -> Petter {
    let watchdog = Arc::new(watchdog);
    let task = tokio::spawn({
        let watchdog = Arc::clone(&watchdog);
        async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                pet_if_allowed(&watchdog, &petting, Instant::now());
            }
        }
    });
    Petter { watchdog, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn petting_stops_when_fenced_for_good_or_when_the_connection_lapses() {
        let p = Petting::default();
        let now = Instant::now();
        assert!(p.may_pet(now), "no connection condition yet");
        p.connected_until(now + Duration::from_secs(1));
        p.connected_until(now);
        assert!(p.may_pet(now), "an earlier promise is not shortened");
        assert!(!p.may_pet(now + Duration::from_secs(1)));
        p.connected_until(now + Duration::from_secs(5));
        assert!(p.may_pet(now + Duration::from_secs(1)), "connected again");
        p.fence("poisoned");
        p.connected_until(now + Duration::from_secs(10));
        assert!(p.is_fenced() && !p.may_pet(now), "fenced is sticky");
    }

    #[test]
    fn a_regular_file_is_petted_then_disarmed_and_bad_devices_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wd");
        std::fs::write(&path, b"").expect("file");
        let w = Watchdog::open(&path, Duration::from_secs(1)).expect("open");
        let p = Petting::default();
        pet_if_allowed(&w, &p, Instant::now());
        p.fence("test");
        pet_if_allowed(&w, &p, Instant::now());
        w.pet();
        drop(w);
        assert_eq!(std::fs::read(&path).expect("read"), b"11V");

        let missing = dir.path().join("missing");
        let e = Watchdog::open(&missing, Duration::from_secs(1))
            .err()
            .expect("missing");
        let text = hbcore::report::chain(&e);
        assert!(
            text.contains(&format!(
                "cannot open the watchdog device {}",
                missing.display()
            )) && text.contains("modprobe softdog"),
            "{text}"
        );
        let e = Watchdog::open(dir.path(), Duration::from_secs(1))
            .err()
            .expect("dir");
        assert!(e.to_string().contains("not a character device"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: `c` is a NUL-terminated path alive for the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let e = Watchdog::open(&fifo, Duration::from_secs(1))
            .err()
            .expect("no reader");
        assert!(e.to_string().contains("no reader on the FIFO"), "{e}");
    }
}
