//! hbfs mounted in this process over a memory-backed [`Volumes`], on both
//! transports: the same checks, the same answers. Needs root and /dev/fuse;
//! the io_uring runs switch the kernel's `enable_uring` on for their
//! duration and restore it. Without root they say SKIPPED (and fail under CI=true).

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hbfs::{Errno, Serving, Transport, VolumeFile, Volumes};

#[derive(Default)]
struct Mem {
    files: Mutex<BTreeMap<String, (Vec<u8>, bool)>>,
}

impl Volumes for Mem {
    fn list(&self) -> Vec<VolumeFile> {
        let files = self.files.lock().expect("lock");
        files
            .iter()
            .map(|(name, (data, writable))| VolumeFile {
                name: name.clone(),
                size: data.len() as u64,
                writable: *writable,
            })
            .collect()
    }
    fn stat(&self, name: &str) -> Option<VolumeFile> {
        self.list().into_iter().find(|f| f.name == name)
    }
    fn read(&self, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        let files = self.files.lock().expect("lock");
        if name == "broken" {
            return Err(Errno::EIO);
        }
        let (data, _) = files.get(name).ok_or(Errno::ENOENT)?;
        let start = offset as usize;
        Ok(data[start..start + len as usize].to_vec())
    }
    fn write(&self, name: &str, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        if name == "broken" {
            return Err(Errno::EDQUOT);
        }
        let mut files = self.files.lock().expect("lock");
        let (data, _) = files.get_mut(name).ok_or(Errno::ENOENT)?;
        data[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
    fn sync(&self, name: &str) -> Result<(), Errno> {
        if name == "broken" {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or_default()
}

/// Sets `enable_uring` to Y while alive, then puts back what was there.
struct EnableUring(Option<String>);

static URING_USERS: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

impl EnableUring {
    fn on() -> EnableUring {
        let path = "/sys/module/fuse/parameters/enable_uring";
        let mut users = URING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if users.0 == 0 {
            users.1 = std::fs::read_to_string(path).ok();
            std::fs::write(path, "Y").expect("enable_uring");
        }
        users.0 += 1;
        EnableUring(None)
    }
}

impl Drop for EnableUring {
    fn drop(&mut self) {
        let _ = self.0.take();
        let mut users = URING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 {
            if let Some(v) = users.1.take() {
                let _ = std::fs::write("/sys/module/fuse/parameters/enable_uring", v.trim());
            }
        }
    }
}

fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && Path::new("/dev/fuse").exists();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test} needs root and /dev/fuse, and CI=true allows no skipping"
        );
        eprintln!("SKIPPED {test}: needs root and /dev/fuse");
    }
    ok
}

