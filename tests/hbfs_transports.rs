//! hbfs's semantics on both FUSE transports: every check runs once on the
//! classic transport (/dev/fuse read/write) and once on FUSE over io_uring,
//! against real mirrord processes. The io_uring runs switch the kernel's
//! `enable_uring` on for their duration and put it back; a kernel without
//! it is a skip, which CI=true turns into a failure. Each run checks, from
//! mirrord's log, which transport served.

mod common;

use std::os::unix::fs::FileExt;
use std::process::Command;

use common::{pattern, read_all, write_at, TwoSites, UringSwitch};

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or_default()
}

/// Both sites up on `transport`; the guard keeps io_uring switched on.
fn sites_on(test: &str, transport: &str) -> Option<(TwoSites, Option<UringSwitch>)> {
    let switch = match transport {
        "uring" => Some(UringSwitch::on(test)?),
        _ => None,
    };
    let sites = TwoSites::start_on(test, transport)?;
    let expected = match transport {
        "uring" => "hbfs transport: io_uring",
        _ => "hbfs transport: classic",
    };
    for site in [&sites.prod, &sites.standby] {
        assert!(
            site.log_text().contains(expected),
            "{} should serve hbfs over {transport}:\n{}",
            site.name,
            site.log_text()
        );
    }
    Some((sites, switch))
}

fn semantics(test: &str, transport: &str) {
    let Some((sites, _switch)) = sites_on(test, transport) else {
        return;
    };
    sites.paired_volume("hb0", "1MiB");
    let (p, s) = (sites.prod.file("hb0"), sites.standby.file("hb0"));
    // Direct I/O: each write is at the standby's file when write(2) returns.
    for (i, (offset, len)) in [
        (8192u64, 4096usize),
        (5000, 100),
        (4090, 20),
        (500_000, 300_000),
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(len, i as u8 + 1);
        write_at(&p, offset, &data);
        let mut back = vec![0u8; len];
        std::fs::File::open(&s)
            .expect("open standby")
            .read_exact_at(&mut back, offset)
            .expect("read standby");
        assert!(
            back == data,
            "write {i} not at the standby when it returned"
        );
    }
    assert!(read_all(&p) == read_all(&s), "volumes differ");
    // The SVOL refuses writers; the PVOL ends where the volume ends.
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(&s)
        .expect_err("SVOL for writing");
    assert_eq!(errno(&e), libc::EROFS, "{e}");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open prod");
    let e = f.write_at(b"x", 1 << 20).expect_err("write past the end");
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    assert_eq!(
        f.write_at(b"abcdefgh", (1 << 20) - 4).expect("cut short"),
        4
    );
    let mut tail = [0u8; 8];
    assert_eq!(
        f.read_at(&mut tail, (1 << 20) - 4).expect("read the end"),
        4
    );
    let e = f.set_len(4096).expect_err("truncate");
    assert_eq!(errno(&e), libc::EPERM, "{e}");
    f.sync_all().expect("fsync");
    assert_eq!(std::fs::metadata(&p).expect("stat").len(), 1 << 20);
    let e = std::fs::File::create(sites.prod.mount.join("new")).expect_err("create");
    assert_eq!(errno(&e), libc::EPERM, "{e}");
    let e = std::fs::remove_file(&p).expect_err("unlink");
    assert_eq!(errno(&e), libc::EPERM, "{e}");
    let names: Vec<String> = std::fs::read_dir(&sites.standby.mount)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["hb0".to_string()]);
    let df = Command::new("df")
        .arg("-B1")
        .arg(&sites.prod.mount)
        .output()
        .expect("df");
    assert!(
        String::from_utf8_lossy(&df.stdout).contains("hbfs"),
        "statfs"
    );
    // Writers on several CPUs at once (the ring has a queue per CPU).
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let p = &p;
            scope.spawn(move || {
                for i in 0..20u64 {
                    write_at(p, (u64::from(t) * 20 + i) * 4096, &pattern(4096, t + 10));
                }
            });
        }
    });
    assert!(sites.identical("hb0"));
    // A role change shows at once (no attribute cache): after a split the SVOL takes writes.
    sites.prod.ok(&["pair", "split", "hb0"]);
    sites.standby.wait_state("hb0", "PSUS");
    write_at(&s, 0, b"standby writes after the split");
}

fn stale_mount(test: &str, transport: &str) {
    let Some((mut sites, _switch)) = sites_on(test, transport) else {
        return;
    };
    sites.paired_volume("hb0", "1MiB");
    write_at(&sites.prod.file("hb0"), 4096, b"before the crash");
    sites.prod.kill();
    // A request caught by the crash may end with ECONNABORTED or ECANCELED
    // while the kernel tears the io_uring queues down; then the mount is
    // dead (ENOTCONN), as on classic.
    let stale = std::fs::metadata(&sites.prod.mount).expect_err("the dead mount");
    assert!(
        [libc::ENOTCONN, libc::ECONNABORTED, libc::ECANCELED].contains(&errno(&stale)),
        "{stale}"
    );
    common::wait_for("the dead mount to say ENOTCONN", || {
        std::fs::metadata(&sites.prod.mount)
            .err()
            .is_some_and(|e| errno(&e) == libc::ENOTCONN)
    });
    sites.prod.start();
    sites.prod.wait_log("clearing a stale hbfs mount");
    let served = sites.prod.log_text().matches("hbfs transport").count();
    assert_eq!(served, 2, "mounted again after the crash");
    assert!(read_all(&sites.prod.file("hb0"))[4096..4112] == b"before the crash"[..]);
}

macro_rules! on_both {
    ($($name:ident => $check:ident;)*) => {$(
        mod $name {
            #[test]
            fn classic() {
                super::$check(concat!(stringify!($name), "::classic"), "classic");
            }
            #[test]
            fn uring() {
                super::$check(concat!(stringify!($name), "::uring"), "uring");
            }
        }
    )*};
}

on_both! {
    hbfs_semantics => semantics;
    stale_mount_is_cleared_after_kill_9 => stale_mount;
}

#[test]
fn auto_says_which_transport_serves_and_why() {
    let test = "auto_says_which_transport_serves_and_why";
    let Some(_switch) = UringSwitch::on(test) else {
        return;
    };
    let Some(sites) = TwoSites::start_on(test, "auto") else {
        return;
    };
    let log = sites.prod.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("hbfs transport"))
        .unwrap_or_else(|| panic!("no transport in the log:\n{log}"));
    assert!(line.contains("fuse_transport = \"auto\""), "{line}");
    assert!(
        line.contains("io_uring") || line.contains("classic"),
        "{line}"
    );
}
