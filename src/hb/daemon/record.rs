//! hbd's record of the status table: `data_dir/table.json`, replaced
//! atomically (write, then rename) within one interval of any change, for
//! people and clusterware reading a plain file; and, if configured, the
//! table volume (Fig 2: the table is "stored in both the memory in a host
//! and a volume"), so that a replacement host resumes it.
//!
//! On the volume the table is one signed frame ([`TABLE_FORMAT`], with the
//! heartbeat key) from offset 0, zero-padded to whole 4 KiB slots and
//! written with one write: a torn or foreign table is told by its CRC and
//! tag. At start hbd takes the newer of the two (by the heartbeat serial,
//! then by `saved_ms`).
//!
//! Read at start (`daemon::run`) and by the cluster member's master
//! takeover; written by the tick's blocking save and the UDP receivers'
//! `save_file` (through [`super::shared::Shared`]); [`Keeper`] lets one
//! writer at a time write each copy.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use hbcore::frame::{Format, FrameError, HEADER_LEN};
use hbio::AlignedBuf;

use super::lock::lock;
use super::slot::open_slot;
use crate::hb::config::resume::resume;
use crate::hb::config::Config;
use crate::hb::error::HbError;
use crate::hb::logic::message::{serial_ahead, SLOT};
use crate::hb::logic::table::{Seeding, Table};

/// The status table's frame on the table volume.
pub const TABLE_FORMAT: Format = Format {
    magic: *b"HBTV",
    version: 1,
    max_payload: 4 << 20,
    signed: true,
};

/// Where the table file lives.
pub fn table_path(config: &Config) -> PathBuf {
    config.data_dir.join("table.json")
}

/// Replaces `path` with `bytes`: written beside it, then renamed over it,
/// so a reader sees the old file or the new one.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path))
}

/// Writes `json` (the table) to the table volume as one signed frame.
pub fn write_volume(path: &Path, key: &[u8], json: &[u8]) -> std::io::Result<()> {
    let frame = TABLE_FORMAT
        .encode(json, Some(key))
        .map_err(std::io::Error::other)?;
    let mut buf = AlignedBuf::zeroed(frame.len().div_ceil(SLOT) * SLOT);
    buf.as_mut_slice()[..frame.len()].copy_from_slice(&frame);
    open_slot(path, true).and_then(|f| f.write_all_at(buf.as_slice(), 0))
}

/// The table's two copies on disk, each written by one writer at a time.
pub struct Keeper {
    table_path: PathBuf,
    /// Held while the table file is written.
    file: Mutex<()>,
    /// Held while the table volume is written.
    volume: Mutex<()>,
    /// The last write of the table volume worked (warn once when it stops).
    volume_ok: AtomicBool,
}

impl Keeper {
    /// The keeper of `config`'s table file.
    pub fn new(config: &Config) -> Keeper {
        Keeper {
            table_path: table_path(config),
            file: Mutex::new(()),
            volume: Mutex::new(()),
            volume_ok: AtomicBool::new(true),
        }
    }

    /// Replaces `table.json` with the table `snapshot` takes (taken once
    /// this writer holds the file, so a newer snapshot is never overtaken).
    pub fn keep_file(&self, snapshot: impl FnOnce() -> Option<Vec<u8>>) {
        let _one_writer = lock(&self.file);
        let Some(text) = snapshot() else {
            return;
        };
        let path = &self.table_path;
        if let Err(e) = write_file(path, &text) {
            tracing::error!(path = %path.display(), "cannot persist the status table: {e}");
        }
    }

