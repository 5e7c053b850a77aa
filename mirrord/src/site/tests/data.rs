//! The data path between two sites over a real link: the initial copy,
//! writes in the three modes, pipelined sync writes, copies racing host writes.

use super::*;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_create_copies_the_pvol_then_pairs() {
    let (prod, standby) = two_sites().await;
    let before = pattern(SIZE as usize, 1);
    prod.site
        .host_write("v", 0, &before)
        .await
        .expect("unpaired write");
    prod.site
        .pair_create(&create("p", Kind::Data, Mode::Sync))
        .await
        .expect("pair create");
    let p = prod.wait_state("p", PairState::Pair).await;
    standby.wait_state("p", PairState::Pair).await;
    assert_eq!(
        p.copy.copied_bytes, SIZE,
        "the initial copy moves the whole volume"
    );
    assert_eq!(p.pending_bytes, 0);
    assert_eq!(standby.read("v", 0, SIZE as usize).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_write_is_on_the_svol_when_it_returns() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    for (i, offset) in [0u64, 4096, 5000, SIZE - 100].into_iter().enumerate() {
        let data = pattern(100, i as u8);
        prod.site
            .host_write("v", offset, &data)
            .await
            .expect("write");
        assert_eq!(
            standby.read("v", offset, 100).await,
            data,
            "offset {offset}"
        );
    }
    // Whole blocks: one pooled buffer is the frame and the PVOL's write.
    for (offset, blocks) in [(8192u64, 1), (16384, 2)] {
        let data = pattern(blocks * BLOCK as usize, offset as u8 ^ 0x55);
        prod.site
            .host_write("v", offset, &data)
            .await
            .expect("write");
        for site in [&prod, &standby] {
            assert_eq!(
                site.read("v", offset, data.len()).await,
                data,
                "at {offset}"
            );
        }
    }
    assert_eq!(prod.pair("p").pending_bytes, 0);
    // The SVOL is read-only to hosts while mirrored.
    let e = standby
        .site
        .host_write("v", 0, b"no")
        .await
        .expect_err("SVOL write");
    assert!(matches!(e, SiteError::ReadOnly { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_and_adaptive_writes_ship_and_settle() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::SemiSync).await;
    let first = pattern(3 * BLOCK as usize, 3);
    for (i, block) in first.chunks(BLOCK as usize).enumerate() {
        prod.site
            .host_write("v", i as u64 * BLOCK, block)
            .await
            .expect("write");
    }
    let settled = |p: &PairInfo| p.pending_bytes == 0 && p.queued_bytes == 0;
    let p = prod.wait("p", "zero lag", settled).await;
    assert!(
        p.max_in_flight <= 1,
        "semi-sync keeps one write in flight: {p:?}"
    );
    assert_eq!(standby.read("v", 0, first.len()).await, first);

    prod.site
        .pair_set(&PairSet {
            name: "p".into(),
            mode: Some(Mode::Adaptive),
            options: PairOptions::default(),
        })
        .await
        .expect("pair set");
    assert_eq!(standby.pair("p").mode, Mode::Adaptive, "the peer follows");
    let second = pattern(16 * BLOCK as usize, 4);
    for (i, block) in second.chunks(BLOCK as usize).enumerate() {
        prod.site
            .host_write("v", (8 + i as u64) * BLOCK, block)
            .await
            .expect("write");
    }
    prod.wait("p", "zero lag", settled).await;
    assert_eq!(standby.read("v", 8 * BLOCK, second.len()).await, second);
    assert_eq!(prod.read("v", 8 * BLOCK, second.len()).await, second);
    assert_eq!(prod.pair("p").state, PairState::Pair);
}

/// Sync writes of one volume are pipelined: while the SVOL holds the first
/// (its volume's order lock is taken here, so no ack can come back), the
/// other writers' writes still go on the wire; all land alike at both sites
/// and leave the bitmap clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sync_writes_of_one_volume_are_in_flight_together() {
    const WRITERS: u64 = 8;
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let svol = standby.site.registry.volume("v").expect("the SVOL");
    let held = svol.order.lock().await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|b| {
            let site = Arc::clone(&prod.site);
            tokio::spawn(async move {
                let data = pattern(BLOCK as usize, 40 + b as u8);
                site.host_write("v", b * BLOCK, &data).await
            })
        })
        .collect();
    // With the order lock held over the ack wait, the first write would be
    // alone on the wire until it timed out and suspended the pair.
    let p = prod
        .wait("p", "a second write in flight", |p| {
            p.max_in_flight > 1 || p.state != PairState::Pair
        })
        .await;
    drop(held);
    for w in writers {
        w.await.expect("writer task").expect("sync write");
    }
    assert!(p.max_in_flight > 1, "writes were pipelined: {p:?}");
    let p = prod.pair("p");
    assert_eq!(p.state, PairState::Pair, "{p:?}");
    assert_eq!(p.pending_bytes, 0, "every ack cleared its block: {p:?}");
    let len = (WRITERS * BLOCK) as usize;
    let written = prod.read("v", 0, len).await;
    for b in 0..WRITERS {
        let at = (b * BLOCK) as usize..((b + 1) * BLOCK) as usize;
        assert_eq!(
            written[at],
            pattern(BLOCK as usize, 40 + b as u8),
            "block {b}"
        );
    }
    assert_eq!(standby.read("v", 0, len).await, written, "both sites alike");
}

/// A copy reads its frames ahead of the wire, outside the order lock: a
/// host write to a frame's blocks after the read (already mirrored and
/// acknowledged) must not be overwritten at the SVOL by the frame's older
/// data; the frame is read again when it goes on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_frame_read_before_a_host_write_ships_the_newer_data() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let block = 5u64;
    let w = prod.site.registry.work("p").expect("work");
    let mut pacer = crate::rate::Pacer::default();
    let frame = prod
        .site
        .pipeline()
        .read_frame("p", &w, false, false, block, block + 1, &mut pacer)
        .await
        .expect("read a frame");
    let newer = pattern(BLOCK as usize, 77);
    prod.site
        .host_write("v", block * BLOCK, &newer)
        .await
        .expect("sync write");
    assert_eq!(
        standby.read("v", block * BLOCK, BLOCK as usize).await,
        newer
    );
    let shipped = prod
        .site
        .pipeline()
        .send_frame("p", &w, false, frame)
        .await
        .expect("send the frame");
    prod.site
        .pipeline()
        .acked(&w, shipped, Duration::from_secs(5))
        .await
        .expect("ack");
    assert!(
        standby.read("v", block * BLOCK, BLOCK as usize).await == newer,
        "the SVOL keeps the acknowledged write, not the frame's older data"
    );
    assert_eq!(prod.pair("p").pending_bytes, 0);
}

