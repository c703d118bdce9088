//! A coordinator turned attacker, against the operator approvals a node requires before it
//! joins a DKG or a reshare, on every suite: an approval replayed after every node restarted,
//! one dated too far in the past or the future, a configured skew above the request ids'
//! retention, and an open padded with more approvals than a node reads. The attacker carries
//! the approvals of its choosing in the opens (the coordinator core does not judge them, or a
//! raw protocol session builds them); each test asserts what every honest node refused, that
//! none of them stored or sent anything of the session, and that a valid approval still works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use ed25519_dalek::SigningKey;
use frost_core::keys::PublicKeyPackage;
use permafrost_engine::node::{NodeNotice, NodeStore};
use permafrost_engine::sim::{sim_operator, sim_operator_policy, Fault, Network, SIM_NETWORK_ID};
use permafrost_protocol::lifecycle::{reshare_action, rotation_policy_action};
use permafrost_protocol::sign::client::{DEFAULT_MAX_CLOCK_SKEW, REQUEST_ID_RETENTION};
use permafrost_protocol::wire::{
    Epoch, KeyId, LifecycleAction, Message, MessageKind, NodeId, OperatorApproval, ReshareProposal,
    SessionId, MAX_APPROVALS,
};
use permafrost_protocol::{ProtocolError, Suite};

/// The fixed delivery latency of the clock tests: an open sent at `now` reaches every node at
/// exactly `now + LATENCY_MS`, the time its approval is judged at.
const LATENCY_MS: u64 = 5;

/// Every message the nodes send from now on, with its sender and kind.
#[derive(Clone, Default)]
struct Sent(Rc<RefCell<Vec<(NodeId, MessageKind)>>>);

impl Sent {
    /// Records every message from now on (and delivers it).
    fn watch<S: Suite>(net: &mut Network<S>) -> Self {
        let sent = Sent::default();
        let log = sent.clone();
        net.set_faults(move |env| {
            log.0
                .borrow_mut()
                .push((env.from.clone(), env.message.kind()));
            Fault::Deliver
        });
        sent
    }

    /// Messages of `kind` that any of `from` sent.
    fn count(&self, from: &[NodeId], kind: MessageKind) -> usize {
        self.0
            .borrow()
            .iter()
            .filter(|(f, k)| from.contains(f) && *k == kind)
            .count()
    }
}

/// The sim operator's approval of `action` dated `timestamp_ms`, with a fresh request id.
fn approval_at<S: Suite>(
    net: &mut Network<S>,
    action: &LifecycleAction,
    timestamp_ms: u64,
) -> OperatorApproval {
    let request_id = net.approve(&sim_operator(), action).request_id;
    OperatorApproval::sign(
        &sim_operator(),
        SIM_NETWORK_ID,
        action,
        request_id,
        timestamp_ms,
    )
}

/// `count` approvals of `action` by an operator key no node lists, each with its own request
/// id: they verify, but count for nothing.
fn padding<S: Suite>(
    net: &mut Network<S>,
    action: &LifecycleAction,
    count: usize,
) -> Vec<OperatorApproval> {
    let stranger = SigningKey::from_bytes(&[0x66; 32]);
    (0..count).map(|_| net.approve(&stranger, action)).collect()
}

/// Milliseconds in `d`.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap()
}

/// Asserts `result` is the coordinator's answer to a refusal to join for lack of an approval,
/// saying `why`.
fn not_approved<T: std::fmt::Debug>(result: Result<T, ProtocolError>, why: &str) {
    match result {
        Err(ProtocolError::OpenRefused {
            reason,
            not_approved: true,
            ..
        }) => assert!(reason.contains(why), "{reason:?} does not say {why:?}"),
        other => panic!("expected a refusal for lack of approval ({why}), got {other:?}"),
    }
}

