//! The control server: `hbctl hb` requests ([`crate::hb::api::HbRequest`])
//! answered on hbd's socket, each client on a task of its own
//! ([`hbcore::jsonl::serve`]), until the daemon's shutdown. A refusal is
//! an [`HbError`], sent as its chain of causes.
//!
//! [`Server`] holds what it answers with (shared, analyzer, mirrors); each
//! client's task shares it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hbcore::jsonl;
use hbcore::report;
use tokio::net::UnixListener;

use super::analyzer::Analyzer;
use super::controls::{set_one_network, set_procedure};
use super::install::Mirrors;
use super::shared::Shared;
use crate::hb::api::{HbReply, HbRequest, SetProcedure, Source};
use crate::hb::error::HbError;
use crate::hb::logic::message::ControlBody;
use crate::hb::logic::table::{Direction, Table};

/// The control server and what it answers with: what every task shares,
/// the analyzer (`hbctl hb analyze`) and the mirrors (install, uninstall).
pub struct Server {
    shared: Arc<Shared>,
    analyzer: Arc<Analyzer>,
    mirrors: Arc<Mirrors>,
}

impl Server {
    /// The server over these parts.
    pub fn new(shared: Arc<Shared>, analyzer: Arc<Analyzer>, mirrors: Arc<Mirrors>) -> Server {
        Server {
            shared,
            analyzer,
            mirrors,
        }
    }

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
                let server = Arc::clone(&self);
                async move {
                    server
                        .dispatch(request)
                        .await
                        .map_err(|e| report::chain(&e))
                }
            },
            shutdown,
        )
        .await;
    }

    async fn dispatch(&self, request: HbRequest) -> Result<HbReply, HbError> {
        Ok(match request {
            HbRequest::Status => HbReply::Table(Box::new(self.shared.checker().table.clone())),
            HbRequest::Events(r) => HbReply::Events(self.shared.recent_events(r.limit)),
            HbRequest::Install(r) => HbReply::Done(self.mirrors.install(r).await?),
            HbRequest::Uninstall(r) => HbReply::Done(self.mirrors.uninstall(&r.name).await?),
            HbRequest::Procedure(p) => HbReply::Done(self.procedure(p)?),
            HbRequest::Rearm => HbReply::Done(self.rearm()),
            HbRequest::Analyze => HbReply::Analysis(Box::new(self.analyzer.analyze_now().await?)),
        })
    }

    /// Fig 8: change the procedure here (steps 810/820), then forward it to
    /// the peer over an enabled channel (830). Turning off the last channel
    /// either way is refused unless forced.
    fn procedure(&self, request: SetProcedure) -> Result<String, HbError> {
        let SetProcedure {
            procedure: p,
            one_network,
            force,
        } = request;
        if let Some((name, _)) = &one_network.0 {
            let configured = self.shared.config.all_networks();
            if !configured.iter().any(|n| n.name == *name) {
                return Err(HbError::NoSuchNetwork {
                    name: name.clone(),
                    known: configured
                        .iter()
                        .map(|n| n.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        if let Some((name, _)) = &p.mirror.0 {
            if self.shared.checker().table.device(name).is_none() {
                return Err(HbError::NoMirror { name: name.clone() });
            }
        }
        if p.network == Some(true) && self.shared.config.all_networks().is_empty() {
            return Err(HbError::NoNetwork);
        }
        if !force {
            let c = self.shared.checker();
            let mut after = c.table.clone();
            after.apply_procedure(&p);
            after.apply_one_network(&one_network);
            let pending = c.table.outbox.iter().any(|ctl| {
                matches!(
                    ctl.body,
                    ControlBody::Procedure(_) | ControlBody::OneNetwork(_)
                )
            });
            if let Some(consequence) = refusal(&c.table, &after, pending) {
                return Err(HbError::ProcedureRefused { why: consequence });
            }
        }
        let mut said = vec![];
        if !p.is_empty() {
            said.push(set_procedure(&self.shared, &p));
            self.shared.queue(ControlBody::Procedure(p));
        }
        if !one_network.is_none() {
            said.push(set_one_network(&self.shared, &one_network));
            self.shared.queue(ControlBody::OneNetwork(one_network));
        }
        let text = said.join(", ");
        let reaches = self.shared.checker().table.sends_to_peer();
        self.shared.save();
        self.shared.event(
            Source::Local,
            None,
            "procedure",
            format!("changed here: {text}"),
        );
        Ok(if reaches {
            format!("checking procedure: {text}; forwarded to the peer over an enabled channel")
        } else {
            format!("checking procedure: {text}; no enabled channel reaches the peer: the change waits for it until one is on again")
        })
    }

    /// At a standby, allows another failover; at a production host, ends a step-down.
    fn rearm(&self) -> String {
        let text = self.shared.checker().rearm(Instant::now());
        self.shared.save();
        self.shared
            .event(Source::Local, None, "rearm", text.clone());
        tracing::info!("{text}");
        text
    }
}

/// Why a procedure change from `before` to `after` is refused without
/// --force: the previous change has not reached the peer yet (`pending`),
/// it turns off the last channel one way, or no channel stays on to carry
/// it to the peer (the peer has on only the channels on here before, and
/// ignores the others until the change reaches it).
fn refusal(before: &Table, after: &Table, pending: bool) -> Option<&'static str> {
    let (to_before, to_after) = (
        before.channels(Direction::Send),
        after.channels(Direction::Send),
    );
    if !to_before.is_empty() && to_after.is_empty() {
        return Some("this turns off the last enabled channel to the peer: no heartbeat would reach it (to a standby, a silent production looks dead on every channel) and control messages, this change included, would wait until a channel to the peer is on again; keep another channel on");
    }
    if before.hears_peer() && !after.hears_peer() {
        return Some("this turns off the last enabled channel from the peer: its heartbeats would go unchecked here (a standby could no longer tell that production died); keep another channel on");
    }
    if !to_before.is_empty() && !to_after.iter().any(|c| to_before.contains(c)) {
        return Some("no channel to the peer stays on to carry this change: the peer has on only the channels on here now, and this turns them all off; change one thing at a time (first turn the new channel on, then the old one off)");
    }
    if pending && !to_before.is_empty() {
        return Some("the previous procedure change has not reached the peer yet (`hbctl hb status` shows control messages not yet acknowledged); wait for it, so that both ends have the same channels on");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hb::logic::message::{Choice, Procedure};
    use hbcore::vocab::Group;

    fn change(
        t: &Table,
        network: Option<bool>,
        mirror: Option<(&str, bool)>,
    ) -> Option<&'static str> {
        let mut after = t.clone();
        after.apply_procedure(&Procedure {
            network,
            mirrors: None,
            mirror: Choice(mirror.map(|(n, on)| (n.to_string(), on))),
        });
        refusal(t, &after, false)
    }

    #[test]
    fn a_change_must_leave_a_channel_each_way_that_carries_it() {
        let mut t = Table::new("prod-a", Group::Production, true);
        t.install("hb0", "/hb0".into(), Direction::Send, None);
        t.install("hb1", "/hb1".into(), Direction::Receive, None);
        assert_eq!(change(&t, Some(false), None), None, "the mirrors remain");
        t.network_wanted = false;
        let last = change(&t, None, Some(("hb0", false))).expect("last to the peer");
        assert!(last.contains("last enabled channel to the peer"), "{last}");
        let from = change(&t, None, Some(("hb1", false))).expect("last from the peer");
        assert!(
            from.contains("last enabled channel from the peer"),
            "{from}"
        );
        let swap = change(&t, Some(true), Some(("hb0", false))).expect("a swap");
        assert!(swap.contains("one thing at a time"), "{swap}");
        assert_eq!(change(&t, Some(true), None), None);
        let mut after = t.clone();
        after.network_wanted = true;
        let waiting = refusal(&t, &after, true).expect("the previous change is in flight");
        assert!(
            waiting.contains("has not reached the peer yet"),
            "{waiting}"
        );
        // Nothing on to begin with (forced): turning one on is always fine.
        t.mirrors_wanted = false;
        assert_eq!(change(&t, Some(true), None), None);
        let mut after = t.clone();
        after.network_wanted = true;
        assert_eq!(
            refusal(&t, &after, true),
            None,
            "a held change cannot travel anyway"
        );
    }
}
