//! [`HostClient`]: a host's connection to its site's mirrord, as the host
//! sees it: one call at a time per caller, many callers at once, and one
//! deadline (`io_timeout`) per call across lost connections.
//!
//! ```text
//!  caller (FUSE worker, hbctl, hbd task) ── call ─> session? ─ none/dead ─> dial: addrs in turn,
//!      │                                     │                 backoff, handshake on Lane::Host
//!      │  HostCall{id} sealed and written by the caller (the session's writer lock) ─> mirrord
//!      └─ waits: answer <─oneshot─ ══ reader task ══ <─ sealed ─ HostAnswer{id} / Pong
//! ```
//!
//! A session that stays silent while a call waits is probed with a `Ping`
//! and, still silent, abandoned: the call goes on over a new connection
//! (the second address if the first does not answer). A `Write` is re-sent
//! with its id only to the same mirrord process, which applies it once; if
//! mirrord restarted meanwhile the write fails (its outcome is unknown). A
//! `Control` request is never re-sent: its outcome is reported unknown.
//! A refused handshake (a wrong key, an unknown host) fails at once.
//!
//! Threads: the callers' (any), and the session's reader task on the
//! runtime the client was first used on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{HostError, HostReply, HostRequest};
use crate::jsonl::ClientError;
use crate::link::handshake::{self, Credentials, HandshakeError};
use crate::link::sealed::{self, SealedReader, SealedWriter};
use crate::link::{Lane, Message};

/// Where the storage is and who this host is.
#[derive(Clone)]
pub struct StorageSpec {
    /// mirrord's `[hosts] listen` addresses, tried in turn.
    pub addrs: Vec<String>,
    /// This host's key (its `[[hosts.allow]] key_file` at the site).
    pub key: Vec<u8>,
    /// This host's id (its `[[hosts.allow]] host`).
    pub host: String,
    /// The site expected to answer; `None`: whichever holds the key.
    pub site: Option<String>,
    /// How long a call may wait in all, reconnecting meanwhile.
    pub io_timeout: Duration,
}

impl std::fmt::Debug for StorageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSpec")
            .field("addrs", &self.addrs)
            .field("host", &self.host)
            .field("site", &self.site)
            .field("io_timeout", &self.io_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No session could be opened or kept within the call's deadline.
    #[error("no answer from mirrord at {addrs} within {timeout:?} (the I/O timeout): {last}")]
    Unreachable {
        /// The addresses tried.
        addrs: String,
        /// The deadline.
        timeout: Duration,
        /// The last failure seen.
        last: String,
    },
    /// mirrord refused this host's connection.
    #[error("mirrord at {addr} refused host '{host}': {source}")]
    Handshake {
        /// The address.
        addr: String,
        /// This host.
        host: String,
        /// Why.
        source: HandshakeError,
    },
    /// mirrord answered with a refusal or a failure.
    #[error(transparent)]
    Refused(#[from] HostError),
    /// The connection was lost with the request sent, and it cannot be
    /// re-sent safely (mirrord restarted, or a control request).
    #[error("the connection to mirrord was lost with {what} in flight{why}: whether it was carried out is unknown")]
    Unknown {
        /// What was asked.
        what: String,
        /// Why it was not re-sent.
        why: &'static str,
    },
}

impl CallError {
    /// The errno a host's program sees.
    pub fn errno(&self) -> i32 {
        match self {
            CallError::Refused(e) => e.errno,
            _ => libc::EIO,
        }
    }
}

type Answer = Result<HostReply, HostError>;

/// One connection to mirrord.
struct Session {
    /// The sending half, written by the calling task itself (no hand-off
    /// to a writer task: one wake-up less per call).
    writer: tokio::sync::Mutex<SealedWriter<OwnedWriteHalf>>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// mirrord's process (its handshake incarnation).
    server: u64,
    dead: AtomicBool,
    heard: Mutex<Instant>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Session {
    /// Seals and writes `msg`; a failure ends the session.
    async fn send(&self, msg: Message) -> Result<(), ()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(());
        }
        let mut writer = self.writer.lock().await;
        // A caller cancelled mid-frame leaves the stream unusable: the
        // session ends rather than send the rest of the stream after half a frame.
        let midway = Midway(Some(self));
        let sent = writer.send(msg).await;
        midway.done();
        sent.map_err(|_| self.end())
    }

    fn end(&self) {
        self.dead.store(true, Ordering::SeqCst);
        if let Ok(mut w) = self.waiters.lock() {
            // Dropping the senders wakes every waiting call.
            w.clear();
        }
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }

    fn silent_for(&self) -> Duration {
        self.heard.lock().map_or(Duration::ZERO, |h| h.elapsed())
    }
}

