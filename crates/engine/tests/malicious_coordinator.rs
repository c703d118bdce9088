//! A coordinator (or a node) turned attacker, against the node core's own life-cycle rules, on
//! every suite. The attacker builds its messages itself (raw protocol sessions, or messages put
//! straight on the wire), as a compromised coordinator would; each test asserts that no honest
//! node released a share or deleted an epoch it should keep.
//!
//! Defended: committees are signer nodes; a DKG or reshare needs a valid approval from an
//! operator key each node lists, within its floors, used once; one DKG per key id at a time; a
//! replayed open of a concluded session; an epoch with no next epoch; one peer flooding the
//! early-message buffer; after a confirmation, no unsigned abort or timeout deletes a PENDING
//! share (the certificate, handed over by any member that holds it, or an operator decides).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ed25519_dalek::SigningKey;
use frost_core::keys::PublicKeyPackage;
use permafrost_engine::any::StoredShare;
use permafrost_engine::deadlines;
use permafrost_engine::node::{NodeNotice, NodeStore};
use permafrost_engine::sim::{Fault, Network, SimVerifier};
use permafrost_protocol::dkg::DkgCoordinator;
use permafrost_protocol::lifecycle::{reshare_action, OperatorKey, OperatorPolicy};
use permafrost_protocol::reshare::{session_id, ReshareCoordinator};
use permafrost_protocol::wire::{
    Epoch, KeyId, Message, MessageKind, NodeId, ReshareOpen, ReshareShare, SecretBytes, SessionId,
};
use permafrost_protocol::wire::{OperatorApproval, ReshareProposal};
use permafrost_protocol::{ProtocolError, Refusal, Suite};

/// The kinds of every message any of `from` sends from now on.
#[derive(Clone, Default)]
struct Sent(Rc<RefCell<Vec<MessageKind>>>);

impl Sent {
    fn watch<S: Suite>(net: &mut Network<S>, from: &[NodeId]) -> Self {
        let sent = Sent::default();
        let (log, from) = (sent.clone(), from.to_vec());
        net.set_faults(move |env| {
            if from.contains(&env.from) {
                log.0.borrow_mut().push(env.message.kind());
            }
            Fault::Deliver
        });
        sent
    }

    fn count(&self, kind: MessageKind) -> usize {
        self.0.borrow().iter().filter(|k| **k == kind).count()
    }
}

/// `open` replayed by the coordinator to every node: each refuses it as concluded.
fn replay_is_refused_as_concluded<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    nodes: &[NodeId],
    open: &Message,
) {
    let mark = net.refused.len();
    for node in nodes {
        net.inject(coordinator, node, open.clone());
    }
    net.run(Duration::from_secs(1));
    for node in nodes {
        let refusals = refused_since(net, mark, node);
        assert!(
            refusals
                .iter()
                .any(|e| matches!(e, ProtocolError::Refused(Refusal::SessionConcluded))),
            "{node}: {refusals:?}"
        );
    }
}

/// Every honest node still holds its epoch-0 share, and nothing PENDING.
fn epoch_zero_intact<S: Suite>(net: &Network<S>, nodes: &[NodeId], key: &KeyId) {
    in_force_at(net, nodes, key, Epoch(0));
}

