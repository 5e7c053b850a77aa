//! What one message does (Fig 7): a datagram on a network or a slot read
//! from a receiving mirror is approved, judged by the advancing rule (with
//! the echo of this host's nonces for a new sender instance), counted, and
//! its watermark kept; refusals are counted by name. The clock offset is
//! measured here, from an accepted message that echoes a nonce still in the
//! window.

use super::{mirror_channel, At, Checker, Rejection};
use crate::hb::logic::analysis::network_label;
use crate::hb::logic::challenge::{clock_offset_ms, hear};
use crate::hb::logic::counter::Change;
use crate::hb::logic::message::Beat;
use crate::hb::logic::table::{DeviceStatus, Watermark};
use crate::hb::logic::watch::{Claim, Mark, Observation, Refusal};

use super::CounterChange;

/// A refused message in words.
fn refusal_text(r: Refusal, beat: &Beat) -> String {
    let (serial, sender) = (beat.serial, &beat.sender);
    match r {
        Refusal::TimeBack => format!("heartbeat {serial} of '{sender}' is newer by serial but not by its sender's uptime ({} ms): its time went back", beat.uptime_ms),
        Refusal::SerialJump => format!("heartbeat {serial} of '{sender}' jumps further ahead than its sender's uptime ({} ms) allows", beat.uptime_ms),
        Refusal::Unverified => format!("heartbeat {serial} of '{sender}' (instance {:016x}) echoes no nonce this host issued recently: a replay, or a peer that has not heard this host yet (it is taken once one of this host's heartbeats reaches it)", beat.instance),
        Refusal::Retired => format!("heartbeat {serial} of '{sender}' is from instance {:016x}, which this channel has left behind for a newer one: a replay or a late message", beat.instance),
    }
}

impl Checker {
    /// The claim of an approved beat (its nonce noted for the echo), and
    /// when the nonce it echoes was issued here, if recently.
    fn claim(&mut self, beat: &Beat, at: At) -> (Claim, Option<std::time::Instant>) {
        hear(&mut self.table.heard_nonces, &beat.sender, beat.nonce);
        let issued = self.challenges.issued_at(&beat.echoes, at.mono);
        let claim = Claim {
            instance: beat.instance,
            serial: beat.serial,
            uptime_ms: beat.uptime_ms,
            echoed: issued.is_some(),
        };
        (claim, issued)
    }

    fn count_refusal(&mut self, r: Refusal) {
        let t = &mut self.table;
        match r {
            Refusal::TimeBack => t.rejected_time_back += 1,
            Refusal::SerialJump => t.rejected_serial_jump += 1,
            Refusal::Unverified => t.rejected_echo += 1,
            Refusal::Retired => t.rejected_instance += 1,
        }
    }

    /// A datagram arrived on network `name`: a message, or why it is none.
    pub fn network_beat(
        &mut self,
        name: &str,
        read: Result<&Beat, String>,
        at: At,
    ) -> Result<Observation, Rejection> {
        if !self.table.network_is_on(name) {
            // Fig 8: a DISABLEd network is not checked; a valid heartbeat on
            // it says only that the peer has it on.
            self.table.ignored_disabled += 1;
            if let Ok(beat) = read {
                self.heard_off(name, beat, at.mono);
            }
            return Ok(Observation::Ignored);
        }
        let rejection = |kind, why| Rejection { kind, why };
        let beat = read.map_err(|why| {
            self.table.rejected_invalid += 1;
            rejection("invalid frame", why)
        })?;
        if let Err(why) = self.approve(beat) {
            self.table.rejected_invalid += 1;
            return Err(rejection("unapproved sender", why));
        }
        let (claim, issued) = self.claim(beat, at);
        let watch = self.networks.entry(name.to_string()).or_default();
        let seen = match watch.observe(&beat.sender, &claim, at.mono) {
            Ok(seen) => seen,
            Err(r) => {
                let why = refusal_text(r, beat);
                if watch.advanced_at.is_none() || !watch.alive(at.mono, self.timeout) {
                    watch.problem = Some(why.clone());
                }
                self.count_refusal(r);
                return Err(rejection(r.kind(), why));
            }
        };
        if seen == Observation::Advanced {
            let offset = issued.map(|i| clock_offset_ms(beat.time_ms, at.wall_ms, i, at.mono).0);
            let n = &mut self.table.network;
            n.count += 1;
            n.last_ms = Some(at.wall_ms);
            n.last_serial = Some(beat.serial);
            if offset.is_some() {
                n.clock_offset_ms = offset;
            }
            self.counted_network(name, beat.serial, at.wall_ms, offset);
            self.accepted(&network_label(name), beat);
        } else {
            self.table.rejected_replayed += 1;
        }
        Ok(seen)
    }