/// Every one of `nodes` refused an open since refusal index `mark` for lack of an approval,
/// saying `why`; returns the session each refused, as its notice names it.
fn refused_by_every<S: Suite>(
    net: &Network<S>,
    mark: usize,
    notices: usize,
    nodes: &[NodeId],
    why: &str,
) -> Vec<SessionId> {
    nodes
        .iter()
        .map(|node| {
            not_approved_by_every(net, mark, std::slice::from_ref(node), why);
            net.notices[notices..]
                .iter()
                .find_map(|(n, notice)| match notice {
                    NodeNotice::LifecycleRefused { session, .. } if n == node => Some(*session),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{node} reported no refused open"))
        })
        .collect()
}

/// The request ids each of `nodes` remembers now.
fn remembered<S: Suite>(net: &Network<S>, nodes: &[NodeId]) -> Vec<usize> {
    nodes.iter().map(|n| remembered_requests(net, n)).collect()
}

/// Nothing of the refused DKG `sessions` (one per node of `nodes`) was stored: no request id
/// admitted since `before`, no concluded session, no share of `key`.
fn no_dkg_stored<S: Suite>(
    net: &Network<S>,
    nodes: &[NodeId],
    sessions: &[SessionId],
    key: &KeyId,
    before: &[usize],
) {
    assert_eq!(remembered(net, nodes), before, "a request id was admitted");
    for (node, session) in nodes.iter().zip(sessions) {
        let n = net.node(node).unwrap();
        assert!(
            !n.store().unwrap().session_concluded(session).unwrap(),
            "{node} recorded the refused session"
        );
        assert!(n.active_share(key).is_none(), "{node} holds a share");
        assert!(
            n.pending_share(key).is_none(),
            "{node} holds a pending share"
        );
    }
}

/// A DKG of `key` over `nodes` with threshold 2 carrying `approvals`, refused by every node
/// saying `why`: the coordinator's answer names it, no node sent a round-1 package, and
/// nothing of it is stored.
fn dkg_is_refused<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    nodes: &[NodeId],
    key: &KeyId,
    approvals: Vec<OperatorApproval>,
    why: &str,
) {
    let before = remembered(net, nodes);
    let (mark, notices) = (net.refused.len(), net.notices.len());
    let sent = Sent::watch(net);
    not_approved(
        net.run_dkg_approved(coordinator, key, 2, nodes, approvals),
        why,
    );
    net.run(Duration::from_secs(5));
    let sessions = refused_by_every(net, mark, notices, nodes, why);
    assert_eq!(
        sent.count(nodes, MessageKind::DkgRound1),
        0,
        "a node took part"
    );
    no_dkg_stored(net, nodes, &sessions, key, &before);
    net.clear_faults();
}

/// A DKG of `key` over `nodes` with threshold 2 carrying `approvals` runs: every node holds
/// the key.
fn dkg_runs<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    nodes: &[NodeId],
    key: &KeyId,
    approvals: Vec<OperatorApproval>,
) -> PublicKeyPackage<S> {
    let package = net
        .run_dkg_approved(coordinator, key, 2, nodes, approvals)
        .unwrap_or_else(|e| panic!("the DKG of {key} was refused: {e}"));
    for node in nodes {
        assert!(
            net.node(node).unwrap().active_share(key).is_some(),
            "{node} holds no share of {key}"
        );
    }
    package
}

/// Runs `proposal` as attempt `attempt` carrying `approvals` through the coordinator core:
/// its session and what it came to.
fn reshare_approved<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    proposal: &ReshareProposal,
    attempt: u32,
    approvals: Vec<OperatorApproval>,
) -> (SessionId, Result<PublicKeyPackage<S>, ProtocolError>) {
    let mut proposal = proposal.clone();
    proposal.attempt = attempt;
    let mark = net.events.len();
    let session = net
        .start_reshare_approved(coordinator, proposal, approvals)
        .unwrap();
    (session, net.finish_reshare(coordinator, mark))
}

/// Every node still holds `key` in force at `epoch`, with nothing pending, and no record of
/// the refused reshare `session`.
fn epoch_intact<S: Suite>(
    net: &Network<S>,
    nodes: &[NodeId],
    key: &KeyId,
    epoch: Epoch,
    session: &SessionId,
) {
    in_force_at(net, nodes, key, epoch);
    for node in nodes {
        let n = net.node(node).unwrap();
        assert!(
            !n.has_reshare_record(session),
            "{node} recorded the refused reshare"
        );
    }
}

