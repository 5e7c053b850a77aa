//! The control transport of both daemons: one JSON request per line on a
//! Unix socket (mode 0600), one JSON [`Response`] per line back. `hbctl` is
//! the client; scripts may speak it directly
//! (`socat - UNIX-CONNECT:/run/hbmirror/mirrord.sock`).
//!
//! ```text
//!  hbctl ─ call() ─ line ─> socket ─> serve(): accept loop ─ task per client ─> answer(request)
//!        <──────────── line ─ Response::Ok(reply) | Response::Error(text) <──┘
//! ```
//!
//! A client costs bounded memory and time: a request line is at most
//! [`MAX_REQUEST`] bytes (a longer one is answered with an error and the
//! connection closed), a client silent for [`IDLE_TIMEOUT`] is disconnected,
//! and a line that is not UTF-8 or not a request is answered with an error
//! that says so (and logged, at most once a minute per kind).

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::throttle::{suppressed_note, Throttle, Verdict};

/// Longest request line accepted, in bytes (the largest real request is a few hundred).
pub const MAX_REQUEST: usize = 64 << 10;
/// A client that sends nothing for this long is disconnected. Tests shorten
/// it with the environment variable `HBMIRROR_CONTROL_IDLE_MS` (milliseconds),
/// read once per process; nothing else should set it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// [`IDLE_TIMEOUT`], or `HBMIRROR_CONTROL_IDLE_MS` when set.
fn idle_timeout() -> Duration {
    static IDLE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *IDLE.get_or_init(|| {
        std::env::var("HBMIRROR_CONTROL_IDLE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(IDLE_TIMEOUT, Duration::from_millis)
    })
}
/// One log line per kind of malformed request per this period.
const LOG_PERIOD: Duration = Duration::from_secs(60);

/// A daemon's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response<R> {
    /// The request succeeded.
    Ok(R),
    /// The request was refused or failed; the text names the thing and the way out.
    Error(String),
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach the daemon at {path}; is it running? (give the socket with --socket or HBCTL_SOCKET)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The conversation broke off.
    #[error("control socket {path}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The daemon answered something unreadable.
    #[error("unreadable answer from {path}")]
    Protocol {
        /// Socket path.
        path: PathBuf,
        /// Parse error.
        source: serde_json::Error,
    },
    /// The daemon refused the request; its text says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// mirrord could not be reached over the host link, or lost the call.
    #[error("{0}")]
    Storage(String),
}

/// Binds a daemon's control socket (mode 0600), replacing a stale socket
/// file but refusing one a running daemon still answers on.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use by a running daemon; stop it or choose another control_socket",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves a daemon's control socket until `shutdown` resolves: each client
/// on a task of its own, each request line answered by `answer`. `what`
/// names the request type in the error for a malformed line.
pub async fn serve<Q, R, F, Fut>(
    listener: tokio::net::UnixListener,
    what: &'static str,
    answer: F,
    shutdown: impl Future<Output = ()>,
) where
    Q: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Q) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, String>> + Send + 'static,
{
    let answer = Arc::new(answer);
    let throttle = Arc::new(Throttle::new(LOG_PERIOD, 64));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let answer = Arc::clone(&answer);
                let throttle = Arc::clone(&throttle);
                tokio::spawn(async move { serve_client(stream, what, &*answer, &throttle).await });
            }
            Err(e) => tracing::warn!(error = %e, "control socket: accept failed"),
        }
    }
}

/// One line read from a client.
enum Line {
    /// A complete line (without its newline).
    Text(String),
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong,
    /// The client hung up, stayed silent too long, or the socket failed.
    End,
}

async fn read_line(reader: &mut (impl tokio::io::AsyncBufRead + Unpin), buf: &mut Vec<u8>) -> Line {
    buf.clear();
    // One byte over the limit tells a line that is too long from one that just fits.
    let limit = (MAX_REQUEST + 1) as u64;
    let read =
        tokio::time::timeout(idle_timeout(), reader.take(limit).read_until(b'\n', buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => Line::End,
        Ok(Ok(_)) => {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            } else if buf.len() > MAX_REQUEST {
                return Line::TooLong;
            }
            match std::str::from_utf8(buf) {
                Ok(text) => Line::Text(text.to_string()),
                Err(_) => Line::NotUtf8,
            }
        }
    }
}

