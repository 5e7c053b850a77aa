//! A copy paced against the host I/O of its disk: host reads and writes of
//! data pairs' volumes are timed per device (heartbeat pairs' volumes, where
//! hbd keeps its slots, and unpaired volumes are left out), and a copy asks
//! its rate controller ([`crate::rate`]) for the limit of each frame.
//!
//! [`Pacing`] owns the timings; whether a volume is a data pair's is the
//! registry's answer, passed in. Host I/O is timed on whichever thread runs
//! it (FUSE workers, tokio tasks); the limit is asked by the copy's reader
//! task.

use hbcore::vocab::PairSettings;

use super::registry::Work;
use crate::rate::{HostIo, HostOp, Limit, Timed};
use crate::volume::Volume;

/// The pacing of one site's copies: host I/O per disk, and each copy's limit.
#[derive(Default)]
pub(super) struct Pacing {
    /// Host I/O on data volumes, per disk (what the copy rate controller steers by).
    host_io: HostIo,
}

impl Pacing {
    /// Times a host I/O of `bytes` on volume `v` until the guard drops, if
    /// it competes with copies: I/O on a data pair's volume
    /// (`on_data_pair`, the registry's answer).
    pub(super) fn time_host_io(
        &self,
        v: &Volume,
        on_data_pair: bool,
        op: HostOp,
        bytes: u64,
    ) -> Timed {
        if on_data_pair {
            self.host_io.time(v.device, op, bytes)
        } else {
            Timed::untimed()
        }
    }

    /// The limit of a copy's next frame, under the pair's `settings`.
    pub(super) fn copy_limit(&self, w: &Work, settings: &PairSettings) -> Limit {
        w.rt.steer(settings, &self.host_io.device(w.volume.device))
    }
}

#[cfg(test)]
mod tests {
    use hbcore::control::{PairCreate, PairOptions, VolumeCreate};
    use hbcore::vocab::{Kind, Mode, PairState};

    use super::super::tests::{two_sites, TestSite, SIZE};
    use crate::rate::Latencies;

    /// Pairs volume `volume` of both sites as `volume`, of `kind`.
    async fn pair(prod: &TestSite, standby: &TestSite, volume: &str, kind: Kind) {
        prod.site
            .pair_create(&PairCreate {
                name: volume.into(),
                pvol: volume.into(),
                peer: "standby".into(),
                svol: None,
                kind,
                mode: Mode::Sync,
                options: PairOptions::default(),
            })
            .await
            .expect("pair create");
        prod.wait_state(volume, PairState::Pair).await;
        standby.wait_state(volume, PairState::Pair).await;
    }

    /// Issue 25: hbd's heartbeat I/O never holds a copy back. Host I/O on a
    /// heartbeat pair's volume, or on a volume in no pair, is not timed for
    /// the controller; on a data pair's it is, on the volume's device.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_host_io_on_data_pairs_is_timed_for_the_copy_controller() {
        let (prod, standby) = two_sites().await;
        for site in [&prod, &standby] {
            for name in ["d", "solo"] {
                site.site
                    .volume_create(&VolumeCreate {
                        name: name.into(),
                        size: Some(SIZE),
                        path: None,
                        sparse: false,
                    })
                    .expect("volume create");
            }
        }
        pair(&prod, &standby, "v", Kind::Heartbeat).await;
        pair(&prod, &standby, "d", Kind::Data).await;
        let site = &prod.site;
        let device = site.registry.volume("v").expect("v").device;
        assert_eq!(site.registry.volume("d").expect("d").device, device);
        let timed = || site.pacing.host_io.device(device).totals();
        let block = vec![7u8; 4096];
        for volume in ["v", "solo"] {
            site.host_write(volume, 0, &block).await.expect("write");
            site.host_read(volume, 0, 4096).await.expect("read");
        }
        assert_eq!(timed(), Default::default(), "heartbeat and unpaired I/O");
        assert!(!site
            .pacing
            .host_io
            .device(device)
            .within(crate::rate::QUIET));
        site.host_write("d", 0, &block).await.expect("write");
        site.host_write("d", 4096, &block).await.expect("write");
        site.host_read("d", 0, 4096).await.expect("read");
        let (writes, reads) = timed();
        assert_eq!((writes.count, reads.count), (2, 1));
        assert!(writes.since(&Latencies::default()).total_ns > 0);
        assert!(site
            .pacing
            .host_io
            .device(device)
            .within(crate::rate::QUIET));
    }
}
