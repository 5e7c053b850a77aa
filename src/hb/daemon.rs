//! Start-up and shutdown of hbd: load the status table, open the sockets,
//! start the tick, the UDP receiver and the control server, and stop them
//! when the shutdown resolves (a signal, or a test completing the future).

use std::sync::Arc;

use tokio::net::UdpSocket;

use super::config::Config;
use super::error::HbError;
use super::state::{self, Hbd};
use hbcore::daemon::Shutdown;
use hbcore::jsonl;

/// Runs hbd with `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let key = config.key()?;
    let table = state::load_table(&config)?;
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
    hbd.save();
    tracing::info!(
        host = %hbd.config.host,
        group = %hbd.config.group,
        interval_ms = hbd.config.interval_ms,
        timeout_ms = hbd.config.timeout_ms,
        "hbd ready"
    );

    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let receiver = tokio::spawn(Arc::clone(&hbd).receive_network());
    let server = tokio::spawn(Arc::clone(&hbd).serve(control, async {
        let _ = server_stopped.await;
    }));
    let ticker = tokio::spawn(Arc::clone(&hbd).tick_loop());
    shutdown.await;
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
