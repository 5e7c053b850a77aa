//! Heartbeat mirrors installed and de-installed (Fig 4/5) while checking
//! runs, and their mirrord pairs kept protected from split.
//!
//! Install state is the table's: `hbctl hb mirror install` / `uninstall`
//! change it and it is saved at once; a restart resumes it. The config's
//! `[[mirrors]]` only seed it (see [`crate::hb::logic::table::Table::seed`]). At start,
//! and then every timeout while one fails, every installed mirror with a
//! pair is checked (a heartbeat pair with its PVOL here) and protected again
//! at mirrord; one that cannot be is FAILED with the reason and not written,
//! so no heartbeat runs through a mirror that may be split.
//!
//! [`Mirrors`] is used at start, by the control server's tasks (install,
//! uninstall) and by the tick (a retry spawns a protection task); it
//! holds the retry's time behind a lock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hbcore::control::{PairInstall, Request};
use hbcore::report;
use hbcore::vocab::{Kind, Role};

use super::lock::lock;
use super::shared::Shared;
use super::slot::write_slot;
use super::slot::OpenFiles;
use super::storage_client;
use crate::hb::api::{Install, Source};
use crate::hb::error::HbError;
use crate::hb::logic::message::ControlBody;
use crate::hb::logic::table::{DeviceStatus, Direction};

/// How long hbd waits for mirrord when checking and protecting a pair.
const MIRRORD_LIMIT: Duration = Duration::from_secs(5);

/// The heartbeat mirrors installed here and their pairs' protection, with
/// what they use: what every task shares and the open volumes (a probe
/// write proves a new PVOL).
pub struct Mirrors {
    shared: Arc<Shared>,
    files: Arc<OpenFiles>,
    /// When the pairs of mirrors whose protection failed are tried again,
    /// and whether a try is under way.
    protect_retry: Mutex<(Instant, bool)>,
}

impl Mirrors {
    /// The mirrors of the table in `shared`, written through `files`.
    pub fn new(shared: Arc<Shared>, files: Arc<OpenFiles>) -> Mirrors {
        Mirrors {
            shared,
            files,
            protect_retry: Mutex::new((Instant::now(), false)),
        }
    }

    /// Fig 4: register the PVOL, enable it, protect its pair, tell the peer;
    /// without a PVOL, the `[[mirrors]]` entry named.
    pub async fn install(&self, request: Install) -> Result<String, HbError> {
        let Install {
            pvol,
            pair,
            name,
            svol,
            svol_path,
        } = request;
        match pvol {
            Some(pvol) => self.install_pvol(pvol, pair, name, svol, svol_path).await,
            None => self.install_from_config(name).await,
        }
    }