/// A coordinator proposes moving the key to holders of its choosing: itself and a second
/// coordinator identity. Every node refuses the open naming the stranger; no dealer deals, so
/// no sub-share leaves any node; every epoch-0 share stays.
fn a_reshare_to_coordinator_identities_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(301, 2, 3);
    let accomplice = net.add_coordinator();
    let mut thieves = vec![coordinator.clone(), accomplice.clone()];
    thieves.sort();
    let mut proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    proposal.new_committee = thieves;
    let reshare = ReshareCoordinator::<S>::new(
        proposal,
        Vec::new(),
        None,
        Arc::new(SimVerifier),
        net.now(),
        deadlines::RESHARE,
    )
    .unwrap();
    let (session, test) = (reshare.session(), reshare.test_session());
    let sent = Sent::watch(&mut net, &nodes);
    let mark = net.refused.len();
    net.alias(&coordinator, test, session);
    net.start(&coordinator, Box::new(reshare), session);
    net.run(Duration::from_secs(130));
    for node in &nodes {
        let refusals = refused_since(&net, mark, node);
        assert!(
            refusals.iter().any(|e| matches!(e,
                ProtocolError::Refused(Refusal::NotASignerNode(n)) if *n == coordinator || *n == accomplice)),
            "{node}: {refusals:?}"
        );
        assert!(!net.node(node).unwrap().has_reshare_record(&session));
    }
    assert_eq!(
        sent.count(MessageKind::ReshareShare),
        0,
        "a sub-share left a node"
    );
    assert_eq!(
        sent.count(MessageKind::ReshareDealing),
        0,
        "a dealing left a node"
    );
    epoch_zero_intact(&net, &nodes, &key);
}

/// A DKG whose committee holds a coordinator identity: every node refuses it; no round-2
/// share leaves any node; no key exists.
fn a_dkg_with_a_coordinator_identity_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(302, 3);
    let mut committee = nodes.clone();
    committee.push(coordinator.clone());
    let key = key_id("stolen");
    let dkg = DkgCoordinator::<S>::new(
        key.clone(),
        2,
        committee,
        [1; 32],
        Vec::new(),
        Arc::new(SimVerifier),
        net.now(),
        deadlines::DKG,
    )
    .unwrap();
    let session = dkg.session();
    let sent = Sent::watch(&mut net, &nodes);
    let mark = net.refused.len();
    net.start(&coordinator, Box::new(dkg), session);
    net.run(Duration::from_secs(130));
    for node in &nodes {
        assert!(
            refused_since(&net, mark, node).iter().any(|e| matches!(e,
                ProtocolError::Refused(Refusal::NotASignerNode(n)) if *n == coordinator)),
            "{node}"
        );
    }
    assert_eq!(sent.count(MessageKind::DkgRound2), 0);
    assert!(!anyone_active(&net, &nodes, &key));
}

/// Two DKGs of one key id at once: each node joins the first and refuses the second, naming
/// the first; the key of the first is the one every node holds.
fn a_second_dkg_of_the_same_key_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(303, 3);
    let key = key_id("key-1");
    let start = |net: &mut Network<S>, nonce: u8| {
        let dkg = DkgCoordinator::<S>::new(
            key.clone(),
            2,
            nodes.clone(),
            [nonce; 32],
            dkg_approvals(net, &key, 2, &nodes),
            Arc::new(SimVerifier),
            net.now(),
            deadlines::DKG,
        )
        .unwrap();
        let session = dkg.session();
        net.start(&coordinator, Box::new(dkg), session);
        session
    };
    // Every node hears of the first before the second (a node that heard of the second first
    // would join that one and refuse the first, just the same), and before the first can have
    // finished (it takes at least six hops of 10 ms).
    net.latency_ms = (10, 20);
    let nonce_of_second = [2u8; 32];
    net.set_faults(move |env| match &env.message {
        Message::DkgOpen(open) if open.nonce == nonce_of_second => {
            Fault::Delay(Duration::from_millis(15))
        }
        _ => Fault::Deliver,
    });
    let mark = net.refused.len();
    let first = start(&mut net, 1);
    let second = start(&mut net, 2);
    net.run(Duration::from_secs(130));
    for node in &nodes {
        let refusals = refused_since(&net, mark, node);
        assert!(
            refusals
                .iter()
                .any(|e| e.to_string().contains("already running")
                    && e.to_string().contains(&first.to_string())),
            "{node}: {refusals:?}"
        );
    }
    let created: Vec<_> = net
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            permafrost_protocol::Event::KeyCreated {
                public_key_package, ..
            } => Some(public_key_package.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        created.len(),
        1,
        "one DKG, one key (the second is {second})"
    );
    for node in &nodes {
        let share = net.node(node).unwrap().active_share(&key).unwrap();
        assert_eq!(share.public_key_package, created[0]);
    }
}

