//! hbd processes for a test: one host's [`Hbd`] (config, process, hbctl,
//! the status table read as JSON, waiting on its counters).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use super::*;

/// One host's hbd process.
pub struct Hbd {
    pub name: String,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub dir: PathBuf,
    /// Extra environment of the process (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Hbd {
    /// Writes `config_text` as this hbd's config (under `dir`).
    pub fn new(dir: &Path, name: &str, config_text: &str) -> Hbd {
        std::fs::create_dir_all(dir).expect("hbd dir");
        let config = dir.join("hbd.toml");
        std::fs::write(&config, config_text).expect("hbd config");
        Hbd {
            name: name.into(),
            socket: dir.join("hbd.sock"),
            config,
            log: dir.join("hbd.log"),
            dir: dir.to_path_buf(),
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts hbd and waits until it answers.
    pub fn start(&mut self) {
        self.child = Some(spawn_daemon("hbd", &self.config, &self.log, &self.env));
        let (what, log) = (format!("hbd of {}", self.name), self.log.clone());
        let socket = self.socket.clone();
        wait_ready(&mut self.child, &what, &log, || {
            run_hbctl(&socket, &["hb", "status"]).status.success()
        });
    }

    /// kill -9.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Runs `hbctl hb ...` against this hbd.
    pub fn hbctl(&self, args: &[&str]) -> Output {
        run_hbctl(&self.socket, args)
    }

    /// Runs hbctl and returns its stdout; panics with its stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        hbctl_ok(&self.socket, &format!("hbd {}", self.name), args)
    }

    /// The status table as JSON.
    pub fn table(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["hb", "status", "--json"])).expect("table JSON")
    }

    /// The device entry of mirror `name`, if installed.
    pub fn device(&self, name: &str) -> Option<serde_json::Value> {
        let t = self.table();
        t["devices"].as_array().and_then(|d| {
            d.iter()
                .find(|d| d["name"] == name && d["status"] != "NULL")
                .cloned()
        })
    }

    /// Waits until `pred` holds for the table.
    pub fn wait_table(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        wait_for(&format!("{what} at hbd {}", self.name), || {
            pred(&self.table())
        });
    }

    /// hbd's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// hbd's process id, while it runs (for SIGSTOP / SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        pid_of(&self.child)
    }

    /// Runs hbctl expecting failure; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        failed(
            &format!("hbctl {args:?} at hbd {}", self.name),
            self.hbctl(args),
        )
    }

    /// A number in the status table, found by a path of keys (`network.count`)
    /// or, for a mirror, `mirror:NAME` then keys in its device entry
    /// (`mirror:hb0.seen.count`). Zero when absent.
    pub fn number(&self, path: &str) -> u64 {
        let t = self.table();
        let mut parts = path.split('.');
        let mut at = match parts.next() {
            Some(first) if first.starts_with("mirror:") => {
                let name = &first["mirror:".len()..];
                t["devices"]
                    .as_array()
                    .and_then(|d| {
                        d.iter()
                            .find(|d| d["name"] == name && d["status"] != "NULL")
                            .cloned()
                    })
                    .unwrap_or_default()
            }
            Some(first) => t[first].clone(),
            None => t,
        };
        for part in parts {
            at = at[part].clone();
        }
        at.as_u64().unwrap_or(0)
    }

    /// Waits until the number at `path` (see [`Hbd::number`]) has grown by
    /// `by`: a positive sign that this hbd is making progress.
    pub fn wait_advance(&self, path: &str, by: u64) {
        let start = self.number(path);
        wait_for(
            &format!(
                "{path} at hbd {} to advance by {by} from {start}",
                self.name
            ),
            || self.number(path) >= start + by,
        );
    }

    /// Starts hbd through `wrapper` (e.g. `ip netns exec NS`: the wrapper
    /// must exec hbd, so that its pid is hbd's) and waits until it answers.
    pub fn start_wrapped(&mut self, wrapper: &[String]) {
        self.child = Some(spawn_wrapped(wrapper, "hbd", &self.config, &self.log));
        let (what, log) = (format!("hbd of {}", self.name), self.log.clone());
        let socket = self.socket.clone();
        wait_ready(&mut self.child, &what, &log, || {
            run_hbctl(&socket, &["hb", "status"]).status.success()
        });
    }
}

impl Drop for Hbd {
    fn drop(&mut self) {
        self.kill();
    }
}
