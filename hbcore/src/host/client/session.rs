//! One connection to mirrord, shared by the host's callers with no reader
//! task (leader and followers): a call waiting for its answer reads the
//! socket itself when no other call does (it leads), and hands the
//! answers it reads for others to them (the followers, parked); leaving,
//! it wakes a follower to lead. At one call in flight the kernel wakes the
//! caller's own thread when the answer arrives, and no other.
//!
//! ```text
//!  caller ── send: seal + write (writer lock) ─> mirrord
//!     └─ wait: answered? ─ reader free? ─ yes: lead: poll + read + open ─> own answer: return
//!                               │                                      └> another's: slot + unpark
//!                               └ no: park (follower) until unparked or a tick
//! ```
//!
//! The socket is not the runtime's (no reactor wakes a thread for it): the
//! leader blocks in `poll(2)`, at most until its deadline or the next
//! silence check. While no call waits, the session's idle thread reads
//! once a second what came meanwhile (mirrord's pings, its close).
//!
//! Threads: the callers' (blocking: FUSE threads, the runtime's blocking
//! pool for async callers) and the session's idle thread.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::super::{HostError, HostReply};
use crate::link::seal::{Opener, Sealer};
use crate::link::Message;

/// What mirrord answered to one call.
pub(super) type Answer = Result<HostReply, HostError>;

/// How often the idle thread reads what came while no call waited.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// One connection to mirrord, after its handshake.
pub(super) struct Session {
    sock: TcpStream,
    writer: Mutex<Writer>,
    /// Held by the call that leads (or the idle thread).
    reader: Mutex<Reader>,
    waiters: Mutex<HashMap<u64, Arc<Slot>>>,
    /// mirrord's process (its handshake incarnation).
    pub(super) server: u64,
    dead: AtomicBool,
    /// Why the session ended, for the calls it fails.
    why: Mutex<Option<String>>,
    heard: Mutex<Instant>,
    idle: Mutex<Option<Thread>>,
}

struct Writer {
    sealer: Sealer,
    buf: BytesMut,
}

struct Reader {
    opener: Opener,
    buf: BytesMut,
}

/// One call waiting for its answer, on its own thread.
pub(super) struct Slot {
    answer: Mutex<Option<Answer>>,
    thread: Thread,
}

/// How a wait ended.
pub(super) enum Waited {
    Answer(Answer),
    Lost(String),
    Deadline,
}

