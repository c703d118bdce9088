//! The reshare crash matrix, per suite: a node is stopped (its memory lost, its disk kept) at
//! each point of a reshare and restarted at once. Whatever the point, the key afterwards signs
//! in the old epoch or in the new one — never neither — every node holds at most one epoch of
//! it, nothing PENDING is left behind, and a node that missed the commit learns it by asking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use frost_core::keys::PublicKeyPackage;
use permafrost_engine::node::NodeNotice;
use permafrost_engine::sim::{Fault, Network};
use permafrost_protocol::wire::{Epoch, KeyId, Message, NodeId, SessionId};
use permafrost_protocol::{Event, Suite};

/// (3,5) → (4,6): nodes[0..4] stay and deal, nodes[4] is evicted, one fresh node joins.
struct Setup<S: Suite> {
    net: Network<S>,
    nodes: Vec<NodeId>,
    fresh: NodeId,
    coordinator: NodeId,
    key: KeyId,
    old_package: PublicKeyPackage<S>,
    new_committee: Vec<NodeId>,
}

fn setup<S: Suite>(seed: u64) -> Setup<S> {
    let (mut net, nodes, coordinator, key, old_package) = network_with_key::<S>(seed, 3, 5);
    let fresh = net.add_node();
    let mut new_committee: Vec<NodeId> = nodes[..4].to_vec();
    new_committee.push(fresh.clone());
    new_committee.sort();
    Setup {
        net,
        nodes,
        fresh,
        coordinator,
        key,
        old_package,
        new_committee,
    }
}

impl<S: Suite> Setup<S> {
    fn start(&mut self) -> SessionId {
        let p = reshare_proposal(
            &self.net,
            &self.key,
            &self.nodes[0],
            &self.new_committee,
            4,
            &self.nodes[..4],
        );
        self.net.start_reshare(&self.coordinator, p).unwrap()
    }

    fn coordinator_done(&self, mark: usize) -> bool {
        self.net.events[mark..].iter().any(|(n, e)| {
            *n == self.coordinator && matches!(e, Event::KeyReshared { .. } | Event::Failed(_))
        })
    }

    /// How many notices since `mark` `node` reported that match `pred`.
    fn notices_from(
        &self,
        mark: usize,
        node: &NodeId,
        pred: impl Fn(&NodeNotice) -> bool,
    ) -> usize {
        self.net.notices[mark..]
            .iter()
            .filter(|(n, e)| n == node && pred(e))
            .count()
    }

    /// Runs until every member has settled (the certificate reached everyone, or the abort
    /// every member without a pending share; the status questions answered), then checks the
    /// invariants and that the key signs in the epoch that won. After an abort, a member that
    /// stored its new share keeps it (an unsigned abort deletes nothing) until an operator
    /// discards it, which this does. Returns the epoch that won.
    fn settle_and_check(&mut self, session: SessionId) -> Epoch {
        // Members asking for the outcome retry with backoff; ten minutes covers several rounds.
        let everyone: Vec<NodeId> = self.nodes.iter().chain([&self.fresh]).cloned().collect();
        let all = everyone.clone();
        let (coordinator, key) = (self.coordinator.clone(), self.key.clone());
        self.net.run_until(Duration::from_secs(600), |net| {
            let aborted = matches!(
                net.coordinator(&coordinator).unwrap().outcome(&session),
                Some(Message::ReshareAbort(_))
            );
            all.iter().all(|n| {
                let node = net.node(n).unwrap();
                !node.has_reshare_record(&session)
                    || (aborted && node.pending_share(&key).is_some())
            })
        });
        for node in &everyone {
            let n = self.net.node(node).unwrap();
            if n.has_reshare_record(&session) && n.pending_share(&self.key).is_some() {
                assert_eq!(
                    n.active_share(&self.key).map(|s| s.epoch),
                    self.nodes.contains(node).then_some(Epoch(0)),
                    "{node} kept its pending share but not its old epoch"
                );
                let discarded = discard_as_operator(&mut self.net, node, &self.key, Epoch(1));
                assert_eq!(discarded.reshare, Some(session));
            }
        }
        for node in &everyone {
            assert!(
                !self.net.node(node).unwrap().has_reshare_record(&session),
                "{node} never learnt the outcome"
            );
            assert!(
                self.net
                    .node(node)
                    .unwrap()
                    .pending_share(&self.key)
                    .is_none(),
                "{node} kept a PENDING share"
            );
        }
        let committed = match self
            .net
            .coordinator(&self.coordinator)
            .unwrap()
            .outcome(&session)
        {
            Some(Message::ReshareCommit(_)) => true,
            Some(Message::ReshareAbort(_)) => false,
            other => panic!("no recorded outcome: {other:?}"),
        };
        let (epoch, holders, package) = if committed {
            let package = self
                .net
                .node(&self.new_committee[0])
                .unwrap()
                .active_share(&self.key)
                .unwrap()
                .public_key_package
                .clone();
            (Epoch(1), self.new_committee.clone(), package)
        } else {
            (Epoch(0), self.nodes.clone(), self.old_package.clone())
        };
        assert_eq!(
            package.verifying_key().serialize().unwrap(),
            self.old_package.verifying_key().serialize().unwrap(),
            "the group key changed"
        );
        // Every holder of the winning epoch holds exactly it; nobody else holds any share.
        for node in &everyone {
            let active = self.net.node(node).unwrap().active_share(&self.key);
            if holders.contains(node) {
                let share = active.unwrap_or_else(|| panic!("{node} lost its share"));
                assert_eq!(share.epoch, epoch, "{node} holds another epoch");
                assert_eq!(share.public_key_package, package, "{node}");
            } else {
                assert!(
                    active.is_none(),
                    "{node} outside the committee holds a share"
                );
            }
        }
        // The key signs in that epoch and the signature verifies independently.
        let t = usize::from(package.min_signers().unwrap());
        let message = b"after the crash";
        let outcome = self
            .net
            .sign(
                &self.coordinator,
                &self.key,
                epoch,
                &package,
                &holders,
                message,
            )
            .unwrap_or_else(|e| panic!("the key does not sign at {epoch}: {e}"));
        assert_eq!(outcome.signers.len(), t);
        verify_independently(&package, message, &outcome.signature);
        epoch
    }
}

