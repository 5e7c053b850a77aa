//! A site's volumes from a remote mirrord: [`Volumes`] over the host link
//! ([`HostClient`]), for the `hbfs` binary on a host. The FUSE worker (or
//! ring) thread makes the call itself ([`HostClient::call_blocking`]): it
//! writes the sealed request, and reads the answer off the socket itself
//! when no other thread does, so the kernel wakes it and no other thread.
//! The runtime's [`Handle`] dials a new connection (the client reconnects
//! and re-sends a write in flight within the call).
//!
//! ```text
//!  FUSE thread: ops ─> RemoteVolumes::write ─ HostClient::call_blocking ─ sealed frame ─> mirrord
//!  returns to the kernel once mirrord answered <─ (read by this thread, or handed to it) ─┘
//! ```
//!
//! Metadata is cached (`cache`): hbfs asks [`Volumes::stat`] on every
//! lookup, getattr, open, read and write. A writable volume's entry is
//! answered from the cache at once, and refreshed in the background (a task
//! on the runtime) when older than [`FRESH`]: mirrord refuses a write to a
//! volume that became read-only, so a stale writable entry costs nothing. A
//! read-only one (an SVOL) is asked again each time, so that a takeover's new
//! PVOL is writable for the next open at once. While the storage does not
//! answer, metadata comes from the cache and only reads and writes wait (up
//! to `io_timeout_ms`) before failing with `EIO`.
//!
//! Threads: every FUSE thread (the cache behind one short lock, never held
//! across a call), the refresh tasks on the runtime, the runtime's blocking
//! pool (metadata calls, the refreshes' calls), and the idle thread of
//! the client's session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hbcore::host::client::{CallError, HostClient};
use hbcore::host::{HostError, HostReply, HostRequest};
use hbcore::throttle::{Throttle, Verdict};
use tokio::runtime::Handle;

use crate::{Errno, VolumeFile, Volumes};

mod cache;
pub mod daemon;
pub use daemon::run;

use cache::{Cache, Shared};

/// How long a writable volume's entry (and the list) is trusted before it
/// is asked again.
pub const FRESH: Duration = Duration::from_millis(200);
/// The longest a metadata call (list, stat) waits; after one fails, the
/// cache answers alone for [`QUIET`], and the I/O that follows does the waiting.
pub const META_WAIT: Duration = Duration::from_secs(1);
/// How long the cache answers alone after the storage did not answer.
pub const QUIET: Duration = Duration::from_secs(1);

/// Why the mount was not granted.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// mirrord refused (its message names the host and what it asked: a
    /// second mount by the same host id, an unknown host, a wrong key) or
    /// did not answer within `io_timeout_ms`.
    #[error("mirrord did not grant host '{host}' its mount")]
    Call {
        /// This host's id.
        host: String,
        /// What the client said.
        #[source]
        source: CallError,
    },
    /// mirrord answered something else than a volume list.
    #[error("mirrord answered the mount with {0}")]
    Unexpected(String),
}

/// hbfs's view of a remote site's volumes.
pub struct RemoteVolumes {
    client: HostClient,
    runtime: Handle,
    cache: Shared,
    /// The id of the next write: unique within this process, so a write
    /// re-sent after a lost connection is recognised.
    next_write: AtomicU64,
    /// Failed I/O is logged at most once per volume and text each period.
    log: Throttle,
}

/// A metadata call that got no answer to use.
enum Unanswered {
    /// mirrord refused it.
    Refused(HostError),
    /// The storage did not answer (or answered nonsense).
    Silent,
}

impl RemoteVolumes {
    /// Claims this host's mount at mirrord (one per host id) and returns the
    /// volumes to serve, their list cached. Call it on the runtime (the
    /// client's tasks run there).
    pub async fn mount(
        client: HostClient,
        host: &str,
        runtime: Handle,
    ) -> Result<RemoteVolumes, ClaimError> {
        let reply = client
            .call(HostRequest::Mount)
            .await
            .map_err(|source| ClaimError::Call {
                host: host.to_string(),
                source,
            })?;
        let HostReply::Volumes(volumes) = reply else {
            return Err(ClaimError::Unexpected(format!("{reply:?}")));
        };
        let mut cache = Cache::default();
        cache.put_list(volumes, Instant::now());
        Ok(RemoteVolumes {
            client,
            runtime,
            cache: Arc::new(Mutex::new(cache)),
            next_write: AtomicU64::new(1),
            log: Throttle::new(Duration::from_secs(10), 64),
        })
    }

