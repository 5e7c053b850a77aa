//! One host of [`super::Apart`]: its namespace, its storage path (a veth
//! to its site's storage namespace, cut there with nftables or taken down
//! at its end), its key, its own `hbfs --storage` mount ([`Hbfs`]) and its
//! hbd. Driven from the test's thread.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::HOST_PORT;
use crate::common::{bin, is_mounted, kill_child, wait_ready, Hbd};
use crate::hbcluster::netns::{must, End};

/// A host's `hbfs --storage` process and its mount.
pub struct Hbfs {
    pub mount: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Hbfs {
    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9 and the mount cleared.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Hbfs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One host: its namespace, its storage path, its key, its mount and hbd.
pub struct Host {
    /// Dropped first: hbd stops before its volumes go.
    pub hbd: Option<Hbd>,
    pub hbfs: Option<Hbfs>,
    pub id: String,
    pub site: End,
    /// Its place on the LAN (its namespace and address there).
    pub lan_index: usize,
    pub ns: String,
    /// The storage namespace of its site, and its veth's end there.
    pub storage_ns: String,
    pub storage_if: String,
    /// mirrord's address for this host (the storage end of its veth).
    pub storage_addr: String,
    /// Its key (mode 0600), the one mirrord's `[[hosts.allow]]` names.
    pub key: PathBuf,
    pub dir: PathBuf,
    /// Where its hbfs mounts its site's volumes.
    pub mount: PathBuf,
}

impl Host {
    /// `ADDR:PORT` of its site's mirrord for hosts.
    pub fn storage(&self) -> String {
        format!("{}:{HOST_PORT}", self.storage_addr)
    }

    /// The command prefix that runs a program in its network namespace
    /// (and in the test's mount namespace).
    pub fn wrapper(&self) -> Vec<String> {
        vec!["nsenter".into(), format!("--net=/run/netns/{}", self.ns)]
    }

    /// `hbfs --storage ... --key ... --host ID` run in its namespace, with
    /// `extra` arguments (the mountpoint last among them, or not at all).
    pub fn hbfs_command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(bin("hbfs"))
            .arg("--storage")
            .arg(self.storage())
            .arg("--key")
            .arg(&self.key)
            .arg("--host")
            .arg(&self.id)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Mounts its site's volumes at [`Host::mount`] with `extra` options
    /// (`--io-timeout-ms`, ...) and waits until the mount is there.
    pub fn mount_with(&mut self, extra: &[&str]) {
        assert!(self.hbfs.is_none(), "{} already mounted", self.id);
        std::fs::create_dir_all(&self.mount).expect("mountpoint");
        let log = self.dir.join("hbfs.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("hbfs log");
        let mut args: Vec<&str> = extra.to_vec();
        let mount = self.mount.display().to_string();
        args.push(&mount);
        let child = self
            .hbfs_command(&args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn hbfs for {}: {e}", self.id));
        let mut hbfs = Hbfs {
            mount: self.mount.clone(),
            log,
            child: Some(child),
        };
        let what = format!("hbfs of {}", self.id);
        wait_ready(&mut hbfs.child, &what, &hbfs.log.clone(), || {
            is_mounted(&self.mount) && std::fs::read_dir(&self.mount).is_ok()
        });
        self.hbfs = Some(hbfs);
    }

    /// Mounts with the defaults.
    pub fn mount(&mut self) {
        self.mount_with(&[]);
    }

    /// A volume's file on this host's own mount.
    pub fn file(&self, volume: &str) -> PathBuf {
        self.mount.join(volume)
    }

    /// Starts its hbd with `config` in its namespace; waits until it answers.
    pub fn start_hbd(&mut self, config: &str) {
        self.prepare_hbd(config);
        self.restart_hbd();
    }

    /// Writes its hbd's `config`, to start later ([`Host::restart_hbd`]).
    pub fn prepare_hbd(&mut self, config: &str) {
        self.hbd = Some(Hbd::new(&self.dir.join("hbd"), &self.id, config));
    }

    /// Starts its hbd again (after a kill) with the config it had.
    pub fn restart_hbd(&mut self) {
        let wrapper = self.wrapper();
        self.hbd
            .as_mut()
            .expect("an hbd config")
            .start_wrapped(&wrapper);
    }

    /// Its hbd (it must run).
    pub fn hbd(&self) -> &Hbd {
        self.hbd.as_ref().expect("hbd started")
    }

    /// Drops (or lets through again) everything between this host and its
    /// storage, in the storage namespace; both ends of the veth stay up.
    pub fn cut_storage(&self, on: bool) {
        let table = format!("hbst{}", self.lan_index);
        let nft = |cmd: String| must("ip", &["netns", "exec", &self.storage_ns, "nft", &cmd]);
        if on {
            nft(format!("add table inet {table}"));
            for (hook, dir) in [("input", "iifname"), ("output", "oifname")] {
                nft(format!(
                    "add chain inet {table} {hook} {{ type filter hook {hook} priority 0 ; policy accept ; }}"
                ));
                nft(format!(
                    "add rule inet {table} {hook} {dir} \"{}\" drop",
                    self.storage_if
                ));
            }
        } else {
            nft(format!("delete table inet {table}"));
        }
    }

    /// Takes this host's end of its storage veth down, or up.
    pub fn storage_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        must("ip", &["-n", &self.ns, "link", "set", "st0", state]);
    }
}
