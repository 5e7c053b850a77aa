//! What can go wrong in hbd's operations (start-up, install, uninstall,
//! procedure, calls to mirrord). Each error's `Display` names the thing and
//! the way out, and only that: its cause is its `source`, and
//! [`hbcore::report::chain`] joins them for the control socket and the log.
//!
//! Data only: returned on the control server's tasks and at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use hbcore::frame::FrameError;
use hbcore::jsonl::ClientError;

use super::logic::message::MessageError;

/// An hbd operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum HbError {
    /// The data directory could not be created.
    #[error("cannot create data_dir {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The status table file exists but could not be read.
    #[error("cannot read the status table {}", path.display())]
    TableRead {
        /// `table.json` in data_dir.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The status table file is not a table.
    #[error("status table {} is damaged; move it away to start afresh", path.display())]
    TableDamaged {
        /// `table.json` in data_dir.
        path: PathBuf,
        /// Parse error.
        source: serde_json::Error,
    },
    /// The table volume could not be read, and data_dir has no table to fall back on.
    #[error("cannot read the status table volume {} (table_volume), and data_dir has no table.json; start mirrord first, or leave table_volume out", path.display())]
    TableVolumeRead {
        /// table_volume.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The table volume holds something that is not a status table of this
    /// cluster, and data_dir has no table to fall back on.
    #[error("status table volume {} (table_volume) is damaged or written with another key, and data_dir has no table.json; to start afresh, zero its first 4 KiB", path.display())]
    TableVolumeDamaged {
        /// table_volume.
        path: PathBuf,
        /// What is wrong with its frame.
        source: FrameError,
    },
    /// The table volume's frame is intact but its table is not readable.
    #[error("status table volume {} (table_volume) holds no readable table, and data_dir has no table.json; to start afresh, zero its first 4 KiB", path.display())]
    TableVolumeParse {
        /// table_volume.
        path: PathBuf,
        /// Parse error.
        source: serde_json::Error,
    },
    /// A network's socket could not be bound.
    #[error("cannot listen for heartbeats on {address} (listen of network '{network}')")]
    Listen {
        /// The network.
        network: String,
        /// network.listen.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The control socket could not be opened.
    #[error("cannot open the control socket {}", path.display())]
    ControlSocket {
        /// control_socket.
        path: PathBuf,
        /// OS error (or another hbd answering there).
        source: std::io::Error,
    },
    /// No installed heartbeat mirror has this name.
    #[error("no heartbeat mirror '{name}' here; `hbctl hb status` lists them")]
    NoMirror {
        /// The name asked for.
        name: String,
    },
    /// A heartbeat mirror of this name is installed already.
    #[error(
        "heartbeat mirror '{name}' is installed already; `hbctl hb mirror uninstall {name}` first"
    )]
    AlreadyInstalled {
        /// Mirror name.
        name: String,
    },
    /// Neither --name, nor a pair, nor the PVOL's file name gives a mirror name.
    #[error("cannot name a mirror after {}; give --name", pvol.display())]
    Unnamed {
        /// The PVOL path given.
        pvol: PathBuf,
    },
    /// The pair carries production data, not heartbeats.
    #[error("pair '{pair}' is a data pair: production data mirrors are never used for heartbeats (they get split for backups); create a heartbeat pair with `hbctl pair create ... --kind heartbeat`")]
    DataPair {
        /// Pair name.
        pair: String,
    },
    /// The pair's PVOL is at the other site.
    #[error("pair '{pair}' has its SVOL at this site; install the mirror at site '{peer}', which writes its PVOL")]
    SvolHere {
        /// Pair name.
        pair: String,
        /// The site that writes its PVOL.
        peer: String,
    },
    /// mirrord does not know the pair.
    #[error("mirrord has no pair '{pair}'")]
    NoPair {
        /// Pair name.
        pair: String,
    },
    /// mirrord could not be reached or refused; its text says why.
    #[error("mirrord")]
    Mirrord(#[source] ClientError),
    /// mirrord took too long to answer (stalled, overloaded, or the host
    /// link down).
    #[error("mirrord at {at} did not answer within {limit:?}")]
    MirrordSilent {
        /// Where: mirrord's control socket, or `tcp://ADDR[,ADDR2]` (the host link).
        at: String,
        /// How long hbd waited.
        limit: std::time::Duration,
    },
    /// The host link's key file (`failover.mirrord_key`) could not be read.
    #[error("cannot reach mirrord at {at}: failover.mirrord_key")]
    MirrordKey {
        /// `tcp://ADDR[,ADDR2]`.
        at: String,
        /// What is wrong with the key file (boxed: a config error is large).
        source: Box<hbcore::config::ConfigError>,
    },
    /// A procedure change that would cut hbd off from the peer one way, or
    /// could not reach it (Fig 8).
    #[error("refused: {why}; or give --force to do it anyway")]
    ProcedureRefused {
        /// What would follow, and what to do instead.
        why: &'static str,
    },
    /// `mirror install` without --pvol names no `[[mirrors]]` entry.
    #[error("no [[mirrors]] entry '{name}' in hbd's config; give --pvol (and --pair) to install a heartbeat mirror")]
    NoConfigMirror {
        /// The name given.
        name: String,
    },
    /// `mirror install` without --pvol and without --name.
    #[error("give --pvol PATH, or --name NAME of a [[mirrors]] entry of hbd's config")]
    NothingToInstall,
    /// The network channel cannot be turned on: there is none.
    #[error("this hbd has no [network] or [[networks]] section; the network channels cannot be turned on")]
    NoNetwork,
    /// `--network NAME on|off` names no network of hbd's config.
    #[error("no network '{name}' in hbd's config (its networks: {known}); name one of them, or give --network on|off for all")]
    NoSuchNetwork {
        /// The name given.
        name: String,
        /// The networks configured, comma-separated.
        known: String,
    },
    /// A heartbeat could not be encoded.
    #[error("cannot encode a heartbeat")]
    Encode(#[source] MessageError),
    /// The PVOL did not take the heartbeat that proves it usable.
    #[error("cannot write the heartbeat PVOL {}", path.display())]
    PvolWrite {
        /// The PVOL path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// `hbctl hb analyze` got no verdict.
    #[error("no fault analysis finished; see hbd's log, and `hbctl hb status` for the channels")]
    NoAnalysis,
    /// A blocking call on tokio's blocking threads panicked or was cancelled.
    #[error("{what} did not finish; see hbd's log")]
    Blocking {
        /// What it was doing.
        what: &'static str,
        /// Why the thread ended.
        source: tokio::task::JoinError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_the_context_and_the_chain_adds_the_cause() {
        let e = HbError::PvolWrite {
            path: "/mnt/hbfs/hb2".into(),
            source: std::io::Error::from_raw_os_error(libc::EROFS),
        };
        assert_eq!(
            e.to_string(),
            "cannot write the heartbeat PVOL /mnt/hbfs/hb2"
        );
        assert!(
            hbcore::report::chain(&e).starts_with(
                "cannot write the heartbeat PVOL /mnt/hbfs/hb2: Read-only file system"
            ),
            "{}",
            hbcore::report::chain(&e)
        );
        let refused = HbError::Mirrord(ClientError::Refused("no pair 'x'".into()));
        assert_eq!(hbcore::report::chain(&refused), "mirrord: no pair 'x'");
    }
}
