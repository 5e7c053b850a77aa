//! How many handshakes may run at once: at most [`MAX_HANDSHAKES`] in all and
//! [`MAX_HANDSHAKES_PER_SOURCE`] from one address. A connection beyond either
//! is told why and closed at once, before anything of it is read, so an
//! unauthenticated peer cannot make mirrord hold more than the caps times
//! one handshake's buffers, each for at most the handshake deadline.
//!
//! ```text
//!  accept ─> Gate::enter(ip) ─┬ Ticket ─> handshake ─> drop(Ticket) ─> session
//!                             └ Busy ─> Refused frame (best effort), close
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use hbcore::link::{LinkCodec, Message};
use tokio::net::TcpStream;
use tokio_util::codec::Encoder;

/// Handshakes in progress at most, from all sources together.
pub const MAX_HANDSHAKES: usize = 64;
/// Handshakes in progress at most from one source address.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 8;

/// Why a connection was closed before its handshake began.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// The cap for all sources is reached.
    #[error(
        "{MAX_HANDSHAKES} link handshakes are in progress already (the limit); closed at once"
    )]
    Total,
    /// The cap for this source address is reached.
    #[error("{MAX_HANDSHAKES_PER_SOURCE} link handshakes from {0} are in progress already (the limit per address); closed at once")]
    Source(IpAddr),
}

impl Busy {
    /// The reason in a few fixed words: what refusals are counted by in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Busy::Total => "too many handshakes",
            Busy::Source(_) => "too many handshakes from one address",
        }
    }

    /// Tells the other side why, if its socket takes the bytes now; never waits.
    pub fn tell(&self, stream: &TcpStream) {
        let mut frame = BytesMut::new();
        let refused = Message::Refused {
            reason: self.to_string(),
        };
        if LinkCodec::handshake().encode(refused, &mut frame).is_ok() {
            let _ = stream.try_write(&frame);
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The handshakes in progress, by source address.
#[derive(Default)]
pub struct Gate {
    // Holds at most MAX_HANDSHAKES addresses: an entry leaves with its last ticket.
    counts: Arc<Mutex<Counts>>,
}

/// A place among the handshakes in progress, given back on drop.
pub struct Ticket {
    counts: Arc<Mutex<Counts>>,
    source: IpAddr,
}

impl Gate {
    /// Takes a place for a handshake from `source`, or says which cap is reached.
    pub fn enter(&self, source: IpAddr) -> Result<Ticket, Busy> {
        // A poisoned lock only means a panic between two counter updates.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= MAX_HANDSHAKES {
            return Err(Busy::Total);
        }
        let from_source = counts.by_source.entry(source).or_insert(0);
        if *from_source >= MAX_HANDSHAKES_PER_SOURCE {
            return Err(Busy::Source(source));
        }
        *from_source += 1;
        counts.total += 1;
        Ok(Ticket {
            counts: Arc::clone(&self.counts),
            source,
        })
    }

    /// Handshakes in progress now.
    pub fn in_progress(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn each_address_and_all_together_are_capped_and_places_come_back() {
        let gate = Gate::default();
        let one: Vec<Ticket> = (0..MAX_HANDSHAKES_PER_SOURCE)
            .map(|_| gate.enter(ip(1)).expect("below the cap"))
            .collect();
        assert_eq!(gate.enter(ip(1)).err(), Some(Busy::Source(ip(1))));
        let mut others = Vec::new();
        let mut last = 2;
        while gate.in_progress() < MAX_HANDSHAKES {
            match gate.enter(ip(last)) {
                Ok(t) => others.push(t),
                Err(_) => last += 1,
            }
        }
        assert_eq!(gate.enter(ip(200)).err(), Some(Busy::Total));
        drop(one);
        assert_eq!(
            gate.in_progress(),
            MAX_HANDSHAKES - MAX_HANDSHAKES_PER_SOURCE
        );
        assert!(gate.enter(ip(1)).is_ok(), "places are given back");
        drop(others);
        assert_eq!(gate.in_progress(), 0);
        let counts = gate.counts.lock().expect("lock");
        assert!(counts.by_source.is_empty(), "no address is remembered");
    }
}
