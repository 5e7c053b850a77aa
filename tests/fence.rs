//! The fence of a PVOL whose SVOL was taken over (issue 22, point 5), with
//! real processes: a production site frozen (SIGSTOP of its hbd and
//! mirrord) past the timeout and thawed after the standby took over
//! acknowledges no write the new production lacks, while a writer at
//! production logs every acknowledged write; the pair stays outdated
//! (refusing writes with EROFS) across a restart of mirrord until a person
//! resolves it; hbd's step-down fences the pair even with the remote link down.

mod common;
mod hbcluster;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::{read_all, signal, wait_for, write_at, TwoSites};
use hbcluster::Cluster;
use serde_json::json;

const BLOCK: usize = 4096;
/// Blocks of the 1 MiB app pair the writer cycles over.
const BLOCKS: u64 = 256;

/// A host writing numbered 4 KiB records to a volume's file on hbfs in a
/// loop (`dd`, O_DIRECT, fdatasync), appending `N OFFSET` to `acked.log` for
/// every write acknowledged and dd's complaint to `errors.log` for every
/// write refused, until `stop` exists. A process of its own: the test
/// process holds no file of hbfs open while mirrord is stopped (closing it,
/// even at a child's exec, would wait for mirrord).
struct Writer {
    child: Option<Child>,
    dir: PathBuf,
}

impl Writer {
    fn start(file: &Path, dir: &Path) -> Writer {
        std::fs::create_dir_all(dir).expect("writer dir");
        let script = format!(
            "n=0; while [ ! -e stop ]; do n=$((n+1)); at=$((n % {BLOCKS})); \
             if printf 'fence-test record %012d\\n' $n | dd of='{file}' bs={BLOCK} seek=$at \
                conv=notrunc,sync,fdatasync oflag=direct status=none 2>>errors.log; \
             then echo \"$n $((at * {BLOCK}))\" >> acked.log; else sleep 0.002; fi; done",
            file = file.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .current_dir(dir)
            .spawn()
            .expect("start the writer");
        Writer {
            child: Some(child),
            dir: dir.to_path_buf(),
        }
    }

    /// The acknowledged writes so far, in order: (record, offset).
    fn acked(&self) -> Vec<(u64, u64)> {
        let text = std::fs::read_to_string(self.dir.join("acked.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (n, at) = l.split_once(' ')?;
                Some((n.parse().ok()?, at.parse().ok()?))
            })
            .collect()
    }

    /// dd's complaints about refused writes so far.
    fn refusals(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("dd:"))
            .map(str::to_string)
            .collect()
    }

