//! The control server: `hbctl hb` requests ([`super::api::HbRequest`])
//! answered on hbd's socket, each client on a task of its own
//! ([`hbcore::jsonl::serve`]), until the daemon's shutdown. A refusal is
//! an [`HbError`], sent as its chain of causes.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use hbcore::control::{PairInstall, Request};
use hbcore::jsonl;
use hbcore::report;
use hbcore::vocab::{Kind, Role};
use tokio::net::UnixListener;

use super::api::{HbReply, HbRequest, Install, Source};
use super::error::HbError;
use super::message::{ControlBody, Procedure};
use super::mirrord;
use super::slot::write_slot;
use super::state::Hbd;
use super::table::Direction;

impl Hbd {
    /// Answers the control socket until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) {
        jsonl::serve(
            listener,
            "hbmirror::hb::api::HbRequest",
            move |request: HbRequest| {
                let hbd = Arc::clone(&self);
                async move { hbd.dispatch(request).await.map_err(|e| report::chain(&e)) }
            },
            shutdown,
        )
        .await;
    }

    async fn dispatch(&self, request: HbRequest) -> Result<HbReply, HbError> {
        Ok(match request {
            HbRequest::Status => HbReply::Table(Box::new(self.checker().table.clone())),
            HbRequest::Events(r) => HbReply::Events(self.recent_events(r.limit)),
            HbRequest::Install(r) => HbReply::Done(self.install(r).await?),
            HbRequest::Uninstall(r) => HbReply::Done(self.uninstall(&r.name).await?),
            HbRequest::Procedure(p) => HbReply::Done(self.procedure(p)?),
            HbRequest::Rearm => HbReply::Done(self.rearm()),
        })
    }

    /// Fig 4: register the PVOL, enable it, protect its pair, tell the peer.
    async fn install(&self, request: Install) -> Result<String, HbError> {
        let Install {
            pvol,
            pair,
            name,
            svol,
            svol_path,
        } = request;
        let socket = &self.config.failover.mirrord_socket;
        let file_name = || pvol.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut svol_name = svol;
        if let Some(pair) = &pair {
            let info = mirrord::pair(socket, pair).await?;
            if info.kind != Kind::Heartbeat {
                return Err(HbError::DataPair { pair: pair.clone() });
            }
            if info.role != Role::Pvol {
                return Err(HbError::SvolHere {
                    pair: pair.clone(),
                    peer: info.peer,
                });
            }
            svol_name = svol_name.or(Some(info.svol));
            let protect = Request::PairInstall(PairInstall {
                name: pair.clone(),
                installed: true,
            });
            mirrord::call(socket, protect).await?;
        }
        let name = name
            .or_else(|| pair.clone())
            .or_else(file_name)
            .ok_or_else(|| HbError::Unnamed { pvol: pvol.clone() })?;
        if self.checker().table.device(&name).is_some() {
            return Err(HbError::AlreadyInstalled { name });
        }
        // The PVOL must take a heartbeat now: one write proves it.
        let (_, frame) = self.next_frame().map_err(HbError::Encode)?;
        self.write_probe(pvol.clone(), frame).await?;
        let svol = svol_name.unwrap_or_else(|| name.clone());
        self.checker()
            .table
            .install(&name, pvol.clone(), Direction::Send, pair.clone());
        self.queue(ControlBody::Activate {
            mirror: name.clone(),
            svol: svol.clone(),
            path: svol_path,
        });
        self.save();
        self.event(
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

    /// Writes `frame` to the PVOL at `path` (on a blocking thread).
    async fn write_probe(&self, path: PathBuf, frame: Vec<u8>) -> Result<(), HbError> {
        let files = Arc::clone(&self.files);
        let probe = path.clone();
        tokio::task::spawn_blocking(move || write_slot(&files, &probe, &frame))
            .await
            .map_err(|source| HbError::Blocking {
                what: "the first heartbeat write",
                source,
            })?
            .map_err(|source| HbError::PvolWrite { path, source })
    }

    /// Fig 5: vacate the entry, lift the pair's protection, tell the peer.
    async fn uninstall(&self, name: &str) -> Result<String, HbError> {
        let device = self
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
            mirrord::call(&self.config.failover.mirrord_socket, release).await?;
        }
        {
            let mut c = self.checker();
            c.reset_mirror(name);
            c.table.uninstall(name);
        }
        if device.direction == Direction::Send {
            self.queue(ControlBody::Deactivate {
                mirror: name.into(),
            });
        }
        self.save();
        self.event(
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

    /// Fig 8: change the procedure here (steps 810/820), then forward it to the peer.
    fn procedure(&self, p: Procedure) -> Result<String, HbError> {
        if let Some((name, _)) = &p.mirror.0 {
            if self.checker().table.device(name).is_none() {
                return Err(HbError::NoMirror { name: name.clone() });
            }
        }
        if p.network == Some(true) && self.config.network.is_none() {
            return Err(HbError::NoNetwork);
        }
        let text = self.set_procedure(&p);
        self.queue(ControlBody::Procedure(p));
        self.save();
        self.event(
            Source::Local,
            None,
            "procedure",
            format!("changed here: {text}"),
        );
        Ok(format!(
            "checking procedure: {text}; forwarded to the peer over a working channel"
        ))
    }

    /// Allows another failover once the peer has been seen alive again.
    fn rearm(&self) -> String {
        let mut c = self.checker();
        c.table.failed_over = false;
        c.table.armed = false;
        "failover re-armed: it happens again once the peer has been seen alive and then every channel fails".into()
    }
}
