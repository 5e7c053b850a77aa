//! Hostile clients against real mirrord processes: floods of unauthenticated
//! link connections, a second session for a connected site, a large sealed
//! write altered in its data section, and control socket clients that send
//! too much or nothing. Each measures what the
//! daemon pays (RSS from /proc, lines in its log) and that the pairs keep
//! working. Each test needs root and /dev/fuse and says SKIPPED without them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{
    closed_by_peer, connect_from, header_stating, pattern, read_all, wait_for, warn_lines,
    write_at, Options, TwoSites,
};
use hbcore::frame::HEADER_LEN;
use hbcore::link::seal::{self, Opener, Role, Sealer, Transcript};
use hbcore::link::{Lane, Message, PeerRequest, FORMAT, HANDSHAKE_MAX_PAYLOAD, NONCE_LEN};

/// The link key the harness gives both sites (as mirrord reads it: trimmed).
const KEY: &[u8] = b"test-key-0123456789abcdef";

fn send(stream: &mut TcpStream, msg: &Message) {
    let payload = postcard::to_allocvec(msg).expect("encode");
    let frame = FORMAT.encode(&payload, None).expect("frame");
    stream.write_all(&frame).expect("send a frame");
}

fn receive(stream: &mut TcpStream) -> Message {
    let mut frame = vec![0u8; HEADER_LEN];
    stream.read_exact(&mut frame).expect("frame header");
    let len = FORMAT
        .check_header(&frame)
        .expect("a link frame")
        .expect("whole header");
    frame.resize(len, 0);
    stream.read_exact(&mut frame[HEADER_LEN..]).expect("frame");
    postcard::from_bytes(FORMAT.open(&frame, None).expect("intact")).expect("a message")
}

#[test]
fn unauthenticated_floods_cost_little_memory_and_the_pair_keeps_mirroring() {
    let name = "unauthenticated_floods_cost_little_memory_and_the_pair_keeps_mirroring";
    let Some(sites) = TwoSites::start(name) else {
        return;
    };
    sites.paired_volume("hb0", "1MiB");
    let (standby, port) = (&sites.standby, sites.standby.port);
    let before = standby.rss_kib();
    let mut peak = before;
    let mut open = Vec::new();

    // The attack: a valid-length 4 MiB - 1 frame header, then bytes.
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        // The standby may close the connection after the header: errors are expected.
        let _ = s.write_all(&header_stating(FORMAT.max_payload - 1));
        let _ = s.write_all(&vec![0x5a; 64 << 10]);
        open.push(s);
    }
    peak = peak.max(standby.rss_kib());

    // Handshake-sized frames one byte short, from 50 addresses: each is held
    // until the handshake deadline, and only 64 at a time.
    let mut held = Vec::new();
    for i in 0..200u8 {
        let source = Ipv4Addr::new(127, 0, 1, 1 + i % 50);
        let mut s = connect_from(source, port).expect("connect from another address");
        s.set_write_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let _ = s.write_all(&header_stating(HANDSHAKE_MAX_PAYLOAD));
        let _ = s.write_all(&vec![0x5a; HANDSHAKE_MAX_PAYLOAD - 1]);
        held.push(s);
    }
    peak = peak.max(standby.rss_kib());

    // With all 400 connections open, a synchronous write still mirrors.
    let data = pattern(256 << 10, 7);
    write_at(&sites.prod.file("hb0"), 4096, &data);
    let mut back = vec![0u8; data.len()];
    std::fs::File::open(standby.file("hb0"))
        .and_then(|f| f.read_exact_at(&mut back, 4096))
        .expect("read the SVOL");
    assert!(back == data, "the write is not at the standby");

    // Past the handshake deadline (timeout_ms = 2000 in the harness).
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        peak = peak.max(standby.rss_kib());
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "standby mirrord VmRSS: {before} KiB before, at most {peak} KiB with 400 hostile \
         connections (+{grown} KiB)"
    );
    assert!(
        grown < 32 << 10,
        "RSS grew by {grown} KiB (from {before} KiB) under the flood; the bound is 32 MiB"
    );
    // Every connection was closed by the standby: refused, or past the deadline.
    let still_open = held
        .iter()
        .chain(open.iter())
        .filter(|s| !closed_by_peer(s, Duration::from_secs(3)))
        .count();
    assert_eq!(still_open, 0, "connections still open past the deadline");
    assert!(sites.prod.pair("hb0").is_some_and(|p| p["state"] == "PAIR"));
    let log = standby.log_text();
    assert!(
        log.contains("before authentication, where the limit is 4096"),
        "{log}"
    );
    assert!(
        log.contains("64 link handshakes are in progress already"),
        "{log}"
    );
}

/// Refusals in `log`: one for each line of its own, N for each summary of N.
fn refusals_accounted(log: &str) -> u64 {
    log.lines()
        .map(|l| {
            if l.contains("link: refused a connection from") {
                1
            } else {
                l.split_once("link: ")
                    .and_then(|(_, rest)| rest.split_once(" more connections refused"))
                    .and_then(|(n, _)| n.parse().ok())
                    .unwrap_or(0)
            }
        })
        .sum()
}

