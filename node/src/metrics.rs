//! The node's metrics (docs/OPERATIONS.md, section 8, lists each), counted from what the node
//! core reports ([`NodeNotice`]) and from the time its group commit ([`NodeCore::flush`])
//! takes. Served on `metrics_listen` when configured.
//!
//! [`NodeCore::flush`]: permafrost_engine::node::NodeCore::flush

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use permafrost_engine::node::NodeNotice;
use permafrost_protocol::Refusal;
use permafrost_runtime::metrics::{
    histogram_family, latency_histogram, CurveLabel, HistogramFamily, Outcome, ReasonLabel,
    Registry,
};
use permafrost_wire::{Curve, KeyId, SessionId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// How long an admitted signing request or an approved DKG or reshare is remembered for its
/// latency (longer than any of their deadlines).
const REMEMBER_FOR: Duration = Duration::from_secs(600);

/// Most admitted signing requests remembered at once for their latency; beyond it, new ones go
/// unmeasured (they are still counted).
const MAX_REMEMBERED: usize = 65_536;

/// Label `outcome` alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

/// Counter and latency histogram of one kind of life-cycle session on this node.
struct Lifecycle {
    total: Family<OutcomeLabel, Counter>,
    seconds: HistogramFamily<OutcomeLabel>,
}

impl Lifecycle {
    fn register(registry: &mut Registry, total: &str, one: &str, what: &str) -> Self {
        let lifecycle = Lifecycle {
            total: Family::default(),
            seconds: histogram_family(),
        };
        registry.register(
            format!("node_{total}"),
            format!("{what} this node took part in, by outcome (ok, failed)"),
            lifecycle.total.clone(),
        );
        registry.register(
            format!("node_{one}_duration_seconds"),
            format!("How long {what} took on this node, from the operator's approval to the end"),
            lifecycle.seconds.clone(),
        );
        for outcome in [Outcome::Ok, Outcome::Failed] {
            let _ = lifecycle.total.get_or_create(&OutcomeLabel { outcome });
        }
        let _ = lifecycle.seconds.get_or_create(&OutcomeLabel {
            outcome: Outcome::Ok,
        });
        lifecycle
    }

    fn ended(&self, outcome: Outcome, started: Option<Instant>, now: Instant) {
        let labels = OutcomeLabel { outcome };
        self.total.get_or_create(&labels).inc();
        if let Some(started) = started {
            self.seconds
                .get_or_create(&labels)
                .observe(now.saturating_duration_since(started).as_secs_f64());
        }
    }
}

/// The node's metrics, and what it remembers to label and time them.
pub(crate) struct NodeMetrics {
    shares: Family<CurveLabel, Counter>,
    share_seconds: HistogramFamily<CurveLabel>,
    admitted: Family<CurveLabel, Counter>,
    signing_refused: Family<ReasonLabel, Counter>,
    lifecycle_refused: Family<ReasonLabel, Counter>,
    dkgs: Lifecycle,
    reshares: Lifecycle,
    store_failures: Counter,
    keystore_commit: Histogram,
    signers: Gauge,
    /// The curve of each key this node signs for (from `SignerReady`).
    curves: BTreeMap<KeyId, Curve>,
    /// When each signing request was admitted, until its share.
    admitted_at: BTreeMap<SessionId, Instant>,
    /// When the DKG or reshare of a key was approved here, until it ends.
    lifecycle_at: BTreeMap<KeyId, Instant>,
}

impl NodeMetrics {
    /// The metrics, registered in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = NodeMetrics {
            shares: Family::default(),
            share_seconds: histogram_family(),
            admitted: Family::default(),
            signing_refused: Family::default(),
            lifecycle_refused: Family::default(),
            dkgs: Lifecycle::register(registry, "dkgs", "dkg", "DKGs"),
            reshares: Lifecycle::register(registry, "reshares", "reshare", "Reshares"),
            store_failures: Counter::default(),
            keystore_commit: latency_histogram(),
            signers: Gauge::default(),
            curves: BTreeMap::new(),
            admitted_at: BTreeMap::new(),
            lifecycle_at: BTreeMap::new(),
        };
        registry.register(
            "node_shares",
            "Signature shares this node produced (each durable in the audit log), by curve",
            metrics.shares.clone(),
        );
        registry.register(
            "node_share_duration_seconds",
            "From a signing request's admission to this node's share, by curve",
            metrics.share_seconds.clone(),
        );
        registry.register(
            "node_client_requests_admitted",
            "Signing requests whose client approval this node admitted, by curve",
            metrics.admitted.clone(),
        );
        registry.register(
            "node_signing_refused",
            "Signing requests this node refused, by reason",
            metrics.signing_refused.clone(),
        );
        registry.register(
            "node_lifecycle_refused",
            "DKG and reshare opens this node refused, by reason",
            metrics.lifecycle_refused.clone(),
        );
        registry.register(
            "node_store_failures",
            "Keystore writes that failed (what depended on them was not done)",
            metrics.store_failures.clone(),
        );
        registry.register(
            "node_keystore_commit_duration_seconds",
            "One group commit of the keystore: admissions and share audit entries written \
             (and synced when shares wait on them) in one step",
            metrics.keystore_commit.clone(),
        );
        registry.register(
            "node_signers",
            "Keys this node runs a signer for",
            metrics.signers.clone(),
        );
        for curve in Curve::ALL {
            let labels = CurveLabel {
                curve: curve.as_str(),
            };
            let _ = metrics.shares.get_or_create(&labels);
            let _ = metrics.share_seconds.get_or_create(&labels);
            let _ = metrics.admitted.get_or_create(&labels);
        }
        for reason in Refusal::LABELS {
            let _ = metrics
                .signing_refused
                .get_or_create(&ReasonLabel { reason });
            let _ = metrics
                .lifecycle_refused
                .get_or_create(&ReasonLabel { reason });
        }
        metrics
    }

    /// One group commit took `took`.
    pub(crate) fn keystore_commit(&self, took: Duration) {
        self.keystore_commit.observe(took.as_secs_f64());
    }

    /// Counts what `notice` reports, at `now`.
    pub(crate) fn notice(&mut self, notice: &NodeNotice, now: Instant) {
        match notice {
            NodeNotice::SignerReady { key_id, curve, .. } => {
                self.curves.insert(key_id.clone(), *curve);
                self.signers.set(gauge_value(self.curves.len()));
            }
            NodeNotice::SignerStopped { key_id } => {
                self.curves.remove(key_id);
                self.signers.set(gauge_value(self.curves.len()));
            }
            NodeNotice::ClientRequestAdmitted { key_id, session } => {
                self.admitted.get_or_create(&self.curve(key_id)).inc();
                if self.admitted_at.len() < MAX_REMEMBERED {
                    self.admitted_at.insert(*session, now);
                }
            }
            NodeNotice::ShareProduced {
                key_id, session, ..
            } => {
                let curve = self.curve(key_id);
                self.shares.get_or_create(&curve).inc();
                if let Some(admitted) = self.admitted_at.remove(session) {
                    self.share_seconds
                        .get_or_create(&curve)
                        .observe(now.saturating_duration_since(admitted).as_secs_f64());
                }
            }
            NodeNotice::SigningRefused { refusal, .. } => {
                self.signing_refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal.label(),
                    })
                    .inc();
            }
            NodeNotice::LifecycleRefused { refusal, .. } => {
                self.lifecycle_refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal.label(),
                    })
                    .inc();
            }
            NodeNotice::LifecycleApproved { key_id, .. } => {
                self.lifecycle_at.insert(key_id.clone(), now);
            }
            NodeNotice::ReshareJoined { key_id, .. } => {
                self.lifecycle_at.entry(key_id.clone()).or_insert(now);
            }
            NodeNotice::KeyActivated { key_id, .. } => {
                let started = self.lifecycle_at.remove(key_id);
                self.dkgs.ended(Outcome::Ok, started, now);
            }
            NodeNotice::DkgShareDiscarded { key_id }
            | NodeNotice::DkgShareKept { key_id }
            | NodeNotice::ActivationRefused { key_id, .. } => {
                let started = self.lifecycle_at.remove(key_id);
                self.dkgs.ended(Outcome::Failed, started, now);
            }
            NodeNotice::ReshareCommitted { key_id, .. }
            | NodeNotice::ShareRetired { key_id, .. } => {
                let started = self.lifecycle_at.remove(key_id);
                self.reshares.ended(Outcome::Ok, started, now);
            }
            NodeNotice::ReshareAborted { key_id, .. } => {
                let started = self.lifecycle_at.remove(key_id);
                self.reshares.ended(Outcome::Failed, started, now);
            }
            NodeNotice::StoreFailed { .. } => {
                self.store_failures.inc();
            }
            _ => {}
        }
    }

    /// Forgets admissions and approvals older than [`REMEMBER_FOR`] (their sessions ended
    /// without a share or an outcome here).
    pub(crate) fn prune(&mut self, now: Instant) {
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < REMEMBER_FOR;
        self.admitted_at.retain(|_, at| fresh(at));
        self.lifecycle_at.retain(|_, at| fresh(at));
    }

    fn curve(&self, key_id: &KeyId) -> CurveLabel {
        CurveLabel {
            curve: self.curves.get(key_id).map_or("unknown", |c| c.as_str()),
        }
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use permafrost_protocol::ProtocolError;
    use permafrost_wire::Epoch;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn notices_become_metrics() {
        let mut registry = permafrost_runtime::metrics::registry();
        let mut metrics = NodeMetrics::register(&mut registry);
        let key = KeyId::new("k-1").unwrap();
        let (s1, s2) = (SessionId([1; 32]), SessionId([2; 32]));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let notices = [
            (
                NodeNotice::LifecycleApproved {
                    key_id: key.clone(),
                    session: s1,
                    operator: "ab".into(),
                },
                ms(0),
            ),
            (
                NodeNotice::KeyActivated {
                    key_id: key.clone(),
                    epoch: Epoch(0),
                },
                ms(40),
            ),
            (
                NodeNotice::SignerReady {
                    key_id: key.clone(),
                    epoch: Epoch(0),
                    curve: Curve::Ed25519,
                },
                ms(40),
            ),
            (
                NodeNotice::ClientRequestAdmitted {
                    key_id: key.clone(),
                    session: s1,
                },
                ms(100),
            ),
            (
                NodeNotice::ShareProduced {
                    key_id: key.clone(),
                    epoch: Epoch(0),
                    session: s1,
                },
                ms(103),
            ),
            // A share of a session admitted before a restart: counted, not timed.
            (
                NodeNotice::ShareProduced {
                    key_id: key.clone(),
                    epoch: Epoch(0),
                    session: s2,
                },
                ms(104),
            ),
            (
                NodeNotice::SigningRefused {
                    key_id: key.clone(),
                    session: s2,
                    refusal: Refusal::ClientNotAuthorized("stale".into()),
                },
                ms(105),
            ),
            (
                NodeNotice::LifecycleRefused {
                    key_id: key.clone(),
                    session: s2,
                    refusal: Refusal::NotApproved("no approval".into()),
                },
                ms(106),
            ),
            (
                NodeNotice::ReshareAborted {
                    key_id: key.clone(),
                    session: s2,
                    error: ProtocolError::Frost("gone".into()),
                },
                ms(107),
            ),
        ];
        for (notice, at) in &notices {
            metrics.notice(notice, *at);
        }
        metrics.keystore_commit(Duration::from_millis(2));
        let text = permafrost_runtime::metrics::encode(&registry).unwrap();
        for expected in [
            "permafrost_node_dkgs_total{outcome=\"ok\"} 1",
            "permafrost_node_dkg_duration_seconds_count{outcome=\"ok\"} 1",
            "permafrost_node_dkg_duration_seconds_sum{outcome=\"ok\"} 0.04",
            "permafrost_node_signers 1",
            "permafrost_node_client_requests_admitted_total{curve=\"ed25519\"} 1",
            "permafrost_node_shares_total{curve=\"ed25519\"} 2",
            "permafrost_node_share_duration_seconds_count{curve=\"ed25519\"} 1",
            "permafrost_node_share_duration_seconds_sum{curve=\"ed25519\"} 0.003",
            "permafrost_node_signing_refused_total{reason=\"client_not_authorized\"} 1",
            "permafrost_node_signing_refused_total{reason=\"wrong_epoch\"} 0",
            "permafrost_node_lifecycle_refused_total{reason=\"not_approved\"} 1",
            "permafrost_node_reshares_total{outcome=\"failed\"} 1",
            "permafrost_node_keystore_commit_duration_seconds_count 1",
            "permafrost_node_store_failures_total 0",
        ] {
            assert!(line(&text, expected).is_some(), "{expected} not in\n{text}");
        }
        // The reshare had no approval here: counted, not timed.
        assert!(line(
            &text,
            "permafrost_node_reshare_duration_seconds_count{outcome=\"failed\"}"
        )
        .is_none());
        assert!(metrics.admitted_at.is_empty());

        metrics.notice(
            &NodeNotice::ClientRequestAdmitted {
                key_id: key.clone(),
                session: s2,
            },
            ms(200),
        );
        metrics.prune(ms(200) + REMEMBER_FOR);
        assert!(
            metrics.admitted_at.is_empty(),
            "a stale admission is forgotten"
        );
        metrics.notice(&NodeNotice::SignerStopped { key_id: key }, ms(300));
        let text = permafrost_runtime::metrics::encode(&registry).unwrap();
        assert!(line(&text, "permafrost_node_signers 0").is_some(), "{text}");
    }
}