/// During a copy, a host write into part of a block the copy has yet to
/// list (its first sweep lists 64 dirty runs at a time) is acknowledged
/// without clearing the block: the copy still ships the whole of it, and
/// both sites end alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_write_during_a_copy_leaves_the_block_to_the_copy() {
    const BLOCKS: u64 = 160;
    let (prod, standby) = two_sites().await;
    for site in [&prod, &standby] {
        site.site
            .volume_create(&VolumeCreate {
                name: "w".into(),
                size: Some(BLOCKS * BLOCK),
                path: None,
                sparse: false,
            })
            .expect("volume create");
    }
    // 65 dirty runs before block `late`, copied at 64 blocks a second.
    let late = 140u64;
    for b in (0..=128).step_by(2).chain([late]) {
        prod.site
            .host_write("w", b * BLOCK, &pattern(BLOCK as usize, b as u8))
            .await
            .expect("unpaired write");
    }
    let mut request = create("q", Kind::Data, Mode::Sync);
    request.pvol = "w".into();
    prod.site.pair_create(&request).await.expect("pair create");
    prod.wait_state("q", PairState::Pair).await;
    prod.site
        .pair_set(&PairSet {
            name: "q".into(),
            mode: None,
            options: PairOptions {
                c_max_rate: Some(64 * BLOCK),
                c_min_rate: Some(0),
                ..PairOptions::default()
            },
        })
        .await
        .expect("pair set");
    // Dirty blocks the resync copies (not all: the initial copy would).
    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("q", PairState::Psue).await;
    for b in (0..=128).step_by(2).chain([late]) {
        prod.site
            .host_write("w", b * BLOCK, &pattern(BLOCK as usize, 200 - b as u8))
            .await
            .expect("write while suspended");
    }
    prod.wait_link(true).await;
    prod.wait("q", "re-attach", |p| p.link_up).await;
    prod.site.pair_resync("q", false).await.expect("resync");
    prod.site
        .host_write("w", late * BLOCK + 1000, &pattern(100, 99))
        .await
        .expect("a partial write while copying");
    let p = prod.pair("q");
    assert!(
        p.state == PairState::Copy && p.copy.copied_bytes < 32 * BLOCK,
        "the copy had not listed block {late} yet (the case under test): {p:?}"
    );
    prod.wait_state("q", PairState::Pair).await;
    standby.wait_state("q", PairState::Pair).await;
    let at = late * BLOCK;
    assert!(
        standby.read("w", at, BLOCK as usize).await == prod.read("w", at, BLOCK as usize).await,
        "block {late} is the PVOL's whole block at the SVOL"
    );
}
