//! What the link measures of itself, for the metrics: sessions opened (so
//! reconnects), the round-trip time of its pings (each `Ping` is
//! answered with a `Pong`; the sender times the pair), and the frames
//! refused, by reason (each ended its session).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One peer link's measurements.
#[derive(Debug, Default)]
pub struct LinkStats {
    sessions: AtomicU64,
    /// Sessions that took over a lost one's requests.
    resumed: AtomicU64,
    /// Requests of the peer answered again, not applied again.
    repeated: AtomicU64,
    /// When the last unanswered ping left.
    ping_sent: Mutex<Option<Instant>>,
    /// The last round trip, in microseconds (0: none measured yet).
    rtt_us: AtomicU64,
    /// Round trips measured.
    pongs: AtomicU64,
    /// Frames refused, by reason ([`hbcore::link::LinkError::rejected`]).
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl LinkStats {
    /// A session opened.
    pub fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// A session took over a lost one's requests.
    pub fn session_resumed(&self) {
        self.resumed.fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions that took over a lost one's requests, since start.
    pub fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed)
    }

    /// A request of the peer arrived again (re-sent on a new session).
    pub fn request_repeated(&self) {
        self.repeated.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of the peer answered from the kept answer, since start.
    pub fn repeated(&self) -> u64 {
        self.repeated.load(Ordering::Relaxed)
    }

    /// Sessions opened since start; every one after the first is a reconnect.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// A ping left now.
    pub fn ping_sent(&self) {
        if let Ok(mut sent) = self.ping_sent.lock() {
            *sent = Some(Instant::now());
        }
    }

    /// The answer to the last ping arrived now.
    pub fn pong_received(&self) {
        let sent = self.ping_sent.lock().ok().and_then(|mut s| s.take());
        if let Some(sent) = sent {
            let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.rtt_us.store(us.max(1), Ordering::Relaxed);
            self.pongs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last measured round trip, if any.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Round trips measured since start.
    pub fn pongs(&self) -> u64 {
        self.pongs.load(Ordering::Relaxed)
    }

    /// A frame was refused for `reason` (which ended its session).
    pub fn frame_rejected(&self, reason: &'static str) {
        if let Ok(mut r) = self.rejected.lock() {
            *r.entry(reason).or_default() += 1;
        }
    }

    /// Frames refused since start, by reason.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        self.rejected
            .lock()
            .map(|r| r.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pong_times_the_last_ping() {
        let stats = LinkStats::default();
        assert_eq!(stats.rtt(), None);
        stats.pong_received(); // unasked: ignored
        assert_eq!(stats.rtt(), None);
        stats.ping_sent();
        std::thread::sleep(Duration::from_millis(2));
        stats.pong_received();
        assert!(stats.rtt().is_some_and(|d| d >= Duration::from_millis(2)));
        assert_eq!(stats.pongs(), 1);
    }
}
