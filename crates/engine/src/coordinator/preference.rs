//! Which signers a signature asks first. ROAST asks only `t` members and falls back on the
//! others when one fails, so the order matters: it spreads the work over the committee
//! (rotating the start), and puts last the nodes that are in trouble (a message to them could
//! not be delivered, or they owe an answer older than an attempt's timeout), so that one node
//! down does not cost every request a fallback. A node in trouble is still asked first once
//! every [`PROBE_INTERVAL`], so that its recovery is seen.

use std::collections::BTreeMap;
use std::time::Duration;

use permafrost_protocol::Timestamp;
use permafrost_wire::{Message, NodeId};

/// How long a node whose message could not be delivered stays at the end of the order.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// How often a node in trouble is asked first anyway, to see whether it recovered.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// What the coordinator saw of each node's answers.
#[derive(Default)]
pub(super) struct SignerPreference {
    rotation: usize,
    nodes: BTreeMap<NodeId, Answers>,
}

#[derive(Default)]
struct Answers {
    /// When the oldest signing request awaiting this node's commitment was sent.
    commitment_owed_since: Option<Timestamp>,
    /// When the oldest signing package awaiting this node's share was sent.
    share_owed_since: Option<Timestamp>,
    /// Until when it counts as unreachable.
    unreachable_until: Option<Timestamp>,
    /// When it was last asked first although in trouble.
    probed: Option<Timestamp>,
}

impl SignerPreference {
    /// `committee` in the order a signature should ask it at `now`: rotated by one more on
    /// every call, nodes in trouble last (but one due a probe first).
    pub(super) fn order(
        &mut self,
        committee: &[NodeId],
        now: Timestamp,
        patience: Duration,
    ) -> Vec<NodeId> {
        if committee.is_empty() {
            return Vec::new();
        }
        let start = self.rotation % committee.len();
        self.rotation = self.rotation.wrapping_add(1);
        let rotated = committee[start..].iter().chain(&committee[..start]);
        let (mut healthy, mut troubled): (Vec<NodeId>, Vec<NodeId>) = rotated
            .cloned()
            .partition(|node| !self.in_trouble(node, now, patience));
        let due = troubled.iter().position(|node| {
            self.nodes
                .get(node)
                .and_then(|a| a.probed)
                .is_none_or(|at| now >= at.after(PROBE_INTERVAL))
        });
        if let Some(i) = due {
            let probe = troubled.remove(i);
            if let Some(answers) = self.nodes.get_mut(&probe) {
                answers.probed = Some(now);
            }
            healthy.insert(0, probe);
        }
        healthy.extend(troubled);
        healthy
    }

    /// Whether `node` could not be reached lately, or owes an answer older than `patience`.
    pub(super) fn in_trouble(&self, node: &NodeId, now: Timestamp, patience: Duration) -> bool {
        self.nodes.get(node).is_some_and(|a| {
            a.unreachable_until.is_some_and(|until| now < until)
                || [a.commitment_owed_since, a.share_owed_since]
                    .into_iter()
                    .flatten()
                    .any(|since| now >= since.after(patience))
        })
    }

    /// A message went to `to` at `now`: a signing request awaits a commitment, a package (or
    /// a one-round request) a share.
    pub(super) fn sent(&mut self, to: &NodeId, message: &Message, now: Timestamp) {
        let request = match message {
            Message::SignRequest(_) => true,
            Message::SignPackage(_) | Message::SignWithCommitment(_) => false,
            _ => return,
        };
        let answers = self.nodes.entry(to.clone()).or_default();
        let owed = if request {
            &mut answers.commitment_owed_since
        } else {
            &mut answers.share_owed_since
        };
        owed.get_or_insert(now);
    }

    /// `from` sent `message`: it is reachable, and a commitment, a share or a refusal answers
    /// what it owed of that kind (so a node that commits but withholds its shares stays in
    /// trouble).
    pub(super) fn heard(&mut self, from: &NodeId, message: &Message) {
        let Some(answers) = self.nodes.get_mut(from) else {
            return;
        };
        answers.unreachable_until = None;
        match message {
            Message::SignCommitment(_) => answers.commitment_owed_since = None,
            Message::SignShare(_) => answers.share_owed_since = None,
            Message::SignRefusal(_) => {
                answers.commitment_owed_since = None;
                answers.share_owed_since = None;
            }
            _ => {}
        }
    }