/// A concluded reshare's open, replayed by the coordinator: every node refuses it as
/// concluded and deals nothing (an honest node never signs two dealings under one session
/// id); the same for a DKG that failed.
fn a_replayed_open_of_a_concluded_session_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(304, 2, 3);
    let captured: Rc<RefCell<Option<Message>>> = Rc::default();
    let c = captured.clone();
    net.set_faults(move |env| {
        if let Message::ReshareOpen(_) = &env.message {
            c.borrow_mut().get_or_insert_with(|| env.message.clone());
        }
        Fault::Deliver
    });
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    net.run_reshare(&coordinator, p).unwrap();
    let open = captured.borrow_mut().take().unwrap();
    net.clear_faults();
    let notices = net.notices.len();
    replay_is_refused_as_concluded(&mut net, &coordinator, &nodes, &open);
    assert!(
        !net.notices[notices..].iter().any(|(_, n)| matches!(
            n,
            NodeNotice::Dealt { .. } | NodeNotice::ReshareJoined { .. }
        )),
        "a node joined or dealt again"
    );
    for node in &nodes {
        assert_eq!(
            net.node(node).unwrap().active_share(&key).unwrap().epoch,
            Epoch(1)
        );
    }

    // A DKG that failed (a member silent), its open replayed: refused as concluded.
    let key2 = key_id("key-2");
    let silent = nodes[2].clone();
    let captured: Rc<RefCell<Option<Message>>> = Rc::default();
    let c = captured.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgOpen(_) => {
            c.borrow_mut().get_or_insert_with(|| env.message.clone());
            Fault::Deliver
        }
        Message::DkgRound1(m) if m.from == silent => Fault::Drop,
        _ => Fault::Deliver,
    });
    assert!(net.run_dkg(&coordinator, &key2, 2, &nodes).is_err());
    net.run(Duration::from_secs(130));
    net.clear_faults();
    let open = captured.borrow_mut().take().unwrap();
    replay_is_refused_as_concluded(&mut net, &coordinator, &nodes, &open);
}

/// A reshare of epoch `u64::MAX` (there is no next epoch): refused with a named reason, and
/// nothing stored.
fn an_epoch_without_a_next_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(305, 2, 3);
    let mut proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    proposal.epoch = Epoch(u64::MAX);
    let open = Message::ReshareOpen(ReshareOpen {
        rotation: None,
        session: session_id(&proposal),
        proposal,
        approvals: Vec::new(),
    });
    let mark = net.refused.len();
    for node in &nodes {
        net.inject(&coordinator, node, open.clone());
    }
    net.run(Duration::from_secs(1));
    for node in &nodes {
        assert!(
            refused_since(&net, mark, node)
                .iter()
                .any(|e| e.to_string().contains("has no next epoch")),
            "{node}: {:?}",
            refused_since(&net, mark, node)
        );
    }
    epoch_zero_intact(&net, &nodes, &key);
}

