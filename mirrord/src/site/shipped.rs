//! Writes and bytes the site put on the link, per pair: counted by the
//! site's shipping (host-write tasks, the copy and shipper tasks), read by
//! the metrics at each scrape. Its own module so the metrics depend on the
//! site and not the reverse.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Writes and bytes a site put on the link, per pair.
#[derive(Debug, Default)]
pub struct Shipped {
    by_pair: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl Shipped {
    /// One write of `bytes` to `pair`'s SVOL left for the peer.
    pub fn note(&self, pair: &str, bytes: usize) {
        if let Ok(mut m) = self.by_pair.lock() {
            let entry = m.entry(pair.to_string()).or_default();
            entry.0 += 1;
            entry.1 += bytes as u64;
        }
    }

    /// `(writes, bytes)` of `pair`.
    pub fn of(&self, pair: &str) -> (u64, u64) {
        self.by_pair
            .lock()
            .ok()
            .and_then(|m| m.get(pair).copied())
            .unwrap_or_default()
    }
}
