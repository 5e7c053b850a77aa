//! mirrord under systemd (`Type=notify`): `READY=1` once the control socket
//! is bound and hbfs is mounted, then a `STATUS=` line with the pairs'
//! states ("3 PAIR, 1 PSUE") kept current every [`REFRESH`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::site::Site;

/// How often the `STATUS=` line is refreshed.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The one-line summary: how many pairs in each state.
pub fn summary(site: &Site) -> String {
    match site.pair_status(None) {
        Ok(pairs) => {
            let text = hbcore::notify::summary(pairs.iter().map(|p| p.state), "no pairs");
            format!("{text} (site {})", site.name())
        }
        Err(e) => format!("pair status unavailable: {e}"),
    }
}

/// Says READY (call it once the daemon serves) and keeps the STATUS line
/// current until `stop`.
pub fn ready(site: &Arc<Site>, stop: CancellationToken) {
    hbcore::notify::ready(&summary(site));
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let site = Arc::clone(site);
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
            let now = summary(&site);
            if now != last {
                hbcore::notify::status(&now);
                last = now;
            }
        }
    });
}
