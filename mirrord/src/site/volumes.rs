//! The admin operations on volumes: create (a new file, or an existing
//! block device), list, delete; and one volume as hbfs shows it. They touch
//! the registry only (`impl Registry`); the site's public calls hand them
//! on. Called from the control socket's tasks and hbfs's FUSE workers.

use std::sync::Arc;

use hbcore::control::{VolumeCreate, VolumeInfo};
use hbcore::size::Bytes;
use hbcore::vocab::Backing;

use super::registry::Registry;
use super::{Site, SiteError};
use crate::config::check_name;
use crate::pair::host_writable;
use crate::volume::Volume;

impl Registry {
    /// Creates a volume (a new file, or an existing block device).
    pub(super) fn volume_create(&self, request: &VolumeCreate) -> Result<String, SiteError> {
        let VolumeCreate {
            name,
            size,
            path,
            sparse,
        } = request;
        let (name, size) = (name.as_str(), *size);
        check_name("volume", name).map_err(SiteError::BadName)?;
        if self.inner().volumes.contains_key(name) {
            return Err(SiteError::VolumeExists(name.into()));
        }
        let path = match path {
            Some(path) => path.clone(),
            None => {
                // mirrord's own directory for volume files, made on first use.
                let dir = self.data_dir().join("volumes");
                std::fs::create_dir_all(&dir).map_err(|source| SiteError::DataDir {
                    path: dir.clone(),
                    source,
                })?;
                dir.join(format!("{name}.vol"))
            }
        };
        if let Some((other, _)) = self.inner().volumes.iter().find(|(_, v)| v.path == path) {
            return Err(SiteError::PathInUse {
                path,
                volume: other.clone(),
            });
        }
        let volume = match std::fs::metadata(&path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()) => {
                let v = Volume::open(name, &path, None)?;
                if let Some(asked) = size.filter(|s| *s != v.size) {
                    return Err(SiteError::DeviceSize {
                        name: name.into(),
                        path,
                        asked,
                        actual: v.size,
                    });
                }
                v
            }
            Ok(_) => {
                return Err(SiteError::FileExists {
                    name: name.into(),
                    path,
                })
            }
            Err(_) => Volume::create_file(
                name,
                &path,
                size.ok_or_else(|| SiteError::SizeNeeded(name.into()))?,
                *sparse,
            )?,
        };
        let message = format!(
            "volume '{name}' created: {} on {} ({})",
            Bytes(volume.size),
            path.display(),
            backing_name(volume.backing)
        );
        {
            let mut inner = self.inner();
            if inner.volumes.contains_key(name) {
                return Err(SiteError::VolumeExists(name.into()));
            }
            inner.volumes.insert(name.into(), Arc::new(volume));
        }
        self.save()?;
        tracing::info!("{message}");
        Ok(message)
    }

    /// The volumes, as `volume list` shows them.
    pub(super) fn volume_list(&self) -> Vec<VolumeInfo> {
        let inner = self.inner();
        inner
            .volumes
            .values()
            .map(|v| {
                let pair = inner.pair_of_volume(&v.name);
                VolumeInfo {
                    name: v.name.clone(),
                    size: v.size,
                    path: v.path.clone(),
                    backing: v.backing,
                    pair: pair.map(|(n, _)| n.clone()),
                    role: pair.map(|(_, p)| p.meta.role),
                    writable: pair.is_none_or(|(_, p)| host_writable(&p.meta)),
                }
            })
            .collect()
    }

    /// One volume as hbfs shows it: name, size, whether hosts may write it.
    pub(super) fn volume_file(&self, name: &str) -> Option<hbfs::VolumeFile> {
        let inner = self.inner();
        let v = inner.volumes.get(name)?;
        let writable = inner
            .pair_of_volume(name)
            .is_none_or(|(_, p)| host_writable(&p.meta));
        Some(hbfs::VolumeFile {
            name: v.name.clone(),
            size: v.size,
            writable,
        })
    }

    /// Forgets a volume that is not paired; the backing store is kept.
    pub(super) fn volume_delete(&self, name: &str) -> Result<String, SiteError> {
        let path = {
            let mut inner = self.inner();
            if let Some((pair, p)) = inner.pair_of_volume(name) {
                return Err(SiteError::Paired {
                    volume: name.into(),
                    pair: pair.clone(),
                    kind: p.meta.kind,
                    hint: format!("dissolve it first with `hbctl pair delete {pair}`"),
                });
            }
            inner
                .volumes
                .remove(name)
                .ok_or_else(|| SiteError::NoVolume(name.into()))?
                .path
                .clone()
        };
        self.save()?;
        let message = format!(
            "volume '{name}' deleted; its data stays in {}",
            path.display()
        );
        tracing::info!("{message}");
        Ok(message)
    }
}

/// The admin operations on volumes, as the control socket and hbfs call them.
impl Site {
    /// Creates a volume (a new file, or an existing block device).
    pub fn volume_create(&self, request: &VolumeCreate) -> Result<String, SiteError> {
        self.registry.volume_create(request)
    }

    /// The volumes, as `volume list` shows them.
    pub fn volume_list(&self) -> Vec<VolumeInfo> {
        self.registry.volume_list()
    }

    /// One volume as hbfs shows it: name, size, whether hosts may write it.
    pub fn volume_file(&self, name: &str) -> Option<hbfs::VolumeFile> {
        self.registry.volume_file(name)
    }

    /// Forgets a volume that is not paired; the backing store is kept.
    pub fn volume_delete(&self, name: &str) -> Result<String, SiteError> {
        self.registry.volume_delete(name)
    }
}

fn backing_name(b: Backing) -> &'static str {
    match b {
        Backing::File => "file",
        Backing::Block => "block device",
    }
}