#[test]
fn idle_connections_from_one_address_are_a_few_log_lines_and_a_count() {
    let name = "idle_connections_from_one_address_are_a_few_log_lines_and_a_count";
    let options = Options {
        standby_env: vec![("HBMIRROR_LINK_LOG_PERIOD_MS".into(), "2000".into())],
        ..Options::default()
    };
    let Some(sites) = TwoSites::start_with(name, options) else {
        return;
    };
    let standby = &sites.standby;
    let start = standby.log_text().len();
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", standby.port)).expect("connect"))
        .collect();
    wait_for("all 200 refusals to be in the standby's log", || {
        refusals_accounted(&standby.log_since(start)) == 200
    });
    let log = standby.log_since(start);
    let warns = warn_lines(&log);
    eprintln!(
        "200 idle connections: {} WARN lines in the standby's log:\n{}",
        warns.len(),
        warns.join("\n")
    );
    assert!(warns.len() <= 5, "{} WARN lines:\n{log}", warns.len());
    assert!(
        log.contains("8 link handshakes from 127.0.0.1 are in progress already"),
        "{log}"
    );
    assert!(
        log.contains("the handshake did not complete within 2s"),
        "{log}"
    );
    assert!(
        log.contains("more connections refused in the last 2s"),
        "{log}"
    );
    drop(idle);
    // One session per lane, never replaced by the flood.
    assert!(sites.prod.log_text().matches("remote link up").count() == 2);
}

/// Completes the link handshake with the standby as site "prod": the
/// connection and the session's keys.
fn authenticate_as_prod(port: u16) -> (TcpStream, Sealer, Opener) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mine: [u8; NONCE_LEN] = [42; NONCE_LEN];
    send(
        &mut s,
        &Message::Hello {
            site: "prod".into(),
            to: "standby".into(),
            nonce: mine,
            lane: Lane::Heartbeat,
            seal: true,
            incarnation: 42,
            resume: true,
        },
    );
    let Message::Challenge {
        nonce: theirs,
        incarnation,
        resume,
        ..
    } = receive(&mut s)
    else {
        panic!("no Challenge from the standby");
    };
    let transcript: [&[u8]; 11] = [
        b"hbmirror-link-v5",
        b"dialer",
        &mine,
        &theirs,
        b"prod",
        b"standby",
        b"heartbeat",
        &[1],
        &42u64.to_le_bytes(),
        &incarnation.to_le_bytes(),
        &[1, u8::from(resume)],
    ];
    let proof = hbcore::auth::sign_parts(KEY, &transcript).to_vec();
    send(&mut s, &Message::Proof { proof });
    assert_eq!(receive(&mut s), Message::Welcome);
    let t = Transcript {
        dialer: "prod",
        listener: "standby",
        dialer_nonce: &mine,
        listener_nonce: &theirs,
        lane: Lane::Heartbeat,
    };
    let (sealer, opener) = seal::session_keys(KEY, &t, Role::Dialer);
    (s, sealer, opener)
}

