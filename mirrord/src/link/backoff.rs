//! [`Backoff`]: how long the dialer task waits before its next attempt to
//! reach a peer.

use std::time::Duration;

/// The dialer's wait before the next attempt: [`Backoff::FIRST`] after a
/// session ends or the first failure, doubling with each further failure
/// up to [`Backoff::MAX`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(5);

    /// The wait after a failed attempt; the next one is twice as long.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        wait
    }

    /// The wait after a session ended; failures start over from the first wait.
    pub fn reset(&mut self) -> Duration {
        self.next = Backoff::FIRST;
        Backoff::FIRST
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialer_retries_after_100_ms_then_doubles_up_to_5_s() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..8).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.reset(), Duration::from_millis(100));
        assert_eq!(backoff.failed(), Duration::from_millis(100));
    }
}
