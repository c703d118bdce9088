//! The coordinator's metrics (docs/OPERATIONS.md, section 8, lists each): sessions per curve
//! and outcome with their latency, API refusals by reason, culprits per node, the commitment
//! pools, and each node's probes. Served on the API's `GET /metrics` (behind the token) and on
//! `metrics_listen` when configured.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use permafrost_api::codes;
use permafrost_engine::coordinator::{MetadataStore, SignerAsks};
use permafrost_net::PeerId;
use permafrost_runtime::metrics::{
    histogram_family, CurveOutcome, HistogramFamily, NodeLabel, Outcome, ReasonLabel, Registry,
};
use permafrost_wire::{Curve, NodeId};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;

use crate::probe::Probes;
use crate::store::MetadataDb;

/// Which kind of session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// A signature.
    Sign,
    /// A DKG.
    Dkg,
    /// A reshare.
    Reshare,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Sign => "sign",
            SessionKind::Dkg => "dkg",
            SessionKind::Reshare => "reshare",
        }
    }
}

/// Labels of a culprit: the node and the kind of session it was named in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CulpritLabels {
    /// The node's name.
    pub node: String,
    /// `sign`, `dkg` or `reshare`.
    pub session: &'static str,
}

/// Label `mode` of a signer asked for a signature: `one_round` or `two_round`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    /// How it was asked.
    pub mode: &'static str,
}

/// Label `outcome` of a scheduled rotation: `started`, `committed` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RotationLabel {
    /// What became of it.
    pub outcome: &'static str,
}

/// What became of a scheduled rotation run, for `coordinator_scheduled_rotations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationOutcome {
    /// A due run started.
    Started,
    /// A run committed.
    Committed,
    /// A started run failed (a due run that could not start is only logged).
    Failed,
}

/// Label `on` of an aggregation: `loop` or `workers`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AggregatedOnLabel {
    /// Where it ran.
    pub on: &'static str,
}

/// Where a signing attempt's aggregation ran, for `coordinator_aggregations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregatedOn {
    /// On the engine's loop: nothing else waited there.
    Loop,
    /// On the aggregation workers: other inputs waited on the loop.
    Workers,
}

impl AggregatedOn {
    const ALL: [AggregatedOn; 2] = [AggregatedOn::Loop, AggregatedOn::Workers];

    fn as_str(self) -> &'static str {
        match self {
            AggregatedOn::Loop => "loop",
            AggregatedOn::Workers => "workers",
        }
    }
}

impl RotationOutcome {
    const ALL: [RotationOutcome; 3] = [
        RotationOutcome::Started,
        RotationOutcome::Committed,
        RotationOutcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RotationOutcome::Started => "started",
            RotationOutcome::Committed => "committed",
            RotationOutcome::Failed => "failed",
        }
    }
}

/// A session's counter and latency histogram.
struct Sessions {
    total: Family<CurveOutcome, Counter>,
    seconds: HistogramFamily<CurveOutcome>,
}

impl Sessions {
    /// `permafrost_coordinator_{total}_total` and
    /// `permafrost_coordinator_{one}_duration_seconds`.
    fn register(registry: &mut Registry, total: &str, one: &str, what: &str) -> Self {
        let sessions = Sessions {
            total: Family::default(),
            seconds: histogram_family(),
        };
        registry.register(
            format!("coordinator_{total}"),
            format!("{what} by curve and outcome (ok, failed, refused)"),
            sessions.total.clone(),
        );
        registry.register(
            format!("coordinator_{one}_duration_seconds"),
            format!("How long {what} took, from the API request to its answer"),
            sessions.seconds.clone(),
        );
        for curve in Curve::ALL {
            for outcome in [Outcome::Ok, Outcome::Failed, Outcome::Refused] {
                let labels = CurveOutcome {
                    curve: curve.as_str(),
                    outcome,
                };
                let _ = sessions.total.get_or_create(&labels);
                if outcome == Outcome::Ok {
                    let _ = sessions.seconds.get_or_create(&labels);
                }
            }
        }
        sessions
    }
}