struct Inner {
    spec: StorageSpec,
    incarnation: u64,
    ids: AtomicU64,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// `Mount` succeeded once: a new session claims the mount again.
    mounted: AtomicBool,
    /// The last failure to open a session, for every caller's message.
    failure: Mutex<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(s) = self.session.get_mut().take() {
            s.end();
        }
    }
}

/// A host's client of its site's mirrord; clones share the connection.
#[derive(Clone)]
pub struct HostClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HostClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClient")
            .field("spec", &self.inner.spec)
            .finish_non_exhaustive()
    }
}

/// How long a session may stay silent while a call waits before it is
/// probed (once) and then abandoned: a quarter of the call's deadline.
fn silence(io_timeout: Duration) -> Duration {
    (io_timeout / 4).max(Duration::from_millis(100))
}

impl HostClient {
    /// A client of the mirrord described by `spec`; connects on first use.
    pub fn new(spec: StorageSpec) -> HostClient {
        HostClient {
            inner: Arc::new(Inner {
                spec,
                incarnation: rand::random(),
                ids: AtomicU64::new(1),
                session: tokio::sync::Mutex::new(None),
                mounted: AtomicBool::new(false),
                failure: Mutex::new("no connection attempted yet".into()),
            }),
        }
    }

    /// What this client was made with.
    pub fn spec(&self) -> &StorageSpec {
        &self.inner.spec
    }

    /// `tcp://` and the addresses, for messages.
    pub fn address(&self) -> String {
        format!("tcp://{}", self.inner.spec.addrs.join(","))
    }

    /// Asks `body` and waits for the answer, at most `io_timeout` in all.
    pub async fn call(&self, body: HostRequest) -> Result<HostReply, CallError> {
        let deadline = Instant::now() + self.inner.spec.io_timeout;
        let reply = self.call_until(body.clone(), deadline).await;
        if matches!(body, HostRequest::Mount) && reply.is_ok() {
            self.inner.mounted.store(true, Ordering::SeqCst);
        }
        reply
    }

    /// One control request as `hbcore::jsonl::call` sends it to the
    /// socket; the same answer, or the same refusal.
    pub async fn control<Q: Serialize, R: DeserializeOwned>(
        &self,
        request: &Q,
    ) -> Result<R, ClientError> {
        let json = serde_json::to_string(request).map_err(|source| ClientError::Protocol {
            path: self.address().into(),
            source,
        })?;
        match self.call(HostRequest::Control { json }).await {
            Ok(HostReply::Control { json }) => {
                crate::jsonl::read_answer(&json, std::path::Path::new(&self.address()))
            }
            Ok(other) => Err(ClientError::Storage(format!(
                "mirrord at {} answered a control request with {other:?}",
                self.address()
            ))),
            Err(CallError::Refused(e)) => Err(ClientError::Refused(e.message)),
            // A wrong key or an unknown host is a refusal, not an unreachable daemon.
            Err(e @ CallError::Handshake { .. }) => {
                Err(ClientError::Refused(crate::report::chain(&e)))
            }
            Err(e) => Err(ClientError::Storage(e.to_string())),
        }
    }