    /// Writes the table `snapshot` takes to the table `volume`; says once
    /// when that stops working and once when it works again.
    pub fn keep_volume(
        &self,
        volume: &Path,
        key: &[u8],
        snapshot: impl FnOnce() -> Option<Vec<u8>>,
    ) {
        let _one_writer = lock(&self.volume);
        let Some(text) = snapshot() else {
            return;
        };
        match write_volume(volume, key, &text) {
            Ok(()) => {
                if !self.volume_ok.swap(true, Ordering::Relaxed) {
                    tracing::info!(path = %volume.display(), "the status table is kept on its volume again");
                }
            }
            Err(e) => {
                if self.volume_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(path = %volume.display(), "cannot keep the status table on its volume: {e}");
                }
            }
        }
    }
}

/// What the table volume holds.
#[derive(Debug)]
pub enum VolumeRead {
    /// A table.
    Table(Box<Table>),
    /// Nothing yet (never written: no frame at offset 0).
    Empty,
}

/// A failed read of the table volume (the caller names the volume).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// It could not be read.
    #[error("cannot read it")]
    Io(#[source] std::io::Error),
    /// Its frame is damaged, torn or signed with another key.
    #[error("its frame is damaged, torn or signed with another key")]
    Frame(#[source] FrameError),
    /// Its table does not parse.
    #[error("its table does not parse")]
    Parse(#[source] serde_json::Error),
}

/// Reads the table from the table volume.
pub fn read_volume(path: &Path, key: &[u8]) -> Result<VolumeRead, VolumeError> {
    let f = open_slot(path, false).map_err(VolumeError::Io)?;
    let read = |len: usize| -> Result<AlignedBuf, VolumeError> {
        let mut buf = AlignedBuf::zeroed(len.div_ceil(SLOT) * SLOT);
        f.read_exact_at(buf.as_mut_slice(), 0)
            .map_err(VolumeError::Io)?;
        Ok(buf)
    };
    let first = read(SLOT)?;
    let len = match TABLE_FORMAT.check_header(first.as_slice()) {
        Ok(Some(len)) => len,
        Ok(None) => HEADER_LEN,
        Err(FrameError::BadMagic { .. }) => return Ok(VolumeRead::Empty),
        Err(e) => return Err(VolumeError::Frame(e)),
    };
    let whole = if len > SLOT { read(len)? } else { first };
    let payload = TABLE_FORMAT
        .open(whole.as_slice(), Some(key))
        .map_err(VolumeError::Frame)?;
    serde_json::from_slice(payload)
        .map(|t| VolumeRead::Table(Box::new(t)))
        .map_err(VolumeError::Parse)
}

/// Where the table hbd starts with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `data_dir/table.json`.
    File,
    /// The table volume (the file was missing or older).
    Volume,
    /// Neither: a fresh table.
    Fresh,
}

/// Whether table `v` was saved after table `l`: by its heartbeat serial,
/// which only advances (and goes on across a master's takeover), then, on
/// a tie, by when it was saved. No wall clock of two hosts is compared
/// unless the serials say nothing.
fn saved_after(v: &Table, l: &Table) -> bool {
    match serial_ahead(l.serial, v.serial) {
        Some(_) => true,
        None if v.serial == l.serial => v.saved_ms > l.saved_ms,
        None => false,
    }
}

/// The newer of the local table and the volume's (the local one on a tie).
pub fn newer(local: Option<Table>, volume: Option<Table>) -> (Option<Table>, Origin) {
    match (local, volume) {
        (Some(l), Some(v)) if saved_after(&v, &l) => (Some(v), Origin::Volume),
        (Some(l), _) => (Some(l), Origin::File),
        (None, Some(v)) => (Some(v), Origin::Volume),
        (None, None) => (None, Origin::Fresh),
    }
}

fn read_file(path: &Path) -> Result<Option<Table>, HbError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| HbError::TableDamaged {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HbError::TableRead {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The status table to start with: the newer of `table.json` and the table
/// volume (resumed), or a fresh one; seeded by the config's `[[mirrors]]`
/// (each entry once). Returns it, where it came from, and what the seeding
/// changed.
pub fn load_table(config: &Config, key: &[u8]) -> Result<(Table, Origin, Seeding), HbError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| HbError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let local = read_file(&table_path(config))?;
    let volume = match &config.table_volume {
        None => None,
        Some(path) => match (read_volume(path, key), &local) {
            (Ok(VolumeRead::Table(t)), _) => Some(*t),
            (Ok(VolumeRead::Empty), _) => None,
            (Err(e), Some(_)) => {
                tracing::warn!(path = %path.display(), "the status table volume is not usable ({}); resuming data_dir/table.json", hbcore::report::chain(&e));
                None
            }
            (Err(e), None) => {
                let path = path.clone();
                return Err(match e {
                    VolumeError::Io(source) => HbError::TableVolumeRead { path, source },
                    VolumeError::Frame(source) => HbError::TableVolumeDamaged { path, source },
                    VolumeError::Parse(source) => HbError::TableVolumeParse { path, source },
                });
            }
        },
    };
    let (resumed, origin) = newer(local, volume);
    if let Some(t) = &resumed {
        tracing::info!(from = ?origin, serial = t.serial, "resuming the status table");
    }
    let (table, seeding) = resume(config, resumed);
    Ok((table, origin, seeding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbcore::vocab::Group;

    const KEY: &[u8] = b"table-key-0123456789";

    fn table(serial: u32, saved_ms: u64) -> Table {
        let mut t = Table::new("h", Group::Production, true);
        t.serial = serial;
        t.saved_ms = saved_ms;
        t
    }

    #[test]
    fn the_newer_table_wins_and_the_file_on_a_tie() {
        let (t, o) = newer(Some(table(1, 10)), Some(table(2, 20)));
        assert_eq!((t.map(|t| t.serial), o), (Some(2), Origin::Volume));
        let (t, o) = newer(Some(table(2, 20)), Some(table(2, 20)));
        assert_eq!(o, Origin::File, "a tie");
        // The clock that saved the volume's table was stepped back: its
        // serial still says it is the newer one.
        let (t2, o) = newer(Some(table(5, 9_000)), Some(table(6, 10)));
        assert_eq!((t2.map(|t| t.serial), o), (Some(6), Origin::Volume));
        let (_, o) = newer(Some(table(6, 10)), Some(table(5, 9_000)));
        assert_eq!(o, Origin::File);
        let (_, o) = newer(Some(table(2, 10)), Some(table(2, 20)));
        assert_eq!(o, Origin::Volume, "the same serial: the later save");
        assert!(t.is_some());
        let (t, o) = newer(None, Some(table(2, 20)));
        assert_eq!((t.map(|t| t.serial), o), (Some(2), Origin::Volume));
        assert_eq!(newer(None, None).1, Origin::Fresh);
    }

    #[test]
    fn a_table_round_trips_on_a_volume_and_damage_is_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tbl0");
        std::fs::write(&path, vec![0u8; 64 * 1024]).expect("volume");
        assert!(matches!(read_volume(&path, KEY), Ok(VolumeRead::Empty)));
        let mut t = table(7, 70);
        for i in 0..200 {
            // Larger than one slot.
            t.install(
                &format!("m{i}"),
                format!("/mnt/hbfs/m{i}").into(),
                crate::hb::logic::table::Direction::Send,
                None,
            );
        }
        let json = serde_json::to_vec(&t).expect("json");
        assert!(json.len() > SLOT);
        write_volume(&path, KEY, &json).expect("write");
        match read_volume(&path, KEY) {
            Ok(VolumeRead::Table(back)) => assert_eq!(*back, t),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_volume(&path, b"another-key-000000"),
            Err(VolumeError::Frame(FrameError::Mac))
        ));
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[SLOT + 10] ^= 1;
        std::fs::write(&path, bytes).expect("damage");
        assert!(matches!(
            read_volume(&path, KEY),
            Err(VolumeError::Frame(FrameError::Crc { .. }))
        ));
    }
}