/// Every metric the coordinator updates as it goes (the probes and the number of keys are read
/// at each scrape).
pub struct CoordinatorMetrics {
    signatures: Sessions,
    dkgs: Sessions,
    reshares: Sessions,
    api_refused: Family<ReasonLabel, Counter>,
    culprits: Family<CulpritLabels, Counter>,
    pool_depth: Family<NodeLabel, Gauge>,
    signer_asks: Family<ModeLabel, Counter>,
    rotations: Family<RotationLabel, Counter>,
    aggregations: Family<AggregatedOnLabel, Counter>,
    /// The names of the network file's nodes.
    names: BTreeMap<NodeId, String>,
    /// The asks counted so far (the core counts since it opened).
    asks_seen: std::sync::Mutex<SignerAsks>,
}

impl CoordinatorMetrics {
    /// The metrics, registered in `registry` along with a collector reading `probes` of
    /// `nodes` (PeerId, name) and the number of keys in `store` at each scrape.
    pub fn register(
        registry: &mut Registry,
        names: BTreeMap<NodeId, String>,
        nodes: Vec<(PeerId, String)>,
        probes: Arc<Probes>,
        store: MetadataDb,
    ) -> Self {
        let metrics = CoordinatorMetrics {
            signatures: Sessions::register(registry, "signatures", "signature", "Signing requests"),
            dkgs: Sessions::register(registry, "dkgs", "dkg", "DKGs (key creations)"),
            reshares: Sessions::register(registry, "reshares", "reshare", "Reshares"),
            api_refused: Family::default(),
            culprits: Family::default(),
            pool_depth: Family::default(),
            signer_asks: Family::default(),
            rotations: Family::default(),
            aggregations: Family::default(),
            names,
            asks_seen: std::sync::Mutex::new(SignerAsks::default()),
        };
        registry.register(
            "coordinator_api_refused",
            "API requests answered with a 4xx error, by its code",
            metrics.api_refused.clone(),
        );
        registry.register(
            "coordinator_culprits",
            "Nodes named responsible for a failure (a bad share, a bad dealing, a mismatch), \
             by node and kind of session",
            metrics.culprits.clone(),
        );
        registry.register(
            "coordinator_commitment_pool_depth",
            "Commitments pooled for one-round signing, per node (over every key)",
            metrics.pool_depth.clone(),
        );
        registry.register(
            "coordinator_signer_asks",
            "The first t signers of each signature: asked in one round (a pooled commitment) \
             or in two (none pooled)",
            metrics.signer_asks.clone(),
        );
        registry.register(
            "coordinator_scheduled_rotations",
            "Scheduled share rotations (refreshes run by a key's rotation policy, not by an API \
             request), by outcome: started, committed, failed",
            metrics.rotations.clone(),
        );
        for outcome in RotationOutcome::ALL {
            let _ = metrics.rotations.get_or_create(&RotationLabel {
                outcome: outcome.as_str(),
            });
        }
        registry.register(
            "coordinator_aggregations",
            "Signing attempts aggregated (aggregate, verify), by where: on the engine's loop \
             (nothing else waited there) or on the aggregation workers",
            metrics.aggregations.clone(),
        );
        for on in AggregatedOn::ALL {
            let _ = metrics
                .aggregations
                .get_or_create(&AggregatedOnLabel { on: on.as_str() });
        }
        for (code, status) in codes::STATUSES {
            if (400..500).contains(&status) {
                let _ = metrics
                    .api_refused
                    .get_or_create(&ReasonLabel { reason: code });
            }
        }
        for name in metrics.names.values() {
            for kind in [SessionKind::Sign, SessionKind::Dkg, SessionKind::Reshare] {
                let _ = metrics.culprits.get_or_create(&CulpritLabels {
                    node: name.clone(),
                    session: kind.as_str(),
                });
            }
            let _ = metrics
                .pool_depth
                .get_or_create(&NodeLabel { node: name.clone() });
        }
        for mode in ["one_round", "two_round"] {
            let _ = metrics.signer_asks.get_or_create(&ModeLabel { mode });
        }
        registry.register_collector(Box::new(AtScrape {
            nodes,
            probes,
            store,
        }));
        metrics
    }