/// The silence checks of one wait: the first a `quiet / 2` after it began.
struct Probe {
    quiet: Duration,
    next: Instant,
    probed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl Session {
    /// A session over `sock` (taken off the runtime's reactor), `read_buf`
    /// what the handshake read past its end; starts its idle thread.
    pub(super) fn start(
        sock: TcpStream,
        keys: (Sealer, Opener),
        read_buf: BytesMut,
        server: u64,
    ) -> io::Result<Arc<Session>> {
        sock.set_nonblocking(true)?;
        let (sealer, opener) = keys;
        let session = Arc::new(Session {
            sock,
            writer: Mutex::new(Writer {
                sealer,
                buf: BytesMut::new(),
            }),
            reader: Mutex::new(Reader {
                opener,
                buf: read_buf,
            }),
            waiters: Mutex::new(HashMap::new()),
            server,
            dead: AtomicBool::new(false),
            why: Mutex::new(None),
            heard: Mutex::new(Instant::now()),
            idle: Mutex::new(None),
        });
        let weak = Arc::downgrade(&session);
        match std::thread::Builder::new()
            .name("hostlink-idle".into())
            .spawn(move || idle(weak))
        {
            Ok(t) => *lock(&session.idle) = Some(t.thread().clone()),
            // Pings are then answered only while a call waits: mirrord may
            // drop an idle session, and the next call opens another.
            Err(e) => tracing::warn!("host link: no idle thread for the session: {e}"),
        }
        Ok(session)
    }

    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Why the session ended.
    pub(super) fn why(&self) -> String {
        lock(&self.why)
            .clone()
            .unwrap_or_else(|| "the connection was lost".into())
    }

    /// Ends the session: every waiting call is woken (and fails), a leader
    /// in `poll` too (the socket is shut down).
    pub(super) fn end(&self, why: &str) {
        lock(&self.why).get_or_insert_with(|| why.to_string());
        self.dead.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(Shutdown::Both);
        let slots: Vec<Arc<Slot>> = lock(&self.waiters).drain().map(|(_, s)| s).collect();
        for s in slots {
            s.thread.unpark();
        }
        if let Some(t) = lock(&self.idle).as_ref() {
            t.unpark();
        }
    }

    /// Registers call `id` (on this thread) before its request is sent.
    pub(super) fn expect(&self, id: u64) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            answer: Mutex::new(None),
            thread: std::thread::current(),
        });
        lock(&self.waiters).insert(id, Arc::clone(&slot));
        slot
    }

    pub(super) fn forget(&self, id: u64) {
        lock(&self.waiters).remove(&id);
    }

    /// Seals and writes `msg`, by `deadline`; a failure (half a frame
    /// written, perhaps) ends the session.
    pub(super) fn send(&self, msg: Message, deadline: Instant) -> Result<(), ()> {
        if self.is_dead() {
            return Err(());
        }
        let sent = lock(&self.writer).send(&self.sock, msg, deadline);
        sent.map_err(|e| self.end(&format!("sending to mirrord: {e}")))
    }

    /// Waits for call `id`'s answer until `deadline`, leading when no call
    /// does; probes a session silent for `quiet / 2` with a `Ping`, and
    /// abandons it silent for `quiet`.
    pub(super) fn wait(&self, id: u64, slot: &Slot, deadline: Instant, quiet: Duration) -> Waited {
        let mut probe = Probe {
            quiet,
            next: Instant::now() + quiet / 2,
            probed: false,
        };
        let waited = loop {
            if let Some(a) = lock(&slot.answer).take() {
                break Waited::Answer(a);
            }
            if self.is_dead() {
                break Waited::Lost(self.why());
            }
            let now = Instant::now();
            if now >= deadline {
                break Waited::Deadline;
            }
            if let Some(mut reader) = try_lock(&self.reader) {
                if let Err(why) = self.lead(&mut reader, slot, deadline, &mut probe) {
                    drop(reader);
                    self.end(&why);
                }
                continue;
            }
            // A follower: the leader unparks it with its answer, or when it
            // leaves; the tick bounds a missed hand-over.
            std::thread::park_timeout(deadline.min(now + quiet / 2) - now);
        };
        if matches!(waited, Waited::Deadline) {
            self.forget(id);
        }
        self.promote();
        waited
    }

    /// Reads and hands out answers until `slot`'s came, the deadline, or
    /// the session failed (`Err`: why).
    fn lead(
        &self,
        r: &mut Reader,
        slot: &Slot,
        deadline: Instant,
        probe: &mut Probe,
    ) -> Result<(), String> {
        loop {
            self.open_all(r)?;
            if lock(&slot.answer).is_some() || self.is_dead() {
                return Ok(());
            }
            if self.read_some(r)? {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            if now >= probe.next {
                probe.next = now + probe.quiet / 2;
                let silent = self.silent_for();
                if silent >= probe.quiet && probe.probed {
                    return Err(format!("mirrord silent for {silent:?}"));
                }
                if silent >= probe.quiet / 2 && !probe.probed {
                    probe.probed = self.ping(deadline);
                }
            }
            wait_fd(&self.sock, libc::POLLIN, deadline.min(probe.next) - now)
                .map_err(|e| format!("waiting for mirrord: {e}"))?;
        }
    }

    /// Reads once: `Ok(true)` if bytes came, `Ok(false)` if none are there.
    fn read_some(&self, r: &mut Reader) -> Result<bool, String> {
        match r.read(&self.sock) {
            Ok(0) if r.buf.is_empty() => Err("mirrord closed the connection".into()),
            Ok(0) => Err(format!(
                "mirrord closed the connection mid-frame ({} bytes of a frame read)",
                r.buf.len()
            )),
            Ok(_) => {
                *lock(&self.heard) = Instant::now();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(format!("reading from mirrord: {e}")),
        }
    }

    /// Opens every whole frame read and hands each out.
    fn open_all(&self, r: &mut Reader) -> Result<(), String> {
        loop {
            let msg = r
                .opener
                .decode(&mut r.buf)
                .map_err(|e| format!("a frame from mirrord did not open: {e}"))?;
            match msg {
                Some(Message::HostAnswer { id, result }) => {
                    let waiter = lock(&self.waiters).remove(&id);
                    if let Some(w) = waiter {
                        *lock(&w.answer) = Some(result);
                        if w.thread.id() != std::thread::current().id() {
                            w.thread.unpark();
                        }
                    }
                }
                // Only if the writer is free: a frame being written tells
                // mirrord as much, and the reader never waits for it.
                Some(Message::Ping) => {
                    if let Some(mut w) = try_lock(&self.writer) {
                        let by = Instant::now() + IDLE_TICK;
                        if let Err(e) = w.send(&self.sock, Message::Pong, by) {
                            return Err(format!("answering mirrord's ping: {e}"));
                        }
                    }
                }
                Some(Message::Pong) => {}
                Some(other) => {
                    tracing::warn!(
                        kind = other.kind(),
                        "host link: mirrord sent an unexpected message; reconnecting"
                    );
                    return Err(format!("mirrord sent a {} message", other.kind()));
                }
                None => return Ok(()),
            }
        }
    }

    /// Sends a probe unless a frame is being written; `true` if sent.
    fn ping(&self, deadline: Instant) -> bool {
        let Some(mut w) = try_lock(&self.writer) else {
            return false;
        };
        match w.send(&self.sock, Message::Ping, deadline) {
            Ok(()) => true,
            Err(e) => {
                drop(w);
                self.end(&format!("probing mirrord: {e}"));
                false
            }
        }
    }

    /// Nobody leads: wakes a waiting call to.
    fn promote(&self) {
        if try_lock(&self.reader).is_none() {
            return;
        }
        if let Some(s) = lock(&self.waiters).values().next() {
            s.thread.unpark();
        }
    }

    /// Reads (without waiting) what came while no call led.
    fn drain(&self) {
        let Some(mut r) = try_lock(&self.reader) else {
            return;
        };
        let drained = loop {
            if let Err(why) = self.open_all(&mut r) {
                break Err(why);
            }
            match self.read_some(&mut r) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(why) => break Err(why),
            }
        };
        drop(r);
        if let Err(why) = drained {
            self.end(&why);
        }
        self.promote();
    }

    fn silent_for(&self) -> Duration {
        lock(&self.heard).elapsed()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.idle).as_ref() {
            t.unpark();
        }
    }
}

