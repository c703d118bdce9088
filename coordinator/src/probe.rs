//! Liveness probes: the coordinator asks every node, every `probe_interval`, for a [`Probe`]
//! acknowledgement, which the node's core loop gives. A node is healthy while its last
//! successful probe is at most `unhealthy_after` old, so a node whose process is paused, whose
//! loop is stuck or whose host is cut off turns unhealthy within that time, although its
//! connection may stay open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use permafrost_net::{Client, NetError, PeerId};
use permafrost_wire::{encode, Message, Probe, SessionId};
use rand_core::{OsRng, RngCore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What one node's probes found so far.
#[derive(Debug, Default)]
struct NodeProbes {
    /// When the last probe that succeeded was sent, and its round trip.
    last_success: Option<(Instant, Duration)>,
    /// The last probe that failed: when it was sent and why.
    last_failure: Option<(Instant, String)>,
    /// A probe is on its way (a paused node gets no second one meanwhile).
    in_flight: bool,
}

/// One node's health, as `/v1/health` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeStatus {
    /// The last successful probe is at most `unhealthy_after` old.
    pub healthy: bool,
    /// The round trip of the last successful probe.
    pub last_round_trip: Option<Duration>,
    /// How long ago the last successful probe was sent.
    pub last_success_age: Option<Duration>,
    /// Why the last probe failed, if it did after the last success.
    pub last_error: Option<String>,
}

/// The probes of every node, shared by the probing task and the HTTP API.
pub struct Probes {
    interval: Duration,
    unhealthy_after: Duration,
    nodes: Mutex<HashMap<PeerId, NodeProbes>>,
}

impl Probes {
    /// Probes of `nodes` every `interval`; a node is unhealthy once its last success is older
    /// than `unhealthy_after` (which is also each probe's timeout).
    pub fn new(
        nodes: impl IntoIterator<Item = PeerId>,
        interval: Duration,
        unhealthy_after: Duration,
    ) -> Self {
        Probes {
            interval,
            unhealthy_after,
            nodes: Mutex::new(
                nodes
                    .into_iter()
                    .map(|peer| (peer, NodeProbes::default()))
                    .collect(),
            ),
        }
    }

    /// How often every node is probed.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn nodes(&self) -> MutexGuard<'_, HashMap<PeerId, NodeProbes>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `peer`'s health at `now`.
    pub fn status(&self, peer: &PeerId, now: Instant) -> ProbeStatus {
        let nodes = self.nodes();
        let Some(probes) = nodes.get(peer) else {
            return ProbeStatus {
                healthy: false,
                last_round_trip: None,
                last_success_age: None,
                last_error: Some("not a node of the network file".into()),
            };
        };
        let age = probes
            .last_success
            .map(|(sent, _)| now.saturating_duration_since(sent));
        let last_error = match (&probes.last_failure, probes.last_success) {
            (Some((failed, why)), Some((succeeded, _))) if *failed > succeeded => Some(why.clone()),
            (Some((_, why)), None) => Some(why.clone()),
            _ => None,
        };
        ProbeStatus {
            healthy: age.is_some_and(|age| age <= self.unhealthy_after),
            last_round_trip: probes.last_success.map(|(_, rtt)| rtt),
            last_success_age: age,
            last_error,
        }
    }

    /// Marks `peer`'s probe as sent, unless one is on its way already.
    fn start(&self, peer: &PeerId) -> bool {
        match self.nodes().get_mut(peer) {
            Some(probes) if !probes.in_flight => {
                probes.in_flight = true;
                true
            }
            _ => false,
        }
    }

    fn finish(&self, peer: &PeerId, sent: Instant, outcome: Result<Duration, String>) {
        if let Some(probes) = self.nodes().get_mut(peer) {
            probes.in_flight = false;
            match outcome {
                Ok(round_trip) => probes.last_success = Some((sent, round_trip)),
                Err(why) => probes.last_failure = Some((sent, why)),
            }
        }
    }
}

/// Probes every node of `probes` through `client` until `stop` fires.
pub fn spawn(
    client: Client,
    probes: Arc<Probes>,
    mut stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let peers: Vec<PeerId> = probes.nodes().keys().copied().collect();
        let mut tick = tokio::time::interval(probes.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stop => return,
            }
            for peer in &peers {
                if probes.start(peer) {
                    tokio::spawn(probe(client.clone(), Arc::clone(&probes), *peer));
                }
            }
        }
    })
}

/// Sends one probe to `peer` and records what came of it.
async fn probe(client: Client, probes: Arc<Probes>, peer: PeerId) {
    let mut id = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    let sent = Instant::now();
    let outcome = match encode(&Message::Probe(Probe {
        session: SessionId(id),
    })) {
        Err(e) => Err(format!("cannot encode a probe: {e}")),
        Ok(frame) => {
            match tokio::time::timeout(probes.unhealthy_after, client.request(peer, frame)).await {
                Ok(Ok(answer)) if answer.is_empty() => Ok(sent.elapsed()),
                // Its rate limit for this coordinator or its inbound queue is full under load: its
                // process is up and answering, so it is not reported down at the busiest moment.
                Ok(Err(NetError::Busy { .. })) => Ok(sent.elapsed()),
                Ok(Ok(refusal)) => Err(format!(
                    "probe refused: {}",
                    String::from_utf8_lossy(&refusal)
                )),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} ms",
                    probes.unhealthy_after.as_millis()
                )),
            }
        }
    };
    if let Err(why) = &outcome {
        tracing::debug!(%peer, reason = %why, "probe failed");
    }
    probes.finish(&peer, sent, outcome);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn healthy_while_the_last_success_is_recent() {
        let peer = PeerId::random();
        let probes = Probes::new([peer], Duration::from_secs(1), Duration::from_secs(3));
        let t0 = Instant::now();
        let status = probes.status(&peer, t0);
        assert!(!status.healthy, "no probe yet");
        assert_eq!(status.last_round_trip, None);

        assert!(probes.start(&peer));
        assert!(!probes.start(&peer), "one probe at a time");
        probes.finish(&peer, t0, Ok(Duration::from_millis(2)));
        let status = probes.status(&peer, t0 + Duration::from_secs(3));
        assert!(status.healthy);
        assert_eq!(status.last_round_trip, Some(Duration::from_millis(2)));
        assert_eq!(status.last_error, None);

        // Later probes fail: healthy until the last success is too old, with the reason.
        assert!(probes.start(&peer));
        probes.finish(&peer, t0 + Duration::from_secs(1), Err("timed out".into()));
        let status = probes.status(&peer, t0 + Duration::from_secs(2));
        assert!(status.healthy);
        assert_eq!(status.last_error.as_deref(), Some("timed out"));
        let status = probes.status(&peer, t0 + Duration::from_millis(3001));
        assert!(!status.healthy);
        assert_eq!(status.last_success_age, Some(Duration::from_millis(3001)));

        // A success again clears the error.
        assert!(probes.start(&peer));
        probes.finish(
            &peer,
            t0 + Duration::from_secs(4),
            Ok(Duration::from_millis(1)),
        );
        let status = probes.status(&peer, t0 + Duration::from_secs(5));
        assert!(status.healthy);
        assert_eq!(status.last_error, None);
        assert!(!probes.status(&PeerId::random(), t0).healthy);
    }
}