    /// A session of `kind` on a key of `curve` ended with `outcome` after `took`, naming
    /// `culprits`.
    pub fn session_ended(
        &self,
        kind: SessionKind,
        curve: Curve,
        outcome: Outcome,
        took: Duration,
        culprits: &[NodeId],
    ) {
        let sessions = match kind {
            SessionKind::Sign => &self.signatures,
            SessionKind::Dkg => &self.dkgs,
            SessionKind::Reshare => &self.reshares,
        };
        let labels = CurveOutcome {
            curve: curve.as_str(),
            outcome,
        };
        sessions.total.get_or_create(&labels).inc();
        sessions
            .seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        for culprit in culprits {
            self.culprits
                .get_or_create(&CulpritLabels {
                    node: self.name(culprit),
                    session: kind.as_str(),
                })
                .inc();
        }
    }

    /// A scheduled rotation run came to `outcome`.
    pub fn scheduled_rotation(&self, outcome: RotationOutcome) {
        self.rotations
            .get_or_create(&RotationLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A signing attempt was aggregated `on` the loop or the workers.
    pub fn aggregation(&self, on: AggregatedOn) {
        self.aggregations
            .get_or_create(&AggregatedOnLabel { on: on.as_str() })
            .inc();
    }

    /// The API answered a request with the 4xx error `code`.
    pub fn api_refused(&self, code: &'static str) {
        self.api_refused
            .get_or_create(&ReasonLabel { reason: code })
            .inc();
    }

    /// The pools now hold `depths` commitments per node (nodes missing hold none).
    pub fn pools(&self, depths: &BTreeMap<NodeId, usize>) {
        for (node, name) in &self.names {
            let depth = depths.get(node).copied().unwrap_or(0);
            self.pool_depth
                .get_or_create(&NodeLabel { node: name.clone() })
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }

    /// The core's count of signer asks so far is `asks`: the counters move by what is new.
    pub fn signer_asks(&self, asks: SignerAsks) {
        let mut seen = self.asks_seen.lock().unwrap_or_else(|e| e.into_inner());
        let new = [
            ("one_round", asks.one_round.saturating_sub(seen.one_round)),
            ("two_round", asks.two_round.saturating_sub(seen.two_round)),
        ];
        for (mode, count) in new {
            if count > 0 {
                self.signer_asks
                    .get_or_create(&ModeLabel { mode })
                    .inc_by(count);
            }
        }
        *seen = asks;
    }

    fn name(&self, node: &NodeId) -> String {
        self.names
            .get(node)
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// What is read at each scrape: every node's probes, and the number of keys.
struct AtScrape {
    nodes: Vec<(PeerId, String)>,
    probes: Arc<Probes>,
    store: MetadataDb,
}

impl std::fmt::Debug for AtScrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtScrape")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl AtScrape {
    /// One gauge family: `value` of each node, nodes without one left out.
    fn gauge(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: impl Fn(&crate::probe::ProbeStatus) -> Option<f64>,
    ) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        let values: Vec<(NodeLabel, f64)> = self
            .nodes
            .iter()
            .filter_map(|(peer, node)| {
                let v = value(&self.probes.status(peer, now))?;
                Some((NodeLabel { node: node.clone() }, v))
            })
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in &values {
            ConstGauge::new(*v).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Collector for AtScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.gauge(
            &mut encoder,
            "coordinator_node_healthy",
            "1 while the node's last answered probe is at most unhealthy_after_ms old, else 0",
            |s| Some(if s.healthy { 1.0 } else { 0.0 }),
        )?;
        self.gauge(
            &mut encoder,
            "coordinator_node_probe_round_trip_seconds",
            "Round trip of the node's last answered probe",
            |s| s.last_round_trip.map(|d| d.as_secs_f64()),
        )?;
        self.gauge(
            &mut encoder,
            "coordinator_node_probe_age_seconds",
            "Time since the node's last answered probe was sent",
            |s| s.last_success_age.map(|d| d.as_secs_f64()),
        )?;
        if let Ok(keys) = self.store.keys() {
            let keys = i64::try_from(keys.len()).unwrap_or(i64::MAX);
            let gauge = encoder.encode_descriptor(
                "coordinator_keys",
                "Keys in the metadata database",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(keys).encode(gauge)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn metrics() -> (Registry, CoordinatorMetrics, NodeId, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let store = MetadataDb::open(&tmp.path().join("c.redb")).unwrap();
        let node = NodeId::new([1u8; 8]).unwrap();
        let peer = PeerId::random();
        let probes = Arc::new(Probes::new(
            [peer],
            Duration::from_secs(1),
            Duration::from_secs(3),
        ));
        let mut registry = permafrost_runtime::metrics::registry();
        let metrics = CoordinatorMetrics::register(
            &mut registry,
            [(node.clone(), "node1".to_owned())].into(),
            vec![(peer, "node1".to_owned())],
            probes,
            store,
        );
        (registry, metrics, node, tmp)
    }

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn sessions_culprits_and_asks_are_counted() {
        let (registry, metrics, node, _tmp) = metrics();
        let text = permafrost_runtime::metrics::encode(&registry).unwrap();
        // Known series start at zero, so rates work from the first scrape.
        assert!(
            line(
                &text,
                "permafrost_coordinator_signatures_total{curve=\"ed25519\",outcome=\"refused\"} 0"
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                "permafrost_coordinator_api_refused_total{reason=\"unauthorized\"} 0"
            )
            .is_some(),
            "{text}"
        );
        assert!(line(
            &text,
            "permafrost_coordinator_api_refused_total{reason=\"internal\"}"
        )
        .is_none());
        // No probe answered yet: unhealthy, and no round trip to report.
        assert!(
            line(
                &text,
                "permafrost_coordinator_node_healthy{node=\"node1\"} 0"
            )
            .is_some(),
            "{text}"
        );
        assert!(line(
            &text,
            "permafrost_coordinator_node_probe_round_trip_seconds"
        )
        .is_none());
        assert!(
            line(&text, "permafrost_coordinator_keys 0").is_some(),
            "{text}"
        );

        metrics.session_ended(
            SessionKind::Sign,
            Curve::Secp256k1,
            Outcome::Ok,
            Duration::from_millis(30),
            std::slice::from_ref(&node),
        );
        metrics.signer_asks(SignerAsks {
            one_round: 2,
            two_round: 1,
        });
        metrics.signer_asks(SignerAsks {
            one_round: 3,
            two_round: 1,
        });
        metrics.pools(&[(node, 7)].into());
        metrics.scheduled_rotation(RotationOutcome::Started);
        metrics.scheduled_rotation(RotationOutcome::Committed);
        let text = permafrost_runtime::metrics::encode(&registry).unwrap();
        for expected in [
            "permafrost_coordinator_signatures_total{curve=\"secp256k1\",outcome=\"ok\"} 1",
            "permafrost_coordinator_signature_duration_seconds_count{curve=\"secp256k1\",outcome=\"ok\"} 1",
            "permafrost_coordinator_culprits_total{node=\"node1\",session=\"sign\"} 1",
            "permafrost_coordinator_signer_asks_total{mode=\"one_round\"} 3",
            "permafrost_coordinator_signer_asks_total{mode=\"two_round\"} 1",
            "permafrost_coordinator_commitment_pool_depth{node=\"node1\"} 7",
            "permafrost_coordinator_scheduled_rotations_total{outcome=\"started\"} 1",
            "permafrost_coordinator_scheduled_rotations_total{outcome=\"committed\"} 1",
            "permafrost_coordinator_scheduled_rotations_total{outcome=\"failed\"} 0",
        ] {
            assert!(line(&text, expected).is_some(), "{expected} not in\n{text}");
        }
    }
}