/// Crash after `dealt` is on disk: the restarted dealer does not deal again, and the session
/// goes on without its (lost) incoming shares; the coordinator aborts at its deadline and the
/// old epoch stays. A new attempt then succeeds.
fn crash_after_dealt<S: Suite>() {
    let mut s = setup::<S>(701);
    let victim = s.nodes[0].clone();
    let mark = s.net.notices.len();
    let events_mark = s.net.events.len();
    let session = s.start();
    let v = victim.clone();
    s.net.run_until(Duration::from_secs(5), |net| {
        net.notices[mark..]
            .iter()
            .any(|(n, e)| *n == v && matches!(e, NodeNotice::Dealt { .. }))
    });
    let dealt = |e: &NodeNotice| matches!(e, NodeNotice::Dealt { .. });
    let dealt_before = s.notices_from(mark, &victim, dealt);
    assert_eq!(dealt_before, 1);
    s.net.crash_and_restart(&victim);
    assert_eq!(s.settle_and_check(session), Epoch(0));
    let dealt_after = s.notices_from(mark, &victim, dealt);
    assert_eq!(
        dealt_before, dealt_after,
        "the restarted dealer dealt again"
    );
    assert!(s.coordinator_done(events_mark));

    // Attempt 1 of the same reshare completes.
    let mut p = reshare_proposal(
        &s.net,
        &s.key,
        &s.nodes[0],
        &s.new_committee,
        4,
        &s.nodes[..4],
    );
    p.attempt = 1;
    let package = s.net.run_reshare(&s.coordinator, p).unwrap();
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        s.old_package.verifying_key().serialize().unwrap()
    );
}

/// Crash after the PENDING share is stored but before the confirmation leaves (it is lost):
/// the coordinator never gets every confirmation and aborts; the restarted node, holding a
/// PENDING share, asks for the outcome, learns the abort and discards it.
fn crash_after_pending_before_confirm<S: Suite>() {
    let mut s = setup::<S>(702);
    let victim = s.nodes[1].clone();
    let v = victim.clone();
    s.net.set_faults(move |env| match &env.message {
        Message::ReshareConfirm(_) if env.from == v => Fault::Drop,
        _ => Fault::Deliver,
    });
    let mark = s.net.notices.len();
    let session = s.start();
    let v = victim.clone();
    s.net.run_until(Duration::from_secs(5), |net| {
        net.notices[mark..]
            .iter()
            .any(|(n, e)| *n == v && matches!(e, NodeNotice::SharePending { .. }))
    });
    assert!(s.net.node(&victim).unwrap().pending_share(&s.key).is_some());
    s.net.crash_and_restart(&victim);
    s.net.clear_faults();
    assert_eq!(s.settle_and_check(session), Epoch(0));
}

/// Crash right after the confirmation left: the coordinator has every confirmation; the
/// restarted node still signs the test signature with its PENDING share, and the commit
/// reaches it: the new epoch wins.
fn crash_after_confirm<S: Suite>() {
    let mut s = setup::<S>(703);
    let victim = s.fresh.clone();
    let mark = s.net.notices.len();
    let session = s.start();
    let v = victim.clone();
    s.net.run_until(Duration::from_secs(5), |net| {
        net.notices[mark..]
            .iter()
            .any(|(n, e)| *n == v && matches!(e, NodeNotice::SharePending { .. }))
    });
    s.net.crash_and_restart(&victim);
    assert_eq!(s.settle_and_check(session), Epoch(1));
}

