//! Between the processes of a test: a TCP [`Proxy`] on the remote link
//! that corrupts, holds or cuts it; UDP forwarders for heartbeat networks
//! ([`UdpProxy`], [`UdpTap`] that counts and records for replay); raw
//! connections from other loopback addresses and hostile frame headers.
//! Each proxy runs on threads of its own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy between the sites that can corrupt, stall or cut the link.
pub struct Proxy {
    pub port: u16,
    /// Flip a byte in the next chunk forwarded towards the listener.
    pub corrupt_next: Arc<AtomicBool>,
    /// Hold all traffic (both directions) while set, without closing anything.
    pub hold: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream>.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let corrupt_next = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (corrupt, held, cut, conns) = (
            Arc::clone(&corrupt_next),
            Arc::clone(&hold),
            Arc::clone(&down),
            Arc::clone(&open),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let Ok(mut c) = conns.lock() {
                    c.extend([
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ]);
                }
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (corrupt, h1, h2) =
                    (Arc::clone(&corrupt), Arc::clone(&held), Arc::clone(&held));
                std::thread::spawn(move || pump(client, server, Some(corrupt), h1));
                std::thread::spawn(move || pump(s2, c2, None, h2));
            }
        });
        Proxy {
            port,
            corrupt_next,
            hold,
            down,
            open,
        }
    }

    /// Cuts the link: closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        if let Ok(mut conns) = self.open.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    corrupt: Option<Arc<AtomicBool>>,
    hold: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(flag) = &corrupt {
            if flag.swap(false, Ordering::SeqCst) {
                buf[n - 1] ^= 0x5a;
            }
        }
        while hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A UDP forwarder for the network heartbeat channel that can drop everything.
pub struct UdpProxy {
    /// Where the sender sends.
    pub port: u16,
    /// Drop every datagram while set.
    pub blocked: Arc<AtomicBool>,
}

impl UdpProxy {
    /// Forwards datagrams arriving at 127.0.0.1:<port> to 127.0.0.1:<target>.
    pub fn start(target: u16) -> UdpProxy {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = socket.local_addr().expect("addr").port();
        let blocked = Arc::new(AtomicBool::new(false));
        let drop_all = Arc::clone(&blocked);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                if !drop_all.load(Ordering::SeqCst) {
                    let _ = socket.send_to(&buf[..n], ("127.0.0.1", target));
                }
            }
        });
        UdpProxy { port, blocked }
    }
}

/// A UDP forwarder for the network heartbeat channel that counts what it
/// forwards, can drop everything, and can record datagrams to replay them
/// later (as an attacker with a capture would).
pub struct UdpTap {
    /// Where the sender sends.
    pub port: u16,
    /// Drop every datagram while set.
    pub blocked: Arc<AtomicBool>,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
    recording: Arc<AtomicBool>,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl UdpTap {
    /// Forwards datagrams arriving at 127.0.0.1:<port> to 127.0.0.1:<target>.
    pub fn start(target: u16) -> UdpTap {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = socket.local_addr().expect("addr").port();
        let tap = UdpTap {
            port,
            blocked: Arc::new(AtomicBool::new(false)),
            forwarded: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            recording: Arc::new(AtomicBool::new(false)),
            recorded: Arc::new(Mutex::new(Vec::new())),
        };
        let (blocked, forwarded, recording, recorded) = (
            Arc::clone(&tap.blocked),
            Arc::clone(&tap.forwarded),
            Arc::clone(&tap.recording),
            Arc::clone(&tap.recorded),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                if recording.load(Ordering::SeqCst) {
                    if let Ok(mut r) = recorded.lock() {
                        r.push(buf[..n].to_vec());
                    }
                }
                if !blocked.load(Ordering::SeqCst) {
                    forwarded.fetch_add(1, Ordering::SeqCst);
                    let _ = socket.send_to(&buf[..n], ("127.0.0.1", target));
                }
            }
        });
        tap
    }

    /// Datagrams forwarded so far.
    pub fn count(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// Starts or stops recording what passes.
    pub fn record(&self, on: bool) {
        self.recording.store(on, Ordering::SeqCst);
    }

    /// The datagrams recorded so far.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.recorded.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Sends `datagrams` to 127.0.0.1:<port> from a socket of its own.
pub fn replay(datagrams: &[Vec<u8>], port: u16) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    for d in datagrams {
        socket
            .send_to(d, ("127.0.0.1", port))
            .expect("replay a datagram");
    }
}

/// A blocking TCP connection to 127.0.0.1:<port> from the loopback address
/// `source` (any of 127.0.0.0/8), to look like another host.
pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((source, 0).into())?;
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// A link frame header that announces `len` bytes of payload.
pub fn header_stating(len: usize) -> Vec<u8> {
    let mut header = hbcore::link::FORMAT.encode(b"", None).expect("frame");
    header[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    header
}

/// Whether the other end has closed `stream`, waiting at most `within`.
pub fn closed_by_peer(mut stream: &TcpStream, within: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(within));
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A Refused frame may come first.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}