/// One node floods a new member's early-message buffer with shares for reshares that do not
/// exist, and with coordinator-only messages. The coordinator-only ones are refused outright;
/// the flood fills only the flooder's quota; a real dealer's early share is still kept; and a
/// reshare whose open reaches the new member last completes.
fn a_flooded_early_buffer_still_keeps_real_dealings<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(306, 2, 3);
    let fresh = net.add_node();
    let flooder = nodes[2].clone();
    let mark = net.refused.len();
    for i in 0..300u32 {
        let mut session = [0u8; 32];
        session[..4].copy_from_slice(&i.to_be_bytes());
        let share = Message::ReshareShare(ReshareShare {
            session: SessionId(session),
            from: flooder.clone(),
            to: fresh.clone(),
            share: SecretBytes::new(vec![7; 64]),
            signature: vec![0; 64],
        });
        net.inject(&flooder, &fresh, share);
    }
    let commit = Message::ReshareAbort(permafrost_protocol::wire::ReshareAbort {
        session: SessionId([9; 32]),
        culprits: vec![],
        reason: "forged".into(),
    });
    net.inject(&flooder, &fresh, commit);
    // Nor is a DKG's abort kept for its open unless a coordinator sent it.
    let dkg_abort = Message::DkgAbort(permafrost_protocol::wire::DkgAbort {
        session: SessionId([8; 32]),
        culprits: vec![],
        reason: "forged".into(),
    });
    net.inject(&flooder, &fresh, dkg_abort);
    net.run(Duration::from_millis(100));
    assert!(net.refused[mark..].iter().any(|r| r.at == fresh
        && r.kind == MessageKind::DkgAbort.name()
        && matches!(r.error, ProtocolError::Refused(Refusal::NotFromCoordinator(ref n)) if *n == flooder)));
    let refusals = refused_since(&net, mark, &fresh);
    assert!(refusals.iter().any(
        |e| matches!(e, ProtocolError::Refused(Refusal::NotFromCoordinator(n)) if *n == flooder)
    ));
    let over_quota = refusals
        .iter()
        .filter(|e| matches!(e, ProtocolError::Refused(Refusal::Limit(_))))
        .count();
    assert!(
        over_quota >= 300 - 16,
        "{over_quota} refused over the quota"
    );

    // The open reaches the new member last: the other dealers' shares arrive first.
    let f = fresh.clone();
    net.set_faults(move |env| match &env.message {
        Message::ReshareOpen(_) if env.to == f => Fault::Delay(Duration::from_millis(300)),
        _ => Fault::Deliver,
    });
    let mut committee = nodes[..2].to_vec();
    committee.push(fresh.clone());
    let p = reshare_proposal(&net, &key, &nodes[0], &committee, 2, &nodes[..2]);
    let package = net.run_reshare(&coordinator, p).unwrap();
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    assert_eq!(
        net.node(&fresh).unwrap().active_share(&key).unwrap().epoch,
        Epoch(1)
    );
}

/// The custodian's operator key of the approval tests.
fn custodian() -> SigningKey {
    SigningKey::from_bytes(&[0x5a; 32])
}

/// `nodes` require an approval from [`custodian`] (and no longer accept the coordinator's
/// gateway operator key), with `tune` applied to their policy.
fn require_custodian<S: Suite>(
    net: &mut Network<S>,
    nodes: &[NodeId],
    tune: impl Fn(&mut OperatorPolicy),
) {
    for node in nodes {
        let mut policy = OperatorPolicy::default();
        policy
            .all_keys
            .insert(OperatorKey(custodian().verifying_key().to_bytes()));
        tune(&mut policy);
        net.set_operator_policy(node, policy).unwrap();
    }
}

/// Asserts `result` is a refusal to join for lack of an approval, saying `why`.
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