    async fn install_pvol(
        &self,
        pvol: PathBuf,
        pair: Option<String>,
        name: Option<String>,
        svol: Option<String>,
        svol_path: Option<String>,
    ) -> Result<String, HbError> {
        let file_name = || pvol.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name
            .or_else(|| pair.clone())
            .or_else(file_name)
            .ok_or_else(|| HbError::Unnamed { pvol: pvol.clone() })?;
        if self.shared.checker().table.device(&name).is_some() {
            return Err(HbError::AlreadyInstalled { name });
        }
        let mut svol_name = svol;
        if let Some(pair) = &pair {
            let pair_svol = self.protect(pair).await?;
            svol_name = svol_name.or(Some(pair_svol));
        }
        // The PVOL must take a heartbeat now: one write proves it.
        let (_, frame) = self.shared.next_frame().map_err(HbError::Encode)?;
        self.write_probe(pvol.clone(), frame).await?;
        let svol = svol_name.unwrap_or_else(|| name.clone());
        {
            let mut c = self.shared.checker();
            c.reset_mirror(&name);
            c.table
                .install(&name, pvol.clone(), Direction::Send, pair.clone());
        }
        self.shared.queue(ControlBody::Activate {
            mirror: name.clone(),
            svol: svol.clone(),
            path: svol_path,
        });
        self.shared.save();
        self.shared.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            format!("installed: PVOL {}", pvol.display()),
        );
        tracing::info!(mirror = %name, pvol = %pvol.display(), "heartbeat mirror installed; activation sent to the peer");
        let protected = pair
            .map(|p| format!("; pair '{p}' is protected from split"))
            .unwrap_or_default();
        Ok(format!("heartbeat mirror '{name}' installed: writing {}; the peer registers its SVOL '{svol}'{protected}", pvol.display()))
    }

    /// Installs the `[[mirrors]]` entry `name` of the config again.
    async fn install_from_config(&self, name: Option<String>) -> Result<String, HbError> {
        let name = name.ok_or(HbError::NothingToInstall)?;
        let entry = self
            .shared
            .config
            .mirrors
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| HbError::NoConfigMirror { name: name.clone() })?;
        match (entry.pvol, entry.svol) {
            (Some(pvol), _) => {
                self.install_pvol(pvol, entry.pair, Some(name), None, None)
                    .await
            }
            (None, Some(svol)) => {
                {
                    let mut c = self.shared.checker();
                    if c.table.device(&name).is_some() {
                        return Err(HbError::AlreadyInstalled { name });
                    }
                    c.reset_mirror(&name);
                    c.table
                        .install(&name, svol.clone(), Direction::Receive, None);
                }
                self.shared.save();
                self.shared.event(
                    Source::Local,
                    None,
                    &format!("mirror {name}"),
                    format!("installed from the config: SVOL {}", svol.display()),
                );
                Ok(format!(
                    "heartbeat mirror '{name}' installed from the config: reading {}",
                    svol.display()
                ))
            }
            (None, None) => Err(HbError::NoConfigMirror { name }),
        }
    }

    /// Checks that `pair` is a heartbeat pair with its PVOL here and
    /// protects it from split; returns its SVOL's name.
    async fn protect(&self, pair: &str) -> Result<String, HbError> {
        let mirrord = self.shared.config.mirrord();
        let info = storage_client::pair(&mirrord, pair, MIRRORD_LIMIT).await?;
        if info.kind != Kind::Heartbeat {
            return Err(HbError::DataPair { pair: pair.into() });
        }
        if info.role != Role::Pvol {
            return Err(HbError::SvolHere {
                pair: pair.into(),
                peer: info.peer,
            });
        }
        let protect = Request::PairInstall(PairInstall {
            name: pair.into(),
            installed: true,
        });
        storage_client::call_within(&mirrord, protect, MIRRORD_LIMIT).await?;
        Ok(info.svol)
    }

    /// Protects the pair of every installed sending mirror again, or marks
    /// the mirror FAILED with the reason (it is then not written).
    pub async fn protect_installed(&self) {
        let pairs: Vec<(String, String, bool)> = self
            .shared
            .checker()
            .table
            .devices
            .iter()
            .filter(|d| d.direction == Direction::Send && d.status != DeviceStatus::Null)
            .filter_map(|d| {
                d.pair
                    .clone()
                    .map(|p| (d.name.clone(), p, d.pair_problem.is_some()))
            })
            .collect();
        for (name, pair, had_problem) in pairs {
            let result = self.protect(&pair).await;
            let mut c = self.shared.checker();
            let Some(d) = c
                .table
                .devices
                .iter_mut()
                .find(|d| d.name == name && d.status != DeviceStatus::Null)
            else {
                continue;
            };
            match result {
                Ok(_) => {
                    d.pair_problem = None;
                    drop(c);
                    tracing::info!(mirror = %name, pair = %pair, "heartbeat pair checked and protected from split");
                    if had_problem {
                        self.shared.event(
                            Source::Local,
                            None,
                            &format!("mirror {name}"),
                            format!(
                                "pair '{pair}' protected from split again: the mirror is in use"
                            ),
                        );
                    }
                }
                Err(e) => {
                    let why = format!(
                        "pair '{pair}' is not protected from split, so the mirror is not used: {}",
                        report::chain(&e)
                    );
                    let new = d.pair_problem.as_ref() != Some(&why);
                    d.pair_problem = Some(why.clone());
                    // Shown at once; the checker keeps it so while the problem lasts.
                    d.seen.problem = Some(why.clone());
                    if d.status == DeviceStatus::Enable {
                        d.status = DeviceStatus::Failed;
                    }
                    drop(c);
                    if new {
                        tracing::warn!(mirror = %name, "{why}");
                        self.shared
                            .event(Source::Local, None, &format!("mirror {name}"), why);
                    }
                }
            }
        }
        lock(&self.protect_retry).1 = false;
    }

    /// Starts [`Hbd::protect_installed`] on a task of its own when a
    /// mirror's protection failed and the timeout has passed since the last try.
    pub fn retry_protection(self: &Arc<Self>) {
        let failing = self
            .shared
            .checker()
            .table
            .devices
            .iter()
            .any(|d| d.pair_problem.is_some() && d.status != DeviceStatus::Null);
        let mut retry = lock(&self.protect_retry);
        if !failing || retry.1 || retry.0.elapsed() < self.shared.config.timeout() {
            return;
        }
        *retry = (Instant::now(), true);
        let mirrors = Arc::clone(self);
        tokio::spawn(async move { mirrors.protect_installed().await });
    }

    /// Lifts the protection of the pairs of mirrors whose `[[mirrors]]`
    /// entry left the config (de-installed at start).
    pub async fn release(&self, pairs: Vec<String>) {
        let mirrord = self.shared.config.mirrord();
        for pair in pairs {
            let release = Request::PairInstall(PairInstall {
                name: pair.clone(),
                installed: false,
            });
            match storage_client::call_within(&mirrord, release, MIRRORD_LIMIT).await {
                Ok(_) => {
                    tracing::info!(pair = %pair, "its mirror left the config: the pair may now be split")
                }
                Err(e) => {
                    tracing::warn!(pair = %pair, "its mirror left the config, but its protection stays: {}", report::chain(&e))
                }
            }
        }
    }

    /// Writes `frame` to the PVOL at `path`.
    async fn write_probe(&self, path: PathBuf, frame: Vec<u8>) -> Result<(), HbError> {
        write_slot(&self.files, &path, &frame)
            .await
            .map_err(|source| HbError::PvolWrite { path, source })
    }

    /// Fig 5: vacate the entry, lift the pair's protection, tell the peer.
    pub async fn uninstall(&self, name: &str) -> Result<String, HbError> {
        let device = self
            .shared
            .checker()
            .table
            .device(name)
            .cloned()
            .ok_or_else(|| HbError::NoMirror { name: name.into() })?;
        if let Some(pair) = &device.pair {
            let release = Request::PairInstall(PairInstall {
                name: pair.clone(),
                installed: false,
            });
            storage_client::call(&self.shared.config.mirrord(), release).await?;
        }
        {
            let mut c = self.shared.checker();
            c.reset_mirror(name);
            c.table.uninstall(name);
        }
        if device.direction == Direction::Send {
            self.shared.queue(ControlBody::Deactivate {
                mirror: name.into(),
            });
        }
        self.shared.save();
        self.shared.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            "de-installed".into(),
        );
        tracing::info!(mirror = name, "heartbeat mirror de-installed");
        let lifted = device
            .pair
            .map(|p| format!("; pair '{p}' may now be split"))
            .unwrap_or_default();
        Ok(format!("heartbeat mirror '{name}' de-installed{lifted}"))
    }
}
