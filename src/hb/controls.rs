//! Peer controls: the control messages heartbeats carry (activation and
//! de-activation of mirrors, Fig 4/5; procedure changes, Fig 8; failure
//! notices, Fig 10/11; the fault analysis's request and reports, seed 002). Each is queued in the table's outbox, rides every
//! heartbeat on every channel turned on until the peer acknowledges its id
//! (with none on, it waits), and is applied once at the peer, in order,
//! whichever channel brought it first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::api::Source;
use super::failover::run_command;
use super::message::{Beat, Control, ControlBody, Notice, Procedure};
use super::state::Hbd;
use super::table::Direction;

/// Control messages kept unacknowledged at most; the oldest is dropped beyond.
const OUTBOX_MAX: usize = 8;

impl Hbd {
    /// Queues a control message for the peer (carried by every heartbeat until acknowledged).
    pub fn queue(&self, body: ControlBody) {
        let mut c = self.checker();
        c.table.last_control += 1;
        let id = c.table.last_control;
        c.table.outbox.push(Control { id, body });
        c.table.show_procedure();
        if c.table.outbox.len() > OUTBOX_MAX {
            let dropped = c.table.outbox.remove(0);
            tracing::warn!(
                id = dropped.id,
                "control outbox full (the peer acknowledges nothing): dropped the oldest message"
            );
        }
    }

    /// Takes the acknowledgement and the new control messages of a valid heartbeat.
    pub async fn absorb(self: &Arc<Self>, beat: &Beat) {
        let fresh: Vec<Control> = {
            let mut c = self.checker();
            let t = &mut c.table;
            t.outbox.retain(|ctl| ctl.id > beat.ack);
            let fresh: Vec<Control> = beat
                .controls
                .iter()
                .filter(|ctl| ctl.id > t.received_control)
                .cloned()
                .collect();
            if let Some(last) = fresh.last() {
                t.received_control = last.id;
            }
            fresh
        };
        let any = !fresh.is_empty();
        for ctl in fresh {
            self.apply(&beat.sender, ctl.body).await;
        }
        if any {
            self.save();
        }
    }

    /// Applies a control message from the peer.
    async fn apply(self: &Arc<Self>, peer: &str, body: ControlBody) {
        match body {
            ControlBody::Activate { mirror, svol, path } => {
                let address = path
                    .map(PathBuf::from)
                    .or_else(|| self.config.volume_dir.as_ref().map(|d| d.join(&svol)));
                match address {
                    Some(address) => {
                        tracing::info!(mirror = %mirror, path = %address.display(), "heartbeat mirror activated by {peer}: reading its SVOL");
                        let mut c = self.checker();
                        c.reset_mirror(&mirror);
                        c.table
                            .install(&mirror, address.clone(), Direction::Receive, None);
                        drop(c);
                        self.event(
                            Source::Peer,
                            None,
                            &format!("mirror {mirror}"),
                            format!("installed by {peer}: SVOL {} registered", address.display()),
                        );
                    }
                    None => {
                        let why = format!("cannot register the SVOL '{svol}' of mirror {mirror} activated by {peer}: set volume_dir in hbd's config, or install with --svol-path");
                        tracing::warn!("{why}");
                        self.event(Source::Local, None, &format!("mirror {mirror}"), why);
                    }
                }
            }
            ControlBody::Deactivate { mirror } => {
                let removed = {
                    let mut c = self.checker();
                    c.reset_mirror(&mirror);
                    c.table.uninstall(&mirror)
                };
                if removed {
                    tracing::info!(mirror = %mirror, "heartbeat mirror de-activated by {peer}");
                    self.event(
                        Source::Peer,
                        None,
                        &format!("mirror {mirror}"),
                        format!("de-installed by {peer}"),
                    );
                }
            }
            ControlBody::Procedure(p) => {
                let text = self.set_procedure(&p);
                tracing::info!("checking procedure changed by {peer}: {text}");
                self.event(
                    Source::Peer,
                    None,
                    "procedure",
                    format!("changed by {peer}: {text}"),
                );
            }
            ControlBody::Notice(n) => self.notice_received(n).await,
            ControlBody::AnalysisRequest { id, trigger } => {
                self.analysis_requested(peer, id, trigger)
            }
            ControlBody::AnalysisReport {
                id,
                trigger,
                report,
            } => self.analysis_reported(id, trigger, *report),
        }
    }

    /// Fig 8, steps 810/820 (and 840/850 at the peer). Returns what changed.
    pub fn set_procedure(&self, p: &Procedure) -> String {
        self.checker().table.apply_procedure(p)
    }

    async fn notice_received(&self, n: Notice) {
        let text = format!("{} at {}: {} ({})", n.level, n.host, n.part, n.info);
        if n.level.alerts() {
            tracing::error!("failure notice from the peer: {text}");
        } else {
            tracing::warn!("failure notice from the peer: {text}");
        }
        self.event(
            Source::Peer,
            Some(n.level),
            &n.part,
            format!("{} ({}) detected at {}", n.info, n.level, n.time_ms),
        );
        if let (true, Some(alert)) = (n.level.alerts(), &self.config.failover.alert) {
            let env = vec![
                ("HBD_EVENT", "notice".to_string()),
                ("HBD_LEVEL", n.level.to_string()),
                ("HBD_PART", n.part.clone()),
                ("HBD_INFO", n.info.clone()),
                ("HBD_TIME_MS", n.time_ms.to_string()),
                ("HBD_FROM", n.host.clone()),
                ("HBD_HOST", self.config.host.clone()),
            ];
            run_command("alert", alert, env, Duration::from_secs(30)).await;
        }
    }
}