    fn stop(&mut self) {
        std::fs::write(self.dir.join("stop"), "").expect("stop file");
        let mut child = self.child.take().expect("running");
        wait_for("the writer to stop", || {
            child.try_wait().expect("writer status").is_some()
        });
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The record number a block holds, if it holds one.
fn record_in(block: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(block.get(..31)?).ok()?;
    text.strip_prefix("fence-test record ")?.trim().parse().ok()
}

/// The records among `acked` that the volume `copy` lacks.
fn missing(acked: &[(u64, u64)], copy: &Path) -> Vec<u64> {
    let data = read_all(copy);
    acked
        .iter()
        .filter(|(n, at)| record_in(&data[*at as usize..][..BLOCK]) != Some(*n))
        .map(|(n, _)| *n)
        .collect()
}

#[test]
fn a_thawed_production_acknowledges_no_write_the_new_production_lacks() {
    let Some(c) = Cluster::start_with(
        "a_thawed_production_acknowledges_no_write_the_new_production_lacks",
        // Production protects the same pair it would take over.
        |_, prod, _| *prod = prod.replace("[failover]\n", "[failover]\ntake_over = [\"app\"]\n"),
    ) else {
        return;
    };
    c.sites.prod.ok(&["pair", "set", "app", "--fence", "data"]);
    c.standby
        .wait_table("the standby armed", |t| t["armed"] == true);
    let mut writer = Writer::start(&c.sites.prod.file("app"), &c.out.join("writer"));
    wait_for("the writer's first 50 acknowledged writes", || {
        writer.acked().len() >= 50
    });
    // A paused VM: production's hbd and mirrord stop past the timeout.
    let stalled = [
        c.prod.pid().expect("prod hbd"),
        c.sites.prod.pid().expect("prod mirrord"),
    ];
    for pid in stalled {
        signal(pid, "STOP");
    }
    wait_for("the failover hook", || c.failovers() == 1);
    c.sites.standby.wait_state("app", "SSWS");
    // Every write acknowledged from here on was acknowledged after the takeover.
    let (acked_before, refused_before) = (writer.acked().len(), writer.refusals().len());
    for pid in stalled {
        signal(pid, "CONT");
    }
    c.prod
        .wait_table("production STEPPED DOWN", |t| t["stepped_down"] == true);
    // The writer goes on trying after the thaw: 20 writes answered either way.
    wait_for("20 writes answered after the thaw", || {
        writer.refusals().len() >= refused_before + 20 || writer.acked().len() >= acked_before + 20
    });
    writer.stop();
    let acked = writer.acked();
    let after = &acked[acked_before..];
    let lacking = missing(after, &c.sites.standby.file("app"));
    assert!(
        lacking.is_empty(),
        "{} of {} writes acknowledged after the takeover are not at the new production (first: {:?}); see {}",
        lacking.len(),
        after.len(),
        &lacking[..lacking.len().min(5)],
        writer.dir.display()
    );
    c.sites.prod.wait_field("app", "/outdated", json!(true));
    let refusals = writer.refusals();
    let last = refusals.last().cloned().unwrap_or_default();
    assert!(last.contains("Read-only file system"), "{last}");
    assert!(
        refusals[refused_before..]
            .iter()
            .all(|r| r.contains("Read-only file system") || r.contains("Input/output error")),
        "{refusals:?}"
    );
    let app = c.sites.prod.pair("app").expect("app at prod");
    assert_eq!(app["state"], "PSUE", "{app}");
    let reason = app["outdated_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("taken over by site 'standby' at "),
        "{app}"
    );
    // Production acknowledged nothing the standby lacks. A sync write in
    // flight when production froze may have landed on its PVOL (its host
    // was told it failed): that one block makes the verdict split brain,
    // the safe direction (a person chooses); never more than it.
    if app["verdict"]["kind"] == "split-brain" {
        let own = app["verdict"]["local_changed_blocks"]
            .as_u64()
            .unwrap_or(u64::MAX);
        assert!(own <= 1, "{app}");
    }
    if app["verdict"]["kind"] == "ahead" {
        assert_eq!(app["verdict"]["ahead"], "standby", "{app}");
    }
    let text = c.sites.prod.ok(&["pair", "status", "app"]);
    assert!(
        text.contains("outdated    yes: taken over by site 'standby'")
            && text.contains("--discard-local"),
        "{text}"
    );
}

/// Two sites with the pair `app` (sync, fence data), the standby taking it
/// over while the remote link is cut, then the link back: production learns
/// of the takeover.
fn taken_over(test: &str) -> Option<TwoSites> {
    let sites = TwoSites::start_with(
        test,
        common::Options {
            proxy: true,
            ..common::Options::default()
        },
    )?;
    sites.pair("app", "1MiB", &["--fence", "data"]);
    write_at(&sites.prod.file("app"), 0, b"written before the takeover");
    sites.proxy().cut();
    sites.standby.wait_state("app", "PSUE");
    sites.standby.ok(&["pair", "takeover", "app"]);
    write_at(
        &sites.standby.file("app"),
        8 * BLOCK as u64,
        b"the new production's write",
    );
    sites.proxy().restore();
    sites.prod.wait_field("app", "/outdated", json!(true));
    Some(sites)
}

/// A write to a volume's file at `site`, as the host sees it.
fn host_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all_at(data, 0)?;
    f.sync_data()
}

#[test]
fn an_outdated_pvol_refuses_writes_across_a_restart_until_a_person_resolves_it() {
    let Some(mut sites) =
        taken_over("an_outdated_pvol_refuses_writes_across_a_restart_until_a_person_resolves_it")
    else {
        return;
    };
    let app = sites.prod.pair("app").expect("app");
    assert_eq!(app["state"], "PSUE", "{app}");
    assert_eq!(app["verdict"]["kind"], "ahead", "{app}");
    assert_eq!(app["verdict"]["ahead"], "standby", "{app}");
    let e = host_write(&sites.prod.file("app"), b"late").expect_err("outdated");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    // A plain resync would overwrite the new production: it says the ways out.
    let e = sites.prod.fails(&["pair", "resync", "app"]);
    assert!(
        e.contains("outdated") && e.contains("--discard-local") && e.contains("--reverse"),
        "{e}"
    );
    // Across a restart of mirrord (clean, then kill -9) the fence holds.
    sites.prod.stop();
    sites.prod.start();
    assert_eq!(sites.prod.pair_at("app", "/outdated"), json!(true));
    sites.prod.kill();
    sites.prod.start();
    sites.prod.wait_link_up();
    assert_eq!(sites.prod.pair_at("app", "/outdated"), json!(true));
    assert_eq!(sites.prod.pair_at("app", "/state"), json!("PSUE"));
    let e = host_write(&sites.prod.file("app"), b"late").expect_err("still outdated");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    // The person keeps the new production's data.
    let out = sites.prod.ok(&["pair", "resync", "app", "--discard-local"]);
    assert!(out.contains("discarded"), "{out}");
    sites.prod.wait_state("app", "PAIR");
    sites.standby.wait_state("app", "PAIR");
    let app = sites.prod.pair("app").expect("app");
    assert_eq!(app["role"], "svol", "{app}");
    assert_eq!(app["outdated"], false, "{app}");
    assert!(sites.identical("app"));
    let data = read_all(&sites.prod.file("app"));
    assert!(data[8 * BLOCK..].starts_with(b"the new production's write"));
}

#[test]
fn a_reverse_resync_from_the_site_that_took_over_clears_the_fence() {
    let Some(sites) = taken_over("a_reverse_resync_from_the_site_that_took_over_clears_the_fence")
    else {
        return;
    };
    sites.standby.ok(&["pair", "resync", "app", "--reverse"]);
    sites.standby.wait_state("app", "PAIR");
    sites.prod.wait_state("app", "PAIR");
    assert_eq!(sites.prod.pair_at("app", "/outdated"), json!(false));
    assert!(sites.identical("app"));
    // And the way home, through a takeover at production: writable again.
    sites.prod.ok(&["pair", "takeover", "app"]);
    sites.prod.ok(&["pair", "resync", "app", "--reverse"]);
    sites.prod.wait_state("app", "PAIR");
    host_write(&sites.prod.file("app"), b"home again").expect("writable at home");
    assert!(sites.identical("app"));
}

#[test]
fn a_step_down_fences_the_pair_even_with_the_remote_link_down() {
    let Some(c) = Cluster::start_with(
        "a_step_down_fences_the_pair_even_with_the_remote_link_down",
        |_, prod, _| *prod = prod.replace("[failover]\n", "[failover]\ntake_over = [\"app\"]\n"),
    ) else {
        return;
    };
    c.standby
        .wait_table("the standby armed", |t| t["armed"] == true);
    let stalled = [
        c.prod.pid().expect("prod hbd"),
        c.sites.prod.pid().expect("prod mirrord"),
    ];
    for pid in stalled {
        signal(pid, "STOP");
    }
    wait_for("the failover hook", || c.failovers() == 1);
    // The remote link (mirrord's, and the heartbeat mirrors on it) stays
    // down; production hears of the takeover over the network channel only.
    c.sites.proxy().cut();
    for pid in stalled {
        signal(pid, "CONT");
    }
    c.prod
        .wait_table("production STEPPED DOWN", |t| t["stepped_down"] == true);
    c.sites.prod.wait_field("app", "/outdated", json!(true));
    let app = c.sites.prod.pair("app").expect("app");
    assert_eq!(app["link_up"], false, "{app}");
    assert!(
        app["outdated_reason"]
            .as_str()
            .is_some_and(|r| r.contains("stepped down")),
        "{app}"
    );
    let e = host_write(&c.sites.prod.file("app"), b"late").expect_err("fenced");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    // The mark is set (and enforced) before mirrord's answer to hbd, which
    // may wait up to half the link timeout for a lost session to resume.
    wait_for("hbd's log of the fence", || {
        c.prod
            .log_text()
            .contains("step-down fence, pair 'app': pair 'app' outdated (PSUE)")
    });
}
