//! Measurements for `scripts/bench.sh` that no off-the-shelf tool makes the
//! way we need: the loopback TCP limits (with the same socket options as the
//! remote link) and heartbeat propagation from one site's file to the other's;
//! the FUSE hop and 4 KiB writes through hbfs with the CPU they cost.
//! Each returns percentiles from an HDR histogram, in microseconds.
//! [`null_store`] mounts hbfs over a store that does nothing, so a write's
//! FUSE share can be measured alone; [`aead`] times the link's AES-256-GCM
//! sealing on this CPU.

pub mod aead;
pub mod null_store;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use hbio::AlignedBuf;

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

fn histogram() -> std::io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| std::io::Error::other(e.to_string()))
}

fn summary(h: &Histogram<u64>) -> Latency {
    Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5) as f64,
        p99_us: h.value_at_quantile(0.99) as f64,
        p999_us: h.value_at_quantile(0.999) as f64,
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    // Samples beyond the histogram's bound are clamped, not lost.
    h.saturating_record(d.as_micros().max(1) as u64);
}

/// Round trips of a 64-byte message over loopback TCP with TCP_NODELAY.
pub fn tcp_round_trip(count: u64) -> std::io::Result<Latency> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut h = histogram()?;
    let mut buf = [7u8; 64];
    for i in 0..count + count / 10 {
        let t = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        if i >= count / 10 {
            record(&mut h, t.elapsed()); // the first tenth warms up
        }
    }
    drop(s);
    let _ = echo.join();
    Ok(summary(&h))
}

/// Single-stream loopback TCP throughput, bytes per second.
pub fn tcp_stream(bytes: u64) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let chunk = vec![1u8; 1 << 20];
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        s.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let received = sink
        .join()
        .map_err(|_| std::io::Error::other("sink thread panicked"))??;
    Ok(received as f64 / t.elapsed().as_secs_f64())
}

fn open_direct(path: &Path, write: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    if write {
        o.write(true);
    } else {
        o.read(true);
    }
    match o.clone().custom_flags(libc::O_DIRECT).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => o.open(path),
        other => other,
    }
}

/// Heartbeat propagation: writes a numbered 4 KiB slot at `from` (the
/// production site's file) and polls `to` (the standby's) until the number
/// appears; `gap` between samples.
pub fn propagation(from: &Path, to: &Path, count: u64, gap: Duration) -> std::io::Result<Latency> {
    let writer = open_direct(from, true)?;
    let reader = open_direct(to, false)?;
    let mut slot = AlignedBuf::zeroed(4096);
    let mut seen = AlignedBuf::zeroed(4096);
    let mut h = histogram()?;
    let run = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    for i in 0..count {
        let tag = (run.wrapping_mul(1_000_003) ^ i).to_le_bytes();
        slot.as_mut_slice()[..8].copy_from_slice(&tag);
        let t = Instant::now();
        writer.write_all_at(slot.as_slice(), 0)?;
        loop {
            reader.read_exact_at(seen.as_mut_slice(), 0)?;
            if seen.as_slice()[..8] == tag {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::other(format!(
                    "heartbeat {i} did not reach {} within 10 s",
                    to.display()
                )));
            }
        }
        record(&mut h, t.elapsed());
        std::thread::sleep(gap);
    }
    Ok(summary(&h))
}

/// What one FUSE measurement times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FuseOp {
    /// fstat(2) of an open hbfs file: one GETATTR round trip (hbfs lets
    /// the kernel cache no attributes), the null FUSE hop.
    Stat,
    /// A 4 KiB O_DIRECT pwrite(2) at a random 4 KiB-aligned offset.
    Write,
}

/// Latency and CPU of one FUSE operation, repeated.
#[derive(Debug, Serialize)]
pub struct FuseCost {
    /// Latency percentiles.
    pub latency: Latency,
    /// CPU time of this process per operation (system calls included), µs.
    pub client_cpu_us: f64,
    /// CPU time of the serving daemon per operation, µs (0 without a pid).
    pub daemon_cpu_us: f64,
    /// CPU time of another daemon per operation (the peer site's mirrord,
    /// which applies a mirrored write), µs (0 without a pid).
    pub peer_cpu_us: f64,
}

