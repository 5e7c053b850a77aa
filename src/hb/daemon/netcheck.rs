//! The local network check (seed 002, Fig 8): the state of each network's
//! NIC (the interface holding its listen address), and rounds of ICMP echo
//! requests on every network at once to its probe target (or the peer),
//! `echo_interval_ms` apart; the networks that answer are operational.
//!
//! Echo needs a socket the kernel lets this process open: a raw ICMP socket
//! (root or CAP_NET_RAW; bound to the network's NIC, so a reply counts only
//! if it came in on that network), else the kernel's unprivileged ping socket
//! (`net.ipv4.ping_group_range` must include the process's group). Without
//! either, the NIC state alone decides, and hbd says so at start and in every
//! report. A network given by IPv6 addresses is echoed with ICMPv6 (type 128,
//! the kernel computing the checksum); a network whose listen address and
//! target are of two families gets no echo, and its report says why.
//!
//! Everything here blocks (up to rounds × interval): the analyzer runs it on
//! a blocking thread, one thread per network.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use socket2::{Domain, Protocol, Socket, Type};

use crate::hb::logic::analysis::{EchoMethod, NetworkCheck, Nic};

/// One network to check.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The network's name.
    pub name: String,
    /// Turned on (Fig 8).
    pub on: bool,
    /// This host's address on it.
    pub listen: IpAddr,
    /// Where the echo requests go.
    pub target: IpAddr,
    /// The target is the peer.
    pub target_is_peer: bool,
}

/// The interface holding `ip`, and its state.
pub fn nic_of(ip: IpAddr) -> (Option<String>, Nic) {
    if ip.is_unspecified() {
        return (None, Nic::Unknown);
    }
    let Ok(addrs) = getifaddrs() else {
        return (None, Nic::Unknown);
    };
    for a in addrs {
        let found = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        if found == Some(ip) {
            let nic = if !a.flags.contains(InterfaceFlags::IFF_UP) {
                Nic::Down
            } else if !a.flags.contains(InterfaceFlags::IFF_RUNNING) {
                Nic::NoCarrier
            } else {
                Nic::Up
            };
            return (Some(a.interface_name), nic);
        }
    }
    (None, Nic::Absent)
}

/// Which echo method this process may use, and a note when it is limited.
pub fn method() -> (EchoMethod, Option<String>) {
    match open(EchoMethod::Raw) {
        Ok(_) => (EchoMethod::Raw, None),
        Err(raw) => match open(EchoMethod::PingSocket) {
            Ok(_) => (
                EchoMethod::PingSocket,
                Some(format!("raw ICMP sockets need root or CAP_NET_RAW ({raw}); echo goes through the unprivileged ping socket, not bound to each network's NIC")),
            ),
            Err(ping) => (
                EchoMethod::None,
                Some(format!(
                    "no ICMP echo: raw sockets need root or CAP_NET_RAW ({raw}), and the unprivileged ping socket is refused ({ping}; net.ipv4.ping_group_range = {} must include gid {}); the local check is the NIC state alone",
                    std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
                        .map(|r| format!("'{}'", r.trim().replace('\t', " ")))
                        .unwrap_or_else(|_| "?".into()),
                    egid()
                )),
            ),
        },
    }
}

/// This process's group (the owner of /proc/self), for the message.
fn egid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or_else(|_| "?".into(), |m| m.gid().to_string())
}

fn open(method: EchoMethod) -> std::io::Result<Socket> {
    open_for(method, false)
}

/// An ICMP socket of `method`, for IPv6 (`v6`) or IPv4.
fn open_for(method: EchoMethod, v6: bool) -> std::io::Result<Socket> {
    let kind = match method {
        EchoMethod::Raw => Type::RAW,
        _ => Type::DGRAM,
    };
    if v6 {
        Socket::new(Domain::IPV6, kind, Some(Protocol::ICMPV6))
    } else {
        Socket::new(Domain::IPV4, kind, Some(Protocol::ICMPV4))
    }
}

/// Checks every network at once: the NIC, then `rounds` echo requests
/// `gap` apart. Returns the method used, its note, and each network's result.
pub fn check(
    probes: &[Probe],
    rounds: u32,
    gap: Duration,
    ident: u16,
) -> (EchoMethod, Option<String>, Vec<NetworkCheck>) {
    let (method, note) = method();
    let epoch = Instant::now();
    let results = std::thread::scope(|s| {
        let threads: Vec<_> = probes
            .iter()
            .enumerate()
            .map(|(i, p)| s.spawn(move || one(p, i as u8, method, ident, rounds, gap, epoch)))
            .collect();
        threads
            .into_iter()
            .zip(probes)
            .map(|(t, p)| {
                t.join().unwrap_or_else(|_| NetworkCheck {
                    error: Some("the check's thread panicked".into()),
                    ..blank(p)
                })
            })
            .collect()
    });
    (method, note, results)
}