/// A DKG without an approval, with one from an unlisted key, for another committee, another
/// threshold, another network, or below a node's floor: the coordinator's answer names the
/// refusal, no member sent anything of the DKG, no key exists. With the custodian's approval it
/// runs.
fn a_dkg_without_a_valid_approval_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(307, 3);
    require_custodian(&mut net, &nodes, |_| {});
    let key = key_id("approved-key");
    let action = dkg_action::<S>(&key, 2, &nodes);
    let sent = Sent::watch(&mut net, &nodes);
    let dkg = |net: &mut Network<S>, approvals: Vec<OperatorApproval>| {
        net.run_dkg_approved(&coordinator, &key, 2, &nodes, approvals)
    };
    // None: the coordinator's gateway operator key approves, which the nodes do not list.
    not_approved(
        dkg(&mut net, Vec::new()),
        "from an operator key this node lists",
    );
    let stranger = SigningKey::from_bytes(&[0x66; 32]);
    let from_stranger = net.approve(&stranger, &action);
    not_approved(
        dkg(&mut net, vec![from_stranger]),
        "from an operator key this node lists",
    );
    let mut other_threshold = action.clone();
    other_threshold.threshold = 3;
    let approval = net.approve(&custodian(), &other_threshold);
    not_approved(dkg(&mut net, vec![approval]), "does not verify");
    let other_committee = dkg_action::<S>(&key, 2, &nodes[..2]);
    let approval = net.approve(&custodian(), &other_committee);
    not_approved(dkg(&mut net, vec![approval]), "does not verify");
    let approval = OperatorApproval::sign(
        &custodian(),
        "another-network",
        &action,
        [7; 16],
        net.now().0,
    );
    not_approved(dkg(&mut net, vec![approval]), "does not verify");
    net.run(Duration::from_secs(130));
    assert_eq!(sent.count(MessageKind::DkgRound1), 0, "a member took part");
    // Below one member's floor: that member takes no part, and the DKG ends at its refusal.
    require_custodian(&mut net, &nodes[2..], |p| p.min_committee = 4);
    let sent = Sent::watch(&mut net, &nodes[2..]);
    let approval = net.approve(&custodian(), &action);
    not_approved(dkg(&mut net, vec![approval]), "below this node's floor");
    net.run(Duration::from_secs(130));
    assert_eq!(
        sent.count(MessageKind::DkgRound1),
        0,
        "the refusing member took part"
    );
    assert_eq!(sent.count(MessageKind::DkgRound2), 0);
    assert!(!anyone_active(&net, &nodes, &key));

    require_custodian(&mut net, &nodes, |_| {});
    let approval = net.approve(&custodian(), &action);
    dkg(&mut net, vec![approval]).unwrap();
    assert!(nodes
        .iter()
        .all(|n| net.node(n).unwrap().active_share(&key).is_some()));
}

/// Runs `proposal` (as attempt `attempt`) carrying `approvals`.
fn reshare_approved<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    proposal: &ReshareProposal,
    attempt: u32,
    approvals: Vec<OperatorApproval>,
) -> Result<PublicKeyPackage<S>, ProtocolError> {
    let mut proposal = proposal.clone();
    proposal.attempt = attempt;
    let mark = net.events.len();
    net.start_reshare_approved(coordinator, proposal, approvals)?;
    net.finish_reshare(coordinator, mark)
}

