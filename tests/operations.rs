//! Operating hbmirror as the people who run drbd, corosync and pacemaker
//! expect: systemd units and readiness (a real NOTIFY_SOCKET), `--check`,
//! hbctl's `--json` errors and exit statuses, `hb events --follow`, and the
//! man pages and completions generated from the clap definitions.

mod common;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A daemon started by a test itself (with its own environment), killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, config: &Path, env: &[(&str, &Path)], log: &Path) -> Daemon {
    let log = std::fs::File::create(log).expect("log");
    let mut command = Command::new(bin(program));
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        command.env(k, v);
    }
    Daemon(command.spawn().expect("spawn daemon"))
}

fn mirrord_config(dir: &Path, mount: bool) -> (PathBuf, PathBuf, PathBuf) {
    let key = dir.join("link.key");
    std::fs::write(&key, "test-key-0123456789abcdef\n").expect("key");
    let socket = dir.join("mirrord.sock");
    let hbfs = dir.join("hbfs");
    let config = dir.join("mirrord.toml");
    let mount_line = if mount {
        format!("mount = \"{}\"\n", hbfs.display())
    } else {
        String::new()
    };
    let text = format!(
        "site = \"prod\"\ndata_dir = \"{}\"\ncontrol_socket = \"{}\"\n{mount_line}\
         [link]\nlisten = \"127.0.0.1:{}\"\npsk_file = \"{}\"\n",
        dir.join("data").display(),
        socket.display(),
        free_port(),
        key.display()
    );
    std::fs::write(&config, text).expect("config");
    (config, socket, hbfs)
}