/// The kernel's unit for the CPU times of /proc/PID/stat (USER_HZ, 100 on
/// every Linux architecture this runs on).
const USER_HZ: f64 = 100.0;

/// utime + stime of a process, in seconds, from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: count fields after its ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| std::io::Error::other("unreadable /proc stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> std::io::Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| std::io::Error::other("unreadable /proc stat"))
    };
    // Fields 14 and 15 of the whole line are 11 and 12 after the name.
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

/// Repeats `op` on `file` (an hbfs file, or any file) `count` times after a
/// tenth as warm-up; `daemon` is the pid whose CPU is charged to the file,
/// `peer` another whose CPU the operations cost too.
pub fn fuse_cost(
    file: &Path,
    op: FuseOp,
    count: u64,
    daemon: Option<u32>,
    peer: Option<u32>,
) -> std::io::Result<FuseCost> {
    let f = open_direct(file, op == FuseOp::Write)?;
    let size = f.metadata()?.len();
    let blocks = (size / 4096).max(1);
    let mut buf = AlignedBuf::zeroed(4096);
    buf.as_mut_slice().fill(0x5a);
    // Nanoseconds here: a FUSE hop is a few microseconds.
    let mut h = histogram()?;
    let mut state = u64::from(std::process::id()) | 1;
    let daemon = daemon.map(|p| p.to_string());
    let peer = peer.map(|p| p.to_string());
    let cpu_of = |pid: &Option<String>| -> std::io::Result<Option<f64>> {
        pid.as_deref().map(cpu_seconds).transpose()
    };
    let warm = count / 10;
    let (mut client0, mut daemon0, mut peer0) = (0.0, None, None);
    for i in 0..warm + count {
        if i == warm {
            client0 = cpu_seconds("self")?;
            daemon0 = cpu_of(&daemon)?;
            peer0 = cpu_of(&peer)?;
        }
        // xorshift: cheap, and no two runs write the same sequence.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let t = Instant::now();
        match op {
            FuseOp::Stat => {
                f.metadata()?;
            }
            FuseOp::Write => f.write_all_at(buf.as_slice(), (state % blocks) * 4096)?,
        }
        if i >= warm {
            h.saturating_record(t.elapsed().as_nanos().max(1) as u64);
        }
    }
    let client = cpu_seconds("self")? - client0;
    let used = |now: Option<f64>, then: Option<f64>| now.zip(then).map_or(0.0, |(n, t)| n - t);
    let daemon = used(cpu_of(&daemon)?, daemon0);
    let peer = used(cpu_of(&peer)?, peer0);
    let per_op = |s: f64| (s * 1e6 / count.max(1) as f64 * 10.0).round() / 10.0;
    let us = |q: f64| (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
    Ok(FuseCost {
        latency: Latency {
            count: h.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
        },
        client_cpu_us: per_op(client),
        daemon_cpu_us: per_op(daemon),
        peer_cpu_us: per_op(peer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_measures_are_sane() {
        let rtt = tcp_round_trip(200).expect("rtt");
        assert_eq!(rtt.count, 200);
        assert!(rtt.p50_us > 0.0 && rtt.p50_us <= rtt.p99_us);
        assert!(tcp_stream(32 << 20).expect("stream") > 0.0);
    }

    #[test]
    fn fuse_cost_runs_on_a_plain_file_and_charges_cpu() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("v");
        std::fs::write(&f, vec![0u8; 1 << 20]).expect("file");
        let own = std::process::id();
        for op in [FuseOp::Stat, FuseOp::Write] {
            let c = fuse_cost(&f, op, 200, Some(own), Some(own)).expect("cost");
            assert_eq!(c.latency.count, 200);
            assert!(c.client_cpu_us >= 0.0 && c.daemon_cpu_us >= 0.0 && c.peer_cpu_us >= 0.0);
        }
        assert!(cpu_seconds("self").expect("cpu") >= 0.0);
    }

    #[test]
    fn propagation_between_two_names_of_one_file_is_measured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("hb");
        std::fs::write(&f, vec![0u8; 8192]).expect("file");
        let l = propagation(&f, &f, 20, Duration::ZERO).expect("propagation");
        assert_eq!(l.count, 20);
    }
}
