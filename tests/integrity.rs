//! Mirror integrity with two real sites: generations catch every way the
//! copies can diverge behind the bitmaps (a restored meta.json, both sides
//! written while split, a pair deleted and created anew at one site, a
//! takeover while production kept writing), and nothing is overwritten
//! without a person's choice or the pair's policy; online verify finds a
//! block changed behind mirrord's back; checksum resync sends only what
//! differs. Needs root and /dev/fuse.

mod common;

use std::time::Duration;

use common::{backing_file, pattern, read_all, wait_for, write_at, Options, TwoSites};
use serde_json::json;

const BLOCK: u64 = 4096;

fn with_proxy(test: &str) -> Option<TwoSites> {
    TwoSites::start_with(
        test,
        Options {
            proxy: true,
            ..Options::default()
        },
    )
}

/// Cuts the link and waits until both sites suspended `pairs`.
fn cut(sites: &TwoSites, pairs: &[&str]) {
    sites.proxy().cut();
    for pair in pairs {
        sites.prod.wait_state(pair, "PSUE");
        sites.standby.wait_state(pair, "PSUE");
    }
}

/// `len` bytes at `offset` of `path`.
fn read_at(path: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
    read_all(path)[offset as usize..offset as usize + len].to_vec()
}

#[test]
fn a_meta_json_restored_from_an_old_copy_waits_for_a_full_copy() {
    let Some(mut sites) =
        TwoSites::start("a_meta_json_restored_from_an_old_copy_waits_for_a_full_copy")
    else {
        return;
    };
    sites.pair("d", "1MiB", &["--auto-resync", "on"]);
    let meta = sites.standby.dir.join("data").join("meta.json");
    let old = std::fs::read(&meta).expect("standby meta.json");
    // A split, a write and a resync: both sites move to a new generation.
    sites.prod.ok(&["pair", "split", "d"]);
    write_at(&sites.prod.file("d"), 0, b"after the backup of meta.json");
    sites.prod.ok(&["pair", "resync", "d"]);
    sites.prod.wait_state("d", "PAIR");
    sites.standby.wait_state("d", "PAIR");
    assert_eq!(sites.prod.pair_at("d", "/verdict/kind"), "in-sync");
    let generation = sites.prod.pair_at("d", "/generation/current");
    assert_eq!(
        sites.standby.pair_at("d", "/generation/current"),
        generation
    );

    // The standby's meta.json comes back from the old copy.
    sites.standby.stop();
    std::fs::write(&meta, &old).expect("restore meta.json");
    sites.standby.start();
    sites.prod.wait_log("by more than its bitmap covers");
    sites
        .prod
        .wait_field("d", "/verdict/full_copy", json!(true));
    assert_eq!(sites.prod.pair_at("d", "/verdict/kind"), "ahead");
    assert_eq!(sites.prod.pair_at("d", "/verdict/ahead"), "prod");
    assert_eq!(sites.standby.pair_at("d", "/verdict/full_copy"), true);
    // Auto-resync is on, yet nothing is copied by itself.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sites.prod.pair("d").expect("pair")["state"], "PSUE");
    // A person asks: the whole volume is copied.
    let out = sites.prod.ok(&["pair", "resync", "d"]);
    assert!(out.contains("1MiB to copy"), "{out}");
    sites.prod.wait_state("d", "PAIR");
    sites.standby.wait_state("d", "PAIR");
    assert_eq!(sites.prod.pair_u64("d", "copy.total_bytes"), 1 << 20);
    assert!(sites.identical("d"));
    assert_eq!(sites.prod.pair_at("d", "/verdict/kind"), "in-sync");
}

