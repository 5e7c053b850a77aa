//! The AEAD's own throughput on this CPU, the limit beside what sealing the
//! remote link costs (`hbbench aead`, the `aead_*` rows of `scripts/bench.sh`).
//!
//! Three measures per buffer size, all on the calling thread:
//! - the link's own sealing: [`Sealer::encode`] of a `Write` message into a
//!   reused buffer (what the wire does under its lock: the data copied into
//!   the buffer, the head serialized, both sections sealed) and
//!   [`Opener::decode`] of that frame (both sections opened in place);
//! - AES-256-GCM alone, `ring`'s `seal_in_place_separate_tag` and
//!   `open_in_place_separate_tag` over the buffer: the floor of the above;
//! - a plain copy of the buffer: what the sealed wire copies that the
//!   unsealed one sends from the caller's bytes.
//!
//! Each figure is the median of per-operation times (the machine is shared:
//! the median keeps a preempted operation out of it), in GB/s (10^9 bytes).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hbcore::link::seal::{session_keys, Opener, Role, Sealer, Transcript};
use hbcore::link::{Lane, Message, PeerRequest, NONCE_LEN};
use ring::aead;
use serde::Serialize;

/// One operation's throughput.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    /// Bytes of data per second, in 10^9.
    pub gbps: f64,
    /// Median time of one operation, microseconds.
    pub us: f64,
}

/// The figures for one buffer size.
#[derive(Debug, Serialize)]
pub struct AeadCost {
    /// Bytes of data per operation (a write's data).
    pub size: usize,
    /// Operations timed for each measure.
    pub ops: u64,
    /// `Sealer::encode` of a write of `size` bytes (copy into the wire buffer included).
    pub seal: Rate,
    /// `Opener::decode` of that frame.
    pub open: Rate,
    /// ring's AES-256-GCM seal of `size` bytes in place.
    pub ring_seal: Rate,
    /// ring's AES-256-GCM open of `size` bytes in place.
    pub ring_open: Rate,
    /// A copy of `size` bytes (memcpy).
    pub copy: Rate,
}

/// Why the measure stopped.
#[derive(Debug, thiserror::Error)]
pub enum AeadError {
    /// The link's sealer or opener refused its own frame.
    #[error("the link's seal did not round-trip a {size}-byte write: {detail}")]
    Link {
        /// The data size.
        size: usize,
        /// What the link code said.
        detail: String,
    },
    /// ring refused a key or an operation.
    #[error("AES-256-GCM from ring failed on a {size}-byte buffer")]
    Ring {
        /// The data size.
        size: usize,
    },
    /// Nothing to measure.
    #[error("a size of 0 bytes: give a size of at least 1 byte (e.g. --size 4KiB)")]
    Empty,
}