fn semantics(transport: Transport, test: &str) {
    if !can_mount(test) {
        return;
    }
    let _uring = (transport == Transport::Uring).then(EnableUring::on);
    let mem = Arc::new(Mem::default());
    {
        let mut files = mem.files.lock().expect("lock");
        files.insert("pvol".into(), (vec![0u8; 1 << 20], true));
        files.insert("svol".into(), (vec![7u8; 65536], false));
        files.insert("broken".into(), (vec![0u8; 8192], true));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mp = dir.path().join("mnt");
    let mount = hbfs::mount(mem.clone(), &mp, transport).expect("mount");
    let want = if transport == Transport::Uring {
        Serving::Uring
    } else {
        Serving::Classic
    };
    assert_eq!(mount.serving(), want, "{}", mount.why());

    let p = mp.join("pvol");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    for (offset, len) in [
        (0u64, 4096usize),
        (5000, 100),
        (4090, 20),
        (100_000, 300_000),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + offset as usize) as u8).collect();
        assert_eq!(f.write_at(&data, offset).expect("write"), len);
        let mut back = vec![0u8; len];
        f.read_exact_at(&mut back, offset).expect("read");
        assert!(back == data, "{len} bytes at {offset}");
        assert!(mem.files.lock().expect("lock")["pvol"].0[offset as usize..][..len] == data[..]);
    }
    let e = f.write_at(b"x", 1 << 20).expect_err("past the end");
    assert_eq!(errno(&e), libc::ENOSPC);
    assert_eq!(
        f.write_at(b"abcdefgh", (1 << 20) - 4).expect("cut short"),
        4
    );
    let mut tail = [0u8; 8];
    assert_eq!(f.read_at(&mut tail, (1 << 20) - 4).expect("read tail"), 4);
    assert_eq!(f.read_at(&mut tail, 1 << 20).expect("read past end"), 0);
    let e = f.set_len(4096).expect_err("truncate");
    assert_eq!(errno(&e), libc::EPERM);
    f.set_len(1 << 20).expect("same size is fine");
    f.sync_all().expect("fsync");
    assert_eq!(std::fs::metadata(&p).expect("stat").len(), 1 << 20);

    let s = mp.join("svol");
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(&s)
        .expect_err("SVOL for writing");
    assert_eq!(errno(&e), libc::EROFS);
    assert_eq!(std::fs::read(&s).expect("read svol"), vec![7u8; 65536]);
    let e = std::fs::File::create(mp.join("new")).expect_err("create");
    assert_eq!(errno(&e), libc::EPERM);
    let e = std::fs::remove_file(&p).expect_err("unlink");
    assert_eq!(errno(&e), libc::EPERM);
    let e = std::fs::metadata(mp.join("nothing")).expect_err("lookup");
    assert_eq!(errno(&e), libc::ENOENT);
    let names: Vec<String> = std::fs::read_dir(&mp)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["broken", "pvol", "svol"]);
    let st = nix::sys::statvfs::statvfs(&mp).expect("statfs");
    assert_eq!(st.blocks() as u64, (1 << 20) / 4096 + 65536 / 4096 + 2);
    assert_eq!(st.files() as u64, 3);

    // The volumes' errors reach the host as themselves.
    let b = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(mp.join("broken"))
        .expect("open");
    assert_eq!(
        errno(&b.write_at(&[1; 4096], 0).expect_err("EDQUOT")),
        libc::EDQUOT
    );
    assert_eq!(
        errno(&b.read_at(&mut [0; 4096], 0).expect_err("EIO")),
        libc::EIO
    );
    assert_eq!(errno(&b.sync_all().expect_err("ENOSPC")), libc::ENOSPC);
    drop(b);

    // Many writers at once keep their own data.
    std::thread::scope(|scope| {
        for t in 0..8u8 {
            let p = &p;
            scope.spawn(move || {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .expect("open");
                for i in 0..50u64 {
                    f.write_all_at(&[t; 512], (u64::from(t) * 50 + i) * 512)
                        .expect("write");
                }
            });
        }
    });
    let all = mem.files.lock().expect("lock")["pvol"].0.clone();
    for t in 0..8usize {
        assert!(all[t * 50 * 512..(t + 1) * 50 * 512]
            .iter()
            .all(|b| *b == t as u8));
    }
    drop(f);
    mount.unmount().expect("unmount");
    assert!(std::fs::read_dir(&mp).expect("empty dir").next().is_none());
}

#[test]
fn semantics_classic() {
    semantics(Transport::Classic, "semantics_classic");
}

#[test]
fn semantics_uring() {
    semantics(Transport::Uring, "semantics_uring");
}

#[test]
fn uring_is_refused_with_the_reason_when_the_kernel_does_not_offer_it() {
    if !can_mount("uring_is_refused") {
        return;
    }
    let path = "/sys/module/fuse/parameters/enable_uring";
    // Only meaningful while nobody else needs it on.
    let users = URING_USERS.lock().unwrap_or_else(|e| e.into_inner());
    if users.0 > 0
        || std::fs::read_to_string(path)
            .map(|v| v.trim() == "Y")
            .unwrap_or(false)
    {
        return;
    }
    // Held to the end: the io_uring tests wait meanwhile.
    let dir = tempfile::tempdir().expect("tempdir");
    let mp = dir.path().join("mnt");
    let err = hbfs::mount(Arc::new(Mem::default()), &mp, Transport::Uring)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("enable_uring"), "{err}");
    let auto = hbfs::mount(Arc::new(Mem::default()), &mp, Transport::Auto).expect("auto");
    assert_eq!(auto.serving(), Serving::Classic);
    assert!(auto.why().contains("enable_uring"), "{}", auto.why());
    drop(users);
}
