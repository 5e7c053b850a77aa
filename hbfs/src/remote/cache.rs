//! What [`super::RemoteVolumes`] remembers of the storage's answers: each
//! volume's last known entry, the last list, and whether the storage is
//! answering at all. One short lock, taken by the FUSE threads and by the
//! background refresh tasks on the runtime; never held across a call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hbcore::host::HostVolume;

use crate::VolumeFile;

/// The cache, shared with the refresh tasks.
pub(super) type Shared = Arc<Mutex<Cache>>;

/// Locks the cache. A poisoned lock only means a thread panicked while
/// updating it; what is there is still an answer of the storage.
pub(super) fn lock(cache: &Shared) -> MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub(super) struct Cache {
    pub files: HashMap<String, Entry>,
    /// The last list, in mirrord's order, and when it was fetched.
    list: Vec<String>,
    pub listed: Option<Instant>,
    /// After the storage did not answer: until when the cache answers alone.
    quiet_until: Option<Instant>,
    /// The storage did not answer the last call (said once in the log).
    failing: bool,
}

pub(super) struct Entry {
    pub file: VolumeFile,
    pub at: Instant,
    /// A background refresh of this entry is under way.
    pub refreshing: bool,
}

impl Cache {
    /// Whether metadata comes from the cache alone now.
    pub fn quiet(&self, now: Instant) -> bool {
        self.quiet_until.is_some_and(|t| now < t)
    }

    /// The storage did not answer: the cache answers alone until `until`.
    /// Returns whether this is news (the storage answered the call before).
    pub fn failed(&mut self, until: Instant) -> bool {
        self.quiet_until = Some(until);
        !std::mem::replace(&mut self.failing, true)
    }

    /// The storage answered. Returns whether it had not before (news).
    pub fn answered(&mut self) -> bool {
        self.quiet_until = None;
        std::mem::replace(&mut self.failing, false)
    }

    /// One volume as the storage just said it.
    pub fn put(&mut self, v: HostVolume, now: Instant) -> VolumeFile {
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
                refreshing: false,
            },
        );
        file
    }

    /// A volume the storage says is not there (for this host).
    pub fn forget(&mut self, name: &str) {
        self.files.remove(name);
        self.list.retain(|n| n != name);
    }

    /// The whole list as mirrord said it; volumes not in it are gone.
    pub fn put_list(&mut self, volumes: Vec<HostVolume>, now: Instant) -> Vec<VolumeFile> {
        self.files.clear();
        let files: Vec<VolumeFile> = volumes.into_iter().map(|v| self.put(v, now)).collect();
        self.list = files.iter().map(|f| f.name.clone()).collect();
        self.listed = Some(now);
        files
    }

    /// The last list, with each entry as last known.
    pub fn cached_list(&self) -> Vec<VolumeFile> {
        self.list
            .iter()
            .filter_map(|name| self.files.get(name).map(|e| e.file.clone()))
            .collect()
    }

    /// The last known entry of `name`.
    pub fn get(&self, name: &str) -> Option<VolumeFile> {
        self.files.get(name).map(|e| e.file.clone())
    }
}
