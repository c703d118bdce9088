//! The edges of a node's own policies, from the attacker's side, on every suite: a node that
//! lists no client signs nothing however well the request is approved for the others; a node
//! that lists no operator joins no DKG and no reshare however well they are approved for the
//! others; and an old member that refused an approved reshare (it does not list the operator)
//! keeps its old share, and so refuses to join the key again.
//!
//! Not tested here: the coordinator's filter of answers (a listed node answering a request with
//! a message of another kind or session, THREAT-MODEL.md "flood the coordinator through
//! answers"). That filter is `Reply::answers` in `crates/runtime/src/driver.rs`, applied in
//! `coordinator/src/engine.rs`; the simulator has no answers (every message, a signer's
//! commitment, share or batch among them, is delivered as a message of its own), so it cannot
//! reach that code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ed25519_dalek::SigningKey;
use permafrost_engine::deadlines;
use permafrost_engine::node::{NodeNotice, NodeStore};
use permafrost_engine::sim::{sim_client, sim_operator_policy, Fault, Network, SimVerifier};
use permafrost_keystore::{AuditKind, ShareState};
use permafrost_protocol::dkg::DkgCoordinator;
use permafrost_protocol::lifecycle::{OperatorKey, OperatorPolicy};
use permafrost_protocol::sign::client::{ClientKey, ClientPolicy};
use permafrost_protocol::wire::{Epoch, KeyId, Message, MessageKind, NodeId, SessionId};
use permafrost_protocol::{Event, ProtocolError, Refusal, Suite};

/// Every message any party sends from now on: (sender, receiver, message).
#[derive(Clone, Default)]
struct Wire(Rc<RefCell<Vec<(NodeId, NodeId, Message)>>>);

impl Wire {
    /// Records every message from now on (and delivers it).
    fn watch<S: Suite>(net: &mut Network<S>) -> Self {
        let wire = Wire::default();
        let log = wire.clone();
        net.set_faults(move |env| {
            log.0
                .borrow_mut()
                .push((env.from.clone(), env.to.clone(), env.message.clone()));
            Fault::Deliver
        });
        wire
    }

    /// The kinds of the messages `from` sent.
    fn kinds_from(&self, from: &NodeId) -> Vec<MessageKind> {
        self.0
            .borrow()
            .iter()
            .filter(|(f, _, _)| f == from)
            .map(|(_, _, m)| m.kind())
            .collect()
    }

    /// The messages `from` sent.
    fn from(&self, from: &NodeId) -> Vec<Message> {
        self.0
            .borrow()
            .iter()
            .filter(|(f, _, _)| f == from)
            .map(|(_, _, m)| m.clone())
            .collect()
    }

    /// How many messages of `kind` `to` was sent.
    fn count_to(&self, to: &NodeId, kind: MessageKind) -> usize {
        self.0
            .borrow()
            .iter()
            .filter(|(_, t, m)| t == to && m.kind() == kind)
            .count()
    }
}

/// The notices `node` made since notice index `mark`.
fn notices_since<'a, S: Suite>(
    net: &'a Network<S>,
    mark: usize,
    node: &NodeId,
) -> Vec<&'a NodeNotice> {
    net.notices[mark..]
        .iter()
        .filter(|(n, _)| n == node)
        .map(|(_, notice)| notice)
        .collect()
}

/// The audit entries of kind refused `node` wrote, their details.
fn audited_refusals<S: Suite>(net: &Network<S>, node: &NodeId) -> Vec<String> {
    net.node(node)
        .unwrap()
        .store()
        .unwrap()
        .audit_entries()
        .filter(|(entry, _)| entry.kind == AuditKind::Refused)
        .map(|(entry, _)| entry.detail.clone())
        .collect()
}

/// Every share of `key` `node` holds: (epoch, state).
fn shares_held<S: Suite>(net: &Network<S>, node: &NodeId, key: &KeyId) -> Vec<(Epoch, ShareState)> {
    let mut shares: Vec<(Epoch, ShareState)> = net
        .node(node)
        .unwrap()
        .store()
        .unwrap()
        .shares_of(key)
        .into_iter()
        .map(|(epoch, state, _)| (epoch, state))
        .collect();
    shares.sort_by_key(|(epoch, _)| *epoch);
    shares
}

/// A node's configuration without `[clients]`: no client key, for any key.
fn no_clients() -> ClientPolicy {
    let policy = ClientPolicy::default();
    assert!(policy.all_keys.is_empty() && policy.per_key.is_empty());
    policy
}

