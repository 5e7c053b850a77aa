//! The work that moves data in the background: the copy engine (initial
//! copy, resync: the dirty blocks, read back from the PVOL, until clean, then
//! PAIR), the adaptive shipper (queued writes, or dirty blocks after an
//! overflow), and the bitmap flusher.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hbcore::link::PeerRequest;
use hbcore::report::chain;
use hbcore::vocab::{Mode, PairState, Role};

use super::ship::SHIP_WINDOW;
use super::{Site, SiteError};
use crate::bitmap::BLOCK;
use crate::pair::machine::Event;
use crate::pair::{Flight, PairRt, Queued};

/// Extents of the bitmap idle this long are rewritten exactly on disk.
const BITMAP_IDLE: Duration = Duration::from_secs(5);

impl Site {
    /// Starts the background work: bitmap flushing and the adaptive shippers.
    pub fn start(self: &Arc<Self>) {
        let names = self.registry.pair_names();
        for name in names {
            self.ensure_shipper(&name);
        }
        let site = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = site.stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let rts = site.registry.pair_runtimes();
                for rt in rts {
                    if let Err(e) = rt.dirty().flush_idle(BITMAP_IDLE) {
                        tracing::error!("{}", chain(&e));
                    }
                }
            }
        });
    }

    /// Starts the copy task of a PVOL pair, unless one runs.
    pub(super) fn start_copy(self: &Arc<Self>, name: &str) {
        let Ok(w) = self.registry.work(name) else {
            return;
        };
        if w.meta.role != Role::Pvol || !w.rt.begin_copy() {
            return;
        }
        let site = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            // A copy that reached PAIR ended itself before the state changed.
            match site.copy(&name).await {
                Ok(bytes) => {
                    tracing::info!(pair = %name, bytes, "copy complete: pair in sync (PAIR)")
                }
                Err(e) => {
                    if let Ok(w) = site.registry.work(&name) {
                        w.rt.end_copy();
                    }
                    site.registry
                        .suspend(&name, &format!("copy stopped: {}", chain(&e)));
                }
            }
        });
    }

    /// Copies the dirty blocks to the SVOL, then sets both sides `PAIR`.
    async fn copy(self: &Arc<Self>, name: &str) -> Result<u64, SiteError> {
        let w = self.registry.work(name)?;
        let link = self.wire.link_of(&w.meta)?;
        let timeout = self.wire.timeout();
        self.registry
            .change_state(name, Event::CopyStarted, "copy started (COPY)")?;
        link.call(
            PeerRequest::Update {
                pair: name.into(),
                state: Some(PairState::Copy),
                settings: Some(w.meta.settings),
            },
            timeout,
        )
        .await?;
        let mut total = 0;
        if w.meta.integrity.checksum_resync {
            // Dirty blocks the SVOL already holds are not sent.
            self.digests().skip_identical(name, &w).await?;
        }
        loop {
            w.rt.copy_remaining(w.rt.dirty().dirty_blocks() * BLOCK);
            total += self.pipeline().ship_dirty(name, &w, false, true).await?;
            // Clean under the order lock: no host write slips between the check and PAIR.
            let _order = w.volume.order.lock().await;
            // Sync writes wait for their acks outside the lock: once those on
            // the wire settle, every bit left is one the copy must ship.
            w.rt.drained().await;
            if w.rt.dirty().dirty_blocks() == 0 {
                // The bits the copy cleared are cleared on disk too.
                w.rt.dirty().write_all()?;
                // Both sites hold the PVOL's generation now.
                self.join(name).await?;
                link.call(
                    PeerRequest::Update {
                        pair: name.into(),
                        state: Some(PairState::Pair),
                        settings: None,
                    },
                    timeout,
                )
                .await?;
                // Status never shows PAIR with a copy still running.
                w.rt.end_copy();
                self.registry
                    .change_state(name, Event::CopyDone, "copy done (PAIR)")?;
                w.rt.queue().overflowed = false;
                return Ok(total);
            }
        }
    }

    /// Starts the adaptive shipper of a PVOL pair, if it does not run.
    pub(super) fn ensure_shipper(self: &Arc<Self>, name: &str) {
        let Ok(w) = self.registry.work(name) else {
            return;
        };
        if w.meta.role != Role::Pvol
            || w.meta.settings.mode != Mode::Adaptive
            || w.rt.shipper.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let site = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            site.shipper(&name, &w.rt).await;
            w.rt.shipper.store(false, Ordering::SeqCst);
        });
    }

    /// Adaptive mode: ships queued writes in order; after an overflow, ships
    /// dirty blocks read back from the PVOL until the bitmap is clean.
    async fn shipper(self: &Arc<Self>, name: &str, rt: &Arc<PairRt>) {
        let timeout = self.wire.timeout();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = rt.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let Ok(w) = self.registry.work(name) else {
                return;
            };
            if !Arc::ptr_eq(&w.rt, rt)
                || w.meta.role != Role::Pvol
                || w.meta.settings.mode != Mode::Adaptive
            {
                return;
            }
            if w.meta.state != PairState::Pair {
                continue;
            }
            let result: Result<(), SiteError> = async {
                let mut window: VecDeque<(Flight, Queued)> = VecDeque::new();
                loop {
                    let next = {
                        let mut q = rt.queue();
                        let e = q.entries.pop_front();
                        if let Some(e) = &e {
                            q.bytes -= e.data.len() as u64;
                        }
                        e
                    };
                    let Some(entry) = next else { break };
                    let pending = self
                        .wire
                        .ship_host_write(&w.meta, rt, name, entry.offset, entry.data.clone())
                        .await?;
                    window.push_back((pending, entry));
                    if window.len() >= SHIP_WINDOW {
                        if let Some((p, e)) = window.pop_front() {
                            rt.settle(p, timeout).await?;
                            rt.dirty().acked_write(e.offset, e.data.len() as u64, e.seq);
                        }
                    }
                }
                while let Some((p, e)) = window.pop_front() {
                    rt.settle(p, timeout).await?;
                    rt.dirty().acked_write(e.offset, e.data.len() as u64, e.seq);
                }
                if rt.queue().overflowed {
                    self.pipeline().ship_dirty(name, &w, false, false).await?;
                    let _order = w.volume.order.lock().await;
                    if rt.dirty().dirty_blocks() == 0 {
                        let mut q = rt.queue();
                        if q.entries.is_empty() {
                            q.overflowed = false;
                        }
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                rt.queue().clear();
                self.registry
                    .suspend(name, &format!("adaptive copy stopped: {}", chain(&e)));
            }
        }
    }
}
