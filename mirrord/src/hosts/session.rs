//! One host's connection after its handshake: the reader reads the
//! host's calls, each answered on a task of its own (a sync write waits
//! for the peer while the host's other calls go on), which seals its
//! answer onto the socket itself, under the session's writer lock.
//!
//! ```text
//!  ══ session reader task ══ HostCall{id} ─ permit (≤ MAX_CALLS) ─> ══ call task ══ HostLink::answer
//!                                          socket <─ HostAnswer{id} (writer lock) <─┘
//! ```
//! A host silent for [`PROBE`] is sent a `Ping`; silent for another, the
//! session ends (its mount claim with it). The host answers pings itself.

use std::sync::Arc;
use std::time::Duration;

use hbcore::link::handshake::Admitted;
use hbcore::link::sealed::{self, SealedWriter};
use hbcore::link::Message;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::HostLink;

/// Calls of one host answered at once at most; the next waits to be read.
pub const MAX_CALLS: usize = 32;
/// Silence after which a host is pinged, and after another, dropped.
pub const PROBE: Duration = Duration::from_secs(5);

/// Who is on the other end of a session.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The host's id.
    pub host: String,
    /// Its process (the handshake's incarnation).
    pub incarnation: u64,
    /// This session.
    pub session: u64,
    /// Its address, for messages.
    pub from: String,
}

/// Serves one admitted host connection until it ends or `stop`.
pub async fn run(
    link: Arc<HostLink>,
    admitted: Admitted<TcpStream>,
    caller: Caller,
    stop: CancellationToken,
) {
    let (mut reader, writer) = match sealed::halves(admitted, TcpStream::into_split) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(host = %caller.host, "host link: {e}");
            return;
        }
    };
    let writer = Arc::new(Mutex::new(writer));
    // A message the reader sends (a ping, a pong) goes on a task of its
    // own: the reader never waits for the writer lock.
    let send_aside = |msg: Message| {
        let writer = Arc::clone(&writer);
        tokio::spawn(async move { send(&writer, msg).await });
    };
    let permits = Arc::new(Semaphore::new(MAX_CALLS));
    let caller = Arc::new(caller);
    let mut probed = false;
    let why = loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break "mirrord is stopping".to_string(),
            n = tokio::time::timeout(PROBE, reader.next()) => n,
        };
        let msg = match next {
            Err(_) if probed => break format!("silent for {:?}", PROBE * 2),
            Err(_) => {
                send_aside(Message::Ping);
                probed = true;
                continue;
            }
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break "the host closed the connection".into(),
            Ok(Err(e)) => match e.rejected() {
                Some(reason) => break format!("a frame refused ({reason}): {e}"),
                None => break format!("{e}"),
            },
        };
        probed = false;
        match msg {
            Message::HostCall { id, body } => {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break "closed".into();
                };
                let (link, caller, writer) =
                    (Arc::clone(&link), Arc::clone(&caller), Arc::clone(&writer));
                tokio::spawn(async move {
                    let result = link.answer(&caller, body).await;
                    send(&writer, Message::HostAnswer { id, result }).await;
                    drop(permit);
                });
            }
            Message::Ping => send_aside(Message::Pong),
            Message::Pong => {}
            other => break format!("a {} message, which hosts do not send", other.kind()),
        }
    };
    tracing::info!(host = %caller.host, from = %caller.from, "host link: session ended: {why}");
    link.ended(&caller);
    // Calls still running answer while the socket takes it; the socket
    // closes when the last of them is done.
    let locked = tokio::time::timeout(PROBE, writer.lock()).await;
    if let Ok(mut w) = locked {
        w.shutdown().await;
    }
}

/// Seals and writes one message; a failed write shows as the reader's end.
async fn send(writer: &Mutex<SealedWriter<OwnedWriteHalf>>, msg: Message) {
    let _ = writer.lock().await.send(msg).await;
}