/// The next sealed message other than a ping or pong.
fn receive_sealed(stream: &mut TcpStream, opener: &mut Opener) -> Message {
    let mut buf = bytes::BytesMut::new();
    loop {
        match opener.decode(&mut buf).expect("a sealed frame that opens") {
            Some(Message::Ping | Message::Pong) => {}
            Some(msg) => return msg,
            None => {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).expect("read");
                assert!(n > 0, "the standby closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// A large sealed write's data section is opened after its head, by another
/// task than the reader: altered there, it is refused all the same (counted
/// `open_failed`, nothing of it written, the session ended for good).
#[test]
fn a_large_sealed_write_altered_in_its_data_is_refused_and_nothing_of_it_written() {
    let name = "a_large_sealed_write_altered_in_its_data_is_refused_and_nothing_of_it_written";
    let Some(mut sites) = TwoSites::start(name) else {
        return;
    };
    sites.pair("hb0", "512KiB", &["--kind", "heartbeat"]);
    // Only this test's session as prod, so that nothing replaces it.
    sites.prod.stop();
    let (mut s, mut sealer, mut opener) = authenticate_as_prod(sites.standby.port);
    let write = |id: u64, offset: u64, seed: u8| Message::Request {
        id,
        body: PeerRequest::Write {
            pair: "hb0".into(),
            offset,
            data: pattern(128 << 10, seed).into(),
        },
    };
    // An intact one is written (the test can tell a write that lands).
    let mut frame = bytes::BytesMut::new();
    sealer.encode(write(1, 0, 7), &mut frame).expect("seal");
    s.write_all(&frame).expect("send");
    match receive_sealed(&mut s, &mut opener) {
        Message::Response { id: 1, result } => assert!(result.is_ok(), "{result:?}"),
        other => panic!("not the write's answer: {other:?}"),
    }
    // The next one has a bit flipped in its data section.
    let from = sites.standby.log_text().len();
    let mut frame = bytes::BytesMut::new();
    sealer
        .encode(write(2, 128 << 10, 9), &mut frame)
        .expect("seal");
    let h = seal::header(&frame).expect("header").expect("whole");
    assert!(h.split() && h.data_len() > 64 << 10);
    frame[h.head_end() + 1000] ^= 0x10;
    s.write_all(&frame).expect("send");
    assert!(closed_by_peer(&s, Duration::from_secs(10)));
    sites
        .standby
        .wait_log("remote link down: dropped the connection: a frame that does not open");
    assert_eq!(
        sites
            .standby
            .pair_at("hb0", "/link_frames_rejected/open_failed"),
        serde_json::json!(1)
    );
    let log = sites.standby.log_since(from);
    assert!(
        !log.contains("remote link session lost"),
        "not resumable: {log}"
    );
    let svol = read_all(&sites.standby.file("hb0"));
    assert!(
        svol[..128 << 10] == pattern(128 << 10, 7)[..],
        "the intact write landed"
    );
    assert!(
        svol[128 << 10..256 << 10].iter().all(|b| *b == 0),
        "nothing of the altered write was written"
    );
}

#[test]
fn a_second_session_for_a_connected_site_replaces_the_first_and_says_so() {
    let name = "a_second_session_for_a_connected_site_replaces_the_first_and_says_so";
    let Some(sites) = TwoSites::start(name) else {
        return;
    };
    sites.pair("hb0", "128KiB", &["--kind", "heartbeat"]);
    let (ours, _, _) = authenticate_as_prod(sites.standby.port);
    let ours_addr = ours.local_addr().expect("addr").to_string();
    sites.standby.wait_log(&format!(
        "opened a second session (from {ours_addr}) while one (from 127.0.0.1:"
    ));
    let log = sites.standby.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("opened a second session"))
        .expect("the line");
    eprintln!("{line}");
    assert!(
        line.contains("keeping the new session and closing the old one, because the peer dials again only after losing its session"),
        "{line}"
    );
    // The real prod lost its session, dials again, and its session replaces
    // ours, taking over what was in flight (nothing is suspended).
    sites.prod.wait_log("remote link session lost");
    wait_for("prod's new session to replace ours", || {
        sites
            .standby
            .log_text()
            .contains(&format!("while one (from {ours_addr}) was open"))
    });
    assert!(closed_by_peer(&ours, Duration::from_secs(5)));
    sites.prod.wait_state("hb0", "PAIR");
    sites.standby.wait_state("hb0", "PAIR");
    write_at(&sites.prod.file("hb0"), 0, &pattern(8192, 5));
    assert!(sites.identical("hb0"), "the pair mirrors again");
}

#[test]
fn control_clients_that_send_too_much_or_nothing_are_answered_and_let_go() {
    let name = "control_clients_that_send_too_much_or_nothing_are_answered_and_let_go";
    let options = Options {
        standby_env: vec![("HBMIRROR_CONTROL_IDLE_MS".into(), "1000".into())],
        ..Options::default()
    };
    let Some(sites) = TwoSites::start_with(name, options) else {
        return;
    };
    let standby = &sites.standby;
    let answer = |c: &UnixStream| {
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).expect("an answer");
        line
    };

    // A 200 MiB line without a newline: an error answer after 64 KiB, RSS bounded.
    let before = standby.rss_kib();
    let c = UnixStream::connect(&standby.socket).expect("connect");
    let mut writer = c.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        while sent < 200 << 20 {
            match writer.write(&chunk) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        sent
    });
    let line = answer(&c);
    let sent = sender.join().expect("sender");
    let after = standby.rss_kib();
    eprintln!(
        "control socket, 200 MiB line: {sent} bytes taken before the close; VmRSS {before} KiB \
         before, {after} KiB after; answer: {}",
        line.trim()
    );
    assert!(line.contains("longer than 65536 bytes"), "{line}");
    assert!(sent < 200 << 20, "the daemon read the whole line");
    standby.wait_log("control socket: control request longer than 65536 bytes");
    assert!(
        after.saturating_sub(before) < 16 << 10,
        "RSS {before} -> {after} KiB"
    );

    // Bytes that are not UTF-8, and a request that is no request: answered and logged.
    let mut c = UnixStream::connect(&standby.socket).expect("connect");
    c.write_all(b"\xff\xfe{\n").expect("send");
    let line = answer(&c);
    assert!(line.contains("not UTF-8"), "{line}");
    c.write_all(b"{\"op\":\"explode\"}\n").expect("send");
    let line = answer(&c);
    assert!(line.contains("malformed control request"), "{line}");
    standby.wait_log("control socket: control request is not UTF-8");
    standby.wait_log("control socket: malformed control request");

    // A silent client is let go after the idle timeout (1 s here).
    let mut silent = UnixStream::connect(&standby.socket).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let got = silent.read(&mut [0u8; 16]);
    let waited = started.elapsed();
    eprintln!("control socket: a silent client was disconnected after {waited:?}");
    assert!(matches!(got, Ok(0)), "{got:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    standby.ok(&["volume", "list"]);
}
