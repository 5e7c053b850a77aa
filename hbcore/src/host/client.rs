//! [`HostClient`]: a host's connection to its site's mirrord, as the host
//! sees it: one call at a time per caller, many callers at once, and one
//! deadline (`io_timeout`) per call across lost connections.
//!
//! ```text
//!  caller (FUSE thread, or a blocking-pool thread for an async caller)
//!      ── call ─> session? ─ none/dead ─> dial: addrs in turn, backoff, handshake on Lane::Host
//!      │  HostCall{id} sealed and written by the caller (the session's writer lock) ─> mirrord
//!      └─ waits: reads HostAnswer{id} off the socket itself if no other caller does,
//!                else is handed it by the one that does (session: leader and followers)
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
//! Threads: the callers' ([`HostClient::call_blocking`] on a thread of
//! their own; [`HostClient::call`] on the runtime's blocking pool, so that
//! a dropped call still ends by its deadline and never mid-frame), the
//! runtime's workers for the handshake, and each session's idle thread.

mod session;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::runtime::Handle;

use super::{HostError, HostReply, HostRequest};
use crate::jsonl::ClientError;
use crate::link::handshake::{self, Credentials, HandshakeError};
use crate::link::{Lane, Message};
use session::{Session, Waited};

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

struct Inner {
    spec: StorageSpec,
    incarnation: u64,
    ids: AtomicU64,
    /// The live session; held while one is opened (the others wait).
    session: Mutex<Option<Arc<Session>>>,
    /// `Mount` succeeded once: a new session claims the mount again.
    mounted: AtomicBool,
    /// The last failure to open a session, for every caller's message.
    failure: Mutex<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let session = self.session.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = session.take() {
            s.end("the client was dropped");
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HostClient {
    /// A client of the mirrord described by `spec`; connects on first use.
    pub fn new(spec: StorageSpec) -> HostClient {
        HostClient {
            inner: Arc::new(Inner {
                spec,
                incarnation: rand::random(),
                ids: AtomicU64::new(1),
                session: Mutex::new(None),
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
    /// The call runs on the runtime's blocking pool: dropped, it still
    /// goes on to its end (its deadline at most).
    pub async fn call(&self, body: HostRequest) -> Result<HostReply, CallError> {
        let client = self.clone();
        let runtime = Handle::current();
        let call = tokio::task::spawn_blocking(move || client.call_blocking(body, &runtime));
        call.await.unwrap_or_else(|e| {
            Err(CallError::Unreachable {
                addrs: self.address(),
                timeout: self.inner.spec.io_timeout,
                last: format!("the call's thread failed: {e}"),
            })
        })
    }

    /// [`HostClient::call`] on the calling thread, which blocks meanwhile
    /// and may read the answer off the socket itself (one wake-up: its
    /// own). `runtime` dials a new session. Not on a runtime's worker.
    pub fn call_blocking(
        &self,
        body: HostRequest,
        runtime: &Handle,
    ) -> Result<HostReply, CallError> {
        let deadline = Instant::now() + self.inner.spec.io_timeout;
        let mount = matches!(body, HostRequest::Mount);
        let reply = self.call_until(body, deadline, runtime);
        if mount && reply.is_ok() {
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

    fn call_until(
        &self,
        body: HostRequest,
        deadline: Instant,
        runtime: &Handle,
    ) -> Result<HostReply, CallError> {
        let id = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        let quiet = silence(self.inner.spec.io_timeout);
        let mut sent_to: Option<u64> = None;
        let mut last = None;
        loop {
            let session = match self.session(deadline, runtime)? {
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
            let slot = session.expect(id);
            let call = Message::HostCall {
                id,
                body: body.clone(),
            };
            if session.send(call, deadline).is_err() {
                session.forget(id);
                last = Some(session.why());
                continue;
            }
            sent_to = Some(session.server);
            match session.wait(id, &slot, deadline, quiet) {
                Waited::Answer(a) => return a.map_err(CallError::Refused),
                Waited::Lost(why) => last = Some(why),
                Waited::Deadline => return Err(self.unreachable(last)),
            }
        }
    }

    /// The call's deadline passed: `lost` says how its own session ended,
    /// else the last failure to open one (perhaps another caller's).
    fn unreachable(&self, lost: Option<String>) -> CallError {
        let last = lost.unwrap_or_else(|| lock(&self.inner.failure).clone());
        CallError::Unreachable {
            addrs: self.address(),
            timeout: self.inner.spec.io_timeout,
            last,
        }
    }

    fn failed(&self, why: String) {
        *lock(&self.inner.failure) = why;
    }

    /// The live session, or a new one; `None` when the deadline passed
    /// first (`Inner::failure` says what failed).
    fn session(
        &self,
        deadline: Instant,
        runtime: &Handle,
    ) -> Result<Option<Arc<Session>>, CallError> {
        let mut current = lock(&self.inner.session);
        if let Some(s) = current.as_ref() {
            if !s.is_dead() {
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
                match runtime.block_on(self.open(addr, deadline)) {
                    Ok(s) => {
                        if self.inner.mounted.load(Ordering::SeqCst) {
                            let claimed = self.remount(&s, deadline);
                            if !matches!(claimed, Ok(None)) {
                                s.end("the mount was not claimed again");
                            }
                            if let Some(why) = claimed? {
                                self.failed(format!("{addr}: {why}"));
                                continue;
                            }
                        }
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
            std::thread::sleep((deadline - now).min(pause));
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Claims the mount again on a new session (the same process: mirrord
    /// lets it take over its own claim); `Some(why)` if the session was lost.
    fn remount(&self, s: &Session, deadline: Instant) -> Result<Option<String>, CallError> {
        let id = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        let slot = s.expect(id);
        let call = Message::HostCall {
            id,
            body: HostRequest::Mount,
        };
        if s.send(call, deadline).is_err() {
            s.forget(id);
            return Ok(Some(s.why()));
        }
        match s.wait(id, &slot, deadline, silence(self.inner.spec.io_timeout)) {
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
        let keys = admitted
            .keys
            .ok_or_else(|| Opening::Failed(crate::link::sealed::NotSealed.to_string()))?;
        let parts = admitted.conn.into_parts();
        // Off the runtime's reactor: the callers read and write the socket
        // themselves, and no worker is woken for it.
        let sock = parts
            .io
            .into_std()
            .map_err(|e| Opening::Failed(e.to_string()))?;
        Session::start(sock, keys, parts.read_buf, server)
            .map_err(|e| Opening::Failed(e.to_string()))
    }
}

enum Opening {
    Refused(HandshakeError),
    Failed(String),
}
