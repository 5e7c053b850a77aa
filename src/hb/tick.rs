//! The tick: once per interval, send a heartbeat on every channel (Fig 6),
//! read every receiving mirror (Fig 7), evaluate, log what changed, start
//! the failover, run the local checks, save. Beside it, the UDP receiver:
//! a task of its own that takes network heartbeats as they arrive.
//!
//! Slot writes and reads run on tokio's blocking threads (a write on hbfs
//! waits for the storage, in sync mode for the peer site), each within the
//! interval; the tick waits for them, so a hung volume costs one interval
//! and marks its mirror, never the other channels' heartbeats.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbcore::report;

use super::api::Source;
use super::message::{next_serial, Beat, MessageError};
use super::slot::{read_slot, write_slot};
use super::state::Hbd;
use super::table::{now_ms, DeviceStatus, Direction, Enable};
use super::watch::Observation;

impl Hbd {
    /// Fig 6: the next heartbeat, signed.
    pub fn next_frame(&self) -> Result<(u32, Vec<u8>), MessageError> {
        let mut c = self.checker();
        let t = &mut c.table;
        t.serial = next_serial(t.serial);
        let mut beat = Beat {
            serial: t.serial,
            time_ms: now_ms(),
            sender: t.host.clone(),
            group: t.group,
            ack: t.received_control,
            controls: t.outbox.clone(),
        };
        loop {
            match beat.encode(&self.key) {
                Err(MessageError::TooLarge(_)) if !beat.controls.is_empty() => {
                    // Fit what fits; the rest rides later heartbeats.
                    beat.controls.pop();
                }
                encoded => return encoded.map(|frame| (beat.serial, frame)),
            }
        }
    }