/// A node's configuration without `[operators]`: no operator key, for any key.
fn no_operators() -> OperatorPolicy {
    let policy = OperatorPolicy::default();
    assert!(policy.all_keys.is_empty() && policy.per_key.is_empty());
    policy
}

/// The operator key of a custodian that some nodes list instead of the sim operator.
fn custodian() -> SigningKey {
    SigningKey::from_bytes(&[0x5a; 32])
}

/// Restarts `node` on its store with `clients` as its configured client policy (the policy is
/// the node's setup, so the restarted core is built from it, as from a config file).
fn configure_clients<S: Suite>(net: &mut Network<S>, node: &NodeId, clients: ClientPolicy) {
    net.set_client_policy(node, clients).unwrap();
    net.crash_and_restart(node);
}

/// Restarts `node` on its store with `operators` as its configured operator policy.
fn configure_operators<S: Suite>(net: &mut Network<S>, node: &NodeId, operators: OperatorPolicy) {
    net.set_operator_policy(node, operators).unwrap();
    net.crash_and_restart(node);
}

/// What a node that does not list the approving operator says of a `kind` of `key`
/// carrying `carried` approvals.
fn unlisted(kind: &str, key: &KeyId, carried: usize) -> Refusal {
    Refusal::NotApproved(format!(
        "no approval of this {kind} of key {key} from an operator key this node lists ({carried} carried)"
    ))
}

