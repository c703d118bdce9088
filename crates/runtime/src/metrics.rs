//! Metrics, the same way on every process: one [`Registry`] per process (every name prefixed
//! `permafrost_`), encoded in the OpenMetrics text format by the Prometheus project's
//! `prometheus-client`, served at `GET /metrics` on a listener of its own ([`MetricsListener`],
//! off unless `metrics_listen` is configured), and the label types the processes share. Each
//! process defines its own metrics next to its code and registers them here.
//!
//! Labels stay low-cardinality: curves, outcomes, reasons and node names; never key ids or
//! session ids.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use permafrost_net::{Client, PeerId};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

use crate::network::Network;
use tokio::task::JoinHandle;

/// What every metric name starts with (followed by `_`).
pub const PREFIX: &str = "permafrost";

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A process's registry: every metric registered in it is named `permafrost_…`.
pub fn registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// The registry's metrics in the OpenMetrics text format (ending with `# EOF`).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// An HTTP answer with the registry's metrics (500 if they cannot be encoded).
pub fn response(registry: &Registry) -> Response {
    match encode(registry) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        )
            .into_response(),
    }
}

/// How a DKG, a reshare or a signature ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed: a timeout, too few signers, a misbehaving member, a write that failed.
    Failed,
    /// A member (or the client's or operator's approval) refused it.
    Refused,
}

impl Outcome {
    /// The label value: `ok`, `failed` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels `curve` (`ed25519`, `secp256k1`, `secp256k1-tr`) and `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurveOutcome {
    /// The key's curve ([`permafrost_wire::Curve::as_str`]).
    pub curve: &'static str,
    /// How it ended.
    pub outcome: Outcome,
}

/// Label `curve` alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurveLabel {
    /// The key's curve ([`permafrost_wire::Curve::as_str`]), or `unknown`.
    pub curve: &'static str,
}

/// Label `reason`: a stable short name (a refusal's label, an API error code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// Label `node`: a signer node's name in the network file.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node's name.
    pub node: String,
}

/// Label `peer`: a peer's name in the network file (a coordinator, which has none: its PeerId).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's name.
    pub peer: String,
}

/// A family of latency histograms (seconds) with labels `L`.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The latency buckets every histogram uses: 0.5 ms doubling up to about 4.4 minutes, which
/// covers a keystore sync, a one-round signature and a reshare alike.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 20))
}

/// A family of latency histograms with [`latency_histogram`]'s buckets.
pub fn histogram_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

/// Serves `GET /metrics` with a registry on an address of its own.
pub struct MetricsListener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MetricsListener {
    /// Binds `addr` (port 0 picks a free port) and serves `registry` there until
    /// [`stop`](Self::stop) or drop. Any other path is 404.
    pub async fn start(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let registry = Arc::clone(&registry);
                    async move { response(&registry) }
                }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "only GET /metrics is served here") });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
        Ok(MetricsListener {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits (at most 5 s) for the listener to close.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for MetricsListener {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How often [`PeerWatch`] looks at the connections.
pub const PEER_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// `permafrost_peer_connected{peer}`: 1 while this process has an open connection to the peer,
/// 0 otherwise; looked at every [`PEER_WATCH_INTERVAL`]. A node does not probe its peers, so
/// this is what it knows of them; the coordinator also reports each node's probes.
pub struct PeerWatch {
    task: JoinHandle<()>,
}

impl PeerWatch {
    /// Registers the gauge in `registry` and watches, through `client`, every member of
    /// `network` but `me` (a node by its name, a coordinator by its PeerId).
    pub fn start(registry: &mut Registry, client: Client, network: &Network, me: &PeerId) -> Self {
        let peers: BTreeMap<PeerId, String> = network
            .nodes
            .iter()
            .chain(&network.coordinators)
            .filter(|m| m.peer_id != *me)
            .map(|m| {
                let name = m.name.clone().unwrap_or_else(|| m.peer_id.to_string());
                (m.peer_id, name)
            })
            .collect();
        let connected = Family::<PeerLabel, Gauge>::default();
        registry.register(
            "peer_connected",
            "1 while this process has an open connection to the peer, else 0",
            connected.clone(),
        );
        for name in peers.values() {
            connected
                .get_or_create(&PeerLabel { peer: name.clone() })
                .set(0);
        }
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PEER_WATCH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok(Ok(open)) =
                    tokio::time::timeout(PEER_WATCH_INTERVAL, client.connected_peers()).await
                else {
                    continue;
                };
                for (peer, name) in &peers {
                    connected
                        .get_or_create(&PeerLabel { peer: name.clone() })
                        .set(i64::from(open.contains(peer)));
                }
            }
        });
        PeerWatch { task }
    }
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn names_are_prefixed_and_labels_encoded() {
        let mut registry = registry();
        let family = Family::<CurveOutcome, Counter>::default();
        registry.register("things", "things done", family.clone());
        family
            .get_or_create(&CurveOutcome {
                curve: "ed25519",
                outcome: Outcome::Refused,
            })
            .inc();
        let text = encode(&registry).unwrap();
        assert!(
            text.contains("permafrost_things_total{curve=\"ed25519\",outcome=\"refused\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn the_listener_serves_metrics_and_nothing_else() {
        let mut registry = registry();
        let histogram = latency_histogram();
        registry.register("waits_seconds", "waits", histogram.clone());
        histogram.observe(0.002);
        let listener = MetricsListener::start(([127, 0, 0, 1], 0).into(), Arc::new(registry))
            .await
            .unwrap();
        assert_ne!(listener.addr().port(), 0);
        let (status, head, body) = get_http(listener.addr(), "/metrics").await;
        assert_eq!(status, 200, "{head}");
        assert!(head.to_ascii_lowercase().contains(CONTENT_TYPE), "{head}");
        assert!(body.contains("permafrost_waits_seconds_count 1"), "{body}");
        let (status, _, _) = get_http(listener.addr(), "/v1/keys").await;
        assert_eq!(status, 404);
        let addr = listener.addr();
        listener.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    /// One HTTP/1.0 GET over a plain socket: status, head, body.
    async fn get_http(addr: SocketAddr, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_owned(), body.to_owned())
    }
}
