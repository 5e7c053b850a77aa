//! Two sites joined by two network paths, with real processes and real
//! networks: each site's mirrord in a network namespace of its own (its
//! hbfs mount in the test's mount namespace: `nsenter --net`), two IP
//! networks between them through a router namespace (`hbcluster::netns`).
//! A path is cut where a WAN would be cut, in the middle: the router drops
//! everything it forwards on that network (nftables), both ends stay up, so
//! only silence tells.
//!
//! One path cut during a stream of sync writes: no PSUE, no write error,
//! every block as the host last wrote it at the SVOL (a write applied
//! twice, late, would roll a block back); both cut: PSUE as before; one
//! restored: resync, and `pair verify` finds nothing different.

mod common;
mod hbcluster;

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use hbcluster::netns::{End, Hosts};

/// One site's mirrord in its namespace.
struct NsSite {
    name: &'static str,
    socket: PathBuf,
    mount: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NsSite {
    /// Writes the config of site `name` in `end`'s namespace, peer `peer`
    /// reached over both networks, and starts it.
    fn start(hosts: &Hosts, root: &Path, end: End, key: &Path) -> NsSite {
        let (name, peer, other) = match end {
            End::Prod => ("prod", "standby", End::Standby),
            End::Standby => ("standby", "prod", End::Prod),
        };
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("site dir");
        let (socket, mount, log) = (
            dir.join("mirrord.sock"),
            dir.join("hbfs"),
            dir.join("mirrord.log"),
        );
        let paths: Vec<String> = (0..2)
            .map(|k| {
                format!(
                    "{{ name = \"wan{k}\", remote = \"{}:7788\", local = \"{}\" }}",
                    hosts.addr(other, k),
                    hosts.addr(end, k)
                )
            })
            .collect();
        let text = format!(
            "site = \"{name}\"\ndata_dir = \"{data}\"\ncontrol_socket = \"{sock}\"\nmount = \"{mount}\"\n\
             [link]\nlisten = \"0.0.0.0:7788\"\npsk_file = \"{key}\"\ntimeout_ms = {TIMEOUT_MS}\n\
             [[peers]]\nsite = \"{peer}\"\npaths = [{paths}]\n",
            data = dir.join("data").display(),
            sock = socket.display(),
            mount = mount.display(),
            key = key.display(),
            paths = paths.join(", "),
        );
        let config = dir.join("mirrord.toml");
        std::fs::write(&config, text).expect("config");
        let netns = format!("--net=/run/netns/{}", hosts.ns(end));
        let wrapper = ["nsenter".to_string(), netns];
        let mut child = Some(spawn_wrapped(&wrapper, "mirrord", &config, &log));
        let s = socket.clone();
        wait_ready(&mut child, &format!("mirrord of {name}"), &log, || {
            run_hbctl(&s, &["volume", "list"]).status.success()
        });
        NsSite {
            name,
            socket,
            mount,
            log,
            child,
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        hbctl_ok(&self.socket, self.name, args)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("JSON")
    }

    fn pair(&self) -> serde_json::Value {
        self.json(&["pair", "status", "data0", "--json"])[0].clone()
    }

    fn state(&self) -> String {
        self.pair()["state"].as_str().unwrap_or("").to_string()
    }

    fn wait_state(&self, state: &str) {
        wait_for(&format!("{} data0 {state}", self.name), || {
            self.state() == state
        });
    }

    fn link(&self) -> serde_json::Value {
        self.json(&["link", "status", "--json"])[0].clone()
    }

    /// The path the bulk lane runs over now, if up.
    fn bulk_path(&self) -> Option<String> {
        let link = self.link();
        let lanes = link["lanes"].as_array()?.clone();
        let bulk = lanes.iter().find(|l| l["lane"] == "bulk")?;
        bulk["path"].as_str().map(str::to_string)
    }

    fn path_state(&self, name: &str) -> String {
        let link = self.link();
        link["paths"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name).cloned())
            .map(|p| p["state"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NsSite {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        let _ = std::process::Command::new("umount")
            .args(["-l", &self.mount.display().to_string()])
            .output();
    }
}

const TIMEOUT_MS: u64 = 2000;
const BLOCKS: u64 = 64;

/// Writes 4 KiB blocks round-robin over the first `BLOCKS` blocks of
/// `file` with O_DSYNC, each stamped with its sequence number, until
/// stopped; counts completions, remembers the longest wait.
struct Writer {
    done: Arc<AtomicU64>,
    longest_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Writer {
    fn start(file: PathBuf) -> Writer {
        let done = Arc::new(AtomicU64::new(0));
        let longest_us = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, l, s) = (
            Arc::clone(&done),
            Arc::clone(&longest_us),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DSYNC)
                .open(&file)
                .map_err(|e| format!("open {}: {e}", file.display()))?;
            let mut seq = 0u64;
            while !s.load(Ordering::SeqCst) {
                let block = seq % BLOCKS;
                let mut buf = vec![0u8; 4096];
                for chunk in buf.chunks_mut(16) {
                    chunk[..8].copy_from_slice(&seq.to_le_bytes());
                    chunk[8..].copy_from_slice(&block.to_le_bytes());
                }
                let started = Instant::now();
                f.write_all_at(&buf, block * 4096)
                    .map_err(|e| format!("write {seq} (block {block}): {e}"))?;
                let us = started.elapsed().as_micros() as u64;
                l.fetch_max(us, Ordering::SeqCst);
                d.fetch_add(1, Ordering::SeqCst);
                seq += 1;
            }
            Ok(())
        });
        Writer {
            done,
            longest_us,
            stop,
            thread: Some(thread),
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits until `more` writes beyond now have completed.
    fn wait_more(&self, more: u64, what: &str) {
        let target = self.done() + more;
        wait_for(what, || self.done() >= target);
    }

    fn finish(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map_or(Ok(()), |t| {
            t.join().unwrap_or(Err("writer panicked".into()))
        })
    }
}

fn first_blocks(file: &Path) -> Vec<u8> {
    let f = std::fs::File::open(file).expect("open");
    let mut buf = vec![0u8; (BLOCKS * 4096) as usize];
    f.read_exact_at(&mut buf, 0).expect("read");
    buf
}

#[test]
fn a_cut_path_moves_the_link_to_the_other_without_psue_and_both_cut_is_a_link_loss() {
    let test = "a_cut_path_moves_the_link_to_the_other_without_psue_and_both_cut_is_a_link_loss";
    if !can_mount(test) || !ensure_tool(test, "nsenter", "util-linux") {
        return;
    }
    let Some(hosts) = Hosts::create(test, 2) else {
        return;
    };
    if !ensure_tool(test, "nft", "nftables") {
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("hbmirror-paths-")
        .tempdir()
        .expect("tempdir");
    let key = root.path().join("link.key");
    std::fs::write(&key, "test-key-0123456789abcdef\n").expect("key");
    let standby = NsSite::start(&hosts, root.path(), End::Standby, &key);
    let prod = NsSite::start(&hosts, root.path(), End::Prod, &key);
    for site in [&prod, &standby] {
        site.ok(&["volume", "create", "data0", "--size", "8MiB"]);
    }
    prod.ok(&[
        "pair", "create", "data0", "--pvol", "data0", "--peer", "standby",
    ]);
    prod.wait_state("PAIR");
    standby.wait_state("PAIR");
    let link = prod.link();
    assert_eq!(link["sealed"], true, "{link}");
    assert_eq!(link["paths"].as_array().map(Vec::len), Some(2), "{link}");

    // One path cut under a stream of sync writes.
    let writer = Writer::start(prod.mount.join("data0"));
    writer.wait_more(200, "writes flowing");
    let used = prod.bulk_path().expect("the bulk lane is up");
    let (cut, other) = if used == "wan0" { (0, 1) } else { (1, 0) };
    let before = writer.longest_us.swap(0, Ordering::SeqCst);
    hosts.drop_between(cut, true);
    wait_for("the bulk lane on the other path", || {
        prod.bulk_path().as_deref() == Some(format!("wan{other}").as_str())
    });
    writer.wait_more(200, "writes flowing again");
    eprintln!(
        "longest sync write: {before} us before the cut, {} us across it (link timeout {TIMEOUT_MS} ms)",
        writer.longest_us.load(Ordering::SeqCst)
    );
    assert_eq!(prod.state(), "PAIR", "{}", prod.log_text());
    assert_eq!(standby.state(), "PAIR", "{}", standby.log_text());
    for site in [&prod, &standby] {
        let log = site.log_text();
        assert!(!log.contains("remote link down"), "{}:\n{log}", site.name);
        assert!(!log.contains("suspend"), "{}:\n{log}", site.name);
    }
    let link = prod.link();
    eprintln!("prod's link after the cut: {link:#}");
    let resumed: u64 = link["lanes"].as_array().map_or(0, |l| {
        l.iter()
            .map(|l| l["sessions_resumed"].as_u64().unwrap_or(0))
            .sum()
    });
    assert!(resumed >= 1, "a session resumed on the other path: {link}");
    assert_eq!(prod.path_state(&format!("wan{cut}")), "down");
    assert_eq!(prod.path_state(&format!("wan{other}")), "up");
    writer.finish().expect("no write failed");
    // Every block as the host last wrote it: nothing applied late or twice.
    assert_eq!(
        first_blocks(&prod.mount.join("data0")),
        first_blocks(&standby.mount.join("data0")),
        "the SVOL holds what the PVOL holds"
    );

    // Both paths cut: a link loss, as before.
    hosts.drop_between(other, true);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .open(prod.mount.join("data0"))
        .expect("open");
    // The pair's fence is `never`: the write succeeds, tracked dirty.
    f.write_all_at(&[9u8; 4096], 100 * 4096)
        .expect("write during the loss");
    prod.wait_state("PSUE");
    standby.wait_state("PSUE");

    // One path back: the link returns, a resync copies what changed.
    hosts.drop_between(cut, false);
    wait_for("the bulk lane back", || prod.bulk_path().is_some());
    prod.ok(&["pair", "resync", "data0"]);
    prod.wait_state("PAIR");
    prod.ok(&["pair", "verify", "data0", "--watch"]);
    let verify = &prod.pair()["verify"];
    assert_eq!(verify["differing_blocks"], 0, "{verify}");
    assert!(
        verify["checked_blocks"].as_u64().unwrap_or(0) > 0,
        "{verify}"
    );
    drop((prod, standby));
    drop(hosts);
}