/// A coordinator sends a correctly approved signing request (approved by the sim client, which
/// every other node lists) to nodes configured without `[clients]`. With two of five such
/// nodes asked first, each refuses as a client refusal naming the client key, sends only that
/// refusal (no commitment, no share), admits no request id and holds no nonce; the other three
/// (t) sign, and the two are not among the signers. With three of five, fewer than t can sign:
/// the request fails at once as `ClientNotAuthorized` naming exactly those three, none of
/// which admitted it or made a commitment or share for it (they do hand the coordinator
/// batches of pooled commitments, which are bound to no request); the next request, sent to
/// them in one round over those pooled commitments, is refused and fails just the same.
fn a_node_with_no_clients_signs_nothing<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(701, 3, 5);
    let client = ClientKey(sim_client().verifying_key().to_bytes());
    let why = format!("client key {client} is not accepted for key {key}");
    let refusal = Refusal::ClientNotAuthorized(why.clone());
    let shares_before: Vec<usize> = nodes.iter().map(|n| net.shares_produced(Some(n))).collect();
    let ids_before: Vec<usize> = nodes.iter().map(|n| remembered_requests(&net, n)).collect();
    let signless = nodes[..2].to_vec();
    for node in &signless {
        configure_clients(&mut net, node, no_clients());
    }

    // ROAST over the committee in this order asks the first t first: both signless nodes.
    let (mark, notices) = (net.refused.len(), net.notices.len());
    let wire = Wire::watch(&mut net);
    let message = b"pay 10 to alice";
    let request = SessionId([0x71; 32]);
    let started = start_roast(&mut net, &coordinator, &key, &pkp, &nodes, message, request);
    let (mut signers, culprits) = roast_outcome(&mut net, &coordinator, started, &pkp, message)
        .unwrap_or_else(|e| panic!("three nodes list the client, yet: {e}"));
    net.run(Duration::from_secs(1));
    signers.sort();
    assert_eq!(signers, nodes[2..].to_vec(), "the signers");
    assert!(culprits.is_empty(), "a refusal blames nobody: {culprits:?}");
    for node in &signless {
        assert_eq!(
            refused_since(&net, mark, node),
            vec![ProtocolError::Refused(refusal.clone())],
            "{node}"
        );
        assert!(
            notices_since(&net, notices, node)
                .iter()
                .any(|n| matches!(n,
                NodeNotice::SigningRefused { session, refusal: r, .. }
                    if *session == request && *r == refusal)),
            "{node} noticed no refused request"
        );
        // Its only word: the refusal, said at once, as the client's authorization failing.
        match wire.from(node).as_slice() {
            [Message::SignRefusal(answer)] => {
                assert_eq!(answer.session, request);
                assert_eq!(answer.reason, refusal.to_string());
                assert!(answer.unauthorized && !answer.commitment_unknown);
            }
            other => panic!("{node} sent {other:?}"),
        }
    }
    // The signless nodes admitted nothing, made no share and hold no nonce; the signers
    // admitted the request.
    for (i, node) in nodes.iter().enumerate() {
        let n = net.node(node).unwrap();
        let admitted = remembered_requests(&net, node) - ids_before[i];
        let shares = net.shares_produced(Some(node)) - shares_before[i];
        if signless.contains(node) {
            assert_eq!((admitted, shares), (0, 0), "{node}");
            assert!(!notices_since(&net, notices, node)
                .iter()
                .any(|n| matches!(n, NodeNotice::ClientRequestAdmitted { .. })));
        } else {
            assert_eq!((admitted, shares), (1, 1), "{node}");
        }
        assert_eq!(n.open_signing_sessions(), 0, "{node}");
    }
    net.clear_faults();

    // A third node without clients: fewer than t list the client. Through the coordinator
    // core the request fails at once as a client refusal naming exactly those three.
    let signless = nodes[..3].to_vec();
    configure_clients(&mut net, &nodes[2], no_clients());
    let shares_before: Vec<usize> = signless
        .iter()
        .map(|n| net.shares_produced(Some(n)))
        .collect();
    let ids_before: Vec<usize> = signless
        .iter()
        .map(|n| remembered_requests(&net, n))
        .collect();
    let (mark, started) = (net.refused.len(), net.now());
    let wire = Wire::watch(&mut net);
    let result = net.sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"pay 10 to bob");
    match result {
        Err(ProtocolError::ClientNotAuthorized { refused, reason }) => {
            assert_eq!(refused, signless);
            assert!(reason.contains(&why), "{reason:?}");
        }
        other => panic!("expected a client refusal, got {other:?}"),
    }
    assert!(net.now().0 - started.0 < 1_000, "failed at a deadline");
    net.run(Duration::from_secs(1));
    for (i, node) in signless.iter().enumerate() {
        let refusals = refused_since(&net, mark, node);
        assert!(!refusals.is_empty(), "{node} was not asked");
        assert!(
            refusals
                .iter()
                .all(|e| *e == ProtocolError::Refused(refusal.clone())),
            "{node}: {refusals:?}"
        );
        // Its refusal, and a batch of pooled commitments: the core asks every healthy signer
        // for one as it starts a request, and a batch is bound to no request or client.
        let kinds = wire.kinds_from(node);
        assert!(
            kinds.contains(&MessageKind::SignRefusal),
            "{node}: {kinds:?}"
        );
        assert!(
            kinds
                .iter()
                .all(|k| matches!(k, MessageKind::SignRefusal | MessageKind::CommitmentBatch)),
            "{node} sent {kinds:?}"
        );
        assert_eq!(net.shares_produced(Some(node)), shares_before[i], "{node}");
        assert_eq!(remembered_requests(&net, node), ids_before[i], "{node}");
        assert_eq!(net.node(node).unwrap().open_signing_sessions(), 0);
    }
    net.clear_faults();

    // The next request goes in one round over those pooled commitments (request and package
    // at once): each node without clients refuses it just the same, and makes no share.
    let mark = net.refused.len();
    let wire = Wire::watch(&mut net);
    let result = net.sign_roast(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"pay 10 to carol",
    );
    match result {
        Err(ProtocolError::ClientNotAuthorized { refused, reason }) => {
            assert_eq!(refused, signless);
            assert!(reason.contains(&why), "{reason:?}");
        }
        other => panic!("expected a client refusal, got {other:?}"),
    }
    net.run(Duration::from_secs(1));
    let one_round: usize = signless
        .iter()
        .map(|n| wire.count_to(n, MessageKind::SignWithCommitment))
        .sum();
    assert!(
        one_round >= 1,
        "no node without clients was asked in one round"
    );
    for (i, node) in signless.iter().enumerate() {
        let refusals = refused_since(&net, mark, node);
        assert!(!refusals.is_empty(), "{node} was not asked");
        assert!(
            refusals
                .iter()
                .all(|e| *e == ProtocolError::Refused(refusal.clone())),
            "{node}: {refusals:?}"
        );
        let kinds = wire.kinds_from(node);
        assert!(
            !kinds.contains(&MessageKind::SignShare)
                && !kinds.contains(&MessageKind::SignCommitment),
            "{node} sent {kinds:?}"
        );
        assert_eq!(net.shares_produced(Some(node)), shares_before[i], "{node}");
        assert_eq!(remembered_requests(&net, node), ids_before[i], "{node}");
    }
    net.clear_faults();
}

