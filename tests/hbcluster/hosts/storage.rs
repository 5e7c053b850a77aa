//! One site's mirrord in its storage namespace ([`StorageSite`]): started
//! with `nsenter --net` (its own mount in the test's mount namespace, for
//! the test to read the bytes at the site), driven through hbctl on its
//! control socket from the test's thread.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::common::{failed, hbctl_ok, kill_child, run_hbctl, spawn_wrapped, wait_for, wait_ready};

/// One site's mirrord in its storage namespace.
pub struct StorageSite {
    pub name: String,
    pub ns: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// mirrord's own mount, on the storage machine: the test reads the
    /// bytes at the site there; no host uses it.
    pub mount: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub(super) child: Option<Child>,
}

impl StorageSite {
    /// Starts (or restarts) mirrord in its namespace and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let wrapper = [
            "nsenter".to_string(),
            format!("--net=/run/netns/{}", self.ns),
        ];
        self.child = Some(spawn_wrapped(&wrapper, "mirrord", &self.config, &self.log));
        let socket = self.socket.clone();
        let what = format!("mirrord of {}", self.name);
        wait_ready(&mut self.child, &what, &self.log, || {
            run_hbctl(&socket, &["volume", "list"]).status.success()
        });
    }

    /// kill -9 (its own mount is left for [`Drop`] or the next start to clear).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status();
    }

    /// mirrord's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// hbctl against this site's control socket.
    pub fn hbctl(&self, args: &[&str]) -> std::process::Output {
        run_hbctl(&self.socket, args)
    }

    /// hbctl's stdout; panics with its stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        hbctl_ok(&self.socket, &self.name, args)
    }

    /// hbctl expected to fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        failed(
            &format!("hbctl {args:?} at {}", self.name),
            self.hbctl(args),
        )
    }

    /// `pair status NAME --json`'s first entry, None if the pair is unknown.
    pub fn pair(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.hbctl(&["pair", "status", name, "--json"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pair status JSON");
        v.get(0).cloned()
    }

    /// Waits until pair `name` is in `state` here.
    pub fn wait_state(&self, name: &str, state: &str) {
        wait_for(
            &format!("pair {name} at {} to be {state}", self.name),
            || self.pair(name).is_some_and(|p| p["state"] == state),
        );
    }

    /// A volume's file on mirrord's own mount (the bytes at this site).
    pub fn file(&self, volume: &str) -> PathBuf {
        self.mount.join(volume)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until mirrord's log has a line with every one of `needles`.
    pub fn wait_log_line(&self, needles: &[&str]) {
        wait_for(
            &format!("a line with {needles:?} in the log of {}", self.name),
            || {
                self.log_text()
                    .lines()
                    .any(|l| needles.iter().all(|n| l.contains(n)))
            },
        );
    }
}

impl Drop for StorageSite {
    fn drop(&mut self) {
        self.kill();
    }
}