#[test]
fn both_sides_written_while_split_is_split_brain_and_a_person_chooses() {
    let Some(sites) =
        with_proxy("both_sides_written_while_split_is_split_brain_and_a_person_chooses")
    else {
        return;
    };
    sites.pair("db", "1MiB", &["--auto-resync", "on"]);
    write_at(&sites.prod.file("db"), 0, &pattern(64 << 10, 1));
    sites.prod.ok(&["pair", "split", "db"]);
    sites.standby.wait_state("db", "PSUS");
    write_at(&sites.prod.file("db"), 0, b"prod wrote while split");
    write_at(
        &sites.standby.file("db"),
        8 * BLOCK,
        b"standby wrote while split",
    );
    // The link blinks: the generations are compared as it returns.
    cut(&sites, &[]);
    sites.proxy().restore();
    sites
        .prod
        .wait_log("split brain: both sites wrote since their common generation");
    for site in [&sites.prod, &sites.standby] {
        site.wait_field("db", "/verdict/kind", json!("split-brain"));
        assert_eq!(site.pair_at("db", "/verdict/local_changed_blocks"), 1);
        assert_eq!(site.pair_at("db", "/verdict/peer_changed_blocks"), 1);
    }
    let status = sites.prod.ok(&["pair", "status", "db"]);
    assert!(
        status.contains("split-brain") && status.contains("--discard-local"),
        "{status}"
    );
    // Nothing moved by itself: each side still has its own write.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        read_at(&sites.prod.file("db"), 0, 22),
        b"prod wrote while split"
    );
    assert_eq!(
        read_at(&sites.standby.file("db"), 8 * BLOCK, 25),
        b"standby wrote while split"
    );
    // A person keeps the standby's data, at the production site.
    let out = sites.prod.ok(&["pair", "resync", "db", "--discard-local"]);
    assert!(out.contains("became the PVOL"), "{out}");
    sites.standby.wait_state("db", "PAIR");
    sites.prod.wait_state("db", "PAIR");
    assert_eq!(sites.standby.pair("db").expect("pair")["role"], "pvol");
    assert!(sites.identical("db"));
    let data = read_all(&sites.prod.file("db"));
    assert_eq!(
        &data[8 * BLOCK as usize..][..25],
        b"standby wrote while split"
    );
    assert_eq!(
        &data[..BLOCK as usize],
        &pattern(BLOCK as usize, 1)[..],
        "prod's write is discarded"
    );
    assert_eq!(
        sites.standby.pair_u64("db", "copy.copied_bytes"),
        2 * BLOCK,
        "only the blocks changed on either side move"
    );
}

