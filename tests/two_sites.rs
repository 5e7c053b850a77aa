//! Two real sites on loopback: mirrord processes, FUSE mounts, hbctl, TCP.
//! Each test needs root and /dev/fuse and says SKIPPED without them.

mod common;

use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::atomic::Ordering;

use common::{pattern, read_all, write_at, Options, TwoSites};

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or_default()
}

#[test]
fn a_synchronous_write_at_prod_is_at_standby_when_it_returns() {
    let Some(sites) = TwoSites::start("a_synchronous_write_at_prod_is_at_standby_when_it_returns")
    else {
        return;
    };
    sites.paired_volume("hb0", "1MiB");
    let (p, s) = (sites.prod.file("hb0"), sites.standby.file("hb0"));
    assert!(
        sites.prod.log_text().contains("I/O engine: io_uring"),
        "volume I/O should go through io_uring"
    );

    // Status at both sites, with the documented fields.
    let at_prod = sites.prod.pair("hb0").expect("status at prod");
    let at_standby = sites.standby.pair("hb0").expect("status at standby");
    for (v, role) in [(&at_prod, "pvol"), (&at_standby, "svol")] {
        assert_eq!(v["name"], "hb0");
        assert_eq!(v["role"], role);
        assert_eq!(v["state"], "PAIR");
        assert_eq!(v["mode"], "sync");
        assert_eq!(v["kind"], "data");
        assert_eq!(v["pvol"], "hb0");
        assert_eq!(v["svol"], "hb0");
    }
    assert_eq!(at_prod["peer"], "standby");
    assert_eq!(at_standby["peer"], "prod");

    // Aligned, unaligned, block-crossing and large writes: each is at the
    // standby the moment write(2) returns at prod (no waiting: that is sync mode).
    for (i, (offset, len)) in [
        (8192u64, 4096usize),
        (5000, 100),
        (4090, 20),
        (500_000, 300_000),
        (1_048_576 - 7, 7),
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
            "write {i} ({len} bytes at {offset}) not at the standby when it returned"
        );
    }
    assert!(read_all(&p) == read_all(&s), "volumes differ");
    assert_eq!(read_all(&p).len(), 1 << 20);

    // The standby's file is read-only while paired, and stays untouched.
    let before = read_all(&s);
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(&s)
        .expect_err("SVOL opened for writing");
    assert_eq!(errno(&e), libc::EROFS, "{e}");
    assert!(read_all(&s) == before);

    // Fixed-size files: no writes past the end, no truncation, no new files.
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
    let e = f.set_len(4096).expect_err("truncate");
    assert_eq!(errno(&e), libc::EPERM, "{e}");
    f.sync_all().expect("fsync reaches the backing store");
    assert_eq!(std::fs::metadata(&p).expect("stat").len(), 1 << 20);
    let e = std::fs::File::create(sites.prod.mount.join("new")).expect_err("create");
    assert_eq!(errno(&e), libc::EPERM, "{e}");

    // One file per volume in the directory.
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
        "statfs: {}",
        String::from_utf8_lossy(&df.stdout)
    );
}

#[test]
fn a_wrong_key_is_refused_and_both_sides_say_why() {
    let Some(sites) = TwoSites::start_with(
        "a_wrong_key_is_refused_and_both_sides_say_why",
        Options {
            wrong_key: true,
            ..Options::default()
        },
    ) else {
        return;
    };
    sites.prod.wait_log("link keys differ");
    sites.standby.wait_log("link keys differ");
    sites
        .prod
        .ok(&["volume", "create", "hb0", "--size", "64KiB"]);
    sites
        .standby
        .ok(&["volume", "create", "hb0", "--size", "64KiB"]);
    let e = sites.prod.fails(&[
        "pair", "create", "hb0", "--pvol", "hb0", "--peer", "standby",
    ]);
    assert!(e.contains("remote link to site 'standby' is down"), "{e}");
    assert!(!sites.prod.log_text().contains("remote link up"));
}

#[test]
fn pairs_and_their_data_survive_a_restart_of_both_daemons() {
    let Some(mut sites) = TwoSites::start("pairs_and_their_data_survive_a_restart_of_both_daemons")
    else {
        return;
    };
    sites.paired_volume("hb0", "256KiB");
    write_at(&sites.prod.file("hb0"), 0, &pattern(256 << 10, 7));
    sites.prod.stop();
    sites.standby.stop();
    sites.standby.start();
    sites.prod.start();
    sites.prod.wait_state("hb0", "PAIR");
    sites.standby.wait_state("hb0", "PAIR");
    assert!(
        sites.prod.log_text().contains("still in sync (PAIR)"),
        "a clean restart should not need a copy"
    );
    assert!(read_all(&sites.prod.file("hb0")) == read_all(&sites.standby.file("hb0")));
    let data = pattern(1000, 9);
    write_at(&sites.prod.file("hb0"), 1234, &data);
    assert!(read_all(&sites.standby.file("hb0"))[1234..2234] == data[..]);
    let v = sites.standby.pair("hb0").expect("pair");
    assert_eq!(v["role"], "svol");
}

