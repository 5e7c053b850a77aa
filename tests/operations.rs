//! Operating hbmirror as the people who run drbd, corosync and pacemaker
//! expect: systemd units and readiness (a real NOTIFY_SOCKET), `--check`,
//! hbctl's `--json` errors and exit statuses, `hb events --follow`, and the
//! man pages and completions generated from the clap definitions. Metrics
//! and logs are in `observability.rs`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Waits for a notification containing `needle`, calling `at` on it at once.
fn wait_notification(notify: &NotifySocket, needle: &str, mut at: impl FnMut(&str)) -> String {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(message) = notify.recv(Duration::from_millis(200)) {
            if message
                .lines()
                .any(|l| l == needle || l.starts_with(needle))
            {
                at(&message);
                return message;
            }
        }
    }
    panic!("no notification {needle} within {DEADLINE:?}");
}

#[test]
fn systemd_units_verify() {
    if !ensure_tool("systemd_units_verify", "systemd-analyze", "systemd") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd");
    let bins = bin("mirrord")
        .parent()
        .expect("bin dir")
        .display()
        .to_string();
    let mut names = Vec::new();
    for (file, instance) in [
        ("mirrord@.service", "mirrord@prod.service"),
        ("hbd.service", "hbd.service"),
    ] {
        let text = std::fs::read_to_string(units.join(file)).expect("unit");
        assert!(text.contains("Type=notify"), "{file}: not Type=notify");
        assert!(text.contains("StateDirectory=hbmirror"), "{file}");
        assert!(text.contains("RuntimeDirectory=hbmirror"), "{file}");
        assert!(text.contains("Before=") && text.contains("pacemaker.service"));
        for hiding in [
            "PrivateTmp",
            "ProtectSystem",
            "ProtectHome",
            "PrivateDevices",
            "PrivateMounts",
            "ReadOnlyPaths",
            "TemporaryFileSystem",
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(hiding)),
                "{file} sets {hiding}, which would hide the hbfs mount"
            );
        }
        // The packaged paths of the binaries, pointed at the built ones.
        std::fs::write(
            dir.path().join(instance),
            text.replace("/usr/bin/", &format!("{bins}/")),
        )
        .expect("unit copy");
        names.push(dir.path().join(instance));
    }
    let hbd = std::fs::read_to_string(units.join("hbd.service")).expect("unit");
    assert!(
        hbd.contains("WatchdogSec="),
        "hbd.service has no WatchdogSec="
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn mirrord_is_ready_after_its_mount_and_socket() {
    let test = "mirrord_is_ready_after_its_mount_and_socket";
    if !can_mount(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, socket, hbfs) = mirrord_config(dir.path(), true);
    let notify = NotifySocket::bind(&dir.path().join("notify"));
    let _mirrord = spawn_solo(
        "mirrord",
        &config,
        &[("NOTIFY_SOCKET", &notify.path)],
        &dir.path().join("mirrord.log"),
    );
    let ready = wait_notification(&notify, "READY=1", |_| {
        // Checked the moment READY arrives, not after.
        assert!(is_mounted(&hbfs), "READY=1 before hbfs was mounted");
        assert!(socket.exists(), "READY=1 before the control socket existed");
    });
    assert!(ready.contains("STATUS=no pairs"), "{ready}");
    let out = run_hbctl(&socket, &["volume", "list"]);
    assert!(out.status.success());
}

#[test]
fn mirrord_status_line_counts_pair_states() {
    let test = "mirrord_status_line_counts_pair_states";
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = NotifySocket::bind(&dir.path().join("notify"));
    let options = Options {
        standby_env: vec![(
            "NOTIFY_SOCKET".to_string(),
            notify.path.display().to_string(),
        )],
        ..Options::default()
    };
    let Some(mut sites) = TwoSites::start_with(test, options) else {
        return;
    };
    wait_notification(&notify, "READY=1", |_| {});
    sites.pair("d0", "1M", &[]);
    sites.pair("d1", "1M", &[]);
    wait_notification(&notify, "STATUS=2 PAIR", |_| {});
    sites.prod.kill();
    wait_notification(&notify, "STATUS=2 PSUE", |_| {});
}

#[test]
fn hbd_is_ready_with_its_channels_open_and_feeds_the_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, peer) = (free_port(), free_port());
    let config = hbd_config(dir.path(), "s1", "standby", "p1", (port, peer));
    let notify = NotifySocket::bind(&dir.path().join("notify"));
    let socket = dir.path().join("hbd.sock");
    let _hbd = spawn_solo(
        "hbd",
        &config,
        &[("NOTIFY_SOCKET", &notify.path)],
        &dir.path().join("hbd.log"),
    );
    let ready = wait_notification(&notify, "READY=1", |_| {
        assert!(socket.exists(), "READY=1 before the control socket existed");
        assert!(
            UdpSocket::bind(("127.0.0.1", port)).is_err(),
            "READY=1 before the network channel's socket was open"
        );
        assert!(
            dir.path().join("data/table.json").exists(),
            "READY=1 before the status table was resumed and saved"
        );
    });
    assert!(ready.contains("STATUS=standby s1: peer"), "{ready}");
    // Every tick (200 ms) feeds the watchdog.
    let start = Instant::now();
    for _ in 0..3 {
        wait_notification(&notify, "WATCHDOG=1", |_| {});
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn check_prints_the_effective_config_or_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _, _) = mirrord_config(dir.path(), false);
    let text = run_ok(
        command("mirrord")
            .args(["--check", "--config"])
            .arg(&config),
    );
    assert!(
        text.contains("timeout_ms = 5000"),
        "defaults not filled in:\n{text}"
    );
    let hbd = hbd_config(&dir.path().join("h"), "p1", "production", "s1", (1, 2));
    let text = run_ok(command("hbd").args(["--check", "--config"]).arg(&hbd));
    assert!(
        text.contains("mirrord_socket = "),
        "defaults not filled in:\n{text}"
    );
    for (program, path) in [("mirrord", &config), ("hbd", &hbd)] {
        let mut text = std::fs::read_to_string(path).expect("config");
        text.insert_str(0, "no_such_key = 1\n");
        std::fs::write(path, text).expect("config");
        let out = command(program)
            .args(["--check", "--config"])
            .arg(path)
            .output()
            .expect("--check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{program}: {stderr}");
        assert!(stderr.contains("no_such_key"), "{program}: {stderr}");
    }
}