    /// The volumes as last listed (for the start-up log line).
    pub fn cached(&self) -> Vec<VolumeFile> {
        self.cache().cached_list()
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        cache::lock(&self.cache)
    }

    /// The storage answered a call: said in the log if it had not before.
    fn answered(&self) {
        answered(&mut self.cache(), &self.client);
    }

    /// The storage did not answer a call: metadata from the cache alone for [`QUIET`].
    fn silent(&self) {
        self.cache().failed(Instant::now() + QUIET);
    }

    /// A metadata call, waiting at most [`META_WAIT`].
    fn meta(&self, request: HostRequest) -> Result<HostReply, Unanswered> {
        let what = request.what();
        // The call runs as a task of its own, to its end (at most
        // io_timeout_ms): only the wait is cut short, never a reconnection
        // half done.
        let (client, runtime) = (self.client.clone(), self.runtime.clone());
        let call = self
            .runtime
            .spawn_blocking(move || client.call_blocking(request, &runtime));
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(META_WAIT, call).await })
            .map(|joined| joined.map_err(|e| format!("the call's task failed: {e}")));
        let failure = match result {
            Ok(Err(lost)) => lost,
            Ok(Ok(Ok(reply))) => {
                self.answered();
                return Ok(reply);
            }
            Ok(Ok(Err(CallError::Refused(e)))) => {
                tracing::debug!("{what}: {e}");
                return Err(Unanswered::Refused(e));
            }
            Ok(Ok(Err(e))) => hbcore::report::chain(&e),
            Err(_) => format!("no answer within {} ms", META_WAIT.as_millis()),
        };
        self.silent();
        self.note(
            "metadata",
            &format!("asking for {what}: {failure}; serving the cached list"),
        );
        Err(Unanswered::Silent)
    }

    /// Refreshes `name`'s entry on the runtime, not waiting for it.
    fn refresh(&self, name: &str) {
        let client = self.client.clone();
        let cache = Arc::clone(&self.cache);
        let name = name.to_string();
        self.runtime.spawn(async move {
            let request = HostRequest::Stat {
                volume: name.clone(),
            };
            // Not cut short: at most io_timeout_ms, and one per entry at a time.
            let asked = client.call(request).await;
            let mut cache = cache::lock(&cache);
            match asked {
                Ok(HostReply::Volume(Some(v))) => {
                    answered(&mut cache, &client);
                    cache.put(v, Instant::now());
                    return;
                }
                Ok(HostReply::Volume(None)) => {
                    answered(&mut cache, &client);
                    cache.forget(&name);
                    return;
                }
                Ok(other) => tracing::debug!("refreshing '{name}': answered {other:?}"),
                Err(CallError::Refused(e)) => tracing::debug!("refreshing '{name}': {e}"),
                Err(e) => {
                    if cache.failed(Instant::now() + QUIET) {
                        tracing::warn!("refreshing '{name}': {}", hbcore::report::chain(&e));
                    }
                }
            }
            if let Some(e) = cache.files.get_mut(&name) {
                e.refreshing = false;
            }
        });
    }

    /// One read, write or sync, waiting as long as the client does
    /// (`io_timeout_ms`); an error is the errno the host's program sees.
    fn io(&self, volume: &str, request: HostRequest) -> Result<HostReply, Errno> {
        let what = request.what();
        match self.client.call_blocking(request, &self.runtime) {
            Ok(reply) => {
                self.answered();
                Ok(reply)
            }
            Err(e) => {
                let errno = Errno::from_i32(e.errno());
                let text = hbcore::report::chain(&e);
                if !matches!(e, CallError::Refused(_)) {
                    self.silent();
                }
                if matches!(errno, Errno::ENOENT | Errno::EROFS | Errno::ENOSPC) {
                    // What the host's program is told; no fault of the link or the storage.
                    tracing::debug!(volume, "{what}: {text}");
                } else {
                    self.note(volume, &format!("{what} failed ({}): {text}", errno.code()));
                }
                Err(errno)
            }
        }
    }

    /// Logs a failure, at most once per source and text each period.
    fn note(&self, source: &str, text: &str) {
        if let Verdict::Say { suppressed } = self.log.note(source, text) {
            if suppressed > 0 {
                tracing::warn!("{text} ({suppressed} more like it not logged)");
            } else {
                tracing::warn!("{text}");
            }
        }
    }

    fn unexpected(&self, volume: &str, what: &str, reply: &HostReply) -> Errno {
        self.note(
            volume,
            &format!("{what}: the storage answered {reply:?}; reported as EIO"),
        );
        Errno::EIO
    }
}

