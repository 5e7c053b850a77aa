//! Start-up and shutdown of mirrord: everything in order, then wait for
//! the shutdown (a signal, or a test completing the future).

use std::sync::Arc;

use anyhow::Context;
use hbcore::daemon::Shutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fs::SiteFiles;
use crate::link::Link;
use crate::site::peer::SiteHandler;
use crate::site::Site;
use hbio::IoEngine;

/// The environment may override `fuse_transport` (the test suite runs hbfs
/// on both transports this way).
const TRANSPORT_ENV: &str = "HBMIRROR_FUSE_TRANSPORT";

fn fuse_transport(config: &Config) -> anyhow::Result<hbfs::Transport> {
    match std::env::var(TRANSPORT_ENV) {
        Ok(v) if !v.is_empty() => {
            let t = v
                .parse()
                .map_err(|e: String| anyhow::anyhow!("{TRANSPORT_ENV}: {e}"))?;
            tracing::info!("{TRANSPORT_ENV}={v} overrides fuse_transport");
            Ok(t)
        }
        _ => Ok(config.fuse_transport.into()),
    }
}

/// Starts the host link (`[hosts]`): every host's key read, the port bound.
async fn start_hosts(
    hosts: &crate::hosts::grants::HostsConfig,
    config: &Config,
    site: &Arc<Site>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let grants = crate::hosts::grants::Grants::load(site.name(), hosts)?;
    let listener = TcpListener::bind(hosts.listen)
        .await
        .with_context(|| format!("cannot listen for hosts on {} (hosts.listen)", hosts.listen))?;
    let link = crate::hosts::HostLink::new(Arc::clone(site), grants, config.link.timeout());
    tokio::spawn(Arc::new(link).serve(listener, stop));
    tracing::info!(listen = %hosts.listen, hosts = hosts.allow.len(), "host link listening");
    Ok(())
}

/// Runs mirrord with `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let key = config.link_key()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let io = IoEngine::start();
    let link = Arc::new(Link::new(&config, key));
    let stop = CancellationToken::new();
    let site = Arc::new(Site::open(&config, io, Arc::clone(&link), stop.clone())?);
    let listener = TcpListener::bind(config.link.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for the remote link on {} (link.listen)",
                config.link.listen
            )
        })?;
    let control = hbcore::jsonl::bind(&config.control_socket).with_context(|| {
        format!(
            "cannot open the control socket {} (control_socket)",
            config.control_socket.display()
        )
    })?;
    crate::metrics::start(&config, &site, stop.clone()).await?;
    let mount = match &config.mount {
        Some(path) => {
            let files = Arc::new(SiteFiles::new(
                Arc::clone(&site),
                tokio::runtime::Handle::current(),
            ));
            let transport = fuse_transport(&config)?;
            Some(hbfs::mount(files, path, transport).with_context(|| {
                format!(
                    "cannot mount hbfs at {} (mount, fuse_transport)",
                    path.display()
                )
            })?)
        }
        None => None,
    };

    link.start(
        listener,
        Arc::new(SiteHandler(Arc::clone(&site))),
        stop.clone(),
    );
    site.start();
    let control_stop = stop.clone();
    tokio::spawn(crate::control::serve(
        control,
        Arc::clone(&site),
        async move { control_stop.cancelled().await },
    ));
    tracing::info!(
        site = site.name(),
        listen = %config.link.listen,
        control = %config.control_socket.display(),
        mount = ?config.mount,
        "mirrord ready"
    );
    if let Some(hosts) = &config.hosts {
        start_hosts(hosts, &config, &site, stop.clone()).await?;
    }
    crate::service::ready(&site, stop.clone());

    shutdown.await;
    // No new host I/O first, then the link, then the record of a clean stop.
    if let Some(mount) = mount {
        tokio::task::spawn_blocking(move || mount.unmount())
            .await?
            .context("unmounting hbfs")?;
    }
    stop.cancel();
    site.shutdown()?;
    let _ = std::fs::remove_file(&config.control_socket);
    tracing::info!("mirrord stopped");
    Ok(())
}