fn json_error(out: &std::process::Output) -> (i32, String) {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let kind = v["error"]["kind"].as_str().expect("error.kind").to_string();
    assert!(v["error"]["message"].is_string());
    (out.status.code().expect("exit status"), kind)
}

#[test]
fn hbctl_json_errors_have_a_kind_and_an_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, socket, _) = mirrord_config(dir.path(), false);
    // Unreachable: no daemon yet.
    let out = run_hbctl(&socket, &["--json", "volume", "list"]);
    assert_eq!(json_error(&out), (3, "unreachable".into()));
    // Invalid input, before or after the subcommand.
    let out = run_hbctl(&socket, &["--json", "pair", "no-such-command"]);
    assert_eq!(json_error(&out), (2, "invalid_input".into()));
    let out = run_hbctl(&socket, &["pair", "create", "--json"]);
    assert_eq!(json_error(&out), (2, "invalid_input".into()));
    let _mirrord = spawn_solo("mirrord", &config, &[], &dir.path().join("mirrord.log"));
    wait_for("mirrord to answer", || {
        run_hbctl(&socket, &["volume", "list"]).status.success()
    });
    // Refused by the daemon.
    let out = run_hbctl(&socket, &["--json", "volume", "delete", "nosuch"]);
    assert_eq!(json_error(&out), (1, "refused".into()));
    let out = run_hbctl(&socket, &["volume", "delete", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    // Results: the global flag anywhere on the line.
    let done = run_hbctl(
        &socket,
        &["--json", "volume", "create", "v0", "--size", "1M"],
    );
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON");
    assert_eq!(v["ok"], true, "{v}");
    for args in [
        &["--json", "volume", "list"][..],
        &["volume", "list", "--json"][..],
        &["pair", "status", "--json"][..],
    ] {
        let out = run_hbctl(&socket, args);
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert!(v.is_array(), "{args:?}: {v}");
    }
}

#[test]
fn hb_events_follow_prints_json_lines_as_they_happen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (free_port(), free_port());
    let standby = hbd_config(&dir.path().join("s"), "s1", "standby", "p1", (b, a));
    let socket = dir.path().join("s/hbd.sock");
    let _standby = spawn_solo("hbd", &standby, &[], &dir.path().join("s.log"));
    wait_for("hbd to answer", || {
        run_hbctl(&socket, &["hb", "status"]).status.success()
    });
    let mut follow = Daemon(
        command("hbctl")
            .arg("--socket")
            .arg(&socket)
            .args(["hb", "events", "--follow", "--limit", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("hbctl hb events --follow"),
    );
    let stdout = follow.0.stdout.take().expect("stdout");
    // An event that happens only after --follow started.
    std::thread::sleep(Duration::from_millis(500));
    hbctl_ok(&socket, "standby", &["hb", "rearm"]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = rx.recv_timeout(DEADLINE).expect("an event line");
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert!(
        event["time_ms"].is_u64() && event["text"].is_string(),
        "{event}"
    );
    assert_eq!(event["part"], "rearm", "{event}");
}

#[test]
fn man_pages_and_completions_come_from_the_clap_definitions() {
    let test = "man_pages_and_completions_come_from_the_clap_definitions";
    let dir = tempfile::tempdir().expect("tempdir");
    for program in ["mirrord", "hbd", "hbctl"] {
        let status = command(program)
            .arg("--generate-docs")
            .arg(dir.path())
            .status()
            .expect("--generate-docs");
        assert!(status.success(), "{program} --generate-docs");
        for file in [
            format!("man/{program}.1"),
            format!("completions/{program}.bash"),
            format!("completions/_{program}"),
            format!("completions/{program}.fish"),
        ] {
            assert!(dir.path().join(&file).exists(), "{file} missing");
        }
    }
    assert!(dir.path().join("man/hbctl-pair-status.1").exists());
    assert!(!dir.path().join("man/hbctl-help.1").exists());
    let bash = Command::new("bash")
        .arg("-n")
        .arg(dir.path().join("completions/hbctl.bash"))
        .status()
        .expect("bash -n");
    assert!(bash.success(), "the bash completion does not parse");
    if !ensure_tool(test, "man", "man-db") {
        return;
    }
    // The config-format pages, generated from docs/ as the package does.
    if !ensure_tool(test, "pandoc", "pandoc") {
        return;
    }
    let formats = dir.path().join("man5");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/man5.sh");
    run_ok(Command::new(script).arg(&formats));
    let mut pages = vec![
        dir.path().join("man/hbctl.1"),
        dir.path().join("man/mirrord.1"),
        dir.path().join("man/hbd.1"),
    ];
    pages.push(formats.join("mirrord.toml.5"));
    pages.push(formats.join("hbd.toml.5"));
    for page in pages {
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .expect("man -l");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("NAME"),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
