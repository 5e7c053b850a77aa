//! hbd as a client of this site's mirrord: the pair behind a heartbeat
//! mirror (checked, protected from split, released), the data pairs taken
//! over at failover and fenced at a step-down, and the cluster member's
//! storage probe, validation and takeovers. Every call to mirrord goes
//! through here, to where the config says mirrord is ([`MirrordAt`]):
//!
//! - its control socket on this machine (`[failover] mirrord_socket`): a
//!   call blocks on the Unix socket, so it runs on tokio's blocking threads;
//! - or the host link to mirrord on another machine (`[failover] mirrord =
//!   "tcp://..."`): a [`HostClient`] per endpoint, made at the first call
//!   (the key file is read then, once per process) and kept, reconnecting
//!   by itself; its calls run on the caller's task.
//!
//! Either way the answer (and a refusal's text) is what mirrord's control
//! socket answers.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use hbcore::control::{PairInfo, PairStatus, Reply, Request};
use hbcore::host::client::{HostClient, StorageSpec};
use hbcore::jsonl;

use super::lock::lock;
use crate::hb::config::MirrordAt;
use crate::hb::error::HbError;

/// How long a call over the host link waits in all (reconnecting meanwhile)
/// before it fails; the callers' own limits are shorter where they matter.
const HOST_LINK_TIMEOUT: Duration = Duration::from_secs(10);

/// The host link's clients, one per endpoint (addresses, key file, host id):
/// hbd has one, a process that reads several configs one each.
static CLIENTS: Mutex<Vec<(MirrordAt, HostClient)>> = Mutex::new(Vec::new());

/// The kept client for `at`, the host link to `addrs` as `host` with the
/// key in `key_file`, made at the first call.
fn client(
    at: &MirrordAt,
    addrs: &[String],
    key_file: &Path,
    host: &str,
) -> Result<HostClient, HbError> {
    let mut clients = lock(&CLIENTS);
    if let Some((_, client)) = clients.iter().find(|(a, _)| a == at) {
        return Ok(client.clone());
    }
    let key = hbcore::config::read_private_key(key_file).map_err(|source| HbError::MirrordKey {
        at: at.to_string(),
        source: Box::new(source),
    })?;
    let client = HostClient::new(StorageSpec {
        addrs: addrs.to_vec(),
        key,
        host: host.to_string(),
        site: None,
        io_timeout: HOST_LINK_TIMEOUT,
    });
    clients.push((at.clone(), client.clone()));
    Ok(client)
}

/// Sends `request` to the mirrord at `at` and waits for its answer.
pub async fn call(at: &MirrordAt, request: Request) -> Result<Reply, HbError> {
    match at {
        MirrordAt::Socket(socket) => {
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || jsonl::call::<_, Reply>(&socket, &request))
                .await
                .map_err(|source| HbError::Blocking {
                    what: "a call to mirrord",
                    source,
                })?
                .map_err(HbError::Mirrord)
        }
        MirrordAt::Host {
            addrs,
            key_file,
            host,
        } => client(at, addrs, key_file, host)?
            .control::<_, Reply>(&request)
            .await
            .map_err(HbError::Mirrord),
    }
}

/// As [`call`], giving up after `limit` (a stalled mirrord never answers).
pub async fn call_within(
    at: &MirrordAt,
    request: Request,
    limit: Duration,
) -> Result<Reply, HbError> {
    tokio::time::timeout(limit, call(at, request))
        .await
        .map_err(|_| HbError::MirrordSilent {
            at: at.to_string(),
            limit,
        })?
}

/// The status of pair `name`.
pub async fn pair(at: &MirrordAt, name: &str, limit: Duration) -> Result<PairInfo, HbError> {
    let request = Request::PairStatus(PairStatus {
        name: Some(name.into()),
    });
    match call_within(at, request, limit).await? {
        Reply::Pairs(mut p) if !p.is_empty() => Ok(p.remove(0)),
        _ => Err(HbError::NoPair { pair: name.into() }),
    }
}