/// A reshare without an approval, for another threshold or committee, below a node's floor, or
/// with an approval already used in another session: refused, nothing dealt, epoch 0 intact.
/// With a fresh approval of the custodian it commits.
fn a_reshare_without_a_valid_approval_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(308, 2, 3);
    // A skew as wide as the request ids' retention, so the replay below is refused as a
    // replay, not as stale.
    let wide = |p: &mut OperatorPolicy| p.max_clock_skew = Duration::from_secs(600);
    require_custodian(&mut net, &nodes, wide);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let action = reshare_action(&p);
    let sent = Sent::watch(&mut net, &nodes);
    not_approved(
        reshare_approved(&mut net, &coordinator, &p, 0, Vec::new()),
        "from an operator key this node lists",
    );
    let mut other = action.clone();
    other.threshold = 3;
    let approval = net.approve(&custodian(), &other);
    not_approved(
        reshare_approved(&mut net, &coordinator, &p, 1, vec![approval]),
        "does not verify",
    );
    let mut other = action.clone();
    other.committee.pop();
    let approval = net.approve(&custodian(), &other);
    not_approved(
        reshare_approved(&mut net, &coordinator, &p, 2, vec![approval]),
        "does not verify",
    );
    assert_eq!(sent.count(MessageKind::ReshareDealing), 0, "a dealer dealt");
    assert_eq!(sent.count(MessageKind::ReshareShare), 0, "a sub-share left");
    // Below one member's floor: it deals nothing, and the reshare ends at its refusal.
    require_custodian(&mut net, &nodes[..1], |p| {
        wide(p);
        p.min_threshold = 3;
    });
    let sent = Sent::watch(&mut net, &nodes[..1]);
    let approval = net.approve(&custodian(), &action);
    not_approved(
        reshare_approved(&mut net, &coordinator, &p, 3, vec![approval]),
        "below this node's floor",
    );
    assert_eq!(
        sent.count(MessageKind::ReshareShare),
        0,
        "the refusing node dealt"
    );
    require_custodian(&mut net, &nodes, wide);
    epoch_zero_intact(&net, &nodes, &key);

    // An approval admitted in one session (whose dealings are lost, so it times out) is
    // refused in the next.
    let used = net.approve(&custodian(), &action);
    net.set_faults(|env| match env.message {
        Message::ReshareDealing(_) => Fault::Drop,
        _ => Fault::Deliver,
    });
    assert!(reshare_approved(&mut net, &coordinator, &p, 4, vec![used.clone()]).is_err());
    net.clear_faults();
    not_approved(
        reshare_approved(&mut net, &coordinator, &p, 5, vec![used]),
        "already used in session",
    );
    epoch_zero_intact(&net, &nodes, &key);

    let approval = net.approve(&custodian(), &action);
    let package = reshare_approved(&mut net, &coordinator, &p, 6, vec![approval]).unwrap();
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
}

/// The coordinator sends the commit certificate to the old-only member (which retires the old
/// epoch on it) and an abort to every new member, and withholds the certificate from them for
/// good. The new members refuse the unsigned abort, keep their pending shares, ask the other
/// members, get the certificate from the old-only member, and promote: the key signs in the
/// new epoch under the same public key.
fn commit_to_the_old_members_and_abort_to_the_new_ones_still_signs<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(309, 2, 3);
    let fresh = net.add_node();
    let retiring = nodes[2].clone();
    let mut committee = nodes[..2].to_vec();
    committee.push(fresh.clone());
    let p = reshare_proposal(&net, &key, &nodes[0], &committee, 2, &nodes[..2]);
    let (c, r) = (coordinator.clone(), retiring.clone());
    net.set_faults(move |env| match &env.message {
        Message::ReshareCommit(commit) if env.from == c && env.to != r => Fault::Replace(
            Message::ReshareAbort(permafrost_protocol::wire::ReshareAbort {
                session: commit.session,
                culprits: vec![],
                reason: "forged".into(),
            }),
        ),
        _ => Fault::Deliver,
    });
    let mark = net.refused.len();
    let session = net.start_reshare(&coordinator, p).unwrap();
    net.run(Duration::from_secs(600));
    for node in &committee {
        assert!(
            refused_since(&net, mark, node)
                .iter()
                .any(|e| matches!(e, ProtocolError::Refused(Refusal::AwaitingCertificate))),
            "{node} did not refuse the abort"
        );
        let n = net.node(node).unwrap();
        assert_eq!(
            n.active_share(&key).map(|s| s.epoch),
            Some(Epoch(1)),
            "{node} did not promote"
        );
        assert!(!n.has_reshare_record(&session));
    }
    assert!(net.node(&retiring).unwrap().active_share(&key).is_none());
    let package = net
        .node(&fresh)
        .unwrap()
        .active_share(&key)
        .unwrap()
        .public_key_package;
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    net.clear_faults();
    let outcome = net
        .sign(
            &coordinator,
            &key,
            Epoch(1),
            &package,
            &committee,
            b"new epoch",
        )
        .unwrap();
    verify_independently(&pkp, b"new epoch", &outcome.signature);
}