#[test]
fn a_killed_production_mirrord_comes_back_and_copies_again() {
    let Some(mut sites) =
        TwoSites::start("a_killed_production_mirrord_comes_back_and_copies_again")
    else {
        return;
    };
    sites.paired_volume("hb0", "16MiB");
    // A write in the middle of the volume, then a crash before the bitmap is tidied.
    write_at(&sites.prod.file("hb0"), 9 << 20, &pattern(10_000, 4));
    sites.prod.kill();
    sites.standby.wait_state("hb0", "PSUE");
    let stale = std::fs::metadata(&sites.prod.mount).expect_err("the dead mount");
    assert_eq!(errno(&stale), libc::ENOTCONN);
    sites.prod.start();
    sites.prod.wait_log("clearing a stale hbfs mount");
    sites.prod.wait_log("did not shut down cleanly");
    // A data pair waits for a person after a crash; the bitmap names what to copy:
    // at most the 2 MiB extent that was being written, never the whole volume.
    sites.prod.wait_log("re-attached; suspended (PSUE)");
    let pending = sites.prod.pair_u64("hb0", "pending_bytes");
    assert!(
        pending <= 2 << 20,
        "a crash over-marks only the active extents, not {pending} bytes"
    );
    sites.prod.ok(&["pair", "resync", "hb0"]);
    sites.prod.wait_state("hb0", "PAIR");
    sites.standby.wait_state("hb0", "PAIR");
    assert_eq!(sites.prod.pair_u64("hb0", "copy.total_bytes"), pending);
    write_at(&sites.prod.file("hb0"), 77, b"after the crash");
    assert!(sites.identical("hb0"));
}

#[test]
fn corrupt_frames_drop_the_connection_and_the_link_recovers() {
    let Some(sites) = TwoSites::start_with(
        "corrupt_frames_drop_the_connection_and_the_link_recovers",
        Options {
            proxy: true,
            ..Options::default()
        },
    ) else {
        return;
    };
    // A heartbeat pair resyncs by itself when the link returns.
    sites.pair("hb0", "128KiB", &["--kind", "heartbeat"]);

    // Garbage straight at the standby's listener: refused, logged, nothing else disturbed.
    let mut junk =
        std::net::TcpStream::connect(("127.0.0.1", sites.standby.port)).expect("connect");
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send junk");
    sites.standby.wait_log("bad frame magic");
    sites.standby.ok(&["volume", "list"]);

    // A bit flipped in flight: the standby drops the connection, the pair
    // suspends, the link reconnects and the pair is copied back to PAIR.
    let proxy = sites.proxy.as_ref().expect("proxy");
    proxy.corrupt_next.store(true, Ordering::SeqCst);
    write_at(&sites.prod.file("hb0"), 4096, &pattern(8192, 3));
    sites.standby.wait_log("dropped the connection");
    sites.prod.wait_log("pair suspended (PSUE)");
    sites.prod.wait_log("copy complete");
    sites.prod.wait_state("hb0", "PAIR");
    sites.standby.wait_state("hb0", "PAIR");
    assert!(
        read_all(&sites.prod.file("hb0")) == read_all(&sites.standby.file("hb0")),
        "volumes differ after recovery"
    );
}