/// A coordinator opens, with a valid approval from the sim operator (which the other nodes
/// list), a DKG and two reshares that include a node configured without `[operators]`. The
/// node refuses each open for lack of an approval from a key it lists, before it stores or
/// sends anything: no message at all, no request id, no concluded session or reshare record,
/// no share; the refusal is audited. A DKG needs every member, and so does a reshare of every
/// member it keeps: each fails on the node's refusal (`OpenRefused` naming it, for lack of an
/// approval), and every node keeps what it had. A reshare in which the node is only an old
/// dealer goes on without it and commits with the dealings of the other two.
fn a_node_with_no_operators_joins_no_dkg_or_reshare<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(702, 2, 3);
    let lone = nodes[2].clone();
    configure_operators(&mut net, &lone, no_operators());
    let ids_before = remembered_requests(&net, &lone);
    // The node is a committee member of every open below, with the sim operator's approval.
    let check_lone = |net: &Network<S>,
                      wire: &Wire,
                      mark: usize,
                      notices: usize,
                      refusal: &Refusal|
     -> SessionId {
        assert_eq!(
            refused_since(net, mark, &lone),
            vec![ProtocolError::Refused(refusal.clone())]
        );
        assert_eq!(wire.kinds_from(&lone), vec![], "the node took part");
        assert_eq!(remembered_requests(net, &lone), ids_before);
        let refused: Vec<SessionId> = notices_since(net, notices, &lone)
            .into_iter()
            .filter_map(|n| match n {
                NodeNotice::LifecycleRefused {
                    session,
                    refusal: r,
                    ..
                } if r == refusal => Some(*session),
                NodeNotice::LifecycleApproved { .. } | NodeNotice::ReshareJoined { .. } => {
                    panic!("the node joined")
                }
                _ => None,
            })
            .collect();
        let [session] = refused.as_slice() else {
            panic!("refused sessions: {refused:?}");
        };
        let n = net.node(&lone).unwrap();
        assert!(!n.store().unwrap().session_concluded(session).unwrap());
        assert!(!n.has_reshare_record(session));
        assert!(
            audited_refusals(net, &lone)
                .iter()
                .any(|d| d.ends_with(&format!("open of session {session} refused: {refusal}"))),
            "the refusal of {session} is not audited"
        );
        *session
    };

    // A DKG of a new key over the three: the node refuses, and the DKG ends at its refusal.
    let new_key = key_id("key-2");
    let approvals = dkg_approvals(&mut net, &new_key, 2, &nodes);
    let refusal = unlisted("dkg", &new_key, 1);
    let (mark, notices) = (net.refused.len(), net.notices.len());
    let wire = Wire::watch(&mut net);
    let result = net.run_dkg_approved(&coordinator, &new_key, 2, &nodes, approvals);
    assert_eq!(
        result.map(|_| ()),
        Err(ProtocolError::OpenRefused {
            node: lone.clone(),
            reason: ProtocolError::Refused(refusal.clone()).to_string(),
            not_approved: true,
        })
    );
    net.run(deadlines::DKG + Duration::from_secs(10));
    check_lone(&net, &wire, mark, notices, &refusal);
    for node in &nodes {
        assert_eq!(shares_held(&net, node, &new_key), vec![], "{node}");
    }
    // The others admitted the approval: it is not the approval that is wrong.
    for node in &nodes[..2] {
        assert!(
            notices_since(&net, notices, node)
                .iter()
                .any(|n| matches!(n, NodeNotice::LifecycleApproved { .. })),
            "{node} did not admit the approval"
        );
    }
    net.clear_faults();

    // A reshare that keeps the committee: the node is a new member, and it is needed.
    let keep = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let refusal = unlisted("reshare", &key, 1);
    let (mark, notices, events) = (net.refused.len(), net.notices.len(), net.events.len());
    let wire = Wire::watch(&mut net);
    let session = net.start_reshare(&coordinator, keep).unwrap();
    let result = net.finish_reshare(&coordinator, events);
    assert_eq!(
        result.map(|_| ()),
        Err(ProtocolError::OpenRefused {
            node: lone.clone(),
            reason: ProtocolError::Refused(refusal.clone()).to_string(),
            not_approved: true,
        })
    );
    net.run(deadlines::RESHARE + Duration::from_secs(10));
    assert_eq!(check_lone(&net, &wire, mark, notices, &refusal), session);
    for node in &nodes {
        assert_eq!(
            shares_held(&net, node, &key),
            vec![(Epoch(0), ShareState::Active)],
            "{node}"
        );
    }
    net.clear_faults();

    // A reshare onto the other two, dealt by all three: the node is only an old dealer. It
    // deals nothing; the reshare goes on with the other two dealings and commits.
    let mut onto_two = reshare_proposal(&net, &key, &nodes[0], &nodes[..2], 2, &nodes);
    onto_two.attempt = 1;
    let (mark, notices, events) = (net.refused.len(), net.notices.len(), net.events.len());
    let wire = Wire::watch(&mut net);
    let session = net.start_reshare(&coordinator, onto_two).unwrap();
    let package = net
        .finish_reshare(&coordinator, events)
        .unwrap_or_else(|e| panic!("the reshare did not go on without the node: {e}"));
    net.run(Duration::from_secs(5));
    assert_eq!(check_lone(&net, &wire, mark, notices, &refusal), session);
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    for node in &nodes[..2] {
        assert_eq!(
            shares_held(&net, node, &key),
            vec![(Epoch(1), ShareState::Active)],
            "{node}"
        );
    }
    // It never joined, so the certificate does not retire its share (see the next test).
    assert_eq!(
        shares_held(&net, &lone, &key),
        vec![(Epoch(0), ShareState::Active)]
    );
    net.clear_faults();
}

