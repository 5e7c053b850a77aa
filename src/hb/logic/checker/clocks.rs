//! This host's own clocks, as the checker sees them: the identity of each
//! beat it composes (instance, an advancing uptime, a fresh nonce, the
//! nonces to echo), a stall of this host noticed at its tick and forgiven,
//! and the peers' clock offsets past `clock_warn_ms` (shown, never acted on).

use std::time::{Duration, Instant};

use super::Checker;

/// What goes into the next beat besides the table's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// This hbd's instance.
    pub instance: u64,
    /// Its uptime (advancing from beat to beat).
    pub uptime_ms: u64,
    /// The beat's nonce.
    pub nonce: u64,
    /// The nonces heard from the peers.
    pub echoes: Vec<u64>,
}

/// A peer clock offset that went past `clock_warn_ms`, or came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockChange {
    /// The channel it was measured on.
    pub channel: String,
    /// The offset, ms (the peer's clock minus this host's).
    pub offset_ms: i64,
    /// Past the limit (true) or back within it.
    pub past: bool,
}

impl Checker {
    /// The identity of a beat composed at `now` by instance `instance`
    /// `uptime_ms` into its run, with `nonce` (issued here: its echo counts
    /// for the echo window).
    pub fn identity(
        &mut self,
        instance: u64,
        uptime_ms: u64,
        nonce: u64,
        now: Instant,
    ) -> Identity {
        // Two beats in the same millisecond (an install's probe beside a
        // tick's) still advance.
        let uptime_ms = uptime_ms.max(self.last_uptime_ms + 1);
        self.last_uptime_ms = uptime_ms;
        self.challenges.issue(nonce, now);
        Identity {
            instance,
            uptime_ms,
            nonce,
            echoes: self.table.heard_nonces.values().copied().collect(),
        }
    }

    /// This host's tick at `now`; `stopped`: how long this host's process
    /// did not run since the last tick (SIGSTOP, a frozen VM, a starved
    /// scheduler: the daemon's stall watch measures it), `suspended`: how much
    /// further CLOCK_BOOTTIME ran than the monotonic clock (a suspend). What
    /// this host could not hear while stopped is no evidence, so every
    /// channel's last advance and the grace period move on by `stopped` (a
    /// suspend stops the monotonic clock too: nothing to forgive). Returns
    /// the stall when it was longer than the timeout, for the log.
    pub fn ticked(
        &mut self,
        now: Instant,
        stopped: Duration,
        suspended: Duration,
    ) -> Option<Duration> {
        if !stopped.is_zero() {
            for w in self.networks.values_mut().chain(self.devices.values_mut()) {
                w.forgive(stopped, now);
            }
            self.started = (self.started + stopped).min(now);
        }
        let stall = stopped + suspended;
        (stall > self.timeout).then_some(stall)
    }

    /// The channels whose measured peer clock offset crossed `clock_warn`
    /// (either way) since the last call.
    pub fn clock_changes(&mut self) -> Vec<ClockChange> {
        let limit = self.clock_warn.as_millis() as u64;
        let mut changes = vec![];
        for (channel, offset) in self.table.clock_offsets() {
            let Some(offset_ms) = offset else { continue };
            let past = offset_ms.unsigned_abs() > limit;
            let warned = self.clock_warned.contains(&channel);
            if past != warned {
                if past {
                    self.clock_warned.insert(channel.clone());
                } else {
                    self.clock_warned.remove(&channel);
                }
                changes.push(ClockChange {
                    channel,
                    offset_ms,
                    past,
                });
            }
        }
        changes
    }
}
