//! What the daemons tell the people who run them, as their tools read it:
//! the metrics of both daemons (parsed by promtool, measuring the link) and
//! their logs (to the journal under systemd, plain text otherwise).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
    let _hbd = spawn_solo("hbd", &config, &[], &dir.path().join("hbd.log"));
    let _peer = spawn_solo("hbd", &peer, &[], &dir.path().join("peer.log"));
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
        command("mirrord")
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
        command("mirrord")
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
