//! A coordinator (or a node) turned attacker, against the node core's own life-cycle rules, on
//! every suite. The attacker builds its messages itself (raw protocol sessions, or messages put
//! straight on the wire), as a compromised coordinator would; each test asserts that no honest
//! node released a share or deleted an epoch it should keep.
//!
//! Defended so far: committees are signer nodes; one DKG per key id at a time; a replayed open
//! of a concluded session; an epoch with no next epoch; one peer flooding the early-message
//! buffer. Operator approval of DKG and reshare, and keeping PENDING shares after a
//! confirmation until a certificate, are not built yet (issue "Custodians decide a key's life
//! cycle").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use permafrost_engine::deadlines;
use permafrost_engine::node::NodeNotice;
use permafrost_engine::sim::{Fault, Network, SimVerifier};
use permafrost_protocol::dkg::DkgCoordinator;
use permafrost_protocol::reshare::{session_id, ReshareCoordinator};
use permafrost_protocol::wire::{
    Epoch, KeyId, Message, MessageKind, NodeId, ReshareOpen, ReshareShare, SecretBytes, SessionId,
};
use permafrost_protocol::{ProtocolError, Refusal, Suite};

/// The refusals `at` made since `mark`.
fn refusals_at<S: Suite>(net: &Network<S>, mark: usize, at: &NodeId) -> Vec<ProtocolError> {
    net.refused[mark..]
        .iter()
        .filter(|r| r.at == *at)
        .map(|r| r.error.clone())
        .collect()
}

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
        let refusals = refusals_at(net, mark, node);
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
    for node in nodes {
        let n = net.node(node).unwrap();
        assert_eq!(
            n.active_share(key).map(|s| s.epoch),
            Some(Epoch(0)),
            "{node} lost its share"
        );
        assert!(
            n.pending_share(key).is_none(),
            "{node} stored a pending share"
        );
    }
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
        let refusals = refusals_at(&net, mark, node);
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
            refusals_at(&net, mark, node).iter().any(|e| matches!(e,
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
    // would join that one and refuse the first, just the same).
    let nonce_of_second = [2u8; 32];
    net.set_faults(move |env| match &env.message {
        Message::DkgOpen(open) if open.nonce == nonce_of_second => {
            Fault::Delay(Duration::from_millis(50))
        }
        _ => Fault::Deliver,
    });
    let mark = net.refused.len();
    let first = start(&mut net, 1);
    let second = start(&mut net, 2);
    net.run(Duration::from_secs(130));
    for node in &nodes {
        let refusals = refusals_at(&net, mark, node);
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
        session: session_id(&proposal),
        proposal,
    });
    let mark = net.refused.len();
    for node in &nodes {
        net.inject(&coordinator, node, open.clone());
    }
    net.run(Duration::from_secs(1));
    for node in &nodes {
        assert!(
            refusals_at(&net, mark, node)
                .iter()
                .any(|e| e.to_string().contains("has no next epoch")),
            "{node}: {:?}",
            refusals_at(&net, mark, node)
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
    net.run(Duration::from_millis(100));
    let refusals = refusals_at(&net, mark, &fresh);
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

per_suite!(
    a_reshare_to_coordinator_identities_is_refused,
    a_dkg_with_a_coordinator_identity_is_refused,
    a_second_dkg_of_the_same_key_is_refused,
    a_replayed_open_of_a_concluded_session_is_refused,
    an_epoch_without_a_next_is_refused,
    a_flooded_early_buffer_still_keeps_real_dealings,
);