#[test]
fn a_pair_deleted_and_created_anew_at_one_site_is_refused_as_unrelated() {
    let Some(sites) =
        with_proxy("a_pair_deleted_and_created_anew_at_one_site_is_refused_as_unrelated")
    else {
        return;
    };
    sites.pair("p", "1MiB", &[]);
    cut(&sites, &["p"]);
    // The standby takes over and writes; production dissolves its half only.
    sites.standby.ok(&["pair", "takeover", "p"]);
    write_at(&sites.standby.file("p"), 0, b"the standby's own data");
    sites.prod.ok(&["pair", "delete", "p", "--force"]);
    let ups = sites.prod.log_text().matches("remote link up").count();
    sites.proxy().restore();
    // Both lanes back (the dialer may be in its backoff for a while).
    wait_for("both lanes back", || {
        sites.prod.log_text().matches("remote link up").count() >= ups + 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let e = sites
        .prod
        .fails(&["pair", "create", "p", "--pvol", "p", "--peer", "standby"]);
    assert!(
        e.contains("was not created")
            && e.contains("shares no generation")
            && e.contains("hbctl pair delete p --force"),
        "{e}"
    );
    assert!(sites.prod.pair("p").is_none(), "no half-created pair");
    let standby = sites.standby.pair("p").expect("the standby keeps its half");
    assert_eq!(standby["state"], "SSWS");
    assert_eq!(standby["verdict"]["kind"], "unrelated");
    assert_eq!(
        read_at(&sites.standby.file("p"), 0, 22),
        b"the standby's own data"
    );
    // The way out: dissolve the standby's half, then create anew (overwriting it).
    sites.standby.ok(&["pair", "delete", "p", "--force"]);
    sites
        .prod
        .ok(&["pair", "create", "p", "--pvol", "p", "--peer", "standby"]);
    sites.prod.wait_state("p", "PAIR");
    assert!(sites.identical("p"));
}

#[test]
fn a_takeover_while_production_kept_writing_is_split_brain() {
    let Some(sites) = with_proxy("a_takeover_while_production_kept_writing_is_split_brain") else {
        return;
    };
    sites.pair("app", "1MiB", &[]);
    // The same, but the pair's policy discards the side that changed least.
    sites.pair("auto", "1MiB", &["--split-brain", "discard-least-changes"]);
    cut(&sites, &["app", "auto"]);
    for pair in ["app", "auto"] {
        sites.standby.ok(&["pair", "takeover", pair]);
        write_at(&sites.prod.file(pair), 0, b"production kept writing");
    }
    write_at(
        &sites.standby.file("app"),
        4 * BLOCK,
        b"the standby took over",
    );
    write_at(
        &sites.standby.file("auto"),
        4 * BLOCK,
        &pattern(3 * BLOCK as usize, 7),
    );
    sites.proxy().restore();

    // app: split brain, and production stops (PSUE, outdated) without copying anything.
    sites.prod.wait_state("app", "PSUE");
    sites
        .prod
        .wait_field("app", "/verdict/kind", json!("split-brain"));
    sites
        .standby
        .wait_field("app", "/verdict/kind", json!("split-brain"));
    assert_eq!(sites.standby.pair("app").expect("pair")["state"], "SSWS");
    let e = sites.prod.fails(&["pair", "resync", "app"]);
    assert!(
        e.contains("split brain")
            && e.contains("--discard-local")
            && e.contains("--discard-remote"),
        "{e}"
    );
    assert_eq!(
        read_at(&sites.standby.file("app"), 4 * BLOCK, 21),
        b"the standby took over"
    );
    assert_eq!(
        read_at(&sites.prod.file("app"), 0, 23),
        b"production kept writing"
    );
    // The person keeps production's data.
    sites
        .prod
        .ok(&["pair", "resync", "app", "--discard-remote"]);
    sites.prod.wait_state("app", "PAIR");
    sites.standby.wait_state("app", "PAIR");
    assert!(sites.identical("app"));
    let data = read_all(&sites.standby.file("app"));
    assert!(data.starts_with(b"production kept writing"));
    assert!(!data[4 * BLOCK as usize..].starts_with(b"the standby took over"));
    assert_eq!(sites.prod.pair_at("app", "/verdict/kind"), "in-sync");

    // auto: the standby changed 3 blocks, production 1: production's change is
    // discarded by the policy and the standby becomes the PVOL.
    sites
        .prod
        .wait_log("split brain resolved by the pair's policy");
    sites.standby.wait_state("auto", "PAIR");
    sites.prod.wait_state("auto", "PAIR");
    assert_eq!(sites.standby.pair("auto").expect("pair")["role"], "pvol");
    assert!(sites.identical("auto"));
    assert!(!read_all(&sites.prod.file("auto")).starts_with(b"production kept writing"));
}

#[test]
fn verify_finds_a_block_changed_behind_mirrords_back_and_resync_repairs_it() {
    let Some(sites) =
        TwoSites::start("verify_finds_a_block_changed_behind_mirrords_back_and_resync_repairs_it")
    else {
        return;
    };
    sites.pair("v", "8MiB", &[]);
    write_at(&sites.prod.file("v"), 0, &pattern(8 << 20, 3));
    assert!(sites.identical("v"));
    let e = sites.standby.fails(&["pair", "verify", "v"]);
    assert!(e.contains("at the PVOL's site 'prod'"), "{e}");
    // Two blocks of the SVOL's backing file change behind mirrord's back.
    let backing = backing_file(&sites.standby, "v");
    let (a, b) = ((3 << 20) + 5 * BLOCK, 7 << 20);
    write_at(&backing, a + 100, b"bit rot");
    write_at(&backing, b, b"a stray dd");
    // Writes go on at the PVOL while the copies are compared (rate limited).
    let file = sites.prod.file("v");
    let out = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..100u64 {
                write_at(&file, (i % 50) * BLOCK, &pattern(BLOCK as usize, i as u8));
            }
        });
        let out = sites
            .prod
            .ok(&["pair", "verify", "v", "--rate", "16MiB", "--watch"]);
        writer.join().expect("writer");
        out
    });
    assert!(out.contains("2 differ"), "{out}");
    assert!(out.contains(&format!("{a}, {b}")), "{out}");
    let v = sites.prod.pair("v").expect("pair")["verify"].clone();
    assert_eq!(v["running"], false);
    assert_eq!(v["differing_blocks"], 2);
    assert_eq!(v["checked_blocks"], 2048);
    assert_eq!(v["first_differing_offsets"], json!([a, b]));
    assert!(
        v["rate_bytes_per_s"]
            .as_f64()
            .is_some_and(|r| r <= 20.0 * (1 << 20) as f64),
        "{v}"
    );
    assert_eq!(sites.prod.pair_u64("v", "pending_bytes"), 2 * BLOCK);
    assert_eq!(sites.prod.pair("v").expect("pair")["state"], "PAIR");
    // The resync copies exactly the two blocks.
    sites.prod.ok(&["pair", "resync", "v"]);
    sites.prod.wait_state("v", "PAIR");
    assert_eq!(sites.prod.pair_u64("v", "copy.copied_bytes"), 2 * BLOCK);
    assert!(read_all(&backing) == read_all(&sites.prod.file("v")));
    let again = sites.prod.ok(&["pair", "verify", "v", "--watch"]);
    assert!(again.contains(" 0 differ"), "{again}");
}

