//! Start-up and shutdown of hbd: load the status table, open the sockets,
//! start the tick, the UDP receiver and the control server, and stop them
//! when the shutdown resolves (a signal, or a test completing the future).

use std::sync::Arc;
use std::time::Duration;

use super::api::Source;
use super::config::Config;
use super::error::HbError;
use super::netcheck;
use super::netio::{retried, NetChannel};
use super::record;
use super::state::Hbd;
use hbcore::daemon::Shutdown;
use hbcore::jsonl;

/// Runs hbd with `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let key = config.key()?;
    let (table, origin, seeding) = record::load_table(&config, &key)?;
    // Each network's socket; one whose address is not on a NIC (yet) is
    // opened when it is (netio), any other refusal stops the start.
    let mut nets = vec![];
    for n in config.all_networks() {
        let net = NetChannel::new(n.clone());
        match net.open(&config.counter) {
            Ok(()) => {}
            Err(e) if retried(&e) => tracing::warn!(
                network = %n.name,
                "cannot listen on {} yet ({e}): the address is on no interface; tried again every interval",
                n.listen
            ),
            Err(source) => {
                return Err(HbError::Listen {
                    network: n.name.clone(),
                    address: n.listen,
                    source,
                }
                .into())
            }
        }
        nets.push(net);
    }
    let echo = netcheck::method();
    match &echo.1 {
        Some(note) => tracing::warn!(method = ?echo.0, "local network check: {note}"),
        None => tracing::info!(method = ?echo.0, "local network check: ICMP echo over raw sockets"),
    }
    let control = jsonl::bind(&config.control_socket).map_err(|source| HbError::ControlSocket {
        path: config.control_socket.clone(),
        source,
    })?;
    let mut table = table;
    (table.echo_method, table.echo_note) = (Some(echo.0), echo.1);
    let hbd = Arc::new(Hbd::new(config, key, table, nets));
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
    // What hbd does not hear while it is stopped is no evidence (checker::clocks).
    let period =
        (hbd.config.interval() / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
    if let Err(e) = hbd.clock.watch_stalls(period) {
        tracing::warn!("cannot start the stall watch ({e}): a stop of this host will not be told from the peer's silence");
    }
    tracing::info!(
        host = %hbd.config.host,
        group = %hbd.config.group,
        interval_ms = hbd.config.interval_ms,
        networks = ?hbd.config.network_names(),
        timeout_ms = hbd.config.timeout_ms,
        instance = format!("{:016x}", hbd.clock.instance),
        arm = %hbd.config.arm_policy(),
        table = ?origin,
        "hbd ready"
    );

    // Before the first tick: a cluster member that is not its group's master sends nothing.
    let cluster = crate::cluster::start(&hbd).await?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let receivers: Vec<_> = (0..hbd.nets.len())
        .map(|i| tokio::spawn(Arc::clone(&hbd).receive_network(i)))
        .collect();
    let server = tokio::spawn(Arc::clone(&hbd).serve(control, async {
        let _ = server_stopped.await;
    }));
    let ticker = tokio::spawn(Arc::clone(&hbd).tick_loop());
    let metrics = super::metrics::start(&hbd).await?;
    let status = super::service::ready(&hbd);
    shutdown.await;
    status.abort();
    drop(cluster);
    drop(metrics);
    ticker.abort();
    for r in &receivers {
        r.abort();
    }
    let _ = stop_server.send(());
    if let Err(e) = server.await {
        tracing::warn!("the control server ended badly: {e}");
    }
    hbd.save();
    let _ = std::fs::remove_file(&hbd.config.control_socket);
    tracing::info!("hbd stopped");
    Ok(())
}
