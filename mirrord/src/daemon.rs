//! Start-up and shutdown of mirrord: everything in order, then wait for a signal.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fs::SiteFiles;
use crate::io::IoEngine;
use crate::link::Link;
use crate::site::{Site, SiteHandler};

/// Runs mirrord with `config` until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
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
    let control = crate::control::bind(&config.control_socket).with_context(|| {
        format!(
            "cannot open the control socket {} (control_socket)",
            config.control_socket.display()
        )
    })?;
    let mount = match &config.mount {
        Some(path) => {
            let files = Arc::new(SiteFiles::new(
                Arc::clone(&site),
                tokio::runtime::Handle::current(),
            ));
            Some(
                hbfs::mount(files, path)
                    .with_context(|| format!("cannot mount hbfs at {} (mount)", path.display()))?,
            )
        }
        None => None,
    };

    link.start(
        listener,
        Arc::new(SiteHandler(Arc::clone(&site))),
        stop.clone(),
    );
    site.start();
    tokio::spawn(crate::control::serve(
        control,
        Arc::clone(&site),
        stop.clone(),
    ));
    tracing::info!(
        site = site.name(),
        listen = %config.link.listen,
        control = %config.control_socket.display(),
        mount = ?config.mount,
        "mirrord ready"
    );

    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
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