/// Median of per-operation nanoseconds, as a rate over `size` bytes.
fn rate(mut ns: Vec<u64>, size: usize) -> Rate {
    ns.sort_unstable();
    let mid = ns.get(ns.len() / 2).copied().unwrap_or(1).max(1) as f64;
    Rate {
        gbps: round(size as f64 / mid, 3),
        us: round(mid / 1e3, 2),
    }
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A session's dialer sealer and the listener's opener (as two mirrords
/// derive them after a handshake), under a fixed key: the cost does not
/// depend on the key.
fn session() -> (Sealer, Opener) {
    let psk = [0x5au8; 32];
    let t = Transcript {
        dialer: "prod",
        listener: "standby",
        dialer_nonce: &[1; NONCE_LEN],
        listener_nonce: &[2; NONCE_LEN],
        lane: Lane::Bulk,
    };
    let (sealer, _) = session_keys(&psk, &t, Role::Dialer);
    let (_, opener) = session_keys(&psk, &t, Role::Listener);
    (sealer, opener)
}

fn write(id: u64, data: &Bytes) -> Message {
    Message::Request {
        id,
        body: PeerRequest::Write {
            pair: "bench".into(),
            offset: id.wrapping_mul(4096),
            data: data.clone(),
        },
    }
}

/// Measures `size`-byte buffers through each step, `bytes` of data per
/// measure (at least 16 operations), after a tenth as warm-up.
pub fn aead_cost(size: usize, bytes: u64) -> Result<AeadCost, AeadError> {
    if size == 0 {
        return Err(AeadError::Empty);
    }
    let ops = (bytes / size as u64).max(16);
    let warm = ops / 10;
    let data = Bytes::from((0..size).map(|i| (i * 31) as u8).collect::<Vec<u8>>());
    let link_failed = |e: &dyn std::fmt::Display| AeadError::Link {
        size,
        detail: e.to_string(),
    };

    // The link's sealer and opener, frame after frame as on a session.
    let (mut sealer, mut opener) = session();
    let mut wire = BytesMut::new();
    let (mut seal_ns, mut open_ns) = (Vec::new(), Vec::new());
    for i in 0..warm + ops {
        let msg = write(i, &data);
        let t = Instant::now();
        sealer.encode(msg, &mut wire).map_err(|e| link_failed(&e))?;
        let sealed = elapsed_ns(t);
        let t = Instant::now();
        let opened = opener.decode(&mut wire).map_err(|e| link_failed(&e))?;
        let open = elapsed_ns(t);
        match opened {
            Some(Message::Request {
                body: PeerRequest::Write { data: got, .. },
                ..
            }) if got.len() == size => {}
            other => return Err(link_failed(&format!("opened as {other:?}"))),
        }
        if i >= warm {
            seal_ns.push(sealed);
            open_ns.push(open);
        }
    }

    // AES-256-GCM alone, in place.
    let ring_failed = |_| AeadError::Ring { size };
    let key = aead::UnboundKey::new(&aead::AES_256_GCM, &[0xa5; 32]).map_err(ring_failed)?;
    let key = aead::LessSafeKey::new(key);
    let mut buf = data.to_vec();
    let (mut rseal_ns, mut ropen_ns, mut copy_ns) = (Vec::new(), Vec::new(), Vec::new());
    let mut copy = vec![0u8; size];
    for i in 0..warm + ops {
        let nonce = |n: u64| {
            let mut b = [0u8; aead::NONCE_LEN];
            b[4..].copy_from_slice(&n.to_le_bytes());
            aead::Nonce::assume_unique_for_key(b)
        };
        let t = Instant::now();
        let tag = key
            .seal_in_place_separate_tag(nonce(i), aead::Aad::from(&[0u8; 20]), &mut buf)
            .map_err(ring_failed)?;
        let sealed = elapsed_ns(t);
        let t = Instant::now();
        key.open_in_place_separate_tag(nonce(i), aead::Aad::from(&[0u8; 20]), tag, &mut buf, 0..)
            .map_err(ring_failed)?;
        let open = elapsed_ns(t);
        let t = Instant::now();
        copy.copy_from_slice(std::hint::black_box(&buf[..]));
        let copied = elapsed_ns(t);
        std::hint::black_box(&copy);
        if i >= warm {
            rseal_ns.push(sealed);
            ropen_ns.push(open);
            copy_ns.push(copied);
        }
    }
    if buf[..] != data[..] {
        return Err(AeadError::Ring { size });
    }
    Ok(AeadCost {
        size,
        ops,
        seal: rate(seal_ns, size),
        open: rate(open_ns, size),
        ring_seal: rate(rseal_ns, size),
        ring_open: rate(ropen_ns, size),
        copy: rate(copy_ns, size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measure_runs_on_small_and_large_writes() {
        for size in [4096, 1 << 20] {
            let c = aead_cost(size, 8 << 20).expect("measured");
            assert_eq!(c.size, size);
            assert!(c.ops >= 16);
            for r in [c.seal, c.open, c.ring_seal, c.ring_open, c.copy] {
                assert!(r.gbps > 0.0 && r.us > 0.0, "{c:?}");
            }
        }
        assert!(matches!(aead_cost(0, 1), Err(AeadError::Empty)));
    }
}
