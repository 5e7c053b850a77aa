//! Freshness without synchronised clocks: every heartbeat carries a fresh
//! random nonce, and echoes the latest nonce its sender heard from each
//! peer. A host keeps the nonces it issued within the echo window
//! ([`Challenges`]); a message that echoes one of them was generated after
//! that nonce went out, so it cannot be a capture from before. The
//! advancing rule ([`super::watch`]) asks for such an echo whenever a
//! sender instance is new to a channel (a first message, a restarted peer,
//! a restarted receiver that lost its table): no replay passes it.
//!
//! The echo is also a round trip: the nonce's issue and its echo's arrival,
//! both on this host's monotonic clock, bracket the moment the peer wrote
//! its wall-clock time into the message, so the peer's clock offset is
//! known to within half that round trip ([`clock_offset_ms`]). It is shown
//! (`clock_offset_ms`, a metric, a warning past `clock_warn_ms`) and never
//! acted on.
//!
//! Pure: the caller supplies the nonces and the clock. Touched under the
//! checker's lock (the tick issues, the receivers check).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Nonces kept at most (the window normally holds far fewer).
const ISSUED_MAX: usize = 256;
/// Peers whose latest nonce a heartbeat echoes, at most.
pub const ECHOES_MAX: usize = 8;

/// The echo window for a timeout and interval: long enough for a nonce to
/// reach the peer on its slowest channel (a mirror read once an interval)
/// and come back in its next heartbeat, with room to spare.
pub fn echo_window(timeout: Duration, interval: Duration) -> Duration {
    2 * timeout + 2 * interval
}

/// The nonces this host issued.
#[derive(Debug, Clone)]
pub struct Challenges {
    issued: VecDeque<(u64, Instant)>,
    window: Duration,
}

impl Challenges {
    /// Nothing issued yet; echoes older than `window` do not count.
    pub fn new(window: Duration) -> Challenges {
        Challenges {
            issued: VecDeque::new(),
            window,
        }
    }

    /// The nonce of the heartbeat about to go out at `now`.
    pub fn issue(&mut self, nonce: u64, now: Instant) {
        while self
            .issued
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > self.window)
        {
            self.issued.pop_front();
        }
        self.issued.push_back((nonce, now));
        if self.issued.len() > ISSUED_MAX {
            self.issued.pop_front();
        }
    }

    /// When the latest of `echoes` was issued here, if within the window before `now`.
    pub fn issued_at(&self, echoes: &[u64], now: Instant) -> Option<Instant> {
        self.issued
            .iter()
            .rev()
            .find(|(nonce, _)| echoes.contains(nonce))
            .map(|(_, at)| *at)
            .filter(|at| now.saturating_duration_since(*at) <= self.window)
    }
}

/// Keeps `sender`'s latest nonce (from an authentic message) in `heard`, to
/// echo back; at most [`ECHOES_MAX`] senders. The status table holds
/// `heard` and persists it, so a restarted hbd's first heartbeat already
/// echoes its peer's recent nonce (it was written after that nonce went
/// out, which is all the echo proves) and is taken at once.
pub fn hear(heard: &mut BTreeMap<String, u64>, sender: &str, nonce: u64) {
    if heard.contains_key(sender) || heard.len() < ECHOES_MAX {
        heard.insert(sender.to_string(), nonce);
    }
}

/// The offset of a peer's wall clock from this host's (positive: the peer
/// is ahead), from a message it stamped `sender_wall_ms` that echoes a
/// nonce issued here at `issued`, received at `now` when this host's wall
/// clock read `wall_ms`: the peer stamped it within the round trip, taken
/// at its middle. Returns (offset, uncertainty), ms.
pub fn clock_offset_ms(
    sender_wall_ms: u64,
    wall_ms: u64,
    issued: Instant,
    now: Instant,
) -> (i64, u64) {
    let half = (now.saturating_duration_since(issued).as_millis() / 2) as u64;
    let midpoint = wall_ms.saturating_sub(half);
    (sender_wall_ms as i64 - midpoint as i64, half)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(1000);

    #[test]
    fn an_echo_counts_while_its_nonce_is_within_the_window() {
        let t0 = Instant::now();
        let mut c = Challenges::new(T);
        c.issue(7, t0);
        c.issue(8, t0 + Duration::from_millis(100));
        assert_eq!(c.issued_at(&[7], t0 + Duration::from_millis(500)), Some(t0));
        assert_eq!(
            c.issued_at(&[3, 8, 7], t0 + Duration::from_millis(500)),
            Some(t0 + Duration::from_millis(100)),
            "the latest one echoed"
        );
        assert_eq!(c.issued_at(&[9], t0), None, "never issued");
        assert_eq!(c.issued_at(&[], t0), None);
        assert_eq!(
            c.issued_at(&[7], t0 + Duration::from_millis(1001)),
            None,
            "too old"
        );
        // Issuing prunes what left the window; memory stays bounded.
        for i in 0..10_000 {
            c.issue(100 + i, t0 + Duration::from_millis(2000));
        }
        assert_eq!(c.issued.len(), ISSUED_MAX);
        assert_eq!(c.issued_at(&[8], t0 + Duration::from_millis(2000)), None);
    }

    #[test]
    fn the_nonces_heard_are_one_per_peer_and_bounded() {
        let mut heard = BTreeMap::new();
        hear(&mut heard, "a", 1);
        hear(&mut heard, "a", 2);
        hear(&mut heard, "b", 3);
        assert_eq!(heard.values().copied().collect::<Vec<_>>(), vec![2, 3]);
        for i in 0..100 {
            hear(&mut heard, &format!("x{i}"), i);
        }
        assert_eq!(heard.len(), ECHOES_MAX);
        hear(&mut heard, "a", 4);
        assert_eq!(heard.get("a"), Some(&4), "a known peer is updated");
    }

    #[test]
    fn the_offset_is_taken_at_the_round_trips_middle() {
        let t0 = Instant::now();
        // Issued at t0, echoed back 200 ms later; this host reads 10_000 then.
        let now = t0 + Duration::from_millis(200);
        assert_eq!(clock_offset_ms(9_900, 10_000, t0, now), (0, 100));
        // The peer's clock is two minutes ahead.
        assert_eq!(clock_offset_ms(129_900, 10_000, t0, now), (120_000, 100));
        assert_eq!(clock_offset_ms(0, 10_000, t0, now).0, -9_900);
    }
}
