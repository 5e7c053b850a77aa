//! What a test changes on this machine, each undone on drop: FUSE over
//! io_uring switched on ([`UringSwitch`]), a systemd notify socket, the OCF
//! agents installed for Pacemaker, a tiny tmpfs that fills up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::skip;

/// `/sys/module/fuse/parameters/enable_uring` switched on while any guard
/// lives (within this test binary), then put back as it was.
pub struct UringSwitch(());

const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";
static URING_USERS: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

impl UringSwitch {
    /// Switches FUSE over io_uring on; None (SKIPPED printed, or a failure
    /// under CI=true) when this kernel has no such switch.
    pub fn on(test: &str) -> Option<UringSwitch> {
        let mut users = URING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if users.0 == 0 {
            let Ok(was) = std::fs::read_to_string(ENABLE_URING) else {
                skip(
                    test,
                    &format!("needs FUSE over io_uring (Linux 6.14+ with CONFIG_FUSE_IO_URING: {ENABLE_URING})"),
                );
                return None;
            };
            std::fs::write(ENABLE_URING, "Y").expect("switch enable_uring on");
            users.1 = Some(was.trim().to_string());
        }
        users.0 += 1;
        Some(UringSwitch(()))
    }
}

impl Drop for UringSwitch {
    fn drop(&mut self) {
        let mut users = URING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 {
            if let Some(was) = users.1.take() {
                let _ = std::fs::write(ENABLE_URING, was);
            }
        }
    }
}

/// A listener on a `NOTIFY_SOCKET` path, as systemd has for a `Type=notify`
/// service: each datagram is one notification (`READY=1\nSTATUS=...`).
pub struct NotifySocket {
    pub path: PathBuf,
    socket: std::os::unix::net::UnixDatagram,
}

impl NotifySocket {
    /// Binds a notify socket at `path`.
    pub fn bind(path: &Path) -> NotifySocket {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("bind NOTIFY_SOCKET");
        NotifySocket {
            path: path.to_path_buf(),
            socket,
        }
    }

    /// The next notification, or None after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("timeout");
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// Whether `path` is a mount point now (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// The OCF resource agents of `packaging/ocf` installed for Pacemaker under
/// a provider of their own (`/usr/lib/ocf/resource.d/PROVIDER`), removed on drop.
pub struct OcfProvider {
    pub name: String,
    pub dir: PathBuf,
}

impl OcfProvider {
    /// Links the agents under provider `name`.
    pub fn install(name: &str) -> OcfProvider {
        let dir = Path::new("/usr/lib/ocf/resource.d").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("OCF provider dir");
        let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ocf");
        for agent in ["pair", "hbd"] {
            std::os::unix::fs::symlink(agents.join(agent), dir.join(agent)).expect("link agent");
        }
        OcfProvider {
            name: name.into(),
            dir,
        }
    }
}

impl Drop for OcfProvider {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tmpfs of a few hundred KiB, unmounted when dropped: a backing store
/// that runs out of space when told to.
pub struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    pub fn mount(dir: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs at {}", dir.display());
        SmallFs { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Fills the filesystem with a filler file until it is full.
    pub fn fill(&self) {
        use std::os::unix::fs::FileExt;
        let filler = std::fs::File::create(self.path("filler")).expect("filler");
        let chunk = vec![0x5a; 4096];
        let mut offset = 0u64;
        while filler.write_all_at(&chunk, offset).is_ok() {
            offset += chunk.len() as u64;
        }
    }

    pub fn free(&self) {
        std::fs::remove_file(self.path("filler")).expect("remove filler");
    }

    pub fn available(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        s.blocks_available() as u64 * s.fragment_size() as u64
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
