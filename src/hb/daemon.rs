//! Start-up and shutdown of hbd: load the status table, open the sockets,
//! start the tick, the UDP receiver and the control server, and stop them
//! when the shutdown resolves (a signal, or a test completing the future).

use std::sync::Arc;

use tokio::net::UdpSocket;

use super::api::Source;
use super::config::Config;
use super::error::HbError;
use super::record;
use super::state::Hbd;
use hbcore::daemon::Shutdown;
use hbcore::jsonl;

/// Runs hbd with `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let key = config.key()?;
    let (table, origin, seeding) = record::load_table(&config, &key)?;
    let udp = match &config.network {
        Some(n) => Some(
            UdpSocket::bind(n.listen)
                .await
                .map_err(|source| HbError::Listen {
                    address: n.listen,
                    source,
                })?,
        ),
        None => None,
    };
    let control = jsonl::bind(&config.control_socket).map_err(|source| HbError::ControlSocket {
        path: config.control_socket.clone(),
        source,
    })?;
    let hbd = Arc::new(Hbd::new(config, key, table, udp));
    for name in &seeding.installed {
        hbd.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            "installed from the config (a [[mirrors]] entry new to the table)".into(),
        );
    }
    for (name, _) in &seeding.removed {
        hbd.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            "de-installed: its [[mirrors]] entry left the config".into(),
        );
    }
    hbd.release(seeding.removed.into_iter().filter_map(|(_, p)| p).collect())
        .await;
    // Fig 5: no heartbeat through a mirror whose pair may be split.
    hbd.protect_installed().await;
    hbd.save();
    tracing::info!(
        host = %hbd.config.host,
        group = %hbd.config.group,
        interval_ms = hbd.config.interval_ms,
        timeout_ms = hbd.config.timeout_ms,
        freshness_ms = hbd.config.freshness().as_millis() as u64,
        arm = %hbd.config.arm_policy(),
        table = ?origin,
        "hbd ready"
    );

    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let receiver = tokio::spawn(Arc::clone(&hbd).receive_network());
    let server = tokio::spawn(Arc::clone(&hbd).serve(control, async {
        let _ = server_stopped.await;
    }));
    let ticker = tokio::spawn(Arc::clone(&hbd).tick_loop());
    let metrics = super::metrics::start(&hbd).await?;
    let status = super::service::ready(&hbd);
    shutdown.await;
    status.abort();
    drop(metrics);
    ticker.abort();
    receiver.abort();
    let _ = stop_server.send(());
    if let Err(e) = server.await {
        tracing::warn!("the control server ended badly: {e}");
    }
    hbd.save();
    let _ = std::fs::remove_file(&hbd.config.control_socket);
    tracing::info!("hbd stopped");
    Ok(())
}
