//! The control socket: JSON-lines requests from hbctl, answered by the site.

use std::sync::Arc;

use hbmirror::control::{Reply, Request};
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
    hbmirror::control::serve_client(stream, "hbmirror::control::Request", |request: Request| {
        let site = Arc::clone(&site);
        async move { dispatch(&site, request).await.map_err(|e| e.to_string()) }
    })
    .await;
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
