//! The control server: `hbctl hb` requests ([`super::api::HbRequest`])
//! answered on hbd's socket, each client on a task of its own
//! ([`hbcore::jsonl::serve`]), until the daemon's shutdown. A refusal is
//! an [`HbError`], sent as its chain of causes.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hbcore::jsonl;
use hbcore::report;
use tokio::net::UnixListener;

use super::api::{HbReply, HbRequest, SetProcedure, Source};
use super::error::HbError;
use super::message::ControlBody;
use super::state::Hbd;

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

    /// Fig 8: change the procedure here (steps 810/820), then forward it to
    /// the peer over an enabled channel (830). Turning off the last channel
    /// either way is refused unless forced.
    fn procedure(&self, request: SetProcedure) -> Result<String, HbError> {
        let SetProcedure {
            procedure: p,
            force,
        } = request;
        if let Some((name, _)) = &p.mirror.0 {
            if self.checker().table.device(name).is_none() {
                return Err(HbError::NoMirror { name: name.clone() });
            }
        }
        if p.network == Some(true) && self.config.network.is_none() {
            return Err(HbError::NoNetwork);
        }
        {
            let c = self.checker();
            let mut after = c.table.clone();
            after.apply_procedure(&p);
            let refuse = |consequence| Err(HbError::LastChannel { consequence });
            if !force && c.table.sends_to_peer() && !after.sends_to_peer() {
                return refuse("this turns off the last enabled channel to the peer: no heartbeat would reach it (to a standby, a silent production looks dead on every channel) and control messages, this change included, would wait until a channel to the peer is on again");
            }
            if !force && c.table.hears_peer() && !after.hears_peer() {
                return refuse("this turns off the last enabled channel from the peer: its heartbeats would go unchecked here (a standby could no longer tell that production died)");
            }
        }
        let text = self.set_procedure(&p);
        self.queue(ControlBody::Procedure(p));
        let reaches = self.checker().table.sends_to_peer();
        self.save();
        self.event(
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
        let text = self.checker().rearm(Instant::now());
        self.save();
        self.event(Source::Local, None, "rearm", text.clone());
        tracing::info!("{text}");
        text
    }
}