/// After every member confirmed, the coordinator aborts (the test signature's shares are
/// lost) and answers every status question with its abort: each member refuses the abort,
/// keeps its pending share and the old epoch through its timeouts, and the old epoch signs.
/// The operator's discard removes the pending share and the record; the node still signs.
fn an_abort_or_timeout_after_confirmation_keeps_the_pending_share<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(310, 2, 3);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let test = permafrost_protocol::reshare::test_session_id(&session_id(&p));
    net.set_faults(move |env| match &env.message {
        Message::SignShare(share) if share.session == test => Fault::Drop,
        _ => Fault::Deliver,
    });
    let mark = net.refused.len();
    let session = net.start_reshare(&coordinator, p).unwrap();
    net.run(Duration::from_secs(900));
    assert!(matches!(
        net.coordinator(&coordinator).unwrap().outcome(&session),
        Some(Message::ReshareAbort(_))
    ));
    for node in &nodes {
        assert!(refused_since(&net, mark, node)
            .iter()
            .any(|e| matches!(e, ProtocolError::Refused(Refusal::AwaitingCertificate))));
        let n = net.node(node).unwrap();
        assert!(
            n.pending_share(&key).is_some(),
            "{node} lost its pending share"
        );
        assert!(n.has_reshare_record(&session));
        assert_eq!(n.active_share(&key).unwrap().epoch, Epoch(0));
    }
    net.clear_faults();
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"old epoch")
        .unwrap();
    verify_independently(&pkp, b"old epoch", &outcome.signature);
    for node in &nodes {
        let discarded = discard_as_operator(&mut net, node, &key, Epoch(1));
        assert_eq!(discarded.reshare, Some(session));
        let n = net.node(node).unwrap();
        assert!(n.pending_share(&key).is_none());
        assert!(!n.has_reshare_record(&session));
    }
    let outcome = net
        .sign_roast(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            b"after the discard",
        )
        .unwrap();
    verify_independently(&pkp, b"after the discard", &outcome.signature);
}

/// A DKG whose commit the coordinator sends to two members and replaces with an abort for the
/// third, for good: the third refuses the abort and keeps its pending share, asks the other
/// members when the commit is overdue, gets the commit from them and activates; the key signs
/// with all three.
fn a_dkg_abort_after_confirmation_deletes_nothing<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(311, 3);
    let victim = nodes[2].clone();
    let (v, c) = (victim.clone(), coordinator.clone());
    net.set_faults(move |env| match &env.message {
        Message::DkgCommit(commit) if env.to == v && env.from == c => {
            Fault::Replace(Message::DkgAbort(permafrost_protocol::wire::DkgAbort {
                session: commit.session,
                culprits: vec![],
                reason: "forged".into(),
            }))
        }
        _ => Fault::Deliver,
    });
    let key = key_id("split");
    let mark = net.refused.len();
    let pkp = net.run_dkg(&coordinator, &key, 2, &nodes).unwrap();
    net.run(Duration::from_secs(130));
    assert!(refused_since(&net, mark, &victim)
        .iter()
        .any(|e| matches!(e, ProtocolError::Refused(Refusal::AwaitingCertificate))));
    assert_eq!(
        net.node(&victim)
            .unwrap()
            .active_share(&key)
            .map(|s| s.epoch),
        Some(Epoch(0)),
        "the victim did not activate on the commit the others handed over"
    );
    for signers in [&nodes[1..], &nodes[..2]] {
        let outcome = net
            .sign_roast(&coordinator, &key, Epoch(0), &pkp, signers, b"m")
            .unwrap();
        verify_independently(&pkp, b"m", &outcome.signature);
    }
}