#[test]
fn refusals_name_the_thing_and_the_way_out() {
    let Some(sites) = TwoSites::start("refusals_name_the_thing_and_the_way_out") else {
        return;
    };
    let (p, s) = (&sites.prod, &sites.standby);
    let e = p.fails(&["volume", "create", "v", "--size", "12XB"]);
    assert!(e.contains("invalid size '12XB'"), "{e}");
    let e = p.fails(&["volume", "create", "v", "--size", "1000"]);
    assert!(e.contains("multiple of 4096"), "{e}");
    let e = p.fails(&["volume", "create", "v"]);
    assert!(e.contains("give --size"), "{e}");
    p.ok(&["volume", "create", "v", "--size", "64KiB"]);
    let e = p.fails(&["volume", "create", "v", "--size", "64KiB"]);
    assert!(e.contains("exists already"), "{e}");

    let e = p.fails(&["pair", "create", "v", "--pvol", "v", "--peer", "standby"]);
    assert!(
        e.contains("no volume 'v' at site 'standby'") && e.contains("hbctl volume create v"),
        "{e}"
    );
    s.ok(&["volume", "create", "v", "--size", "128KiB"]);
    let e = p.fails(&["pair", "create", "v", "--pvol", "v", "--peer", "standby"]);
    assert!(e.contains("exactly the PVOL's size"), "{e}");
    let e = p.fails(&["pair", "create", "v", "--pvol", "v", "--peer", "elsewhere"]);
    assert!(e.contains("'elsewhere' is not a configured peer"), "{e}");
    let e = p.fails(&[
        "pair", "create", "v", "--pvol", "nosuch", "--peer", "standby",
    ]);
    assert!(e.contains("no volume 'nosuch' at this site"), "{e}");
    assert!(
        p.pair("v").is_none() && s.pair("v").is_none(),
        "a refused create leaves no pair"
    );

    // A right-sized SVOL under another name.
    s.ok(&["volume", "create", "w", "--size", "64KiB"]);
    p.ok(&[
        "pair",
        "create",
        "pv",
        "--pvol",
        "v",
        "--peer",
        "standby",
        "--svol",
        "w",
        "--kind",
        "heartbeat",
    ]);
    p.wait_state("pv", "PAIR");
    let e = p.fails(&["volume", "delete", "v"]);
    assert!(
        e.contains("belongs to heartbeat pair 'pv'") && e.contains("hbctl pair delete pv"),
        "{e}"
    );
    let e = p.fails(&["pair", "create", "pv", "--pvol", "v", "--peer", "standby"]);
    assert!(e.contains("exists already"), "{e}");
    let e = p.fails(&["pair", "status", "nosuch"]);
    assert!(e.contains("no pair 'nosuch'"), "{e}");
    let listed = p.ok(&["volume", "list", "--json"]);
    assert!(listed.contains("\"pair\": \"pv\""), "{listed}");

    // Delete dissolves both halves: both volumes SMPL, the SVOL writable again.
    // (A heartbeat pair is protected until de-installed.)
    let e = p.fails(&["pair", "delete", "pv"]);
    assert!(
        e.contains("carries heartbeats") && e.contains("hbctl pair uninstall pv"),
        "{e}"
    );
    p.ok(&["pair", "uninstall", "pv"]);
    p.ok(&["pair", "delete", "pv"]);
    assert!(p.pair("pv").is_none() && s.pair("pv").is_none());
    write_at(&s.file("w"), 0, b"writable again");
    p.ok(&["volume", "delete", "v"]);
    let e = p.fails(&["volume", "delete", "v"]);
    assert!(e.contains("no volume 'v'"), "{e}");
}

#[test]
fn a_pair_deleted_at_the_standby_is_dissolved_at_both_sites() {
    let Some(sites) = TwoSites::start("a_pair_deleted_at_the_standby_is_dissolved_at_both_sites")
    else {
        return;
    };
    sites.paired_volume("hb0", "64KiB");
    sites.standby.ok(&["pair", "delete", "hb0"]);
    assert!(sites.prod.pair("hb0").is_none() && sites.standby.pair("hb0").is_none());
}

#[test]
fn the_control_socket_is_private_and_refuses_garbage() {
    let Some(sites) = TwoSites::start("the_control_socket_is_private_and_refuses_garbage") else {
        return;
    };
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sites.prod.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mut c = std::os::unix::net::UnixStream::connect(&sites.prod.socket).expect("connect");
    c.write_all(b"{\"op\":\"explode\"}\n").expect("send");
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).expect("answer");
    assert!(line.contains("malformed control request"), "{line}");
    sites.prod.ok(&["volume", "list"]);
}

/// A loop device over a file, detached on drop.
struct Loop(String);

