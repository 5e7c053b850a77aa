//! Where hbctl reaches mirrord for `volume`, `pair`, `link` and `monitor`:
//! its control socket on this machine (`--socket`), or the host link to
//! mirrord on another machine (`--storage ADDR[,ADDR2] --key FILE [--host
//! ID]`; read from the command line by `remote`). Either way a request is
//! the same JSON line and its answer, or refusal, the same text: the host
//! link carries the line to mirrord's control and back
//! ([`HostClient::control`]).
//!
//! hbctl is synchronous: a host link's calls run on a current-thread tokio
//! runtime of this invocation, on the calling thread (the main thread, or
//! the monitor's refresh thread).

use std::path::PathBuf;

use hbcore::host::client::HostClient;
use hbcore::jsonl::{self, ClientError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// mirrord, as this invocation reaches it.
#[derive(Debug)]
pub enum Mirrord {
    /// Its control socket on this machine.
    Socket(PathBuf),
    /// The host link, and the runtime its calls run on.
    Host {
        /// The link (connected at the first call).
        client: HostClient,
        /// This invocation's runtime.
        runtime: tokio::runtime::Runtime,
    },
}

impl Mirrord {
    /// Sends one request and waits for its answer, as `jsonl::call` does.
    pub fn call<Q: Serialize, R: DeserializeOwned>(&self, request: &Q) -> Result<R, ClientError> {
        match self {
            Mirrord::Socket(socket) => jsonl::call(socket, request),
            Mirrord::Host { client, runtime } => runtime.block_on(client.control(request)),
        }
    }
}