    /// Ticks every interval, for ever (the daemon aborts it at shutdown).
    pub async fn tick_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.tick().await;
        }
    }

    async fn tick(self: &Arc<Self>) {
        self.send().await;
        self.receive_mirrors().await;
        let now = Instant::now();
        let (transitions, reason) = {
            let mut c = self.checker();
            let transitions = c.evaluate(now);
            let reason = c.failover_reason();
            if reason.is_some() {
                c.table.failed_over = true;
            }
            (transitions, reason)
        };
        let changed = !transitions.is_empty() || !self.checker().table.outbox.is_empty();
        for t in transitions {
            if t.failed {
                tracing::warn!(channel = %t.channel, "heartbeat channel FAILED: {}", t.why);
                self.event(
                    Source::Local,
                    None,
                    &t.channel,
                    format!("FAILED: {}", t.why),
                );
            } else {
                tracing::info!(channel = %t.channel, "heartbeat channel back to ENABLE: {}", t.why);
                self.event(
                    Source::Local,
                    None,
                    &t.channel,
                    format!("ENABLE again: {}", t.why),
                );
            }
        }
        if let Some(reason) = reason {
            let silent = self.checker().silent_for(now).unwrap_or_default();
            self.save();
            let hbd = Arc::clone(self);
            tokio::spawn(async move { hbd.fail_over(reason, silent).await });
        }
        self.run_checks().await;
        // Counts and last-seen times may lag on disk; changes of substance
        // (transitions, controls, failover) are saved where they happen.
        self.save_if_due(changed);
    }

    /// Fig 6: to the network (unless disabled) and to every usable PVOL.
    async fn send(&self) {
        let (serial, frame) = match self.next_frame() {
            Ok(next) => next,
            Err(e) => return tracing::error!("cannot encode a heartbeat: {}", report::chain(&e)),
        };
        let (network, targets) = {
            let c = self.checker();
            let t = &c.table;
            // Unacknowledged control messages (a procedure change that turns
            // off the last channel, say) still travel every channel until the
            // peer acknowledges them.
            let controls = !t.outbox.is_empty();
            let targets: Vec<(String, PathBuf)> = t
                .devices
                .iter()
                .filter(|d| {
                    d.direction == Direction::Send
                        && d.status != DeviceStatus::Null
                        && (controls || (t.mirrors_wanted && d.wanted))
                })
                .filter_map(|d| d.address.clone().map(|a| (d.name.clone(), a)))
                .collect();
            // FAILED channels are still used, so they can recover.
            (
                controls || (t.network_wanted && t.network_enable != Enable::Disable),
                targets,
            )
        };
        if let (true, Some(udp), Some(net)) = (network, &self.udp, &self.config.network) {
            for peer in &net.peers {
                if let Err(e) = udp.send_to(&frame, peer).await {
                    tracing::debug!(peer = %peer, "network heartbeat not sent: {e}");
                }
            }
        }
        let deadline = self.config.interval();
        for (name, path) in targets {
            let frame = frame.clone();
            let shown = path.display().to_string();
            let written = tokio::time::timeout(deadline, {
                let files = Arc::clone(&self.files);
                tokio::task::spawn_blocking(move || write_slot(&files, &path, &frame))
            })
            .await;
            let result = match written {
                Ok(Ok(Ok(()))) => Ok(serial),
                Ok(Ok(Err(e))) => Err(format!("cannot write {shown}: {e}")),
                Ok(Err(e)) => Err(format!("write of {shown} failed: {e}")),
                Err(_) => Err(format!("write of {shown} took longer than the interval")),
            };
            self.checker().mirror_written(&name, result);
        }
    }

    /// Fig 7: read every receiving mirror in use.
    async fn receive_mirrors(&self) {
        let sources: Vec<(String, PathBuf)> = {
            let c = self.checker();
            let t = &c.table;
            t.devices
                .iter()
                .filter(|d| {
                    d.direction == Direction::Receive
                        && t.mirrors_wanted
                        && d.wanted
                        && d.status != DeviceStatus::Null
                })
                .filter_map(|d| d.address.clone().map(|a| (d.name.clone(), a)))
                .collect()
        };
        let deadline = self.config.interval();
        for (name, path) in sources {
            let shown = path.display().to_string();
            let read = tokio::time::timeout(deadline, {
                let files = Arc::clone(&self.files);
                tokio::task::spawn_blocking(move || read_slot(&files, &path))
            })
            .await;
            let beat = match read {
                Ok(Ok(Ok(buf))) => {
                    Beat::decode(buf.as_slice(), &self.key).map_err(|e| format!("{shown}: {e}"))
                }
                Ok(Ok(Err(e))) => Err(format!("cannot read {shown}: {e}")),
                Ok(Err(e)) => Err(format!("read of {shown} failed: {e}")),
                Err(_) => Err(format!("read of {shown} took longer than the interval")),
            };
            let seen = self.checker().mirror_read(
                &name,
                beat.as_ref().map_err(String::clone),
                Instant::now(),
            );
            if let (Ok(beat), Observation::Advanced) = (&beat, seen) {
                self.absorb(beat).await;
            }
        }
    }

    /// Receives network heartbeats until aborted (nothing to do without a network channel).
    pub async fn receive_network(self: Arc<Self>) {
        let Some(udp) = &self.udp else { return };
        let mut buf = vec![0u8; 65536];
        let mut complained: HashMap<String, Instant> = HashMap::new();
        loop {
            let (n, from) = match udp.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("network heartbeat receive failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let verdict = Beat::decode(&buf[..n], &self.key)
                .map_err(|e| e.to_string())
                .and_then(|beat| {
                    let seen = self.checker().network_beat(&beat, Instant::now())?;
                    Ok((beat, seen))
                });
            match verdict {
                Ok((beat, Observation::Advanced)) => self.absorb(&beat).await,
                Ok(_) => {}
                Err(why) => {
                    // Say it once a minute per sender address, not at every datagram.
                    let key = format!("{from}: {why}");
                    if complained
                        .get(&key)
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                    {
                        tracing::warn!(%from, "invalid network heartbeat ignored: {why}");
                        complained.insert(key, Instant::now());
                    }
                }
            }
        }
    }
}