/// An approval admitted by every node in one reshare session (whose dealings are then lost,
/// so it times out) is replayed by the coordinator in a new session after every node crashed
/// and restarted, still within the default clock skew. Every node reloads the request ids it
/// admitted and refuses the replay as already used in the first session, before it records or
/// deals anything; epoch 0 stays on every node. A fresh approval then commits.
fn a_used_reshare_approval_is_refused_after_every_node_restarts<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(601, 2, 3);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let used = reshare_approvals(&mut net, &p);
    let used_id = used[0].request_id;
    // Admitted in session `first` on every node; its dealings are lost, so it times out.
    let notices = net.notices.len();
    net.set_faults(|env| match env.message {
        Message::ReshareDealing(_) => Fault::Drop,
        _ => Fault::Deliver,
    });
    let (first, outcome) = reshare_approved(&mut net, &coordinator, &p, 0, used.clone());
    assert!(outcome.is_err(), "the reshare without dealings committed");
    net.clear_faults();
    net.run(Duration::from_secs(5));
    for node in &nodes {
        assert!(
            net.notices[notices..].iter().any(|(n, notice)| n == node
                && matches!(notice, NodeNotice::LifecycleApproved { session, .. } if *session == first)),
            "{node} did not admit the approval in the first session"
        );
        assert!(!net.node(node).unwrap().has_reshare_record(&first));
    }
    // Every node crashes (it loses its memory, keeps its disk) and restarts.
    let notices = net.notices.len();
    for node in &nodes {
        net.crash_and_restart(node);
    }
    for node in &nodes {
        assert!(
            net.notices[notices..].iter().any(|(n, notice)| n == node
                && matches!(notice, NodeNotice::ClientRequestsReloaded { count } if *count >= 1)),
            "{node} reloaded no request id"
        );
    }
    // Still within the default skew: the replay can only be refused as a replay.
    let age = net.now().0 - used[0].timestamp_ms;
    assert!(age < ms(DEFAULT_MAX_CLOCK_SKEW), "{age} ms old");

    let sent = Sent::watch(&mut net);
    let (mark, notices) = (net.refused.len(), net.notices.len());
    let (replay, outcome) = reshare_approved(&mut net, &coordinator, &p, 1, used);
    let why = format!("was already used in session {first}");
    not_approved(outcome, &why);
    refused_by_every(&net, mark, notices, &nodes, &why);
    assert_eq!(
        sent.count(&nodes, MessageKind::ReshareDealing),
        0,
        "a dealer dealt"
    );
    assert_eq!(
        sent.count(&nodes, MessageKind::ReshareShare),
        0,
        "a sub-share left"
    );
    for node in &nodes {
        let rows = net
            .node(node)
            .unwrap()
            .store()
            .unwrap()
            .client_requests(0)
            .unwrap();
        let row = rows.iter().find(|r| r.request_id == used_id).unwrap();
        assert_eq!(
            SessionId(row.session),
            first,
            "{node} admitted the request id again, in the replay"
        );
    }
    epoch_intact(&net, &nodes, &key, Epoch(0), &replay);
    net.clear_faults();

    // Control: a fresh approval commits, under the same group key.
    let fresh = reshare_approvals(&mut net, &p);
    let (_, outcome) = reshare_approved(&mut net, &coordinator, &p, 2, fresh);
    let package = outcome.unwrap();
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    for node in &nodes {
        assert_eq!(
            net.node(node).unwrap().active_share(&key).unwrap().epoch,
            Epoch(1)
        );
    }
}