    /// A receiving mirror was read: a message, or why none could be read.
    pub fn mirror_read(&mut self, name: &str, read: Result<&Beat, String>, at: At) -> Observation {
        let approved = read.and_then(|b| self.approve(b).map(|()| b));
        let (seen, issued) = match &approved {
            Ok(beat) => {
                let (claim, issued) = self.claim(beat, at);
                let timeout = self.mirror_timeout;
                let watch = self.devices.entry(name.to_string()).or_default();
                match watch.observe(&beat.sender, &claim, at.mono) {
                    Ok(seen) => {
                        if seen == Observation::Stale && !watch.alive(at.mono, timeout) {
                            watch.problem = Some(format!("stale: the same heartbeat (serial {}) for over {timeout:?}; the mirror may be split or frozen", beat.serial));
                        }
                        (seen, issued)
                    }
                    Err(r) => {
                        // A slot is read again every interval: counted once.
                        let mark = Mark {
                            instance: beat.instance,
                            serial: beat.serial,
                            uptime_ms: beat.uptime_ms,
                        };
                        let first = watch.refused != Some(mark);
                        watch.refused = Some(mark);
                        watch.problem = Some(format!("refused: {}", refusal_text(r, beat)));
                        if first {
                            self.count_refusal(r);
                        }
                        (Observation::Stale, None)
                    }
                }
            }
            Err(why) => {
                self.devices.entry(name.to_string()).or_default().problem = Some(why.clone());
                (Observation::Stale, None)
            }
        };
        if let (Observation::Advanced, Ok(beat)) = (seen, approved) {
            let offset = issued.map(|i| clock_offset_ms(beat.time_ms, at.wall_ms, i, at.mono).0);
            if let Some(d) = self
                .table
                .devices
                .iter_mut()
                .find(|d| d.name == name && d.status != DeviceStatus::Null)
            {
                d.seen.count += 1;
                d.seen.last_ms = Some(at.wall_ms);
                d.seen.last_serial = Some(beat.serial);
                if offset.is_some() {
                    d.seen.clock_offset_ms = offset;
                }
                if d.counter.message(beat.serial) == Some(Change::Good) {
                    self.counter_changes.push(CounterChange {
                        channel: mirror_channel(name),
                        change: Change::Good,
                    });
                }
            }
            self.accepted(&mirror_channel(name), beat);
        }
        seen
    }

    /// Keeps the watermark of an accepted message in the table (persisted
    /// with it) and what it says of its sender's state.
    fn accepted(&mut self, channel: &str, beat: &Beat) {
        let t = &mut self.table;
        let mark = Watermark {
            channel: channel.into(),
            sender: beat.sender.clone(),
            serial: beat.serial,
            time_ms: beat.time_ms,
            instance: beat.instance,
            uptime_ms: beat.uptime_ms,
        };
        match t
            .watermarks
            .iter_mut()
            .find(|w| w.channel == channel && w.sender == beat.sender)
        {
            Some(w) => *w = mark,
            None => t.watermarks.push(mark),
        }
        t.peer_failed_over = beat.failed_over.then(|| beat.sender.clone());
        t.peer_stepped_down = beat.stepped_down;
    }
}
