//! Hosts on machines of their own (issue 24): each host in a network
//! namespace that reaches its site's mirrord only over a veth, its volumes
//! from its own `hbfs --storage` mount, its hbd talking to mirrord over the
//! host link (see `hbcluster/hosts.rs`). Here: a heartbeat between hosts of
//! the two sites through their remote mounts; a host refused a volume it is
//! not allowed; a second mount by the same host id and a key file readable
//! by others refused; a volume deleted under a host's mount. Cuts of a
//! host's storage path: `host_storage_cut.rs`; the cluster and master-host
//! tests on this topology: `cluster.rs`.

mod common;
mod hbcluster;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::*;
use hbcluster::hosts::{fails_saying, write_mode, Apart, HostSpec};
use hbcluster::netns::End;

#[test]
fn hosts_of_the_two_sites_heartbeat_through_their_own_remote_mounts() {
    let test = "hosts_of_the_two_sites_heartbeat_through_their_own_remote_mounts";
    let Some(a) = Apart::two_hosts(test, &[]) else {
        return;
    };
    // Each host's mount is its own hbfs process, in its namespace: the
    // files as on the storage machine, the same names and sizes.
    for id in ["p1", "s1"] {
        let h = a.host(id);
        assert!(is_mounted(&h.mount), "{id}'s own mount");
        let site = a.site(h.site);
        for v in ["hb0", "hb1", "app"] {
            let here = std::fs::metadata(h.file(v)).expect("volume on the host's mount");
            let there = std::fs::metadata(site.file(v)).expect("volume at the site");
            assert_eq!(here.len(), there.len(), "{id}: {v}");
        }
    }
    // An SVOL is read-only on a remote mount too.
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(a.host("s1").file("hb0"))
        .expect_err("the SVOL hb0 opened for writing at s1");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    // The heartbeats cross: p1 writes hb0 on its mount, prod ships it, s1
    // reads it on its own mount; hb1 the other way. Counts and serials advance.
    let s1 = a.hbd("s1");
    let serial = |t: &serde_json::Value, mirror: &str| -> u64 {
        t["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == mirror))
            .and_then(|d| d["seen"]["last_serial"].as_u64())
            .unwrap_or(0)
    };
    let before = serial(&s1.table(), "hb0");
    s1.wait_advance("mirror:hb0.seen.count", 10);
    a.hbd("p1").wait_advance("mirror:hb1.seen.count", 10);
    a.hbd("p1").wait_advance("mirror:hb0.sent", 10);
    let after = serial(&s1.table(), "hb0");
    assert!(
        after > before,
        "p1's serials advance at s1: {before} -> {after}"
    );
    // Through the host link: each site's mirrord served its own host.
    a.prod.wait_log_line(&["hbfs mounted", "p1"]);
    a.standby.wait_log_line(&["hbfs mounted", "s1"]);
    // The bytes p1 wrote are at both sites (hb0 is a sync heartbeat pair).
    let slot = |path: &std::path::Path| -> Vec<u8> {
        let f = std::fs::File::open(path).expect("open");
        let mut buf = vec![0u8; 4096];
        f.read_exact_at(&mut buf, 0).expect("read slot 0");
        buf
    };
    assert_ne!(
        slot(&a.prod.file("hb0")),
        vec![0u8; 4096],
        "p1's slot at prod"
    );
    assert_ne!(
        slot(&a.standby.file("hb0")),
        vec![0u8; 4096],
        "p1's slot at the standby site"
    );
    assert_eq!(a.lines("failover.count"), 0);
}

/// Runs `f` on a thread of its own inside network namespace `ns` (a
/// thread's namespace is its own: the sockets it opens are that host's).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on an open namespace file descriptor changes only
        // this thread's network namespace; the fd outlives the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the namespace thread")
}

#[test]
fn a_host_is_refused_a_volume_it_is_not_allowed_and_nothing_is_written() {
    let test = "a_host_is_refused_a_volume_it_is_not_allowed_and_nothing_is_written";
    let specs = [
        HostSpec::full("p1", End::Prod),
        HostSpec {
            id: "p2",
            site: End::Prod,
            volumes: &["hb0"],
            control: "none",
        },
    ];
    let Some(mut a) = Apart::start(test, &specs) else {
        return;
    };
    a.pair("hb0", "64KiB", &["--kind", "heartbeat"]);
    a.pair("app1", "1MiB", &[]);
    let data = pattern(8192, 7);
    write_at(&a.prod.file("app1"), 0, &data);
    a.host_mut("p2").mount();
    let p2 = a.host("p2");

    // Its mount shows what it may use, and only that.
    let mut names: Vec<String> = std::fs::read_dir(&p2.mount)
        .expect("list p2's mount")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["hb0"], "p2 sees only hb0");
    for write in [false, true] {
        let e = std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(p2.file("app1"))
            .expect_err("app1 opened at p2");
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EACCES)),
            "open app1 at p2 (write: {write}): {e}"
        );
    }

    // A host that sends frames for the volume anyway (not through hbfs):
    // refused with EACCES, the refusal names the host and the volume.
    let spec = hbcore::host::client::StorageSpec {
        addrs: vec![p2.storage()],
        key: hbcore::config::read_private_key(&p2.key).expect("p2's key"),
        host: "p2".into(),
        site: None,
        io_timeout: Duration::from_secs(5),
    };
    let errno = in_netns(&p2.ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let client = hbcore::host::client::HostClient::new(spec);
            let write = hbcore::host::HostRequest::Write {
                volume: "app1".into(),
                offset: 0,
                data: bytes::Bytes::from(vec![0xee; 4096]),
                write: 1,
            };
            let read = hbcore::host::HostRequest::Read {
                volume: "app1".into(),
                offset: 0,
                len: 4096,
            };
            let mut errnos = vec![];
            for request in [write, read] {
                match client.call(request).await {
                    Ok(reply) => panic!("p2 was answered {reply:?} for app1"),
                    Err(e) => errnos.push(e.errno()),
                }
            }
            errnos
        })
    });
    assert_eq!(
        errno,
        [libc::EACCES, libc::EACCES],
        "write and read of app1 by p2"
    );
    a.prod.wait_log_line(&["p2", "app1"]);
    // Its control is "none": hbctl over the host link is refused too, by name.
    let said = fails_saying(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", p2.ns))
            .arg(bin("hbctl"))
            .args(["--storage", &p2.storage(), "--key"])
            .arg(&p2.key)
            .args(["--host", "p2", "pair", "status"]),
    );
    assert!(said.contains("p2"), "the refusal names the host: {said}");

    // Nothing written, at either site; p1, allowed, reads what is there.
    assert_eq!(read_all(&a.prod.file("app1"))[..8192], data[..]);
    a.prod.wait_state("app1", "PAIR");
    assert_eq!(read_all(&a.standby.file("app1"))[..8192], data[..]);
    a.host_mut("p1").mount();
    assert_eq!(read_all(&a.host("p1").file("app1"))[..8192], data[..]);
}