/// The coordinator carries a valid approval (listed operator, this network, this action, a
/// fresh request id) dated 1 ms more than the default skew (120 s) before, or after, the
/// node's clock when the open reaches it. Every node refuses it naming the timestamp, sends
/// no round-1 package and stores nothing (no request id, no session, no share). Dated exactly
/// the skew before, or after, it is accepted and the DKG runs.
fn a_stale_or_future_approval_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(602, 3);
    // The clock of every node is the network's; the open reaches every node exactly
    // LATENCY_MS after it is sent.
    net.latency_ms = (LATENCY_MS, LATENCY_MS);
    // The virtual clock starts at 0: move it on, so that an approval can be dated before it.
    net.advance(Duration::from_secs(3600));
    assert_eq!(DEFAULT_MAX_CLOCK_SKEW, Duration::from_secs(120));
    let skew = ms(DEFAULT_MAX_CLOCK_SKEW);
    // The refusal names the distance to the node's clock: the open is judged on arrival.
    let why = format!(
        "{} ms from this node's clock (at most {skew} ms accepted)",
        skew + 1
    );
    let old_key = key_id("approved-long-ago");
    let old = dkg_action::<S>(&old_key, 2, &nodes);
    let future_key = key_id("approved-in-the-future");
    let future = dkg_action::<S>(&future_key, 2, &nodes);

    let arrival = net.now().0 + LATENCY_MS;
    let stale = approval_at(&mut net, &old, arrival - skew - 1);
    dkg_is_refused(&mut net, &coordinator, &nodes, &old_key, vec![stale], &why);
    let arrival = net.now().0 + LATENCY_MS;
    let ahead = approval_at(&mut net, &future, arrival + skew + 1);
    dkg_is_refused(
        &mut net,
        &coordinator,
        &nodes,
        &future_key,
        vec![ahead],
        &why,
    );

    // Control: dated exactly the skew away, each is accepted.
    let arrival = net.now().0 + LATENCY_MS;
    let oldest = approval_at(&mut net, &old, arrival - skew);
    dkg_runs(&mut net, &coordinator, &nodes, &old_key, vec![oldest]);
    let arrival = net.now().0 + LATENCY_MS;
    let latest = approval_at(&mut net, &future, arrival + skew);
    dkg_runs(&mut net, &coordinator, &nodes, &future_key, vec![latest]);
}

/// Every node's operator policy is set with a clock skew of an hour, above the request ids'
/// retention (600 s): a node would accept an approval whose request id it already forgot, so
/// a used approval could be replayed once its id expired. The gate lowers the skew to 600 s:
/// an approval dated 600 s + 1 ms before or after the node's clock, or 30 minutes before, is
/// refused naming 600000 ms as the most accepted, also after every node restarted on its
/// configuration; one dated exactly 600 s before is accepted (the larger skew applies, up to
/// the cap).
fn the_skew_is_capped<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(603, 3);
    net.latency_ms = (LATENCY_MS, LATENCY_MS);
    net.advance(Duration::from_secs(7200));
    let mut policy = sim_operator_policy();
    policy.max_clock_skew = Duration::from_secs(3600);
    for node in &nodes {
        net.set_operator_policy(node, policy.clone()).unwrap();
    }
    assert_eq!(REQUEST_ID_RETENTION, Duration::from_secs(600));
    let cap = ms(REQUEST_ID_RETENTION);
    let why =
        |distance: u64| format!("{distance} ms from this node's clock (at most {cap} ms accepted)");
    let key = key_id("approved-within-the-hour");
    let action = dkg_action::<S>(&key, 2, &nodes);

    let arrival = net.now().0 + LATENCY_MS;
    let stale = approval_at(&mut net, &action, arrival - cap - 1);
    dkg_is_refused(
        &mut net,
        &coordinator,
        &nodes,
        &key,
        vec![stale],
        &why(cap + 1),
    );
    let arrival = net.now().0 + LATENCY_MS;
    let half_hour = approval_at(&mut net, &action, arrival - 1_800_000);
    let refusal = why(1_800_000);
    dkg_is_refused(
        &mut net,
        &coordinator,
        &nodes,
        &key,
        vec![half_hour],
        &refusal,
    );
    let arrival = net.now().0 + LATENCY_MS;
    let ahead = approval_at(&mut net, &action, arrival + cap + 1);
    dkg_is_refused(
        &mut net,
        &coordinator,
        &nodes,
        &key,
        vec![ahead],
        &why(cap + 1),
    );

    // A restarted node builds its gate from its configuration (still an hour): capped again.
    for node in &nodes {
        net.crash_and_restart(node);
    }
    let arrival = net.now().0 + LATENCY_MS;
    let stale = approval_at(&mut net, &action, arrival - cap - 1);
    dkg_is_refused(
        &mut net,
        &coordinator,
        &nodes,
        &key,
        vec![stale],
        &why(cap + 1),
    );

    // Control: within the cap, and beyond the default skew of 120 s, it is accepted.
    let arrival = net.now().0 + LATENCY_MS;
    let oldest = approval_at(&mut net, &action, arrival - cap);
    dkg_runs(&mut net, &coordinator, &nodes, &key, vec![oldest]);
}