impl Loop {
    fn new(backing: &std::path::Path, size: u64) -> Loop {
        std::fs::File::create(backing)
            .and_then(|f| f.set_len(size))
            .expect("backing file");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn block_device_volumes_on_loop_devices_mirror_like_files() {
    let Some(mut sites) = TwoSites::start("block_device_volumes_on_loop_devices_mirror_like_files")
    else {
        return;
    };
    if Command::new("losetup").arg("--version").output().is_err() {
        common::skip(
            "block_device_volumes_on_loop_devices_mirror_like_files",
            "losetup (util-linux) is missing",
        );
        return;
    }
    let prod_dev = Loop::new(&sites.root.path().join("prod.img"), 4 << 20);
    let standby_dev = Loop::new(&sites.root.path().join("standby.img"), 4 << 20);
    let out = sites
        .prod
        .ok(&["volume", "create", "blk", "--path", &prod_dev.0]);
    assert!(out.contains("block device"), "{out}");
    sites
        .standby
        .ok(&["volume", "create", "blk", "--path", &standby_dev.0]);
    let e = sites
        .prod
        .fails(&["volume", "create", "blk2", "--path", &prod_dev.0]);
    assert!(e.contains("already backs volume 'blk'"), "{e}");
    let listed: serde_json::Value =
        serde_json::from_str(&sites.prod.ok(&["volume", "list", "--json"])).expect("json");
    assert_eq!(listed[0]["backing"], "block");
    assert_eq!(listed[0]["size"], 4 << 20);
    sites.prod.ok(&[
        "pair", "create", "blk", "--pvol", "blk", "--peer", "standby",
    ]);
    sites.standby.wait_state("blk", "PAIR");
    write_at(&sites.prod.file("blk"), 12345, &pattern(70_000, 5));
    assert!(read_all(&sites.prod.file("blk")) == read_all(&sites.standby.file("blk")));
    // The bytes are on the standby's device itself, under O_DIRECT.
    let mut raw = vec![0u8; 70_000];
    std::fs::File::open(&standby_dev.0)
        .expect("device")
        .read_exact_at(&mut raw, 12345)
        .expect("read device");
    assert!(raw == pattern(70_000, 5));
    // Stop the daemons before the devices go away.
    sites.prod.stop();
    sites.standby.stop();
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(sites.prod.file("blk"))
        .map(|_| ())
        .expect_err("unmounted");
    assert!(matches!(e.kind(), ErrorKind::NotFound), "{e}");
}

#[test]
fn the_pread_fallback_mirrors_too_and_says_so() {
    let options = Options {
        standby_env: vec![("HBMIRROR_IO".into(), "pread".into())],
        ..Options::default()
    };
    let Some(sites) = TwoSites::start_with("the_pread_fallback_mirrors_too_and_says_so", options)
    else {
        return;
    };
    sites.standby.wait_log("I/O engine: pread/pwrite");
    sites.paired_volume("hb0", "64KiB");
    write_at(
        &sites.prod.file("hb0"),
        100,
        b"through pwrite at the standby",
    );
    assert!(read_all(&sites.prod.file("hb0")) == read_all(&sites.standby.file("hb0")));
}

#[test]
fn hbctl_takes_its_socket_from_the_environment() {
    let Some(sites) = TwoSites::start("hbctl_takes_its_socket_from_the_environment") else {
        return;
    };
    let out = Command::new(common::bin("hbctl"))
        .args(["volume", "create", "viaenv", "--size", "4KiB"])
        .env("HBCTL_SOCKET", &sites.standby.socket)
        .output()
        .expect("hbctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sites.standby.ok(&["volume", "list"]).contains("viaenv"));
    let out = Command::new(common::bin("hbctl"))
        .args(["--socket", "/nonexistent/x.sock", "volume", "list"])
        .output()
        .expect("hbctl");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("is it running?") && e.contains("HBCTL_SOCKET"),
        "{e}"
    );
}

#[test]
fn a_volume_file_answers_poll_ioctl_and_xattrs_as_a_regular_file_without_warnings() {
    let Some(sites) = TwoSites::start(
        "a_volume_file_answers_poll_ioctl_and_xattrs_as_a_regular_file_without_warnings",
    ) else {
        return;
    };
    sites.paired_volume("v0", "64KiB");
    let file = sites.prod.file("v0");
    // What `tail -f`, Python and hbd's start do to a file.
    let script = r#"
import errno, fcntl, os, select, sys, termios
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
p = select.poll()
p.register(fd, select.POLLIN | select.POLLOUT)
ready = dict(p.poll(1000)).get(fd, 0)
assert ready & select.POLLIN and ready & select.POLLOUT, ready
try:
    fcntl.ioctl(fd, termios.TCGETS, bytes(64))
    raise SystemExit("ioctl answered")
except OSError as e:
    assert e.errno == errno.ENOTTY, e
try:
    os.getxattr(path, "user.x")
    raise SystemExit("getxattr answered")
except OSError as e:
    assert e.errno == errno.ENODATA, e
assert os.listxattr(path) == [], os.listxattr(path)
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A write after it goes through (positive sign the mount still serves),
    // and mirrord said nothing of it.
    write_at(&file, 0, &pattern(4096, 3));
    let log = sites.prod.log_text();
    assert!(!log.contains("Not Implemented"), "{log}");
}