    /// A message to `to` could not be delivered at `now`.
    pub(super) fn unreachable(&mut self, to: &NodeId, now: Timestamp) {
        self.nodes.entry(to.clone()).or_default().unreachable_until =
            Some(now.after(UNREACHABLE_FOR));
    }

    /// Forgets `node` (it left the network).
    pub(super) fn forget(&mut self, node: &NodeId) {
        self.nodes.remove(node);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use permafrost_wire::{
        Epoch, KeyId, SessionId, SessionStatus, SignCommitment, SignPackage, SignRequest,
    };

    fn nodes(n: u8) -> Vec<NodeId> {
        (1..=n).map(|i| NodeId::new(vec![i]).unwrap()).collect()
    }

    fn request() -> Message {
        Message::SignRequest(SignRequest {
            path: Default::default(),
            session: SessionId([0; 32]),
            key_id: KeyId::new("k").unwrap(),
            epoch: Epoch(0),
            message: vec![],
            client: None,
        })
    }

    fn commitment() -> Message {
        Message::SignCommitment(SignCommitment {
            session: SessionId([0; 32]),
            key_id: KeyId::new("k").unwrap(),
            epoch: Epoch(0),
            commitment: vec![],
        })
    }

    fn package() -> Message {
        Message::SignPackage(SignPackage {
            session: SessionId([0; 32]),
            key_id: KeyId::new("k").unwrap(),
            epoch: Epoch(0),
            package: vec![],
        })
    }

    const PATIENCE: Duration = Duration::from_secs(2);

    /// A node that answers requests with commitments but withholds its shares stays in
    /// trouble.
    #[test]
    fn withholding_shares_is_trouble_even_while_committing() {
        let mut p = SignerPreference::default();
        let c = nodes(2);
        p.sent(&c[0], &package(), Timestamp(0));
        for at in [100, 1_000, 3_000] {
            p.sent(&c[0], &request(), Timestamp(at));
            p.heard(&c[0], &commitment());
        }
        assert!(p.in_trouble(&c[0], Timestamp(3_000), PATIENCE));
        p.heard(
            &c[0],
            &Message::SignShare(permafrost_wire::SignShare {
                session: SessionId([0; 32]),
                key_id: KeyId::new("k").unwrap(),
                epoch: Epoch(0),
                share: vec![],
                package: permafrost_wire::Digest([0; 32]),
                group_commitment: vec![],
            }),
        );
        assert!(!p.in_trouble(&c[0], Timestamp(3_000), PATIENCE));
    }

    #[test]
    fn the_start_rotates_over_the_committee() {
        let mut p = SignerPreference::default();
        let c = nodes(3);
        let firsts: Vec<NodeId> = (0..4)
            .map(|_| p.order(&c, Timestamp(0), PATIENCE)[0].clone())
            .collect();
        assert_eq!(
            firsts,
            vec![c[0].clone(), c[1].clone(), c[2].clone(), c[0].clone()]
        );
    }

    #[test]
    fn a_node_in_trouble_goes_last_until_it_answers_and_is_probed_now_and_then() {
        let mut p = SignerPreference::default();
        let c = nodes(3);
        p.sent(&c[0], &request(), Timestamp(0));
        // Owing an answer for less than the patience is no trouble.
        assert!(!p.in_trouble(&c[0], Timestamp(1_999), PATIENCE));
        assert!(p.in_trouble(&c[0], Timestamp(2_000), PATIENCE));
        // First order after the trouble: it is due a probe, so it comes first once.
        assert_eq!(p.order(&c, Timestamp(2_000), PATIENCE)[0], c[0]);
        for i in 0..5 {
            let order = p.order(&c, Timestamp(2_001 + i), PATIENCE);
            assert_eq!(order.last(), Some(&c[0]), "{order:?}");
        }
        // Probed again after the interval.
        assert_eq!(p.order(&c, Timestamp(12_000), PATIENCE)[0], c[0]);
        // Another kind of message answers no signing request; a commitment does.
        p.heard(
            &c[0],
            &Message::SessionStatus(SessionStatus {
                session: SessionId([1; 32]),
            }),
        );
        assert!(p.in_trouble(&c[0], Timestamp(12_001), PATIENCE));
        p.heard(&c[0], &commitment());
        assert!(!p.in_trouble(&c[0], Timestamp(12_001), PATIENCE));

        p.unreachable(&c[1], Timestamp(20_000));
        assert!(p.in_trouble(&c[1], Timestamp(49_999), PATIENCE));
        assert!(!p.in_trouble(&c[1], Timestamp(50_000), PATIENCE));
    }
}