/// The coordinator pads an open with approvals from an operator key no node lists, up to 17
/// with the one valid approval last: a DKG open, a reshare open, and a scheduled refresh's
/// open under a standing rotation policy. Every node refuses each (at most 16 approvals are
/// read) before it stores or sends anything: no round-1 package, no dealing, no sub-share, no
/// request id admitted, no share or record. With 16 (15 padding and the valid one last), each
/// is joined and runs.
fn more_than_sixteen_approvals_are_refused<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(604, 3);
    assert_eq!(MAX_APPROVALS, 16);
    let why = format!(
        "{} approvals, at most {MAX_APPROVALS} are accepted",
        MAX_APPROVALS + 1
    );
    let padded = |net: &mut Network<S>, action: &LifecycleAction, count: usize| {
        let mut approvals = padding(net, action, count - 1);
        approvals.push(net.approve(&sim_operator(), action));
        approvals
    };

    // A DKG open.
    let key = key_id("padded");
    let action = dkg_action::<S>(&key, 2, &nodes);
    let approvals = padded(&mut net, &action, MAX_APPROVALS + 1);
    dkg_is_refused(&mut net, &coordinator, &nodes, &key, approvals, &why);
    let approvals = padded(&mut net, &action, MAX_APPROVALS);
    let pkp = dkg_runs(&mut net, &coordinator, &nodes, &key, approvals);

    // A reshare open.
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let action = reshare_action(&p);
    let before = remembered(&net, &nodes);
    let sent = Sent::watch(&mut net);
    let (mark, notices) = (net.refused.len(), net.notices.len());
    let approvals = padded(&mut net, &action, MAX_APPROVALS + 1);
    let (session, outcome) = reshare_approved(&mut net, &coordinator, &p, 0, approvals);
    not_approved(outcome, &why);
    refused_by_every(&net, mark, notices, &nodes, &why);
    assert_eq!(sent.count(&nodes, MessageKind::ReshareDealing), 0);
    assert_eq!(sent.count(&nodes, MessageKind::ReshareShare), 0);
    assert_eq!(
        remembered(&net, &nodes),
        before,
        "a request id was admitted"
    );
    epoch_intact(&net, &nodes, &key, Epoch(0), &session);
    net.clear_faults();
    let approvals = padded(&mut net, &action, MAX_APPROVALS);
    let (_, outcome) = reshare_approved(&mut net, &coordinator, &p, 1, approvals);
    let package = outcome.unwrap_or_else(|e| panic!("the reshare was refused: {e}"));
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );

    // A scheduled refresh's open under a standing rotation policy (of every hour).
    let every_secs = 3600;
    let policy = rotation_policy_action(
        &key,
        S::CURVE,
        &pkp.verifying_key().serialize().unwrap(),
        nodes.clone(),
        2,
        every_secs,
    );
    let refresh = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    assert_eq!(refresh.epoch, Epoch(1));
    let before = remembered(&net, &nodes);
    let sent = Sent::watch(&mut net);
    let (mark, notices) = (net.refused.len(), net.notices.len());
    let approvals = padded(&mut net, &policy, MAX_APPROVALS + 1);
    let session = rotation_run(
        &mut net,
        &coordinator,
        refresh.clone(),
        approvals,
        every_secs,
    );
    refused_by_every(&net, mark, notices, &nodes, &why);
    assert_eq!(sent.count(&nodes, MessageKind::ReshareDealing), 0);
    assert_eq!(sent.count(&nodes, MessageKind::ReshareShare), 0);
    assert_eq!(
        remembered(&net, &nodes),
        before,
        "a request id was admitted"
    );
    epoch_intact(&net, &nodes, &key, Epoch(1), &session);
    net.clear_faults();
    let mut refresh = refresh;
    refresh.attempt = 1;
    let approvals = padded(&mut net, &policy, MAX_APPROVALS);
    rotation_run(&mut net, &coordinator, refresh, approvals, every_secs);
    for node in &nodes {
        assert_eq!(
            net.node(node).unwrap().active_share(&key).unwrap().epoch,
            Epoch(2),
            "{node} did not join the refresh"
        );
    }
}

per_suite!(
    a_used_reshare_approval_is_refused_after_every_node_restarts,
    a_stale_or_future_approval_is_refused,
    the_skew_is_capped,
    more_than_sixteen_approvals_are_refused,
);