    async fn call_until(
        &self,
        body: HostRequest,
        deadline: Instant,
    ) -> Result<HostReply, CallError> {
        let id = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        let mut sent_to: Option<u64> = None;
        let mut last = None;
        loop {
            let session = match self.session(deadline).await? {
                Some(s) => s,
                None => return Err(self.unreachable(last)),
            };
            if let Some(server) = sent_to {
                let why = match body {
                    HostRequest::Control { .. } => Some(""),
                    HostRequest::Write { .. } if server != session.server => {
                        Some(" and mirrord restarted since")
                    }
                    _ => None,
                };
                if let Some(why) = why {
                    return Err(CallError::Unknown {
                        what: body.what(),
                        why,
                    });
                }
            }
            let (tx, rx) = oneshot::channel();
            if let Ok(mut w) = session.waiters.lock() {
                w.insert(id, tx);
            }
            let call = Message::HostCall {
                id,
                body: body.clone(),
            };
            if session.send(call).await.is_err() {
                last = Some("the connection closed".into());
                continue;
            }
            sent_to = Some(session.server);
            match self.wait(&session, rx, deadline).await {
                Waited::Answer(a) => return a.map_err(CallError::Refused),
                Waited::Lost(why) => last = Some(why),
                Waited::Deadline => {
                    if let Ok(mut w) = session.waiters.lock() {
                        w.remove(&id);
                    }
                    return Err(self.unreachable(last));
                }
            }
        }
    }

    /// The call's deadline passed: `lost` says how its own session ended,
    /// else the last failure to open one (perhaps another caller's).
    fn unreachable(&self, lost: Option<String>) -> CallError {
        let last = lost.unwrap_or_else(|| {
            self.inner
                .failure
                .lock()
                .map_or_else(|_| String::new(), |f| f.clone())
        });
        CallError::Unreachable {
            addrs: self.address(),
            timeout: self.inner.spec.io_timeout,
            last,
        }
    }

    fn failed(&self, why: String) {
        if let Ok(mut f) = self.inner.failure.lock() {
            *f = why;
        }
    }

    /// Waits for the answer on `session`, probing it when it stays silent.
    async fn wait(
        &self,
        session: &Arc<Session>,
        mut rx: oneshot::Receiver<Answer>,
        deadline: Instant,
    ) -> Waited {
        let quiet = silence(self.inner.spec.io_timeout);
        let mut probed = false;
        loop {
            let tick = (Instant::now() + quiet / 2).min(deadline);
            tokio::select! {
                answer = &mut rx => return match answer {
                    Ok(a) => Waited::Answer(a),
                    Err(_) => Waited::Lost("the connection was lost".into()),
                },
                _ = tokio::time::sleep_until(tick) => {}
            }
            if Instant::now() >= deadline {
                return Waited::Deadline;
            }
            let silent = session.silent_for();
            if silent >= quiet && probed {
                session.end();
                return Waited::Lost(format!("mirrord silent for {silent:?}"));
            }
            if silent >= quiet / 2 && !probed {
                probed = session.send(Message::Ping).await.is_ok();
            }
        }
    }

