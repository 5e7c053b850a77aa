//! A site's volumes from a remote mirrord: [`Volumes`] over the host link
//! ([`HostClient`]), for the `hbfs` binary on a host. The FUSE worker (or
//! ring) thread blocks on the call with the runtime's [`Handle`], as
//! mirrord's own mount does with its site; the client's tasks on that
//! runtime keep the connection, reconnect, and re-send a write in flight.
//!
//! ```text
//!  FUSE thread: ops ─> RemoteVolumes::write ─ block_on(HostClient::call) ─┐
//!                                                  tokio: client tasks ─ sealed frames ─> mirrord
//!  returns to the kernel once mirrord answered <──────────────────────────┘
//! ```
//!
//! Metadata is cached: hbfs asks [`Volumes::stat`] on every lookup,
//! getattr, open, read and write. A writable volume's entry is trusted for
//! [`FRESH`]; a read-only one (an SVOL) is asked again each time, so that a
//! takeover's new PVOL is writable for the next open at once (mirrord
//! refuses a write to a volume that became read-only, so a stale writable
//! entry costs nothing). While the storage does not answer, metadata comes
//! from the cache and only reads and writes wait (up to `io_timeout_ms`)
//! before failing with `EIO`. Threads: every FUSE thread (the cache behind
//! one short lock), the runtime's tasks inside the client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hbcore::host::client::{CallError, HostClient};
use hbcore::host::{HostReply, HostRequest, HostVolume};
use hbcore::throttle::{Throttle, Verdict};
use tokio::runtime::Handle;

use crate::{Errno, VolumeFile, Volumes};

pub mod daemon;
pub use daemon::run;

/// How long a writable volume's entry (and the list) is trusted.
pub const FRESH: Duration = Duration::from_millis(200);
/// The longest a metadata call (list, stat) waits; after one fails, the
/// cache answers alone for [`QUIET`], and the I/O that follows does the waiting.
pub const META_WAIT: Duration = Duration::from_secs(1);
/// How long the cache answers alone after a metadata call failed.
pub const QUIET: Duration = Duration::from_secs(1);

/// Why the mount was not granted.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// mirrord refused or could not be reached (its message names the host
    /// and what it asked: a second mount by the same host id, an unknown host).
    #[error("the storage refused or did not answer the mount of host '{host}'")]
    Call {
        /// This host's id.
        host: String,
        /// What the client said.
        #[source]
        source: CallError,
    },
    /// mirrord answered something else than a volume list.
    #[error("the storage answered the mount with {0}")]
    Unexpected(String),
}

/// hbfs's view of a remote site's volumes.
pub struct RemoteVolumes {
    client: HostClient,
    runtime: Handle,
    cache: Mutex<Cache>,
    /// The id of the next write: unique within this process, so a write
    /// re-sent after a lost connection is recognised.
    next_write: AtomicU64,
    /// Failed I/O is logged at most once per volume and errno each period.
    log: Throttle,
}

#[derive(Default)]
struct Cache {
    files: HashMap<String, Entry>,
    /// The last list, in mirrord's order, and when it was fetched.
    list: Vec<String>,
    listed: Option<Instant>,
    /// After a failed metadata call: until when the cache answers alone.
    quiet_until: Option<Instant>,
}

struct Entry {
    file: VolumeFile,
    at: Instant,
}

impl Cache {
    fn quiet(&self, now: Instant) -> bool {
        self.quiet_until.is_some_and(|t| now < t)
    }

    fn put(&mut self, v: HostVolume, now: Instant) -> VolumeFile {
        let file = VolumeFile {
            name: v.name,
            size: v.size,
            writable: v.writable,
        };
        self.files.insert(
            file.name.clone(),
            Entry {
                file: file.clone(),
                at: now,
            },
        );
        file
    }

    /// The whole list as mirrord said it; volumes not in it are gone.
    fn put_list(&mut self, volumes: Vec<HostVolume>, now: Instant) -> Vec<VolumeFile> {
        self.files.clear();
        self.list.clear();
        let files: Vec<VolumeFile> = volumes.into_iter().map(|v| self.put(v, now)).collect();
        self.list = files.iter().map(|f| f.name.clone()).collect();
        self.listed = Some(now);
        files
    }

    fn cached_list(&self) -> Vec<VolumeFile> {
        self.list
            .iter()
            .filter_map(|name| self.files.get(name).map(|e| e.file.clone()))
            .collect()
    }
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
        let remote = RemoteVolumes {
            client,
            runtime,
            cache: Mutex::new(Cache::default()),
            next_write: AtomicU64::new(1),
            log: Throttle::new(Duration::from_secs(10), 64),
        };
        remote.cache().put_list(volumes, Instant::now());
        Ok(remote)
    }

    /// The volumes as last listed (for the start-up log line).
    pub fn cached(&self) -> Vec<VolumeFile> {
        self.cache().cached_list()
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A poisoned lock only means a thread panicked while updating the cache.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A metadata call, waiting at most [`META_WAIT`]; `None` when it failed
    /// (logged, and the cache answers alone for [`QUIET`]).
    fn meta(&self, request: HostRequest) -> Option<HostReply> {
        let what = request.what();
        let call = self.client.call(request);
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(META_WAIT, call).await });
        let failure = match result {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => hbcore::report::chain(&e),
            Err(_) => format!("no answer within {} ms", META_WAIT.as_millis()),
        };
        self.cache().quiet_until = Some(Instant::now() + QUIET);
        self.note(
            "metadata",
            &format!("asking for {what}: {failure}; serving the cached list"),
        );
        None
    }

    /// One read, write or sync, waiting as long as the client does
    /// (`io_timeout_ms`); an error is the errno the host's program sees.
    fn io(&self, volume: &str, request: HostRequest) -> Result<HostReply, Errno> {
        let what = request.what();
        match self.runtime.block_on(self.client.call(request)) {
            Ok(reply) => {
                self.cache().quiet_until = None;
                Ok(reply)
            }
            Err(e) => {
                let errno = Errno::from_i32(e.errno());
                let text = hbcore::report::chain(&e);
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
            Some(HostReply::Volumes(volumes)) => self.cache().put_list(volumes, Instant::now()),
            Some(other) => {
                self.unexpected("metadata", "the volume list", &other);
                self.cache().cached_list()
            }
            None => self.cache().cached_list(),
        }
    }

    fn stat(&self, name: &str) -> Option<VolumeFile> {
        let now = Instant::now();
        {
            let cache = self.cache();
            let entry = cache.files.get(name);
            match entry {
                Some(e) if e.file.writable && now - e.at < FRESH => return Some(e.file.clone()),
                // The storage does not answer: the last known entry; its
                // read or write then waits for the storage itself.
                Some(e) if cache.quiet(now) => return Some(e.file.clone()),
                None if cache.quiet(now) => return None,
                _ => {}
            }
        }
        let request = HostRequest::Stat {
            volume: name.to_string(),
        };
        match self.meta(request) {
            Some(HostReply::Volume(Some(v))) => Some(self.cache().put(v, Instant::now())),
            Some(HostReply::Volume(None)) => {
                let mut cache = self.cache();
                cache.files.remove(name);
                None
            }
            Some(other) => {
                self.unexpected(name, "a stat", &other);
                self.cache().files.get(name).map(|e| e.file.clone())
            }
            None => self.cache().files.get(name).map(|e| e.file.clone()),
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
