//! A fence before every takeover inside a group (SBD's poison pill;
//! Pacemaker's rule that nothing is recovered before its old node is
//! fenced):
//!
//! - the taker, before it starts an application whose old host is of its
//!   group, writes a `poison` into that host's mailbox ([`Member::fence_host`])
//!   and waits for the acknowledgement in the host's slot, or for msgwait
//!   (2 × `watchdog_timeout_ms`, or 2 × `fence_timeout_ms` without a
//!   watchdog) — by then a host that could not obey has been reset by its
//!   watchdog or has fenced itself;
//! - a live host obeys at once ([`Member::obey`]): it stops acting as
//!   master, releases its floating IPs, stops its applications, marks its
//!   `take_over` pairs outdated and acknowledges in its slot; it stays
//!   fenced (DOWN, its slot saying so) until its hbd is restarted;
//! - a host that lost both its LAN and its slot fences itself the same
//!   way (`channels`), and its watchdog is no longer petted.
//!
//! Run by the member's run task (obeying) and a takeover's task (fencing);
//! locks held briefly, never across an await.

use std::sync::Arc;
use std::time::Instant;

use super::group::slot::{Poison, SlotState};
use super::member::Member;
use crate::hb::daemon::failover::outdate_pairs;
use hbcore::report;
use hbcore::vocab::Level;

impl Member {
    /// Obeys `poison` (a valid one, for this run, from a host of the group).
    pub(super) async fn obey(self: &Arc<Self>, poison: Poison) {
        let why = format!("fenced by {} (poison {})", poison.from, poison.id);
        self.fence_self(why, Some(poison.id)).await;
    }

    /// Fences this host: gives up its reign, goes DOWN (floating IPs
    /// released, applications stopped), outdates its `take_over` pairs,
    /// and says so in its slot (acknowledging `ack`).
    pub(super) async fn fence_self(self: &Arc<Self>, why: String, ack: Option<u64>) {
        {
            let Some(mut seen) = self.seen() else {
                return;
            };
            if seen.fenced.is_some() {
                return;
            }
            seen.fenced = Some(why.clone());
            seen.resigned = true;
            if ack.is_some() {
                seen.ack = ack;
            }
        }
        self.shared.master_gate.set(false);
        if ack.is_none() {
            // Lost both channels: its watchdog is no longer petted either.
            self.petting.fence(&why);
        }
        tracing::error!("this host is FENCED: {why}");
        self.event(
            Some(Level::SystemDown),
            format!("{} is FENCED: {why}", self.me),
        );
        self.go_down(format!("fenced: {why}")).await;
        let reason = format!("host '{}' fenced: {why}", self.me);
        let when = if ack.is_some() {
            "poison"
        } else {
            "self-fence"
        };
        outdate_pairs(&self.shared, &reason, when).await;
        // The acknowledgement: the next slot write says FENCED with the ack.
        if let Some(volume) = self.seen().map(|s| Arc::clone(&s.volume)) {
            if let Some(index) = volume.index(&self.me) {
                self.write_now(&volume, index).await;
            }
        }
    }

    /// Whether this host is fenced (for the rest of its run).
    pub(super) fn fenced(&self) -> Option<String> {
        self.seen().and_then(|s| s.fenced.clone())
    }

    /// Fences `old` before one of its applications is started here:
    /// Ok(how) once it acknowledged or msgwait passed; Err(why) when it
    /// cannot be fenced (the takeover must not go on). Hosts outside this
    /// host's group (another site's, fenced by the pair takeover) need none.
    pub(super) async fn fence_host(self: &Arc<Self>, old: &str) -> Result<String, String> {
        let Some(volume) = self.seen().map(|s| Arc::clone(&s.volume)) else {
            return Ok("no group volume: no fence".into());
        };
        let (Some(index), true) = (volume.index(old), old != self.me) else {
            return Ok(format!("{old} is not of this host's group: no fence here"));
        };
        let cannot = |e: &(dyn std::error::Error + 'static)| {
            format!(
                "cannot fence {old} through the group volume {}: {}",
                volume.path.display(),
                report::chain(e)
            )
        };
        let reads = volume.read_all().await.map_err(|e| cannot(&e))?;
        let run = match reads.get(index).map(|r| &r.slot) {
            Some(Ok(Some(s))) if s.state == SlotState::Fenced => {
                return Ok(format!("{old} says in its slot that it is fenced"));
            }
            Some(Ok(Some(s))) => s.run,
            // Its slot unknown: the poison holds for any run of it.
            _ => 0,
        };
        let poison = Poison {
            to: old.into(),
            run,
            from: self.me.clone(),
            id: rand::random::<u64>().max(1),
        };
        volume
            .write_poison(index, &poison)
            .await
            .map_err(|e| cannot(&e))?;
        let sent = Instant::now();
        let msgwait = self.shared.config.msgwait();
        tracing::warn!(host = %old, id = poison.id, "poison written: waiting for its acknowledgement, or {msgwait:?}");
        let interval = self.shared.config.interval();
        loop {
            tokio::time::sleep(interval).await;
            if let Ok(reads) = volume.read_all().await {
                if let Some(Ok(Some(s))) = reads.get(index).map(|r| &r.slot) {
                    if s.ack == Some(poison.id) {
                        let ms = sent.elapsed().as_millis();
                        return Ok(format!("{old} acknowledged the poison in {ms} ms"));
                    }
                    if run != 0 && s.run != run && s.state != SlotState::Up {
                        return Ok(format!("{old} restarted and runs nothing"));
                    }
                }
            }
            if sent.elapsed() >= msgwait {
                return Ok(format!(
                    "{old} did not acknowledge the poison within msgwait ({msgwait:?}): it fenced itself or was reset by its watchdog"
                ));
            }
        }
    }
}
