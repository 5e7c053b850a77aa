//! A watchdog that resets nothing (issue 26, point 3): a FIFO for hbd's
//! `watchdog_device`, read by a thread of the test process. Each byte is a
//! pet; `V` disarms (the magic close) until the next pet; when no pet came
//! for the timeout after the first, it kills -9 the victims (the member's
//! processes) instead of resetting the machine, and stops watching. It
//! also stops once disarmed and closed by the writer.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wait_for;

#[derive(Default)]
struct State {
    pets: AtomicU64,
    fired: AtomicBool,
    disarmed: AtomicBool,
    /// The watching ended: fired, or disarmed and closed.
    done: AtomicBool,
    stop: AtomicBool,
}

/// The stand-in; stops its thread on drop.
pub struct WatchdogStandin {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl WatchdogStandin {
    /// Makes the FIFO at `fifo`, opens it for reading and watches it: no
    /// pet for `timeout` (once petted) kills -9 every pid `victims` names.
    pub fn start(
        fifo: &Path,
        timeout: Duration,
        victims: impl Fn() -> Vec<u32> + Send + 'static,
    ) -> WatchdogStandin {
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("FIFO path");
        // SAFETY: `c` is a NUL-terminated path alive for the call.
        let made = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            made,
            0,
            "mkfifo {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        );
        // Non-blocking: opens without a writer, and reads never wait.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .unwrap_or_else(|e| panic!("open {} for reading: {e}", fifo.display()));
        let state = Arc::new(State::default());
        let thread = std::thread::spawn({
            let state = Arc::clone(&state);
            move || watch(&mut reader, timeout, &victims, &state)
        });
        WatchdogStandin {
            state,
            thread: Some(thread),
        }
    }

    /// Pets so far.
    pub fn pets(&self) -> u64 {
        self.state.pets.load(Ordering::SeqCst)
    }

    /// Whether it fired (killed the victims).
    pub fn fired(&self) -> bool {
        self.state.fired.load(Ordering::SeqCst)
    }

    /// Whether it was disarmed and closed by its writer: it never fires now.
    pub fn stood_down(&self) -> bool {
        self.state.done.load(Ordering::SeqCst) && !self.fired()
    }

    /// Waits until it fired.
    pub fn wait_fired(&self) {
        wait_for("the watchdog stand-in to fire", || self.fired());
    }

    /// Waits until `more` pets arrived beyond those so far.
    pub fn wait_pets(&self, more: u64) {
        let start = self.pets();
        wait_for(&format!("{more} pets beyond {start}"), || {
            self.pets() >= start + more
        });
    }
}

impl Drop for WatchdogStandin {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The watching thread.
fn watch(reader: &mut File, timeout: Duration, victims: &dyn Fn() -> Vec<u32>, state: &State) {
    let mut last_pet: Option<Instant> = None;
    let mut buf = [0u8; 64];
    while !state.stop.load(Ordering::SeqCst) {
        let mut closed = false;
        match reader.read(&mut buf) {
            // No writer (not yet, or no more).
            Ok(0) => closed = true,
            Ok(n) => {
                for &b in &buf[..n] {
                    if b == b'V' {
                        state.disarmed.store(true, Ordering::SeqCst);
                    } else {
                        state.disarmed.store(false, Ordering::SeqCst);
                        state.pets.fetch_add(1, Ordering::SeqCst);
                        last_pet = Some(Instant::now());
                    }
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("read the watchdog FIFO: {e}"),
        }
        let disarmed = state.disarmed.load(Ordering::SeqCst);
        if disarmed && closed {
            state.done.store(true, Ordering::SeqCst);
            return;
        }
        if !disarmed && last_pet.is_some_and(|at| at.elapsed() >= timeout) {
            for pid in victims() {
                // SAFETY: kill has no memory preconditions; a pid gone already is ESRCH.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            state.fired.store(true, Ordering::SeqCst);
            state.done.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