fn blank(p: &Probe) -> NetworkCheck {
    NetworkCheck {
        name: p.name.clone(),
        on: p.on,
        interface: None,
        nic: Nic::Unknown,
        target: p.target.to_string(),
        target_is_peer: p.target_is_peer,
        sent: 0,
        replies: 0,
        rtt_us: None,
        error: None,
        operational: false,
    }
}

/// The NIC state of every network, without echo (fast: for the QoS of a
/// failover that must not wait).
pub fn nics(probes: &[Probe]) -> Vec<NetworkCheck> {
    probes
        .iter()
        .map(|p| {
            let (interface, nic) = nic_of(p.listen);
            let operational = matches!(nic, Nic::Up | Nic::Unknown);
            NetworkCheck {
                interface,
                nic,
                operational,
                error: Some("NIC state only".into()),
                ..blank(p)
            }
        })
        .collect()
}

/// One network's check.
fn one(
    p: &Probe,
    index: u8,
    method: EchoMethod,
    ident: u16,
    rounds: u32,
    gap: Duration,
    epoch: Instant,
) -> NetworkCheck {
    let (interface, nic) = nic_of(p.listen);
    let mut result = NetworkCheck {
        interface: interface.clone(),
        nic,
        ..blank(p)
    };
    let nic_ok = matches!(nic, Nic::Up | Nic::Unknown);
    let echoed = match (method, p.target, p.listen) {
        (EchoMethod::None, _, _) => false,
        (_, _, _) if !p.on => false,
        (_, target, source) if target.is_ipv6() == source.is_ipv6() => {
            let t = Target {
                method,
                source,
                target,
                interface: interface.as_deref(),
                ident,
                index,
            };
            echo(&mut result, t, rounds, gap, epoch);
            true
        }
        (_, target, source) => {
            result.error = Some(format!(
                "no echo: the probe target {target} and the listen address {source} are of two address families; the NIC state decides"
            ));
            false
        }
    };
    // The peer's silence says nothing of this host: then the NIC decides.
    result.operational = nic_ok && (!echoed || p.target_is_peer || result.replies > 0);
    result
}

struct Target<'a> {
    method: EchoMethod,
    source: IpAddr,
    target: IpAddr,
    interface: Option<&'a str>,
    ident: u16,
    index: u8,
}

/// Sends `rounds` echo requests `gap` apart and counts the replies into `r`.
fn echo(r: &mut NetworkCheck, t: Target<'_>, rounds: u32, gap: Duration, epoch: Instant) {
    let socket = match open_bound(&t) {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(e);
            return;
        }
    };
    let to: socket2::SockAddr = SocketAddr::new(t.target, 0).into();
    let start = Instant::now();
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    for round in 0..rounds {
        let seq = (round as u16) << 8 | u16::from(t.index);
        let sent_ns = epoch.elapsed().as_nanos() as u64;
        match socket.send_to(&request(t.target.is_ipv6(), t.ident, seq, sent_ns), &to) {
            Ok(_) => r.sent += 1,
            Err(e) => r.error = Some(format!("cannot send to {}: {e}", t.target)),
        }
        let until = start + gap * (round + 1);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok((n, from)) => (n, from.as_socket().map(|a| a.ip())),
                Err(_) => break,
            };
            // SAFETY: recv_from initialised the first n bytes of buf.
            let packet: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
            if let Some(sent) = reply(packet, from, &t) {
                r.replies += 1;
                let rtt = (epoch.elapsed().as_nanos() as u64).saturating_sub(sent) / 1000;
                r.rtt_us = Some(r.rtt_us.map_or(rtt, |best| best.min(rtt)));
            }
        }
    }
    r.replies = r.replies.min(r.sent);
}

fn open_bound(t: &Target<'_>) -> Result<Socket, String> {
    let socket = open_for(t.method, t.target.is_ipv6())
        .map_err(|e| format!("cannot open an ICMP socket: {e}"))?;
    if let Some(i) = t.interface {
        // Raw sockets must be bound to the NIC (a reply counts only if it
        // came in on this network); the ping socket may not be allowed to.
        if let Err(e) = socket.bind_device(Some(i.as_bytes())) {
            if t.method == EchoMethod::Raw {
                return Err(format!("cannot bind the ICMP socket to {i}: {e}"));
            }
        }
    }
    socket
        .bind(&SocketAddr::new(t.source, 0).into())
        .map_err(|e| format!("cannot send from {}: {e}", t.source))?;
    Ok(socket)
}

/// ICMP's echo request and reply types, (IPv4, IPv6).
const ECHO_REQUEST: (u8, u8) = (8, 128);
const ECHO_REPLY: (u8, u8) = (0, 129);