async fn serve_client<Q, R, F, Fut>(
    stream: tokio::net::UnixStream,
    what: &str,
    answer: &F,
    throttle: &Throttle,
) where
    Q: DeserializeOwned,
    R: Serialize,
    F: Fn(Q) -> Fut,
    Fut: Future<Output = Result<R, String>>,
{
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        // A refusal of the request itself (not of what it asks) is also logged.
        let refusal = |kind: &'static str, text: String| {
            if let Verdict::Say { suppressed } = throttle.note("control socket", kind) {
                tracing::warn!(
                    "control socket: {text}{}",
                    suppressed_note(suppressed, LOG_PERIOD)
                );
            }
            Response::<R>::Error(text)
        };
        let (response, close) = match read_line(&mut reader, &mut buf).await {
            Line::End => return,
            Line::TooLong => (
                refusal(
                    "too long",
                    format!("control request longer than {MAX_REQUEST} bytes; closing the connection"),
                ),
                true,
            ),
            Line::NotUtf8 => (
                refusal(
                    "not UTF-8",
                    format!("control request is not UTF-8 text; send one JSON object per line (see {what})"),
                ),
                false,
            ),
            Line::Text(line) => match serde_json::from_str::<Q>(&line) {
                Ok(request) => (respond(request, answer).await, false),
                Err(e) => (refusal("malformed", malformed(&e, what)), false),
            },
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn malformed(e: &serde_json::Error, what: &str) -> String {
    format!("malformed control request: {e}; see {what} for the format")
}

async fn respond<Q, R, F, Fut>(request: Q, answer: &F) -> Response<R>
where
    F: Fn(Q) -> Fut,
    Fut: Future<Output = Result<R, String>>,
{
    match answer(request).await {
        Ok(reply) => Response::Ok(reply),
        Err(e) => Response::Error(e),
    }
}

/// The answer line (without its newline) to one request line, as
/// [`serve`] answers it: for the same requests over another transport
/// (the host link's `Control`).
pub async fn answer_line<Q, R, F, Fut>(line: &str, what: &str, answer: &F) -> String
where
    Q: DeserializeOwned,
    R: Serialize,
    F: Fn(Q) -> Fut,
    Fut: Future<Output = Result<R, String>>,
{
    let response = match serde_json::from_str::<Q>(line) {
        Ok(request) => respond(request, answer).await,
        Err(e) => Response::Error(malformed(&e, what)),
    };
    serde_json::to_string(&response).unwrap_or_else(|e| {
        format!("{{\"error\":\"the daemon could not encode its answer: {e}\"}}")
    })
}

/// Reads an answer line as [`call`] does; `from` names the daemon's address.
pub fn read_answer<R: DeserializeOwned>(answer: &str, from: &Path) -> Result<R, ClientError> {
    match serde_json::from_str::<Response<R>>(answer).map_err(|source| ClientError::Protocol {
        path: from.to_path_buf(),
        source,
    })? {
        Response::Ok(reply) => Ok(reply),
        Response::Error(message) => Err(ClientError::Refused(message)),
    }
}

/// Sends one request to the daemon at `socket` and waits for its answer.
pub fn call<Q: Serialize, R: DeserializeOwned>(
    socket: &Path,
    request: &Q,
) -> Result<R, ClientError> {
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let protocol = |source| ClientError::Protocol {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let mut line = serde_json::to_string(request).map_err(protocol)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        )));
    }
    read_answer(&answer, socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_answered_and_a_malformed_one_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let listener = bind(&path).expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            "the Echo type",
            |n: u32| async move {
                if n > 9 {
                    Err(format!("{n} is too big"))
                } else {
                    Ok(n * 2)
                }
            },
            async {
                let _ = stopped.await;
            },
        ));
        let client = path.clone();
        let answers = tokio::task::spawn_blocking(move || {
            (
                call::<u32, u32>(&client, &4).map_err(|e| e.to_string()),
                call::<u32, u32>(&client, &10).map_err(|e| e.to_string()),
                call::<&str, u32>(&client, &"x").map_err(|e| e.to_string()),
            )
        })
        .await
        .expect("join");
        assert_eq!(answers.0, Ok(8));
        assert_eq!(answers.1, Err("10 is too big".into()));
        assert!(
            answers
                .2
                .as_ref()
                .is_err_and(|e| e.contains("see the Echo type")),
            "{answers:?}"
        );
        // A second daemon on the same live socket is refused by name.
        let e = bind(&path).expect_err("in use");
        assert!(e.to_string().contains("in use by a running daemon"), "{e}");
        let _ = stop.send(());
        server.await.expect("server stops on shutdown");
    }
}