/// Notes that the storage answered; says so if it had not answered before.
fn answered(cache: &mut Cache, client: &HostClient) {
    if cache.answered() {
        tracing::info!(storage = %client.address(), "the storage answers again");
    }
}

impl Volumes for RemoteVolumes {
    fn list(&self) -> Vec<VolumeFile> {
        let now = Instant::now();
        {
            let cache = self.cache();
            if cache.quiet(now) || cache.listed.is_some_and(|t| now - t < FRESH) {
                return cache.cached_list();
            }
        }
        match self.meta(HostRequest::List) {
            Ok(HostReply::Volumes(volumes)) => self.cache().put_list(volumes, Instant::now()),
            Ok(other) => {
                self.unexpected("metadata", "the volume list", &other);
                self.cache().cached_list()
            }
            Err(_) => self.cache().cached_list(),
        }
    }

    fn stat(&self, name: &str) -> Option<VolumeFile> {
        let now = Instant::now();
        {
            let mut cache = self.cache();
            let quiet = cache.quiet(now);
            match cache.files.get_mut(name) {
                Some(e) if e.file.writable => {
                    if now - e.at >= FRESH && !e.refreshing && !quiet {
                        e.refreshing = true;
                        self.refresh(name);
                    }
                    return Some(e.file.clone());
                }
                // The storage does not answer: the last known entry; its
                // read or write then waits for the storage itself.
                Some(e) if quiet => return Some(e.file.clone()),
                None if quiet => return None,
                _ => {}
            }
        }
        let request = HostRequest::Stat {
            volume: name.to_string(),
        };
        match self.meta(request) {
            Ok(HostReply::Volume(Some(v))) => Some(self.cache().put(v, Instant::now())),
            Ok(HostReply::Volume(None)) => {
                self.cache().forget(name);
                None
            }
            Ok(other) => {
                self.unexpected(name, "a stat", &other);
                self.cache().get(name)
            }
            // Not this host's (any more), or gone.
            Err(Unanswered::Refused(e)) if matches!(e.errno, libc::ENOENT | libc::EACCES) => {
                self.cache().forget(name);
                None
            }
            Err(_) => self.cache().get(name),
        }
    }

    fn read(&self, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        let request = HostRequest::Read {
            volume: name.to_string(),
            offset,
            len,
        };
        match self.io(name, request)? {
            HostReply::Data(data) if data.len() <= len as usize => Ok(data.to_vec()),
            other => Err(self.unexpected(name, "a read", &other)),
        }
    }

    fn write(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let request = HostRequest::Write {
            volume: name.to_string(),
            offset,
            data: Bytes::copy_from_slice(data),
            write: self.next_write.fetch_add(1, Ordering::Relaxed),
        };
        // Returns once mirrord answered: the write is where the pair's mode
        // says (the SVOL too, for a synchronous pair).
        match self.io(name, request)? {
            HostReply::Done => Ok(()),
            other => Err(self.unexpected(name, "a write", &other)),
        }
    }

    fn sync(&self, name: &str) -> Result<(), Errno> {
        let request = HostRequest::Sync {
            volume: name.to_string(),
        };
        match self.io(name, request)? {
            HostReply::Done => Ok(()),
            other => Err(self.unexpected(name, "an fsync", &other)),
        }
    }
}