/// An ICMP echo request (ICMPv6 if `v6`): the identifier, the sequence
/// number, and the time it was sent (ns since the check began). The kernel
/// computes an ICMPv6 checksum itself (it covers the IPv6 pseudo-header).
fn request(v6: bool, ident: u16, seq: u16, sent_ns: u64) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST.1 } else { ECHO_REQUEST.0 };
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"hbd-echo");
    p.extend_from_slice(&sent_ns.to_be_bytes());
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// The Internet checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The send time carried by an echo reply to one of this network's
/// requests, if `packet` (from `from`) is one (a raw IPv4 socket's packets
/// start with the IP header; raw ICMPv6 and ping sockets' with ICMP, the
/// ping socket's identifier the kernel's own).
fn reply(packet: &[u8], from: Option<IpAddr>, t: &Target<'_>) -> Option<u64> {
    let icmp = match (t.method, t.target) {
        (EchoMethod::Raw, IpAddr::V4(target)) => {
            let ihl = usize::from(*packet.first()? & 0x0f) * 4;
            if packet.get(12..16)? != target.octets() {
                return None;
            }
            packet.get(ihl..)?
        }
        (EchoMethod::Raw, IpAddr::V6(_)) if from != Some(t.target) => return None,
        _ => packet,
    };
    let kind = if t.target.is_ipv6() {
        ECHO_REPLY.1
    } else {
        ECHO_REPLY.0
    };
    if icmp.len() < 24 || icmp[0] != kind || &icmp[8..16] != b"hbd-echo" {
        return None;
    }
    let ident = u16::from_be_bytes([icmp[4], icmp[5]]);
    let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    if (t.method == EchoMethod::Raw && ident != t.ident) || (seq & 0xff) != u16::from(t.index) {
        return None;
    }
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&icmp[16..24]);
    Some(u64::from_be_bytes(sent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn requests_carry_a_valid_checksum_and_replies_are_matched() {
        let req = request(false, 0x1234, 0x0201, 99);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to 0");
        let t = Target {
            method: EchoMethod::PingSocket,
            source: IpAddr::V4(Ipv4Addr::LOCALHOST),
            target: IpAddr::V4(Ipv4Addr::LOCALHOST),
            interface: None,
            ident: 0x1234,
            index: 1,
        };
        let mut rep = req.clone();
        rep[0] = 0;
        assert_eq!(reply(&rep, None, &t), Some(99));
        assert_eq!(reply(&req, None, &t), None, "a request is no reply");
        let other = Target { index: 2, ..t };
        assert_eq!(reply(&rep, None, &other), None, "another network's");
        // ICMPv6: types 128 and 129; from the target only, on a raw socket.
        let req6 = request(true, 0x1234, 0x0201, 77);
        assert_eq!(req6[0], 128);
        let mut rep6 = req6.clone();
        rep6[0] = 129;
        let v6 = Target {
            method: EchoMethod::Raw,
            source: IpAddr::V6(Ipv6Addr::LOCALHOST),
            target: IpAddr::V6(Ipv6Addr::LOCALHOST),
            interface: None,
            ident: 0x1234,
            index: 1,
        };
        assert_eq!(reply(&rep6, Some(v6.target), &v6), Some(77));
        assert_eq!(reply(&rep6, Some("::2".parse().expect("ip")), &v6), None);
        assert_eq!(reply(&req6, Some(v6.target), &v6), None);
    }

    #[test]
    fn loopback_answers_echo_and_its_nic_is_up() {
        let (interface, nic) = nic_of(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((interface.as_deref(), nic), (Some("lo"), Nic::Up));
        assert_eq!(nic_of("192.0.2.77".parse().expect("ip")).1, Nic::Absent);
        let probe = Probe {
            name: "lo".into(),
            on: true,
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            target: IpAddr::V4(Ipv4Addr::LOCALHOST),
            target_is_peer: false,
        };
        let (method, note, results) = check(&[probe], 2, Duration::from_millis(100), 4242);
        if method == EchoMethod::None {
            // Neither raw nor ping sockets here: the note says why.
            assert!(note.unwrap_or_default().contains("CAP_NET_RAW"));
            return;
        }
        let r = &results[0];
        assert_eq!((r.sent, r.replies), (2, 2), "{r:?}");
        assert!(r.operational && r.rtt_us.is_some());
        assert!(
            r.summary().contains("echo 2/2 from 127.0.0.1"),
            "{}",
            r.summary()
        );
        // And over IPv6.
        let probe6 = Probe {
            name: "lo6".into(),
            on: true,
            listen: IpAddr::V6(Ipv6Addr::LOCALHOST),
            target: IpAddr::V6(Ipv6Addr::LOCALHOST),
            target_is_peer: false,
        };
        let (_, _, results) = check(&[probe6], 2, Duration::from_millis(100), 4243);
        let r = &results[0];
        assert_eq!((r.sent, r.replies), (2, 2), "{r:?}");
        assert!(r.operational && r.rtt_us.is_some(), "{r:?}");
    }
}
