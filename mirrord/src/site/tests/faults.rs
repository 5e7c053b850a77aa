//! Faults and people at two sites over a real link: lost links, stopped
//! peers, resyncs held by host I/O, illegal transitions, refusals,
//! takeover and split brain, online verify.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_suspends_and_resync_copies_exactly_the_dirty_blocks() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    // Drop the session: both sides suspend; the dialer reconnects, and a data
    // pair (no auto-resync) waits for a person.
    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("p", PairState::Psue).await;
    standby.wait_state("p", PairState::Psue).await;
    let data = pattern(100, 5);
    prod.site
        .host_write("v", 10 * BLOCK + 7, &data)
        .await
        .expect("write while suspended");
    assert_eq!(
        prod.pair("p").pending_bytes,
        BLOCK,
        "the written block is tracked"
    );
    prod.site
        .host_write("v", 20 * BLOCK, &pattern(2 * BLOCK as usize, 6))
        .await
        .expect("write");
    assert_eq!(prod.pair("p").pending_bytes, 3 * BLOCK);
    assert_ne!(standby.read("v", 10 * BLOCK + 7, 100).await, data);

    prod.wait_link(true).await;
    prod.wait("p", "re-attach", |p| p.link_up).await;
    let said = prod.site.pair_resync("p", false).await.expect("resync");
    assert!(said.contains("COPY"), "{said}");
    let p = prod.wait_state("p", PairState::Pair).await;
    standby.wait_state("p", PairState::Pair).await;
    assert_eq!(
        p.copy.copied_bytes,
        3 * BLOCK,
        "exactly the dirty blocks move"
    );
    assert_eq!(p.pending_bytes, 0);
    assert_eq!(standby.read("v", 10 * BLOCK + 7, 100).await, data);
}

