//! `hbctl monitor` in a real terminal (tmux: `send-keys`, `capture-pane`)
//! against two real sites and a pair of hbds; and its plain output when
//! not on a terminal.

mod common;

use std::process::Command;

use common::*;

/// A tmux server of the test's own (`-L`), killed on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()
            .expect("tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "mon"]).stdout).into_owned()
    }

    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let start = std::time::Instant::now();
        while start.elapsed() < DEADLINE {
            last = self.screen();
            if pred(&last) {
                return last;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the monitor never showed {what}; the screen:\n{last}");
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "mon"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn monitor_shows_pairs_channels_and_events_and_switches_views() {
    let test = "monitor_shows_pairs_channels_and_events_and_switches_views";
    if !ensure_tool(test, "tmux", "tmux") {
        return;
    }
    let Some(mut sites) = TwoSites::start(test) else {
        return;
    };
    sites.paired_volume("d0", "1M");
    let (a, b) = (free_port(), free_port());
    let dir = sites.root.path().join("hbd");
    let mut prod = Hbd::new(
        &dir.join("p"),
        "p1",
        &hbd_text(&dir.join("p"), "p1", "production", "s1", (a, b)),
    );
    let mut standby = Hbd::new(
        &dir.join("s"),
        "s1",
        &hbd_text(&dir.join("s"), "s1", "standby", "p1", (b, a)),
    );
    prod.start();
    standby.start();
    standby.ok(&["hb", "rearm"]);

    // Not on a terminal: one plain snapshot.
    let text = run_ok(
        command("hbctl")
            .args(["monitor", "--mirrord"])
            .arg(&sites.prod.socket)
            .arg("--hbd")
            .arg(&prod.socket),
    );
    assert!(
        text.contains("pairs (mirrord)") && text.contains("d0") && text.contains("PAIR"),
        "{text}"
    );
    assert!(text.contains("network"), "{text}");
    let json = run_ok(
        command("hbctl")
            .args(["--json", "monitor", "--mirrord"])
            .arg(&sites.prod.socket)
            .arg("--hbd")
            .arg(&prod.socket),
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON snapshot");
    assert_eq!(v["pairs"][0]["name"], "d0", "{v}");
    assert_eq!(v["table"]["host"], "p1", "{v}");
    // HBCTL_SOCKET names mirrord as --socket does; two different sockets are refused.
    let env = run_ok(
        command("hbctl")
            .args(["--json", "monitor", "--hbd"])
            .arg(&prod.socket)
            .env("HBCTL_SOCKET", &sites.prod.socket),
    );
    let v: serde_json::Value = serde_json::from_str(&env).expect("JSON snapshot");
    assert_eq!(v["pairs"][0]["name"], "d0", "{v}");
    let said = run_fails(
        command("hbctl")
            .args(["monitor", "--mirrord", "/nonexistent/a.sock", "--socket"])
            .arg(&sites.prod.socket),
    );
    assert!(said.contains("give one"), "{said}");

    // In a terminal.
    let tmux = Tmux {
        server: format!("hbmirror-test-{}", std::process::id()),
    };
    // The global --socket names mirrord for the monitor too.
    let command = format!(
        "{} --socket {} monitor --hbd {} --interval-ms 300",
        bin("hbctl").display(),
        sites.prod.socket.display(),
        prod.socket.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "mon",
        "-x",
        "180",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let screen = tmux.wait_screen("the pair with its state and the link RTT", |s| {
        s.contains("1 overview")
            && s.contains("d0")
            && s.contains("PAIR")
            && s.contains(" ms")
            && s.contains("network")
    });
    assert!(
        screen.contains("RTT") && screen.contains("LAST SEEN"),
        "{screen}"
    );
    if std::env::var_os("HBMIRROR_SHOW_MONITOR").is_some() {
        eprintln!("{screen}");
    }
    // The heartbeat view: the verdict and the channel's health.
    tmux.run(&["send-keys", "-t", "mon", "3"]);
    tmux.wait_screen("the heartbeat view", |s| {
        s.contains("production p1: peer ALIVE via network")
            && s.contains("good")
            && !s.contains("ROLE")
    });
    // The events view: the rearm above is there.
    tmux.run(&["send-keys", "-t", "mon", "4"]);
    tmux.run(&["send-keys", "-t", "mon", "Tab"]);
    tmux.wait_screen("the overview again after Tab", |s| {
        s.contains("ROLE") && s.contains("CHANNEL")
    });
    tmux.run(&["send-keys", "-t", "mon", "BTab"]);
    tmux.wait_screen("the events view", |s| {
        s.contains(" events ") && !s.contains("ROLE")
    });
    // Live: a link loss shows without a key pressed.
    tmux.run(&["send-keys", "-t", "mon", "2"]);
    tmux.wait_screen("the pairs view", |s| {
        s.contains("ROLE") && !s.contains("CHANNEL")
    });
    sites.standby.kill();
    tmux.wait_screen("the link loss, live", |s| {
        s.contains("PSUE") && s.contains("DOWN")
    });
    // q quits and gives the terminal back.
    tmux.run(&["send-keys", "-t", "mon", "q"]);
    wait_for("the monitor to quit on q", || !tmux.alive());
    drop(standby);
}