#[test]
fn a_checksum_resync_sends_only_the_blocks_that_differ() {
    let Some(sites) = TwoSites::start("a_checksum_resync_sends_only_the_blocks_that_differ") else {
        return;
    };
    sites.pair("sums", "4MiB", &["--checksum-resync", "on"]);
    sites.pair("plain", "4MiB", &[]);
    for pair in ["sums", "plain"] {
        let f = sites.prod.file(pair);
        write_at(&f, 0, &pattern(4 << 20, 5));
        sites.prod.ok(&["pair", "split", pair]);
        // 10% of the volume rewritten with the data it holds: dirty, identical.
        let data = read_all(&f);
        for i in 0..102u64 {
            let at = (i * 10 * BLOCK) as usize;
            write_at(&f, at as u64, &data[at..at + BLOCK as usize]);
        }
        // And one block really changed.
        write_at(&f, 5 * BLOCK, b"really changed");
        assert_eq!(sites.prod.pair_u64(pair, "pending_bytes"), 103 * BLOCK);
        sites.prod.ok(&["pair", "resync", pair]);
        sites.prod.wait_state(pair, "PAIR");
        assert!(sites.identical(pair));
    }
    assert_eq!(sites.prod.pair_at("sums", "/checksum_resync"), true);
    assert_eq!(
        sites.prod.pair_u64("sums", "copy.skipped_identical_blocks"),
        102
    );
    assert_eq!(
        sites.prod.pair_u64("sums", "copy.copied_bytes"),
        BLOCK,
        "only the changed block is sent"
    );
    assert_eq!(
        sites.prod.pair_u64("plain", "copy.copied_bytes"),
        103 * BLOCK
    );
    assert_eq!(
        sites
            .prod
            .pair_u64("plain", "copy.skipped_identical_blocks"),
        0
    );
    let out = sites.prod.ok(&["pair", "status", "sums"]);
    assert!(out.contains("102 blocks skipped as identical"), "{out}");
}
