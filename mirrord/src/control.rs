//! The control socket: hbctl's requests ([`hbcore::control::Request`]),
//! each turned into one operation of the site.

use std::sync::Arc;

use hbcore::control::{Reply, Request};
use tokio::net::UnixListener;

use crate::site::{Site, SiteError};

/// Serves control requests until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    site: Arc<Site>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    hbcore::jsonl::serve(
        listener,
        "hbcore::control::Request",
        move |request: Request| {
            let site = Arc::clone(&site);
            async move {
                dispatch(&site, request)
                    .await
                    .map_err(|e| hbcore::report::chain(&e))
            }
        },
        shutdown,
    )
    .await;
}

pub(crate) async fn dispatch(site: &Arc<Site>, request: Request) -> Result<Reply, SiteError> {
    Ok(match request {
        Request::VolumeCreate(r) => Reply::Done(site.volume_create(&r)?),
        Request::VolumeList => Reply::Volumes(site.volume_list()),
        Request::VolumeDelete(r) => Reply::Done(site.volume_delete(&r.name)?),
        Request::PairCreate(r) => Reply::Done(site.pair_create(&r).await?),
        Request::PairSet(r) => Reply::Done(site.pair_set(&r).await?),
        Request::PairStatus(r) => Reply::Pairs(site.pair_status(r.name.as_deref())?),
        Request::PairSplit(r) => Reply::Done(site.pair_split(&r.name, r.force).await?),
        Request::PairResync(r) => Reply::Done(site.resync_as_asked(&r).await?),
        Request::PairTakeover(r) => Reply::Done(site.pair_takeover(&r.name).await?),
        Request::PairOutdate(r) => Reply::Done(site.pair_outdate(&r.name, &r.reason)?),
        Request::PairInstall(r) => Reply::Done(site.pair_install(&r.name, r.installed).await?),
        Request::PairDelete(r) => Reply::Done(site.pair_delete(&r.name, r.force).await?),
        Request::PairVerify(r) => Reply::Done(site.pair_verify(&r)?),
        Request::LinkStatus => Reply::Links(site.link().status()),
    })
}
