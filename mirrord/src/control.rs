//! The control socket: JSON-lines requests from hbctl, answered by the site.

use std::sync::Arc;

use hbmirror::control::{Reply, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::site::{Site, SiteError};

pub use hbmirror::control::bind_socket as bind;

/// Serves control requests until `stop`.
pub async fn serve(listener: UnixListener, site: Arc<Site>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            s = listener.accept() => s,
        };
        match stream {
            Ok((stream, _)) => {
                let site = Arc::clone(&site);
                tokio::spawn(async move { serve_one(stream, site).await });
            }
            Err(e) => tracing::warn!(error = %e, "control accept failed"),
        }
    }
}

async fn serve_one(stream: UnixStream, site: Arc<Site>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => match dispatch(&site, request).await {
                Ok(reply) => Response::Ok(reply),
                Err(e) => Response::Error(e.to_string()),
            },
            Err(e) => Response::Error(format!(
                "malformed control request: {e}; see hbmirror::control::Request for the format"
            )),
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn dispatch(site: &Arc<Site>, request: Request) -> Result<Reply, SiteError> {
    Ok(match request {
        Request::VolumeCreate { name, size, path } => {
            Reply::Done(site.volume_create(&name, size, path)?)
        }
        Request::VolumeList => Reply::Volumes(site.volume_list()),
        Request::VolumeDelete { name } => Reply::Done(site.volume_delete(&name)?),
        Request::PairCreate {
            name,
            pvol,
            peer,
            svol,
            kind,
            mode,
            fence,
            skew,
            auto_resync,
        } => Reply::Done(
            site.pair_create(
                &name,
                &pvol,
                &peer,
                svol.as_deref(),
                kind,
                mode,
                fence,
                skew,
                auto_resync,
            )
            .await?,
        ),
        Request::PairSet {
            name,
            mode,
            fence,
            skew,
            auto_resync,
        } => Reply::Done(site.pair_set(&name, mode, fence, skew, auto_resync).await?),
        Request::PairStatus { name } => Reply::Pairs(site.pair_status(name.as_deref())?),
        Request::PairSplit { name, force } => Reply::Done(site.pair_split(&name, force).await?),
        Request::PairResync { name, reverse } => {
            Reply::Done(site.pair_resync(&name, reverse).await?)
        }
        Request::PairTakeover { name } => Reply::Done(site.pair_takeover(&name).await?),
        Request::PairInstall { name, installed } => {
            Reply::Done(site.pair_install(&name, installed).await?)
        }
        Request::PairDelete { name, force } => Reply::Done(site.pair_delete(&name, force).await?),
    })
}
