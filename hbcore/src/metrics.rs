//! The daemons' OpenMetrics endpoint (`metrics_listen`, off by default):
//! a tiny HTTP server answering `GET /metrics`, and [`Scrape`], the set of
//! metrics a daemon builds from a snapshot of its state at each scrape
//! (names prefixed `hbmirror_`, encoded by `prometheus-client`).
//!
//! A scraper that accepts OpenMetrics (Prometheus does) gets it; any other
//! (curl, older tools) gets the same samples in the Prometheus text format
//! 0.0.4, whose counter families are named with their `_total`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Labels of one sample: `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// Connections answered at once.
const MAX_CONNECTIONS: usize = 16;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text in the Prometheus text format 0.0.4: a counter family's
/// HELP and TYPE name its samples' `_total` name; no `# EOF` or `# UNIT`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                text.push_str(&format!("{prefix}{name} {tail}\n"));
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// The metrics of one scrape.
pub struct Scrape {
    registry: Registry,
}

impl Default for Scrape {
    fn default() -> Scrape {
        Scrape {
            registry: Registry::with_prefix("hbmirror"),
        }
    }
}

/// `[("pair", "d0"), ...]` as [`Labels`].
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Scrape {
    /// A gauge family `hbmirror_NAME` with one sample per labels.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).set(value);
        }
        self.registry.register(name, help, family);
    }

    /// A counter family `hbmirror_NAME_total` with one sample per labels.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let family = Family::<Labels, Counter<u64>>::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).inc_by(value);
        }
        self.registry.register(name, help, family);
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("metrics: cannot encode: {e}");
        }
        text
    }
}

/// The metrics endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {address} (metrics_listen)")]
pub struct MetricsError {
    /// The configured address.
    pub address: SocketAddr,
    /// OS error.
    #[source]
    pub source: std::io::Error,
}

/// Binds `address` and answers `GET /metrics` with `scrape()` until `stop`.
pub async fn serve<F, S>(address: SocketAddr, scrape: F, stop: S) -> Result<(), MetricsError>
where
    F: Fn() -> String + Send + Sync + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError { address, source })?;
    let scrape = Arc::new(scrape);
    // A few scrapers at a time; more connections are closed at once.
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tracing::info!(%address, "metrics endpoint: GET /metrics");
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut stop => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("metrics: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                continue;
            };
            let scrape = Arc::clone(&scrape);
            tokio::spawn(async move {
                let _permit = permit;
                let answered =
                    tokio::time::timeout(Duration::from_secs(5), answer(stream, &*scrape)).await;
                if let Ok(Err(e)) = answered {
                    tracing::debug!("metrics: {e}");
                }
            });
        }
    });
    Ok(())
}

/// Reads one request head and answers it; the connection then closes.
async fn answer(
    mut stream: TcpStream,
    scrape: &(dyn Fn() -> String + Send + Sync),
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let openmetrics = line.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("accept:") && l.contains("application/openmetrics-text")
    });
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", "/metrics") if openmetrics => ("200 OK", CONTENT_TYPE, scrape()),
        ("GET", "/metrics") => ("200 OK", TEXT_CONTENT_TYPE, to_prometheus_text(&scrape())),
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "hbmirror metrics: GET /metrics\n".to_string(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prefixed_families() {
        let mut scrape = Scrape::default();
        scrape.gauge(
            "pair_dirty_bytes",
            "Dirty bytes.",
            [(labels([("pair", "d0")]), 4096.0)],
        );
        scrape.counter(
            "link_reconnects",
            "Reconnects.",
            [(labels([("peer", "b")]), 3)],
        );
        let text = scrape.encode();
        assert!(
            text.contains("hbmirror_pair_dirty_bytes{pair=\"d0\"} 4096"),
            "{text}"
        );
        assert!(
            text.contains("hbmirror_link_reconnects_total{peer=\"b\"} 3"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let plain = to_prometheus_text(&text);
        assert!(
            plain.contains("# TYPE hbmirror_link_reconnects_total counter\n"),
            "{plain}"
        );
        assert!(
            plain.contains("# HELP hbmirror_link_reconnects_total Reconnects"),
            "{plain}"
        );
        assert!(
            plain.contains("# TYPE hbmirror_pair_dirty_bytes gauge\n"),
            "{plain}"
        );
        assert!(!plain.contains("# EOF"), "{plain}");
    }

    #[tokio::test]
    async fn answers_get_metrics() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = probe.local_addr().expect("addr");
        drop(probe);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        serve(address, || "x 1\n# EOF\n".to_string(), async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
        let mut s = TcpStream::connect(address).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("x 1\n# EOF\n"), "{answer}");
        let _ = tx.send(());
    }
}
