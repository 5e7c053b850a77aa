//! What a site remembers across restarts: its volumes and pairs, in
//! `<data_dir>/meta.json`, replaced atomically (write, fsync, rename, fsync dir).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hbcore::control::IntegrityOptions;
use hbcore::link::Generations;
use hbcore::vocab::{Kind, PairSettings, PairState, Role};
use serde::{Deserialize, Serialize};

use crate::outdated::Outdated;

/// Metadata that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// I/O on the metadata file.
    #[error("metadata {path}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The file is damaged.
    #[error("metadata {path} is damaged (restore it from a backup, mirrord keeps none, or move it away to start empty)")]
    Parse {
        /// File.
        path: PathBuf,
        /// Parse error.
        source: serde_json::Error,
    },
}

/// One volume's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMeta {
    /// Backing file or device.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// One pair's record at this site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairMeta {
    /// This site's role.
    pub role: Role,
    /// Last known state.
    pub state: PairState,
    /// Heartbeat or data.
    pub kind: Kind,
    /// Mode, fence, skew, auto-resync, installed.
    pub settings: PairSettings,
    /// The other site.
    pub peer: String,
    /// PVOL name at the PVOL's site.
    pub pvol: String,
    /// SVOL name at the SVOL's site.
    pub svol: String,
    /// Generation identifiers (absent in records from before generations:
    /// the site derives them at start, see [`crate::generation::legacy`]).
    #[serde(default)]
    pub generations: Option<Generations>,
    /// Checksum resync and the split-brain policy.
    #[serde(default)]
    pub integrity: IntegrityOptions,
    /// At a PVOL: its SVOL was taken over, so it refuses host writes until a
    /// person resolves the pair ([`crate::fence`], [`crate::outdated`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdated: Option<Outdated>,
}

#[cfg(test)]
impl PairMeta {
    /// A data pair's record for unit tests: `app` to `app` at `standby`,
    /// no generations, nothing outdated.
    pub(crate) fn test_data(
        role: Role,
        state: PairState,
        mode: hbcore::vocab::Mode,
        fence: hbcore::vocab::Fence,
    ) -> PairMeta {
        PairMeta {
            role,
            state,
            kind: Kind::Data,
            settings: PairSettings {
                mode,
                fence,
                skew: 1 << 20,
                auto_resync: false,
                installed: false,
                c_max_rate: 0,
                c_min_rate: 0,
            },
            peer: "standby".into(),
            pvol: "app".into(),
            svol: "app".into(),
            generations: None,
            integrity: IntegrityOptions::default(),
            outdated: None,
        }
    }
}

impl PairMeta {
    /// The name of this site's volume in the pair.
    pub fn local_volume(&self) -> &str {
        match self.role {
            Role::Pvol => &self.pvol,
            Role::Svol => &self.svol,
        }
    }

    /// This site's generations of the pair.
    pub fn generations(&self) -> Generations {
        self.generations.clone().unwrap_or_default()
    }
}

/// Everything a site persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// False while mirrord runs: found false at start, the last run crashed.
    pub clean_shutdown: bool,
    /// Volumes by name.
    pub volumes: BTreeMap<String, VolumeMeta>,
    /// Pairs by name.
    pub pairs: BTreeMap<String, PairMeta>,
}

impl Meta {
    /// Reads `path`; a missing file is an empty site that shut down cleanly.
    pub fn load(path: &Path) -> Result<Meta, MetaError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| MetaError::Parse {
                path: path.into(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Meta {
                clean_shutdown: true,
                ..Meta::default()
            }),
            Err(source) => Err(MetaError::Io {
                path: path.into(),
                source,
            }),
        }
    }

    /// Replaces `path` with this metadata, durably.
    pub fn save(&self, path: &Path) -> Result<(), MetaError> {
        let io = |source| MetaError::Io {
            path: path.into(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|source| MetaError::Parse {
            path: path.into(),
            source,
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbcore::vocab::{Fence, Mode};

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.json");
        assert!(Meta::load(&path).expect("missing is empty").clean_shutdown);
        let mut meta = Meta::default();
        meta.volumes.insert(
            "hb0".into(),
            VolumeMeta {
                path: "/x".into(),
                size: 4096,
            },
        );
        meta.pairs.insert(
            "p".into(),
            PairMeta {
                role: Role::Pvol,
                state: PairState::Pair,
                kind: Kind::Heartbeat,
                settings: PairSettings {
                    mode: Mode::Sync,
                    fence: Fence::Never,
                    skew: 1 << 20,
                    auto_resync: true,
                    installed: true,
                    c_max_rate: 0,
                    c_min_rate: 4 << 20,
                },
                peer: "standby".into(),
                pvol: "hb0".into(),
                svol: "hb1".into(),
                generations: Some(crate::generation::new_pvol()),
                integrity: IntegrityOptions::default(),
                outdated: Some(Outdated::now("standby", "its takeover request")),
            },
        );
        meta.save(&path).expect("save");
        assert_eq!(Meta::load(&path).expect("load"), meta);
        // A record from before generations and integrity options still loads.
        let text = std::fs::read_to_string(&path).expect("read");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let mut old = v.clone();
        if let Some(p) = old["pairs"]["p"].as_object_mut() {
            p.remove("generations");
            p.remove("integrity");
            p.remove("outdated");
        }
        std::fs::write(&path, old.to_string()).expect("write");
        let loaded = Meta::load(&path).expect("load an older record");
        assert_eq!(loaded.pairs["p"].generations, None);
        assert_eq!(loaded.pairs["p"].outdated, None);
        std::fs::write(&path, b"{not json").expect("damage");
        let e = Meta::load(&path).expect_err("damaged");
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