/// A DKG commit activates only the pending share it certifies: a node whose pending share on
/// disk is another key's (as if a second DKG of the key id had written it) refuses to activate
/// it and says so; the members whose share is the committed one activate.
fn activation_checks_the_stored_package_against_the_commit<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(312, 3);
    let other = key_id("other");
    net.run_dkg(&coordinator, &other, 2, &nodes).unwrap();
    let victim = nodes[0].clone();
    let key = key_id("certified");
    let v = victim.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgCommit(_) if env.to == v => Fault::Delay(Duration::from_secs(5)),
        _ => Fault::Deliver,
    });
    net.run_dkg(&coordinator, &key, 2, &nodes).unwrap();
    // The commit to the victim is still in flight: swap its pending share for another key's.
    let foreign = net.node(&victim).unwrap().active_share(&other).unwrap();
    let mut stored = StoredShare::from_share(&foreign).unwrap();
    stored.key_id = key.clone();
    net.node_mut(&victim)
        .unwrap()
        .core_mut()
        .unwrap()
        .store_mut()
        .put_pending(&stored)
        .unwrap();
    let mark = net.notices.len();
    net.run(Duration::from_secs(10));
    assert!(net.notices[mark..].iter().any(|(n, notice)| *n == victim
        && matches!(notice, NodeNotice::ActivationRefused { why, .. } if why.contains("not the committed one"))));
    assert!(net.node(&victim).unwrap().active_share(&key).is_none());
    for node in &nodes[1..] {
        assert!(net.node(node).unwrap().active_share(&key).is_some());
    }
}

/// A key whose DKG commit reached no member (the coordinator recorded it and sent nothing): its
/// members hold PENDING shares, and a reshare of it is refused by every one of them (a pending
/// share is not the key's until a commit says so), dealing nothing.
fn a_reshare_of_a_pending_epoch_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(313, 3);
    net.set_faults(|env| match env.message {
        Message::DkgCommit(_) => Fault::Drop,
        _ => Fault::Deliver,
    });
    let key = key_id("never-committed");
    net.run_dkg(&coordinator, &key, 2, &nodes).unwrap();
    net.run(Duration::from_secs(5));
    net.clear_faults();
    for node in &nodes {
        assert!(net.node(node).unwrap().pending_share(&key).is_some());
    }
    let share = net.node(&nodes[0]).unwrap().pending_share(&key).unwrap();
    let mut dealers = nodes.clone();
    dealers.sort();
    let proposal = ReshareProposal {
        key_id: key.clone(),
        curve: S::CURVE,
        epoch: Epoch(0),
        attempt: 0,
        old_committee: share.committee.clone(),
        old_public_key_package: share.public_key_package.serialize().unwrap(),
        new_committee: dealers.clone(),
        new_threshold: 2,
        dealers,
    };
    let sent = Sent::watch(&mut net, &nodes);
    let mark = net.refused.len();
    let approvals = reshare_approvals(&mut net, &proposal);
    let open = Message::ReshareOpen(ReshareOpen {
        rotation: None,
        session: session_id(&proposal),
        proposal,
        approvals,
    });
    for node in &nodes {
        net.inject(&coordinator, node, open.clone());
    }
    net.run(Duration::from_secs(1));
    for node in &nodes {
        assert!(
            refused_since(&net, mark, node)
                .iter()
                .any(|e| e.to_string().contains("is not active")),
            "{node}: {:?}",
            refused_since(&net, mark, node)
        );
    }
    assert_eq!(sent.count(MessageKind::ReshareShare), 0);
}

per_suite!(
    a_reshare_of_a_pending_epoch_is_refused,
    activation_checks_the_stored_package_against_the_commit,
    commit_to_the_old_members_and_abort_to_the_new_ones_still_signs,
    an_abort_or_timeout_after_confirmation_keeps_the_pending_share,
    a_dkg_abort_after_confirmation_deletes_nothing,
    a_dkg_without_a_valid_approval_is_refused,
    a_reshare_without_a_valid_approval_is_refused,
    a_reshare_to_coordinator_identities_is_refused,
    a_dkg_with_a_coordinator_identity_is_refused,
    a_second_dkg_of_the_same_key_is_refused,
    a_replayed_open_of_a_concluded_session_is_refused,
    an_epoch_without_a_next_is_refused,
    a_flooded_early_buffer_still_keeps_real_dealings,
);
