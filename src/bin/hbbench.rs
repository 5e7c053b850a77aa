//! hbbench: the measurements of scripts/bench.sh that fio does not make.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hbcore::size::parse_size;
use hbmirror::bench::{self, FuseOp};

/// Measures loopback TCP limits, heartbeat propagation, the FUSE hop and the
/// link's AES-256-GCM; prints JSON.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Loopback TCP: 64-byte round trips (TCP_NODELAY) and single-stream throughput.
    Tcp {
        /// Round trips to time.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Bytes to stream.
        #[arg(long, value_parser = parse_size, default_value = "2GiB")]
        stream: u64,
    },
    /// Heartbeat propagation: write a numbered slot at FROM, poll TO until it shows.
    Propagation {
        /// The production site's heartbeat file.
        #[arg(long)]
        from: PathBuf,
        /// The standby site's heartbeat file.
        #[arg(long)]
        to: PathBuf,
        /// Samples.
        #[arg(long, default_value_t = 500)]
        count: u64,
        /// Milliseconds between samples.
        #[arg(long, default_value_t = 5)]
        gap_ms: u64,
    },
    /// One FUSE operation on FILE, repeated: latency, and CPU per operation
    /// of this process and of the daemon serving the file.
    Fuse {
        /// An hbfs file (any file works).
        #[arg(long)]
        file: PathBuf,
        /// stat: the null FUSE hop (one GETATTR); write: 4 KiB O_DIRECT at random offsets.
        #[arg(long, value_enum)]
        op: FuseOp,
        /// Operations to time.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// The daemon serving FILE (mirrord), for its CPU per operation.
        #[arg(long)]
        daemon_pid: Option<u32>,
        /// Another daemon the operations cost CPU (the peer site's mirrord).
        #[arg(long)]
        peer_pid: Option<u32>,
    },
    /// AES-256-GCM on this CPU: the link's sealing (hbcore's Sealer::encode and
    /// Opener::decode of a write) and ring's alone, and a plain copy, per size.
    Aead {
        /// Data bytes per operation (repeat for more sizes).
        #[arg(long = "size", value_parser = parse_size, default_values = ["4KiB", "1MiB"])]
        sizes: Vec<u64>,
        /// Data bytes to put through each measure, per size.
        #[arg(long, value_parser = parse_size, default_value = "512MiB")]
        bytes: u64,
    },
    /// Mounts hbfs over a do-nothing store (one file, `null`: writes dropped,
    /// reads zeros) at MOUNT until SIGINT/SIGTERM: a write to it is the FUSE hop alone.
    NullFs {
        /// Where to mount.
        #[arg(long)]
        mount: PathBuf,
        /// The file's size.
        #[arg(long, value_parser = parse_size, default_value = "256MiB")]
        size: u64,
        /// auto, uring or classic (as mirrord's `fuse_transport`).
        #[arg(long, default_value = "auto")]
        transport: hbfs::Transport,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Tcp { count, stream } => bench::tcp_round_trip(count).and_then(|rtt| {
            let bytes_per_s = bench::tcp_stream(stream)?;
            Ok(serde_json::json!({ "rtt": rtt, "stream_bytes_per_s": bytes_per_s }))
        }),
        Command::Propagation {
            from,
            to,
            count,
            gap_ms,
        } => bench::propagation(&from, &to, count, Duration::from_millis(gap_ms))
            .map(|l| serde_json::json!({ "propagation": l })),
        Command::Fuse {
            file,
            op,
            count,
            daemon_pid,
            peer_pid,
        } => bench::fuse_cost(&file, op, count, daemon_pid, peer_pid).map(|c| serde_json::json!(c)),
        Command::Aead { sizes, bytes } => sizes
            .into_iter()
            .map(|size| {
                let size = usize::try_from(size).map_err(|_| {
                    std::io::Error::other(format!("--size {size}: too large for this machine"))
                })?;
                bench::aead::aead_cost(size, bytes).map_err(std::io::Error::other)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|costs| serde_json::json!({ "aead": costs })),
        Command::NullFs {
            mount,
            size,
            transport,
        } => bench::null_store::serve(&mount, size, transport)
            .map(|serving| serde_json::json!({ "served": serving }))
            .map_err(|e| std::io::Error::other(hbcore::report::chain(&e))),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hbbench: {e}");
            ExitCode::FAILURE
        }
    }
}
