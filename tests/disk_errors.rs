//! Failing disks with two real sites: a backing store on a tiny tmpfs fills
//! up under the PVOL or the SVOL. The host sees the error as itself
//! (ENOSPC), the pair suspends at both sites with the reason said, and a
//! resync leaves both copies identical: the SVOL never keeps data the host
//! was told failed. Also: `volume create` reserves space, refuses what
//! cannot fit, creates no directories unasked and leaves nothing behind.
//! Needs root (tmpfs mounts) and /dev/fuse.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::{pattern, SmallFs, TwoSites};

/// A 4 KiB write through hbfs; the OS error number if it failed.
fn host_write(path: &Path, offset: u64, seed: u8) -> Result<(), i32> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all_at(&pattern(4096, seed), offset)
        .map_err(|e| e.raw_os_error().unwrap_or(0))
}

#[test]
fn a_full_pvol_disk_fails_the_write_in_every_mode_and_resync_makes_both_copies_equal() {
    let Some(sites) = TwoSites::start(
        "a_full_pvol_disk_fails_the_write_in_every_mode_and_resync_makes_both_copies_equal",
    ) else {
        return;
    };
    let small = SmallFs::mount(&sites.root.path().join("small"), "2m");
    let modes: [(&str, &[&str]); 4] = [
        ("dsync", &["--mode", "sync"]),
        ("dfence", &["--mode", "sync", "--fence", "data"]),
        ("dsemi", &["--mode", "semi-sync"]),
        ("dadapt", &["--mode", "adaptive"]),
    ];
    for (name, extra) in modes {
        let path = small.path(&format!("{name}.vol"));
        let path = path.to_str().expect("utf-8 path");
        sites.prod.ok(&[
            "volume", "create", name, "--size", "1MiB", "--sparse", "--path", path,
        ]);
        sites
            .standby
            .ok(&["volume", "create", name, "--size", "1MiB"]);
        let mut args = vec!["pair", "create", name, "--pvol", name, "--peer", "standby"];
        args.extend_from_slice(extra);
        sites.prod.ok(&args);
        sites.prod.wait_state(name, "PAIR");
        sites.standby.wait_state(name, "PAIR");
    }
    small.fill();
    for (i, (name, _)) in modes.iter().enumerate() {
        let result = host_write(&sites.prod.file(name), 512 << 10, i as u8 + 1);
        assert_eq!(
            result,
            Err(libc::ENOSPC),
            "{name}: the host sees the full disk as ENOSPC"
        );
        sites.prod.wait_state(name, "PSUE");
        sites.standby.wait_state(name, "PSUE");
        assert!(
            sites.prod.pair_u64(name, "pending_bytes") >= 4096,
            "{name}: the failed block is tracked"
        );
    }
    sites.prod.wait_log("the PVOL write failed");
    small.free();
    for (name, _) in modes {
        sites.prod.ok(&["pair", "resync", name]);
        sites.prod.wait_state(name, "PAIR");
        assert!(
            sites.identical(name),
            "{name}: both copies are equal after the resync"
        );
        // The SVOL holds what the PVOL holds: the failed write is nowhere.
        let standby = std::fs::read(sites.standby.file(name)).expect("read SVOL");
        assert!(
            standby[512 << 10..(512 << 10) + 4096]
                .iter()
                .all(|b| *b == 0),
            "{name}: the SVOL does not keep the write the host was told failed"
        );
    }
}

#[test]
fn a_full_svol_disk_is_reported_at_the_standby_too() {
    let Some(sites) = TwoSites::start("a_full_svol_disk_is_reported_at_the_standby_too") else {
        return;
    };
    let small = SmallFs::mount(&sites.root.path().join("small"), "2m");
    let path = small.path("d0.vol");
    sites.prod.ok(&["volume", "create", "d0", "--size", "1MiB"]);
    sites.standby.ok(&[
        "volume",
        "create",
        "d0",
        "--size",
        "1MiB",
        "--sparse",
        "--path",
        path.to_str().expect("utf-8 path"),
    ]);
    sites
        .prod
        .ok(&["pair", "create", "d0", "--pvol", "d0", "--peer", "standby"]);
    sites.prod.wait_state("d0", "PAIR");
    // The initial copy wrote every block of the SVOL; give one back, so the
    // next write there needs space the full filesystem no longer has.
    let punched = Command::new("fallocate")
        .args(["--punch-hole", "--offset", "0", "--length", "4096"])
        .arg(&path)
        .status()
        .expect("run fallocate");
    assert!(punched.success(), "punch a hole in the SVOL's file");
    small.fill();
    // fence never: the host write succeeds on the PVOL, the pair suspends.
    host_write(&sites.prod.file("d0"), 0, 7).expect("PVOL write");
    sites.standby.wait_state("d0", "PSUE");
    sites.prod.wait_state("d0", "PSUE");
    sites.standby.wait_log("the SVOL write failed");
    sites
        .prod
        .wait_log("repair the SVOL's volume at site 'standby'");
    small.free();
    sites.prod.ok(&["pair", "resync", "d0"]);
    sites.prod.wait_state("d0", "PAIR");
    assert!(sites.identical("d0"));
}

#[test]
fn volume_create_reserves_space_refuses_what_cannot_fit_and_leaves_nothing_behind() {
    let Some(sites) = TwoSites::start(
        "volume_create_reserves_space_refuses_what_cannot_fit_and_leaves_nothing_behind",
    ) else {
        return;
    };
    let small = SmallFs::mount(&sites.root.path().join("small"), "1m");
    let at = |name: &str| small.path(name).to_str().expect("utf-8").to_string();

    let e = sites.prod.fails(&[
        "volume",
        "create",
        "big",
        "--size",
        "4MiB",
        "--path",
        &at("big.vol"),
    ]);
    assert!(e.contains("has room for") && e.contains("--sparse"), "{e}");
    assert!(!small.path("big.vol").exists(), "nothing left behind");

    let e = sites.prod.fails(&[
        "volume",
        "create",
        "huge",
        "--size",
        "1048576TiB",
        "--sparse",
        "--path",
        &at("huge.vol"),
    ]);
    assert!(e.contains("has room for"), "{e}");
    assert!(!small.path("huge.vol").exists(), "nothing left behind");

    let missing = small.path("no/such/dir/v.vol");
    let e = sites.prod.fails(&[
        "volume",
        "create",
        "v",
        "--size",
        "64KiB",
        "--path",
        missing.to_str().expect("utf-8"),
    ]);
    assert!(e.contains("does not exist"), "{e}");
    assert!(!small.path("no").exists(), "no directory created unasked");

    // What fits is reserved at once, and a failed name can be used again.
    let before = small.available();
    sites.prod.ok(&[
        "volume",
        "create",
        "big",
        "--size",
        "512KiB",
        "--path",
        &at("big.vol"),
    ]);
    assert!(
        before - small.available() >= 512 << 10,
        "the space is reserved: {before} -> {}",
        small.available()
    );
}