#[test]
fn a_second_mount_a_loose_key_and_a_deleted_volume_are_clear_errors() {
    let test = "a_second_mount_a_loose_key_and_a_deleted_volume_are_clear_errors";
    let Some(mut a) = Apart::start(test, &[HostSpec::full("p1", End::Prod)]) else {
        return;
    };
    a.pair("app1", "1MiB", &[]);
    a.prod.ok(&["volume", "create", "gone", "--size", "64KiB"]);
    a.host_mut("p1").mount();
    let p1 = a.host("p1");

    // A volume deleted while the host has it open: its I/O fails, the
    // mount drops it, nothing else is disturbed.
    let gone = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p1.file("gone"))
        .expect("open gone at p1");
    a.prod.ok(&["volume", "delete", "gone"]);
    let e = gone
        .write_all_at(&[1; 4096], 0)
        .expect_err("a write to a deleted volume");
    eprintln!("a write to a volume deleted under the host: {e}");
    assert!(
        matches!(
            e.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::EIO) | Some(libc::ESTALE)
        ),
        "{e}"
    );
    drop(gone);
    wait_for("the deleted volume gone from p1's mount", || {
        !p1.file("gone").exists()
    });

    // A second hbfs of p1, elsewhere: refused, saying which host and why.
    let second = p1.dir.join("second");
    std::fs::create_dir_all(&second).expect("mountpoint");
    let said = fails_saying(&mut p1.hbfs_command(&[&second.display().to_string()]));
    assert!(said.contains("p1"), "names the host: {said}");
    let lower = said.to_lowercase();
    assert!(
        lower.contains("already") || lower.contains("busy"),
        "says the host's mount is held: {said}"
    );
    assert!(
        !is_mounted(&second),
        "nothing mounted at the second mountpoint"
    );
    // The first mount is undisturbed: a sync write through it lands.
    let data = pattern(4096, 3);
    write_at(&p1.file("app1"), 4096, &data);
    assert_eq!(read_all(&a.standby.file("app1"))[4096..8192], data[..]);

    // A key file others can read: refused at start, naming the file.
    let loose = p1.dir.join("loose.key");
    write_mode(
        &loose,
        &std::fs::read_to_string(&p1.key).expect("key"),
        0o644,
    );
    let third = p1.dir.join("third");
    std::fs::create_dir_all(&third).expect("mountpoint");
    let said = fails_saying(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", p1.ns))
            .arg(bin("hbfs"))
            .args(["--storage", &p1.storage(), "--key"])
            .arg(&loose)
            .args(["--host", "p1"])
            .arg(&third),
    );
    assert!(
        said.contains(&loose.display().to_string()),
        "names the key file: {said}"
    );
    assert!(
        said.contains("0600") || said.contains("mode"),
        "says why: {said}"
    );
    assert!(!is_mounted(&third));
    // The same for a mirrord whose [[hosts.allow]] names that file: it
    // refuses to start, naming the host and the file.
    let dir = a.root.path().join("loose-mirrord");
    std::fs::create_dir_all(&dir).expect("dir");
    let (mut config, _, _) = mirrord_config(&dir, false);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text += &format!(
        "[hosts]\nlisten = \"127.0.0.1:{}\"\n[[hosts.allow]]\nhost = \"p1\"\nkey_file = \"{}\"\nvolumes = \"*\"\n",
        free_port(),
        loose.display()
    );
    config = dir.join("loose.toml");
    std::fs::write(&config, text).expect("config");
    let log = dir.join("mirrord.log");
    let mut mirrord = spawn_solo("mirrord", &config, &[], &log);
    wait_for("mirrord to refuse the loose key and exit", || {
        matches!(mirrord.0.try_wait(), Ok(Some(_)))
    });
    let status = mirrord.0.wait().expect("mirrord's status");
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !status.success(),
        "mirrord started with a loose host key: {said}"
    );
    assert!(
        said.contains(&loose.display().to_string()) && said.contains("p1"),
        "names the host and the key file: {said}"
    );
    // The running mount still works.
    let back = read_all(&p1.file("app1"));
    assert_eq!(back[4096..8192], data[..]);
}