/// The copy rate controller: `pair set` takes its knobs (both sites show
/// them); a resync beside host reads of the data pair's volume is held by
/// host I/O (first at its floor: the reads' idle latency is not known
/// yet), says so in `pair status` (`held_by`), and still copies exactly the
/// dirty blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_held_by_host_io_copies_exactly_the_dirty_blocks() {
    const FLOOR: u64 = 16 << 10;
    const CEILING: u64 = 1 << 20;
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let set = |c_max_rate, c_min_rate| PairSet {
        name: "p".into(),
        mode: None,
        options: PairOptions {
            c_max_rate,
            c_min_rate,
            ..PairOptions::default()
        },
    };
    let e = prod
        .site
        .pair_set(&set(Some(100), None))
        .await
        .expect_err("a ceiling below a block per second");
    assert!(e.to_string().contains("c-max-rate"), "{e}");
    let said = prod
        .site
        .pair_set(&set(Some(CEILING), Some(FLOOR)))
        .await
        .expect("pair set");
    assert!(said.contains("ceiling 1MiB/s"), "{said}");
    for site in [&prod, &standby] {
        let p = site.pair("p");
        assert_eq!((p.c_max_rate, p.c_min_rate), (CEILING, FLOOR), "{p:?}");
    }

    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("p", PairState::Psue).await;
    // Every block: 256 KiB, a quarter of a second at the ceiling.
    let dirty: Vec<u64> = (0..SIZE / BLOCK).collect();
    for &b in &dirty {
        prod.site
            .host_write("v", b * BLOCK, &pattern(BLOCK as usize, b as u8))
            .await
            .expect("write while suspended");
    }
    prod.wait_link(true).await;
    prod.wait("p", "re-attach", |p| p.link_up).await;

    // Host reads of the data pair's volume go on at prod while the resync runs.
    let reading = CancellationToken::new();
    let reader = tokio::spawn({
        let (site, reading) = (Arc::clone(&prod.site), reading.clone());
        async move {
            while !reading.is_cancelled() {
                let _ = site.host_read("v", 0, BLOCK as usize).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    prod.site.pair_resync("p", false).await.expect("resync");
    let held = prod
        .wait("p", "a copy held by host I/O", |p| {
            p.copy.held_by == HeldBy::HostIo || p.state == PairState::Pair
        })
        .await;
    assert!(
        held.copy.running
            && held.copy.held_by_host_io
            && (FLOOR..CEILING).contains(&held.copy.limit_bytes_per_s),
        "the copy showed the controller's hold while hosts read: {held:?}"
    );
    let p = prod.wait_state("p", PairState::Pair).await;
    reading.cancel();
    reader.await.expect("reader");
    assert_eq!(
        p.copy.copied_bytes,
        dirty.len() as u64 * BLOCK,
        "exactly the dirty blocks move"
    );
    assert!(
        !p.copy.running && p.copy.limit_bytes_per_s == 0 && p.copy.held_by == HeldBy::None,
        "{p:?}"
    );
    for b in dirty {
        assert_eq!(
            standby.read("v", b * BLOCK, BLOCK as usize).await,
            pattern(BLOCK as usize, b as u8),
            "block {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_peer_suspends_the_pair_and_counts_the_write() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    standby.stop.cancel();
    prod.wait_state("p", PairState::Psue).await;
    prod.site
        .host_write("v", 0, b"after the peer stopped")
        .await
        .expect("write");
    assert_eq!(prod.pair("p").pending_bytes, BLOCK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_transition_is_a_typed_error() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    standby.site.pair_takeover("p").await.expect("takeover");
    assert_eq!(standby.pair("p").state, PairState::Ssws);
    prod.wait_state("p", PairState::Psue).await;

    // Asked over the link: SSWS cannot go to PAIR, and the answer says so by kind.
    let asked = prod
        .link
        .peer("standby", Lane::Bulk)
        .expect("peer")
        .call(
            PeerRequest::Update {
                pair: "p".into(),
                state: Some(PairState::Pair),
                settings: None,
            },
            Duration::from_secs(5),
        )
        .await;
    match asked {
        Err(LinkError::Refused(site, PeerError::WrongState { pair, state, .. })) => {
            assert_eq!(
                (site.as_str(), pair.as_str(), state),
                ("standby", "p", PairState::Ssws)
            );
        }
        other => panic!("expected a WrongState refusal, got {other:?}"),
    }
    assert_eq!(
        standby.pair("p").state,
        PairState::Ssws,
        "the refused change left the pair"
    );

    // A pair the peer does not have is a kind of its own.
    let asked = prod
        .link
        .peer("standby", Lane::Bulk)
        .expect("peer")
        .call(
            PeerRequest::TakeBitmap {
                pair: "nosuch".into(),
            },
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(asked, Err(LinkError::Refused(_, PeerError::NoSuchPair { ref pair })) if pair == "nosuch"),
        "{asked:?}"
    );

    // Locally: the registry refuses it too, naming the pair and both states.
    let e = standby
        .site
        .registry
        .change_state("p", Event::PeerSet(PairState::Pair), "test")
        .expect_err("SSWS -> PAIR");
    assert!(
        matches!(e, SiteError::IllegalTransition { from: PairState::Ssws, to: PairState::Pair, ref pair } if pair == "p"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("'p'") && text.contains("SSWS") && text.contains("PAIR"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_from_the_peer_reads_as_one_chain() {
    let (prod, standby) = two_sites().await;
    standby.site.volume_delete("v").expect("volume delete");
    let e = prod
        .site
        .pair_create(&create("p", Kind::Data, Mode::Sync))
        .await
        .expect_err("no SVOL");
    assert!(
        matches!(
            e,
            SiteError::Link(LinkError::Refused(_, PeerError::Refused { .. }))
        ),
        "{e:?}"
    );
    assert_eq!(
        hbcore::report::chain(&e),
        format!("site 'standby' refused: no volume 'v' at site 'standby'; create it there first with `hbctl volume create v --size {SIZE}`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_both_sites_after_a_takeover_are_split_brain_until_a_person_chooses() {
    use hbcore::control::{PairResync, VerdictKind};
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let joined = prod.pair("p").generation;
    assert_eq!(standby.pair("p").generation.current, joined.current);
    // Production writes while the link is down, before it can learn of the takeover.
    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("p", PairState::Psue).await;
    prod.site
        .host_write("v", 8 * BLOCK, b"prod")
        .await
        .expect("write while suspended");
    standby.site.pair_takeover("p").await.expect("takeover");
    // Told by the takeover: outdated, and no write is taken from now on.
    prod.wait("p", "outdated", |p| p.outdated).await;
    let e = prod
        .site
        .host_write("v", 9 * BLOCK, b"late")
        .await
        .expect_err("outdated");
    assert!(matches!(e, SiteError::Outdated { .. }), "{e}");
    let taken = standby.pair("p").generation;
    assert_ne!(
        taken.current, joined.current,
        "a takeover starts a generation"
    );
    assert_eq!(taken.bitmap, joined.current);
    standby
        .site
        .host_write("v", 0, b"standby")
        .await
        .expect("write");
    assert_eq!(prod.pair("p").generation.bitmap, joined.current);
    let e = prod.site.pair_resync("p", false).await.expect_err("plain");
    assert!(
        matches!(e, SiteError::Diverged { .. }) && e.to_string().contains("split brain"),
        "{e}"
    );
    for site in [&prod, &standby] {
        let v = site.pair("p").verdict.expect("verdict");
        assert_eq!(v.kind, VerdictKind::SplitBrain);
        assert_eq!((v.local_changed_blocks, v.peer_changed_blocks), (1, 1));
    }
    assert_eq!(standby.pair("p").state, PairState::Ssws, "nothing moved");
    prod.site
        .resync_as_asked(&PairResync {
            name: "p".into(),
            reverse: false,
            discard_local: false,
            discard_remote: true,
        })
        .await
        .expect("keep prod's data");
    assert!(!prod.pair("p").outdated, "resolved by a person");
    prod.wait_state("p", PairState::Pair).await;
    standby.wait_state("p", PairState::Pair).await;
    assert_eq!(
        standby.read("v", 0, SIZE as usize).await,
        prod.read("v", 0, SIZE as usize).await
    );
    assert_eq!(
        prod.pair("p").verdict.map(|v| v.kind),
        Some(VerdictKind::InSync)
    );
    assert_eq!(
        standby.pair("p").generation.current,
        prod.pair("p").generation.current
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_marks_what_changed_behind_the_svol_and_checksum_resync_skips_the_rest() {
    use hbcore::control::PairVerify;
    use std::os::unix::fs::FileExt;
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let path = standby.site.volume_list()[0].path.clone();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.write_all_at(b"behind mirrord", 5 * BLOCK + 9))
        .expect("write the backing file");
    let verify = PairVerify {
        name: "p".into(),
        rate: None,
    };
    let e = standby.site.pair_verify(&verify).expect_err("at the SVOL");
    assert!(e.to_string().contains("at the PVOL's site 'prod'"), "{e}");
    prod.site.pair_verify(&verify).expect("verify");
    let p = prod.wait("p", "verify done", |p| !p.verify.running).await;
    assert_eq!(p.verify.differing_blocks, 1);
    assert_eq!(p.verify.first_differing_offsets, vec![5 * BLOCK]);
    assert_eq!(p.verify.checked_blocks, SIZE / BLOCK);
    assert_eq!(p.pending_bytes, BLOCK);
    // A host write into part of the block leaves it dirty: the rest still differs.
    prod.site
        .host_write("v", 5 * BLOCK, b"x")
        .await
        .expect("write");
    assert_eq!(prod.pair("p").pending_bytes, BLOCK);
    prod.site
        .pair_set(&PairSet {
            name: "p".into(),
            mode: None,
            options: PairOptions {
                checksum_resync: Some(true),
                ..PairOptions::default()
            },
        })
        .await
        .expect("checksum resync on");
    assert!(standby.pair("p").checksum_resync, "the peer follows");
    // The split ships what is pending first (the whole block: repaired), then
    // ten blocks are rewritten with what they hold and one really changes.
    prod.site.pair_split("p", false).await.expect("split");
    assert_eq!(
        standby.read("v", 5 * BLOCK, BLOCK as usize).await,
        prod.read("v", 5 * BLOCK, BLOCK as usize).await
    );
    prod.site
        .host_write("v", 30 * BLOCK, b"changed")
        .await
        .expect("write");
    for b in 10..20 {
        let same = prod.read("v", b * BLOCK, BLOCK as usize).await;
        prod.site
            .host_write("v", b * BLOCK, &same)
            .await
            .expect("write");
    }
    assert_eq!(prod.pair("p").pending_bytes, 11 * BLOCK);
    prod.site.pair_resync("p", false).await.expect("resync");
    let p = prod.wait_state("p", PairState::Pair).await;
    assert_eq!(p.copy.skipped_identical_blocks, 10);
    assert_eq!(p.copy.copied_bytes, BLOCK);
    assert_eq!(
        standby.read("v", 0, SIZE as usize).await,
        prod.read("v", 0, SIZE as usize).await
    );
}
