//! hbd as a client of this site's mirrord: the pair behind a heartbeat
//! mirror (checked, protected from split, released) and the data pairs
//! taken over at failover. A call blocks on a Unix socket, so it runs on
//! tokio's blocking threads.

use std::path::Path;
use std::time::Duration;

use hbcore::control::{PairInfo, PairStatus, Reply, Request};
use hbcore::jsonl;

use crate::hb::error::HbError;

/// Sends `request` to the mirrord at `socket` and waits for its answer.
pub async fn call(socket: &Path, request: Request) -> Result<Reply, HbError> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || jsonl::call::<_, Reply>(&socket, &request))
        .await
        .map_err(|source| HbError::Blocking {
            what: "a call to mirrord",
            source,
        })?
        .map_err(HbError::Mirrord)
}

/// As [`call`], giving up after `limit` (a stalled mirrord never answers).
pub async fn call_within(
    socket: &Path,
    request: Request,
    limit: Duration,
) -> Result<Reply, HbError> {
    tokio::time::timeout(limit, call(socket, request))
        .await
        .map_err(|_| HbError::MirrordSilent {
            socket: socket.to_path_buf(),
            limit,
        })?
}

/// The status of pair `name`.
pub async fn pair(socket: &Path, name: &str, limit: Duration) -> Result<PairInfo, HbError> {
    let request = Request::PairStatus(PairStatus {
        name: Some(name.into()),
    });
    match call_within(socket, request, limit).await? {
        Reply::Pairs(mut p) if !p.is_empty() => Ok(p.remove(0)),
        _ => Err(HbError::NoPair { pair: name.into() }),
    }
}