/// The idle thread: reads what came while no call waited, until the
/// session ends or is dropped.
fn idle(session: Weak<Session>) {
    loop {
        std::thread::park_timeout(IDLE_TICK);
        let Some(s) = session.upgrade() else {
            return;
        };
        if s.is_dead() {
            return;
        }
        s.drain();
    }
}

impl Writer {
    fn send(&mut self, sock: &TcpStream, msg: Message, deadline: Instant) -> io::Result<()> {
        self.buf.clear();
        self.sealer
            .encode(msg, &mut self.buf)
            .map_err(io::Error::other)?;
        let mut at = 0;
        while at < self.buf.len() {
            match (&*sock).write(&self.buf[at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "mirrord took no more bytes before the call's deadline",
                        ));
                    }
                    wait_fd(sock, libc::POLLOUT, deadline - now)?;
                }
                Err(e) => return Err(e),
            }
        }
        // A large frame's buffer is not kept between messages.
        if self.buf.capacity() > 256 << 10 {
            self.buf = BytesMut::new();
        }
        Ok(())
    }
}

impl Reader {
    /// One `read(2)` into the buffer's free space (grown if short).
    fn read(&mut self, sock: &TcpStream) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 16 << 10 {
            self.buf.reserve(64 << 10);
        }
        let spare = self.buf.spare_capacity_mut();
        // SAFETY: `read` writes at most `spare.len()` bytes into `spare`,
        // memory the buffer owns and nothing else refers to meanwhile.
        let n = unsafe { libc::read(sock.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        let Ok(n) = usize::try_from(n) else {
            return Err(io::Error::last_os_error());
        };
        // SAFETY: `read` initialised the first `n` bytes past the length.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Ok(n)
    }
}

/// Blocks until `sock` is ready for `events` (or hung up), or `timeout`.
fn wait_fd(sock: &TcpStream, events: libc::c_short, timeout: Duration) -> io::Result<()> {
    let mut fd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, borrowed for the call only.
    let r = unsafe { libc::poll(&mut fd, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