/// Crash after the certificate was issued but before the node acted on it (its commit is
/// lost on the way): on restart it asks, gets the certificate again, promotes and deletes
/// its old share. Same for an evicted node, which must retire its share.
fn crash_after_certificate_before_deletion<S: Suite>() {
    let mut s = setup::<S>(704);
    let member = s.nodes[2].clone();
    let evicted = s.nodes[4].clone();
    let (m, e) = (member.clone(), evicted.clone());
    s.net.set_faults(move |env| match &env.message {
        Message::ReshareCommit(_) if env.to == m || env.to == e => Fault::Drop,
        _ => Fault::Deliver,
    });
    let mark = s.net.events.len();
    let session = s.start();
    let coordinator = s.coordinator.clone();
    s.net.run_until(Duration::from_secs(30), |net| {
        net.events[mark..]
            .iter()
            .any(|(n, e)| *n == coordinator && matches!(e, Event::KeyReshared { .. }))
    });
    s.net.run(Duration::from_millis(200));
    // The certificate exists; these two did not get it: old share active, new one PENDING.
    let node = s.net.node(&member).unwrap();
    assert_eq!(node.active_share(&s.key).unwrap().epoch, Epoch(0));
    assert_eq!(node.pending_share(&s.key).unwrap().epoch, Epoch(1));
    assert!(s.net.node(&evicted).unwrap().active_share(&s.key).is_some());
    s.net.crash_and_restart(&member);
    s.net.crash_and_restart(&evicted);
    s.net.clear_faults();
    assert_eq!(s.settle_and_check(session), Epoch(1));
}

/// A lost commit without any crash: the member's own deadline passes, it asks, and learns it.
fn lost_commit_is_learnt_by_asking<S: Suite>() {
    let mut s = setup::<S>(705);
    let member = s.nodes[3].clone();
    let m = member.clone();
    s.net.set_faults(move |env| match &env.message {
        Message::ReshareCommit(_) if env.to == m => Fault::Drop,
        _ => Fault::Deliver,
    });
    let session = s.start();
    let coordinator = s.coordinator.clone();
    let mark = 0;
    s.net.run_until(Duration::from_secs(30), |net| {
        net.events[mark..]
            .iter()
            .any(|(n, e)| *n == coordinator && matches!(e, Event::KeyReshared { .. }))
    });
    s.net.clear_faults();
    assert_eq!(s.settle_and_check(session), Epoch(1));
}

/// A crash right after each write of a reshare, before anything that depended on it leaves the
/// node (the simulator drops the node's queued messages with its memory): joined, dealt, new
/// share stored, concluded (promoted, and retired). Whatever the point, the invariants of
/// `settle_and_check` hold.
fn crash_right_after_each_write<S: Suite>() {
    type Point = fn(&NodeNotice) -> bool;
    // (victim: index into the old nodes, 5 = the fresh node; the notice right after the write)
    let points: [(usize, Point); 6] = [
        (0, |n| matches!(n, NodeNotice::ReshareJoined { .. })),
        (5, |n| matches!(n, NodeNotice::ReshareJoined { .. })),
        (1, |n| matches!(n, NodeNotice::Dealt { .. })),
        (5, |n| matches!(n, NodeNotice::SharePending { .. })),
        (2, |n| matches!(n, NodeNotice::ReshareCommitted { .. })),
        (4, |n| matches!(n, NodeNotice::ShareRetired { .. })),
    ];
    for (i, (victim, point)) in points.into_iter().enumerate() {
        let mut s = setup::<S>(720 + i as u64);
        let victim = if victim == 5 {
            s.fresh.clone()
        } else {
            s.nodes[victim].clone()
        };
        let mark = s.net.notices.len();
        s.net.crash_on(&victim, point);
        let session = s.start();
        let v = victim.clone();
        s.net.run_until(Duration::from_secs(60), |net| {
            net.notices[mark..]
                .iter()
                .any(|(n, notice)| *n == v && point(notice))
        });
        assert!(
            s.net.notices[mark..]
                .iter()
                .any(|(n, notice)| *n == victim && point(notice)),
            "point {i}: the crash point was never reached"
        );
        s.settle_and_check(session);
    }
}

per_suite!(
    crash_right_after_each_write,
    crash_after_dealt,
    crash_after_pending_before_confirm,
    crash_after_confirm,
    crash_after_certificate_before_deletion,
    lost_commit_is_learnt_by_asking,
);
