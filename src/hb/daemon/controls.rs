//! Peer controls: the control messages heartbeats carry (activation and
//! de-activation of mirrors, Fig 4/5; procedure changes, Fig 8; failure
//! notices, Fig 10/11; the fault analysis's request and reports, seed 002;
//! the handover's request and answer). Each is queued in the table's outbox, rides every
//! heartbeat on every channel turned on until the peer acknowledges its id
//! (with none on, it waits), and is applied once at the peer, in order,
//! whichever channel brought it first.
//!
//! Runs on the task that got the beat (a UDP receiver, or the tick for a
//! mirror), with what it uses passed in (shared, analyzer).

use std::sync::Arc;
use std::time::Duration;

use super::analyzer::Analyzer;
use super::failover::run_command;
use super::handover;
use super::shared::Shared;
use crate::hb::api::Source;
use crate::hb::logic::message::{Beat, Choice, ControlBody, Notice, Procedure};
use crate::hb::logic::step::{apply_to_table, take_controls, Applied};

/// Takes the acknowledgement and the new control messages of a valid heartbeat.
pub async fn absorb(shared: &Shared, analyzer: &Arc<Analyzer>, beat: &Beat) {
    let fresh = take_controls(&mut shared.checker().table, beat);
    let any = !fresh.is_empty();
    for ctl in fresh {
        apply(shared, analyzer, &beat.sender, ctl.body).await;
    }
    if any {
        shared.save();
    }
}

/// Applies a control message from the peer.
async fn apply(shared: &Shared, analyzer: &Arc<Analyzer>, peer: &str, body: ControlBody) {
    let applied = {
        let volume_dir = shared.config.volume_dir.as_deref();
        apply_to_table(&mut shared.checker(), peer, body, volume_dir)
    };
    match applied {
        Applied::Installed { mirror, address } => {
            tracing::info!(mirror = %mirror, path = %address.display(), "heartbeat mirror activated by {peer}: reading its SVOL");
            shared.event(
                Source::Peer,
                None,
                &format!("mirror {mirror}"),
                format!("installed by {peer}: SVOL {} registered", address.display()),
            );
        }
        Applied::Unregistered { mirror, why } => {
            tracing::warn!("{why}");
            shared.event(Source::Local, None, &format!("mirror {mirror}"), why);
        }
        Applied::Removed(mirror, removed) => {
            if removed {
                tracing::info!(mirror = %mirror, "heartbeat mirror de-activated by {peer}");
                shared.event(
                    Source::Peer,
                    None,
                    &format!("mirror {mirror}"),
                    format!("de-installed by {peer}"),
                );
            }
        }
        Applied::Procedure(text) => {
            tracing::info!("checking procedure changed by {peer}: {text}");
            shared.event(
                Source::Peer,
                None,
                "procedure",
                format!("changed by {peer}: {text}"),
            );
        }
        Applied::Other(ControlBody::Notice(n)) => notice_received(shared, n).await,
        Applied::Other(ControlBody::AnalysisRequest { id, trigger }) => {
            analyzer.analysis_requested(peer, id, trigger)
        }
        Applied::Other(ControlBody::AnalysisReport {
            id,
            trigger,
            report,
        }) => analyzer.analysis_reported(id, trigger, *report),
        Applied::Other(ControlBody::HandoverRequest(request)) => {
            let (shared, checks) = analyzer.parts();
            handover::requested(shared, checks, peer, request)
        }
        Applied::Other(ControlBody::HandoverAnswer(answer)) => handover::answered(shared, answer),
        // Table changes, applied above.
        Applied::Other(_) => {}
    }
}

/// Fig 8, steps 810/820 (and 840/850 at the peer). Returns what changed.
pub fn set_procedure(shared: &Shared, p: &Procedure) -> String {
    shared.checker().table.apply_procedure(p)
}

/// Fig 8 for one network by name. Returns what changed.
pub fn set_one_network(shared: &Shared, choice: &Choice) -> String {
    shared.checker().table.apply_one_network(choice)
}

async fn notice_received(shared: &Shared, n: Notice) {
    let text = format!("{} at {}: {} ({})", n.level, n.host, n.part, n.info);
    if n.level.alerts() {
        tracing::error!("failure notice from the peer: {text}");
    } else {
        tracing::warn!("failure notice from the peer: {text}");
    }
    shared.event(
        Source::Peer,
        Some(n.level),
        &n.part,
        format!("{} ({}) detected at {}", n.info, n.level, n.time_ms),
    );
    if let (true, Some(alert)) = (n.level.alerts(), &shared.config.failover.alert) {
        let env = vec![
            ("HBD_EVENT", "notice".to_string()),
            ("HBD_LEVEL", n.level.to_string()),
            ("HBD_PART", n.part.clone()),
            ("HBD_INFO", n.info.clone()),
            ("HBD_TIME_MS", n.time_ms.to_string()),
            ("HBD_FROM", n.host.clone()),
            ("HBD_HOST", shared.config.host.clone()),
        ];
        run_command("alert", alert, env, Duration::from_secs(30)).await;
    }
}