/// THREAT-MODEL.md, "an old member that refuses an approved reshare": the node lists another
/// operator (a custodian), not the one that approved a reshare that evicts it. It refuses the
/// open, takes no part, and the reshare commits without it; the certificate reaches it but
/// does not retire its epoch-0 share (the other two hold epoch 1 only), also after the
/// messages kept for an unknown session expired and after a restart. While that share is
/// there it refuses to join the key again, even once it lists the operator: as a new member
/// of the next reshare (which fails at once, naming it) and as a member of a new DKG of the
/// same key id, each with `key … already exists on this node`, before it reads the approval.
/// A fresh node in its place joins the same reshare.
fn an_old_member_that_refused_a_reshare_cannot_rejoin_the_key<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(703, 2, 3);
    let refuser = nodes[2].clone();
    let mut custodian_only = OperatorPolicy::default();
    custodian_only
        .all_keys
        .insert(OperatorKey(custodian().verifying_key().to_bytes()));
    configure_operators(&mut net, &refuser, custodian_only);

    // Reshare onto the other two (who deal), approved by the sim operator.
    let evict = reshare_proposal(&net, &key, &nodes[0], &nodes[..2], 2, &nodes[..2]);
    let (mark, notices, events) = (net.refused.len(), net.notices.len(), net.events.len());
    let wire = Wire::watch(&mut net);
    let session = net.start_reshare(&coordinator, evict).unwrap();
    let package = net
        .finish_reshare(&coordinator, events)
        .unwrap_or_else(|e| panic!("the reshare did not commit without the refuser: {e}"));
    net.run(Duration::from_secs(5));
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    let refusal = unlisted("reshare", &key, 1);
    assert_eq!(
        refused_since(&net, mark, &refuser),
        vec![ProtocolError::Refused(refusal.clone())]
    );
    assert!(notices_since(&net, notices, &refuser).iter().any(|n| matches!(n,
        NodeNotice::LifecycleRefused { session: s, refusal: r, .. } if *s == session && *r == refusal)));
    assert_eq!(wire.kinds_from(&refuser), vec![], "the refuser took part");
    assert!(!net.node(&refuser).unwrap().has_reshare_record(&session));
    // The certificate came to it, and changed nothing.
    assert!(wire.count_to(&refuser, MessageKind::ReshareCommit) >= 1);
    net.clear_faults();
    net.run(deadlines::EARLY_MESSAGE_MAX_AGE + Duration::from_secs(5));
    for node in &nodes[..2] {
        assert_eq!(
            shares_held(&net, node, &key),
            vec![(Epoch(1), ShareState::Active)],
            "{node} kept epoch 0"
        );
    }
    assert_eq!(
        shares_held(&net, &refuser, &key),
        vec![(Epoch(0), ShareState::Active)],
        "the refuser's epoch-0 share"
    );
    net.crash_and_restart(&refuser);
    assert_eq!(
        shares_held(&net, &refuser, &key),
        vec![(Epoch(0), ShareState::Active)],
        "the refuser's epoch-0 share after a restart"
    );

    // The refuser now lists the operator too: only its leftover share stands in the way.
    configure_operators(&mut net, &refuser, sim_operator_policy());
    let exists = ProtocolError::InvalidParameters(format!("key {key} already exists on this node"));
    let ids_before = remembered_requests(&net, &refuser);

    // The next reshare takes it back as a new member: it refuses, and the reshare fails.
    let rejoin = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes[..2]);
    assert_eq!(
        (rejoin.epoch, rejoin.old_committee.clone()),
        (Epoch(1), nodes[..2].to_vec())
    );
    let (mark, notices, events) = (net.refused.len(), net.notices.len(), net.events.len());
    let wire = Wire::watch(&mut net);
    let session = net.start_reshare(&coordinator, rejoin.clone()).unwrap();
    let result = net.finish_reshare(&coordinator, events);
    assert_eq!(
        result.map(|_| ()),
        Err(ProtocolError::OpenRefused {
            node: refuser.clone(),
            reason: exists.to_string(),
            not_approved: false,
        })
    );
    net.run(deadlines::RESHARE + Duration::from_secs(10));
    assert_eq!(refused_since(&net, mark, &refuser), vec![exists.clone()]);
    assert_eq!(wire.kinds_from(&refuser), vec![], "the refuser took part");
    assert!(!net.node(&refuser).unwrap().has_reshare_record(&session));
    // Refused before the approval was read: no request id, no approval, no refusal of it.
    assert_eq!(remembered_requests(&net, &refuser), ids_before);
    assert!(!notices_since(&net, notices, &refuser)
        .iter()
        .any(|n| matches!(
            n,
            NodeNotice::LifecycleApproved { .. } | NodeNotice::LifecycleRefused { .. }
        )));
    assert_eq!(
        shares_held(&net, &refuser, &key),
        vec![(Epoch(0), ShareState::Active)]
    );
    for node in &nodes[..2] {
        assert_eq!(
            shares_held(&net, node, &key),
            vec![(Epoch(1), ShareState::Active)],
            "{node}"
        );
    }
    net.clear_faults();

    // A new DKG of the same key id, over the refuser and two fresh nodes, by a coordinator
    // that builds it itself (the coordinator core knows the key): the refuser refuses it, and
    // the DKG ends at its refusal.
    let (fresh_a, fresh_b) = (net.add_node(), net.add_node());
    let mut committee = vec![refuser.clone(), fresh_a.clone(), fresh_b.clone()];
    committee.sort();
    let dkg = DkgCoordinator::<S>::new(
        key.clone(),
        2,
        committee.clone(),
        [0x73; 32],
        dkg_approvals(&mut net, &key, 2, &committee),
        Arc::new(SimVerifier),
        net.now(),
        deadlines::DKG,
    )
    .unwrap();
    let dkg_session = dkg.session();
    let (mark, events) = (net.refused.len(), net.events.len());
    let wire = Wire::watch(&mut net);
    net.start(&coordinator, Box::new(dkg), dkg_session);
    net.run(deadlines::DKG + Duration::from_secs(10));
    assert_eq!(refused_since(&net, mark, &refuser), vec![exists.clone()]);
    assert_eq!(wire.kinds_from(&refuser), vec![], "the refuser took part");
    assert!(!net
        .node(&refuser)
        .unwrap()
        .store()
        .unwrap()
        .session_concluded(&dkg_session)
        .unwrap());
    let failed: Vec<&ProtocolError> = net.events[events..]
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Failed(error) if *at == coordinator => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        vec![&ProtocolError::OpenRefused {
            node: refuser.clone(),
            reason: exists.to_string(),
            not_approved: false,
        }]
    );
    for node in [&fresh_a, &fresh_b] {
        assert_eq!(shares_held(&net, node, &key), vec![], "{node}");
    }
    assert_eq!(
        shares_held(&net, &refuser, &key),
        vec![(Epoch(0), ShareState::Active)]
    );
    net.clear_faults();

    // Control: a fresh node in the refuser's place joins the same reshare.
    let mut committee = nodes[..2].to_vec();
    committee.push(fresh_a.clone());
    let mut instead = reshare_proposal(&net, &key, &nodes[0], &committee, 2, &nodes[..2]);
    instead.attempt = rejoin.attempt + 1;
    let package = net
        .run_reshare(&coordinator, instead)
        .unwrap_or_else(|e| panic!("a fresh node could not join: {e}"));
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    assert_eq!(
        shares_held(&net, &fresh_a, &key),
        vec![(Epoch(2), ShareState::Active)]
    );
}

per_suite!(
    a_node_with_no_clients_signs_nothing,
    a_node_with_no_operators_joins_no_dkg_or_reshare,
    an_old_member_that_refused_a_reshare_cannot_rejoin_the_key,
);