fn hbd_config(dir: &Path, host: &str, group: &str, peer: &str, ports: (u16, u16)) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let key = dir.join("hb.key");
    std::fs::write(&key, "test-key-0123456789abcdef\n").expect("key");
    let config = dir.join("hbd.toml");
    let text = format!(
        "host = \"{host}\"\ngroup = \"{group}\"\npeers = [\"{peer}\"]\ndata_dir = \"{}\"\n\
         control_socket = \"{}\"\npsk_file = \"{}\"\ninterval_ms = 200\ntimeout_ms = 1500\n\
         [network]\nlisten = \"127.0.0.1:{}\"\npeers = [\"127.0.0.1:{}\"]\n",
        dir.join("data").display(),
        dir.join("hbd.sock").display(),
        key.display(),
        ports.0,
        ports.1
    );
    std::fs::write(&config, text).expect("config");
    config
}

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
    let _mirrord = spawn(
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
    let _hbd = spawn(
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
    let out = Command::new(bin("mirrord"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .expect("mirrord --check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("timeout_ms = 5000"),
        "defaults not filled in:\n{text}"
    );
    let hbd = hbd_config(&dir.path().join("h"), "p1", "production", "s1", (1, 2));
    let out = Command::new(bin("hbd"))
        .args(["--check", "--config"])
        .arg(&hbd)
        .output()
        .expect("hbd --check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("mirrord_socket = "),
        "defaults not filled in:\n{text}"
    );
    for (program, path) in [("mirrord", &config), ("hbd", &hbd)] {
        let mut text = std::fs::read_to_string(path).expect("config");
        text.insert_str(0, "no_such_key = 1\n");
        std::fs::write(path, text).expect("config");
        let out = Command::new(bin(program))
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
    let _mirrord = spawn("mirrord", &config, &[], &dir.path().join("mirrord.log"));
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
    let _standby = spawn("hbd", &standby, &[], &dir.path().join("s.log"));
    wait_for("hbd to answer", || {
        run_hbctl(&socket, &["hb", "status"]).status.success()
    });
    let mut follow = Daemon(
        Command::new(bin("hbctl"))
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
        let status = Command::new(bin(program))
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
    let formats = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man");
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

/// `GET /metrics` at `port` (OpenMetrics if `openmetrics`, else the
/// Prometheus text format): the status line and the body.
fn get(port: u16, openmetrics: bool) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    let accept = if openmetrics {
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
    } else {
        ""
    };
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{accept}\r\n").as_bytes())
        .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let kind = if openmetrics {
        "application/openmetrics-text"
    } else {
        "text/plain; version=0.0.4"
    };
    assert!(head.contains(kind), "content type: {head}");
    if openmetrics {
        assert!(
            body.ends_with("# EOF\n"),
            "OpenMetrics ends with # EOF:\n{body}"
        );
    }
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// `GET /metrics` at `port` as Prometheus asks (OpenMetrics).
fn get_metrics(port: u16) -> (String, String) {
    get(port, true)
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` (Prometheus's own parser and linter) on the
/// exposition at `port` in the Prometheus text format (what promtool reads).
fn promtool_accepts(port: u16) {
    let (_, body) = get(port, false);
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition:\n{}{}\n---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_of_both_daemons_parse_and_measure_the_link() {
    let test = "metrics_of_both_daemons_parse_and_measure_the_link";
    if !ensure_tool(test, "promtool", "prometheus") {
        return;
    }
    let Some(mut sites) = TwoSites::start(test) else {
        return;
    };
    // metrics_listen is off by default: turn it on at both sites.
    let ports = (free_port(), free_port());
    for (site, port) in [(&mut sites.prod, ports.0), (&mut sites.standby, ports.1)] {
        site.stop();
        let text = std::fs::read_to_string(&site.config).expect("config");
        std::fs::write(
            &site.config,
            format!("metrics_listen = \"127.0.0.1:{port}\"\n{text}"),
        )
        .expect("config");
    }
    sites.standby.start();
    sites.prod.start();
    sites.prod.wait_link_up();
    sites.pair("d0", "1M", &[]);
    write_at(&sites.prod.mount.join("d0"), 0, &pattern(8192, 3));
    let pair = "hbmirror_pair_state{pair=\"d0\",role=\"pvol\",peer=\"standby\",state=\"PAIR\"}";
    let mut last = String::new();
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let (_, body) = get_metrics(ports.0);
        let done = sample(
            &body,
            "hbmirror_link_rtt_seconds{peer=\"standby\",lane=\"bulk\"}",
        )
        .is_some_and(|rtt| rtt > 0.0)
            && sample(&body, pair) == Some(1.0)
            && sample(&body, "hbmirror_pair_mirrored_bytes_total{pair=\"d0\"")
                .is_some_and(|b| b >= 8192.0);
        if done {
            break;
        }
        last = body;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        start.elapsed() < DEADLINE,
        "no round-trip time, PAIR state or mirrored bytes in:\n{last}"
    );
    let (status, prod) = get_metrics(ports.0);
    assert!(status.contains("200"), "{status}");
    for family in [
        "hbmirror_pair_dirty_bytes",
        "hbmirror_pair_queued_bytes",
        "hbmirror_pair_oldest_pending_seconds",
        "hbmirror_pair_copy_progress_ratio",
        "hbmirror_pair_copy_rate_bytes_per_second",
        "hbmirror_pair_mirrored_writes_total",
        "hbmirror_link_up",
        "hbmirror_link_reconnects_total",
        "hbmirror_link_sessions_total",
    ] {
        assert!(prod.contains(family), "{family} missing:\n{prod}");
    }
    promtool_accepts(ports.0);
    let (_, standby) = get_metrics(ports.1);
    assert!(
        standby.contains("role=\"svol\",peer=\"prod\",state=\"PAIR\"} 1"),
        "{standby}"
    );
    promtool_accepts(ports.1);
    // A reconnect is counted.
    sites.prod.stop();
    sites.prod.start();
    sites.prod.wait_link_up();
    wait_for("the reconnect in the standby's metrics", || {
        let (_, body) = get_metrics(ports.1);
        sample(
            &body,
            "hbmirror_link_reconnects_total{peer=\"prod\",lane=\"bulk\"}",
        )
        .is_some_and(|n| n >= 1.0)
    });

    // A refused handshake is counted, by reason.
    {
        use std::io::Write;
        let mut stranger =
            std::net::TcpStream::connect(("127.0.0.1", sites.standby.port)).expect("connect");
        let _ = stranger.write_all(b"GET / HTTP/1.0\r\n\r\n");
    }
    wait_for("the refused handshake in the standby's metrics", || {
        get_metrics(ports.1)
            .1
            .contains("hbmirror_link_refused_handshakes_total{reason=")
    });
    let mut exposed = get(ports.0, false).1 + &get(ports.1, false).1;

    // hbd's metrics: one host with a network channel.
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, a, b) = (free_port(), free_port(), free_port());
    let config = hbd_config(&dir.path().join("s"), "s1", "standby", "p1", (a, b));
    let peer = hbd_config(&dir.path().join("p"), "p1", "production", "s1", (b, a));
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("metrics_listen = \"127.0.0.1:{port}\"\n{text}"),
    )
    .expect("config");
    let _hbd = spawn("hbd", &config, &[], &dir.path().join("hbd.log"));
    let _peer = spawn("hbd", &peer, &[], &dir.path().join("peer.log"));
    wait_for("hbd's metrics to show the network channel valid", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && get_metrics(port)
                .1
                .contains("hbmirror_hb_channel_valid{channel=\"network\",kind=\"network\",direction=\"both\"} 1")
    });
    let (_, hb) = get_metrics(port);
    for family in [
        "hbmirror_hb_channel_valid{channel=\"network\"",
        "hbmirror_hb_channel_heartbeats_total",
        "hbmirror_hb_heartbeats_sent_total",
        "hbmirror_hb_remote_group_status{via=\"network\",status=\"ALIVE\"}",
        "hbmirror_hb_channel_last_seen_seconds{channel=\"network\"",
        "hbmirror_hb_rejected_heartbeats_total{reason=\"no-fresh-echo\"}",
        "hbmirror_hb_rejected_heartbeats_total{reason=\"time-back\"}",
        "hbmirror_hb_failovers_total",
        "hbmirror_hb_channel_health{channel=\"network\",kind=\"network\"}",
        "hbmirror_hb_channel_good{channel=\"network\",kind=\"network\"} 1",
        "hbmirror_hb_channel_missing_heartbeats_total{channel=\"network\"",
    ] {
        assert!(hb.contains(family), "{family} missing:\n{hb}");
    }
    promtool_accepts(port);
    exposed += &get(port, false).1;

    // Every metric the shipped Grafana dashboard asks for is exposed.
    let dashboard = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana/hbmirror.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard).expect("dashboard"))
            .expect("the dashboard is JSON");
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("hbmirror_") {
                    asked += 1;
                    assert!(
                        exposed.contains(&format!("# TYPE {word} ")),
                        "the dashboard asks for {word}, which no daemon exposes"
                    );
                }
            }
        }
    }
    assert!(asked > 15, "the dashboard asks for {asked} metrics");
}

/// Where journald listens for native messages.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

#[test]
fn daemons_log_to_the_journal_under_systemd_and_text_otherwise() {
    use std::os::unix::fs::MetadataExt;
    let test = "daemons_log_to_the_journal_under_systemd_and_text_otherwise";
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(
            test,
            "needs root (it listens as journald, or reads the journal)",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Without systemd's journal here, this test is journald: it binds the
    // socket (and removes it at the end).
    let fake = if Path::new(JOURNAL_SOCKET).exists() {
        None
    } else {
        std::fs::create_dir_all("/run/systemd/journal").expect("journal dir");
        let socket = std::os::unix::net::UnixDatagram::bind(JOURNAL_SOCKET).expect("bind journal");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Some(socket)
    };
    struct Unbind(bool);
    impl Drop for Unbind {
        fn drop(&mut self) {
            if self.0 {
                let _ = std::fs::remove_file(JOURNAL_SOCKET);
            }
        }
    }
    let _unbind = Unbind(fake.is_some());

    let (config, socket, _) = mirrord_config(dir.path(), false);
    // Under systemd: stderr is the journal stream named in JOURNAL_STREAM.
    let log = dir.path().join("stream.log");
    let file = std::fs::File::create(&log).expect("log");
    let meta = file.metadata().expect("stat");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mirrord = Daemon(
        Command::new(bin("mirrord"))
            .arg("--config")
            .arg(&config)
            .env("JOURNAL_STREAM", &stream)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("mirrord"),
    );
    wait_for("mirrord to answer", || {
        run_hbctl(&socket, &["volume", "list"]).status.success()
    });
    let pid = mirrord.0.id();
    match &fake {
        Some(journal) => {
            let mut seen = String::new();
            let start = Instant::now();
            while !seen.contains("mirrord ready") && start.elapsed() < DEADLINE {
                let mut buf = vec![0u8; 65536];
                if let Ok(n) = journal.recv(&mut buf) {
                    seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
            assert!(seen.contains("mirrord ready"), "journal got:\n{seen}");
            assert!(
                seen.contains("PRIORITY") && seen.contains("SYSLOG_IDENTIFIER"),
                "journal fields:\n{seen}"
            );
        }
        None => wait_for("mirrord ready in the journal", || {
            let out = Command::new("journalctl")
                .args(["-o", "cat", &format!("_PID={pid}")])
                .output()
                .expect("journalctl");
            String::from_utf8_lossy(&out.stdout).contains("mirrord ready")
        }),
    }
    drop(mirrord);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains("mirrord ready"),
        "logged as text under systemd:\n{text}"
    );

    // Otherwise (JOURNAL_STREAM names another file): text on stderr, and
    // a file gets no colour escapes, NO_COLOR or not.
    let log = dir.path().join("text.log");
    let _mirrord = Daemon(
        Command::new(bin("mirrord"))
            .arg("--config")
            .arg(&config)
            .env("JOURNAL_STREAM", "1:1")
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("mirrord"),
    );
    wait_for("mirrord ready as text", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("mirrord ready"))
    });
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains('\x1b'),
        "colour escapes in a log file:\n{text}"
    );
}