    /// The live session, or a new one; `None` when the deadline passed
    /// first (`Inner::failure` says what failed). Safe to cancel: a session
    /// being opened is ended unless it was stored.
    async fn session(&self, deadline: Instant) -> Result<Option<Arc<Session>>, CallError> {
        let mut current = self.inner.session.lock().await;
        if let Some(s) = current.as_ref() {
            if !s.dead.load(Ordering::SeqCst) {
                return Ok(Some(Arc::clone(s)));
            }
        }
        *current = None;
        let mut pause = Duration::from_millis(50);
        loop {
            for addr in &self.inner.spec.addrs {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                match self.open(addr, deadline).await {
                    Ok(s) => {
                        let opening = Opened(Some(Arc::clone(&s)));
                        if self.inner.mounted.load(Ordering::SeqCst) {
                            if let Some(why) = self.remount(&s, deadline).await? {
                                self.failed(format!("{addr}: {why}"));
                                continue;
                            }
                        }
                        opening.keep();
                        *current = Some(Arc::clone(&s));
                        return Ok(Some(s));
                    }
                    Err(Opening::Refused(source)) => {
                        return Err(CallError::Handshake {
                            addr: addr.clone(),
                            host: self.inner.spec.host.clone(),
                            source,
                        })
                    }
                    Err(Opening::Failed(why)) => self.failed(format!("{addr}: {why}")),
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep((deadline - now).min(pause)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Claims the mount again on a new session (the same process: mirrord
    /// lets it take over its own claim); `Some(why)` if the session was lost.
    async fn remount(
        &self,
        s: &Arc<Session>,
        deadline: Instant,
    ) -> Result<Option<String>, CallError> {
        let id = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = s.waiters.lock() {
            w.insert(id, tx);
        }
        let _ = s
            .send(Message::HostCall {
                id,
                body: HostRequest::Mount,
            })
            .await;
        match self.wait(s, rx, deadline).await {
            Waited::Answer(Ok(_)) => Ok(None),
            Waited::Answer(Err(e)) => Err(CallError::Refused(e)),
            Waited::Lost(why) => Ok(Some(why)),
            Waited::Deadline => Ok(Some("the mount was not claimed again in time".into())),
        }
    }

    async fn open(&self, addr: &str, deadline: Instant) -> Result<Arc<Session>, Opening> {
        let spec = &self.inner.spec;
        let left = deadline.saturating_duration_since(Instant::now());
        let stream =
            tokio::time::timeout(left.min(Duration::from_secs(2)), TcpStream::connect(addr))
                .await
                .map_err(|_| Opening::Failed("connect timed out".into()))?
                .map_err(|e| Opening::Failed(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let creds = Credentials {
            key: &spec.key,
            seal: true,
            incarnation: self.inner.incarnation,
        };
        let site = spec.site.as_deref().unwrap_or("");
        let left = deadline.saturating_duration_since(Instant::now());
        let admitted = handshake::dial(stream, &spec.host, site, Lane::Host, creds, false, left)
            .await
            .map_err(|e| match e {
                HandshakeError::Refused(_) | HandshakeError::RefusedByPeer(_) => {
                    Opening::Refused(e)
                }
                other => Opening::Failed(other.to_string()),
            })?;
        let server = admitted.incarnation;
        let (reader, writer) = sealed::halves(admitted, TcpStream::into_split)
            .map_err(|e| Opening::Failed(e.to_string()))?;
        let session = Arc::new(Session {
            writer: tokio::sync::Mutex::new(writer),
            waiters: Mutex::new(HashMap::new()),
            server,
            dead: AtomicBool::new(false),
            heard: Mutex::new(Instant::now()),
            tasks: Mutex::new(Vec::new()),
        });
        let r = tokio::spawn(read_answers(reader, Arc::clone(&session)));
        if let Ok(mut t) = session.tasks.lock() {
            t.push(r);
        }
        Ok(session)
    }
}

/// A frame being written: its session ends if the write is dropped before done.
struct Midway<'a>(Option<&'a Session>);

impl Midway<'_> {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for Midway<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.end();
        }
    }
}

/// A session being opened: ended when dropped (a cancelled call, a
/// refused re-claim) unless kept.
struct Opened(Option<Arc<Session>>);

impl Opened {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.end();
        }
    }
}

enum Waited {
    Answer(Answer),
    Lost(String),
    Deadline,
}

enum Opening {
    Refused(HandshakeError),
    Failed(String),
}

async fn read_answers(
    mut reader: SealedReader<tokio::net::tcp::OwnedReadHalf>,
    session: Arc<Session>,
) {
    loop {
        let msg = match reader.next().await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => break,
        };
        if let Ok(mut h) = session.heard.lock() {
            *h = Instant::now();
        }
        match msg {
            Message::HostAnswer { id, result } => {
                let waiter = session.waiters.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(w) = waiter {
                    let _ = w.send(result);
                }
            }
            Message::Ping => {
                // Not on this task: the reader never waits for the writer.
                let s = Arc::clone(&session);
                tokio::spawn(async move { s.send(Message::Pong).await });
            }
            Message::Pong => {}
            other => {
                tracing::warn!(
                    kind = other.kind(),
                    "host link: mirrord sent an unexpected message; reconnecting"
                );
                break;
            }
        }
    }
    session.end();
}
