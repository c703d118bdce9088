//! The node core's own rules, through the simulator (whose nodes are the production
//! `NodeCore` over an in-memory store), on every suite: a crash right after each of its
//! persistence points, a failed write at each write site, the refusals it makes itself (a
//! second unconcluded reshare, an open from a non-coordinator, a PENDING share over an ACTIVE
//! one), and client request ids that survive a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use permafrost_engine::deadlines;
use permafrost_engine::node::{NodeNotice, NodeStore, ReshareRecord, MAX_STAGED_ADMISSIONS};
use permafrost_engine::sim::{Envelope, Fault, Network, SimVerifier};
use permafrost_keystore::AuditKind;
use permafrost_protocol::dkg::DkgCoordinator;
use permafrost_protocol::sign::SignerLimits;
use permafrost_protocol::wire::{
    ClientAuthorization, DerivationPath, Epoch, KeyId, Message, MessageKind, NodeId, Probe,
    SessionId, SignRequest,
};
use permafrost_protocol::{ProtocolError, Refusal, Session, Suite};

/// Every message each node sent, by kind, as the network saw it.
#[derive(Clone, Default)]
struct Sent(Rc<RefCell<Vec<(NodeId, MessageKind, SessionId)>>>);

impl Sent {
    /// Records every message from now on (and delivers it).
    fn watch<S: Suite>(net: &mut Network<S>) -> Self {
        Self::watch_with(net, |_| Fault::Deliver)
    }

    /// Records every message from now on, and lets `faults` decide what becomes of it.
    fn watch_with<S: Suite>(
        net: &mut Network<S>,
        mut faults: impl FnMut(&Envelope) -> Fault + 'static,
    ) -> Self {
        let sent = Sent::default();
        let log = sent.clone();
        net.set_faults(move |env| {
            log.0
                .borrow_mut()
                .push((env.from.clone(), env.message.kind(), env.message.session()));
            faults(env)
        });
        sent
    }

    fn count(&self, from: &NodeId, kind: MessageKind) -> usize {
        self.0
            .borrow()
            .iter()
            .filter(|(f, k, _)| f == from && *k == kind)
            .count()
    }

    /// Every message `from` sent, of any kind.
    fn total(&self, from: &NodeId) -> usize {
        self.0.borrow().iter().filter(|(f, _, _)| f == from).count()
    }
}

/// Makes `node`'s store let `after` writes of `operation` succeed and fail the next.
fn fail_write<S: Suite>(
    net: &mut Network<S>,
    node: &NodeId,
    operation: &'static str,
    after: usize,
) {
    net.node_mut(node)
        .unwrap()
        .core_mut()
        .unwrap()
        .store_mut()
        .fail_write(operation, after);
}

/// The notices `node` reported since `mark`.
fn notices_since<S: Suite>(net: &Network<S>, mark: usize, node: &NodeId) -> Vec<String> {
    net.notices[mark..]
        .iter()
        .filter(|(n, _)| n == node)
        .map(|(_, notice)| notice.to_string())
        .collect()
}

/// Whether `node` admitted a client request since `mark`.
fn admitted<S: Suite>(net: &Network<S>, mark: usize, node: &NodeId) -> bool {
    net.notices[mark..]
        .iter()
        .any(|(n, notice)| n == node && matches!(notice, NodeNotice::ClientRequestAdmitted { .. }))
}

/// Whether `node` reported a failed write of `operation` since `mark`.
fn write_failed<S: Suite>(net: &Network<S>, mark: usize, node: &NodeId, operation: &str) -> bool {
    net.notices[mark..].iter().any(|(n, notice)| {
        n == node
            && matches!(notice, NodeNotice::StoreFailed { operation: op, error, .. }
                if op.contains(operation) && error.to_string().contains("injected write failure"))
    })
}

// ---- DKG ------------------------------------------------------------------------------------

/// A crash right after the PENDING share is written, before the confirmation leaves: the DKG
/// fails naming the crashed node and no one activates the key. Every node keeps its PENDING
/// share: the crashed one does not know the outcome, and the others confirmed, so the
/// coordinator's unsigned abort deletes nothing (an operator decides, and discards them). The
/// nodes carry on: a new DKG over the same nodes signs.
fn dkg_crash_after_the_pending_share<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(101, 4);
    let victim = nodes[2].clone();
    net.crash_on(&victim, |n| matches!(n, NodeNotice::SharePending { .. }));
    let key = key_id("key-1");
    let error = net.run_dkg(&coordinator, &key, 3, &nodes).unwrap_err();
    assert!(error.culprits().contains(&victim), "{error}");
    net.run(Duration::from_secs(1));
    assert!(!anyone_active(&net, &nodes, &key));
    for node in &nodes {
        assert!(
            net.node(node).unwrap().pending_share(&key).is_some(),
            "{node} lost its pending share"
        );
    }
    for node in &nodes {
        let discarded = discard_as_operator(&mut net, node, &key, Epoch(0));
        assert_eq!(discarded.reshare, None);
        assert!(net.node(node).unwrap().pending_share(&key).is_none());
    }
    let key2 = key_id("key-2");
    let pkp = net.run_dkg(&coordinator, &key2, 3, &nodes).unwrap();
    signs(
        &mut net,
        &coordinator,
        &key2,
        Epoch(0),
        &pkp,
        &nodes,
        b"after",
    );
}

/// What `node` keeps of the operator approval of `session` after a crash: whether its audit
/// entry (of `kind`) survived, and whether the request ids it remembers grew from `before`.
fn approval_survived<S: Suite>(
    net: &Network<S>,
    node: &NodeId,
    session: SessionId,
    kind: AuditKind,
    before: usize,
) -> (bool, bool) {
    let store = net.node(node).unwrap().store().unwrap();
    let audited = store.audit_entries().any(|(e, _)| {
        e.kind == kind
            && e.detail.contains(&session.to_string())
            && e.detail.contains("approved by operator")
    });
    (audited, remembered_requests(net, node) > before)
}

/// The session `node` reported approved since `mark`.
fn approved_session<S: Suite>(net: &Network<S>, mark: usize, node: &NodeId) -> SessionId {
    net.notices[mark..]
        .iter()
        .find_map(|(n, notice)| match notice {
            NodeNotice::LifecycleApproved { session, .. } if n == node => Some(*session),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{node} approved nothing"))
}

/// A DKG open's approval is written lazily and made durable by the session's own record (one
/// sync): a crash right after the approval, before the round-1 package leaves, keeps the
/// approval's request id, its audit entry and the concluded session, so the node never joins
/// that session again and the DKG fails naming it.
fn a_dkg_approval_is_durable_with_its_session<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(150, 3);
    let victim = nodes[1].clone();
    let before = remembered_requests(&net, &victim);
    let (mark, sent) = (net.notices.len(), Sent::watch(&mut net));
    net.crash_on(&victim, |n| {
        matches!(n, NodeNotice::LifecycleApproved { .. })
    });
    let error = net
        .run_dkg(&coordinator, &key_id("key-1"), 2, &nodes)
        .unwrap_err();
    assert!(error.culprits().contains(&victim), "{error}");
    assert_eq!(sent.count(&victim, MessageKind::DkgRound1), 0);
    let session = approved_session(&net, mark, &victim);
    assert_eq!(
        approval_survived(&net, &victim, session, AuditKind::Dkg, before),
        (true, true),
        "the approval did not survive the crash"
    );
    let store = net.node(&victim).unwrap().store().unwrap();
    assert!(permafrost_engine::node::NodeStore::session_concluded(store, &session).unwrap());
}

/// A crash right after the share is activated: the restarted node starts its signer from the
/// store and signs.
fn dkg_crash_after_activation<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(102, 3);
    let victim = nodes[0].clone();
    net.crash_on(&victim, |n| matches!(n, NodeNotice::KeyActivated { .. }));
    let key = key_id("key-1");
    let pkp = net.run_dkg(&coordinator, &key, 3, &nodes).unwrap();
    assert!(net.node(&victim).unwrap().core().unwrap().signs_for(&key));
    let signers = signs(&mut net, &coordinator, &key, Epoch(0), &pkp, &nodes, b"m");
    assert!(signers.contains(&victim));
}

/// A failed write of the PENDING share: the node sends no confirmation, names the failed
/// write, and the DKG fails naming it; no node activates the key.
fn dkg_failed_pending_write_releases_nothing<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(103, 4);
    let victim = nodes[1].clone();
    let sent = Sent::watch(&mut net);
    let mark = net.notices.len();
    fail_write(&mut net, &victim, "put_pending", 0);
    let key = key_id("key-1");
    let error = net.run_dkg(&coordinator, &key, 3, &nodes).unwrap_err();
    assert!(error.culprits().contains(&victim), "{error}");
    assert_eq!(sent.count(&victim, MessageKind::DkgConfirm), 0);
    assert!(write_failed(&net, mark, &victim, "storing a pending share"));
    net.run(Duration::from_secs(1));
    assert!(!anyone_active(&net, &nodes, &key));
}

/// A failed activation: the node names it and does not sign with the share, which stays
/// PENDING for an operator; the others sign.
fn dkg_failed_activation_is_named<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(104, 4);
    let victim = nodes[3].clone();
    let mark = net.notices.len();
    fail_write(&mut net, &victim, "activate", 0);
    let key = key_id("key-1");
    let pkp = net.run_dkg(&coordinator, &key, 3, &nodes).unwrap();
    assert!(write_failed(&net, mark, &victim, "activating a share"));
    let node = net.node(&victim).unwrap();
    assert!(!node.core().unwrap().signs_for(&key));
    assert!(node.active_share(&key).is_none());
    assert!(node.pending_share(&key).is_some());
    let signers = signs(&mut net, &coordinator, &key, Epoch(0), &pkp, &nodes, b"m");
    assert!(!signers.contains(&victim));
}

/// Only a coordinator opens a DKG; a node refuses an open for a key it holds.
fn dkg_opens_only_from_a_coordinator_for_a_new_key<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(105, 2, 3);
    let open = |key: &KeyId, net: &mut Network<S>| {
        let dkg = DkgCoordinator::<S>::new(
            key.clone(),
            2,
            nodes.clone(),
            [9; 32],
            dkg_approvals(net, key, 2, &nodes),
            Arc::new(SimVerifier),
            net.now(),
            deadlines::DKG,
        )
        .unwrap();
        let mut dkg = dkg;
        let mut open = None;
        while let Some(output) = dkg.poll_output() {
            if let permafrost_protocol::Output::Send {
                message: m @ Message::DkgOpen(_),
                ..
            } = output
            {
                open = Some(m);
            }
        }
        open.unwrap()
    };
    let refused_before = net.refused.len();
    let fresh = open(&key_id("key-2"), &mut net);
    net.inject(&nodes[0], &nodes[1], fresh);
    let again = open(&key, &mut net);
    net.inject(&coordinator, &nodes[2], again);
    net.run(Duration::from_millis(100));
    let refusals: Vec<_> = net.refused[refused_before..]
        .iter()
        .map(|r| (r.at.clone(), r.error.clone()))
        .collect();
    assert!(
        refusals.iter().any(|(at, e)| *at == nodes[1]
            && matches!(e, ProtocolError::Refused(Refusal::NotFromCoordinator(n)) if *n == nodes[0])),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|(at, e)| *at == nodes[2]
            && matches!(e, ProtocolError::InvalidParameters(why) if why.contains("already exists"))),
        "{refusals:?}"
    );
    assert!(net
        .node(&nodes[1])
        .unwrap()
        .pending_share(&key_id("key-2"))
        .is_none());
}

/// A DKG's share for a key whose epoch became ACTIVE on the node meanwhile (since the node
/// refuses a second DKG of a running key id, here an ACTIVE share put in its store behind its
/// back, as a restored backup would): it is never stored over the ACTIVE share, the node says
/// so and sends no confirmation, and the ACTIVE share is untouched.
fn no_pending_share_over_an_active_one<S: Suite>() {
    let (mut net, nodes, coordinator, other, _) = network_with_key::<S>(106, 2, 3);
    let key = key_id("key-2");
    let sent = Sent::watch_with(&mut net, |env| match &env.message {
        // Round 2 starts late enough for the ACTIVE share to be put in place first.
        Message::DkgRound1Set(_) => Fault::Delay(Duration::from_secs(1)),
        _ => Fault::Deliver,
    });
    let dkg = DkgCoordinator::<S>::new(
        key.clone(),
        2,
        nodes.clone(),
        [1; 32],
        dkg_approvals(&mut net, &key, 2, &nodes),
        Arc::new(SimVerifier),
        net.now(),
        deadlines::DKG,
    )
    .unwrap();
    let id = dkg.session();
    net.start(&coordinator, Box::new(dkg), id);
    net.run(Duration::from_millis(200));
    let victim = nodes[0].clone();
    let core = net.node_mut(&victim).unwrap().core_mut().unwrap();
    let (_, _, share) = core.store().shares_of(&other)[0];
    let mut planted = share.clone();
    planted.key_id = key.clone();
    core.store_mut().install_active(planted.clone());
    let mark = net.notices.len();
    net.run(Duration::from_secs(deadlines::DKG.as_secs() * 2));
    assert!(
        net.notices[mark..].iter().any(|(n, notice)| *n == victim
            && matches!(notice, NodeNotice::PendingOverActiveRefused { .. })),
        "{:?}",
        notices_since(&net, mark, &victim)
    );
    assert_eq!(sent.count(&victim, MessageKind::DkgConfirm), 0);
    let kept = net.node(&victim).unwrap().store().unwrap().shares_of(&key);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1, permafrost_keystore::ShareState::Active);
    assert_eq!(
        kept[0].2.key_package, planted.key_package,
        "the ACTIVE share changed"
    );
}

// ---- Signing admission ----------------------------------------------------------------------

/// A crash right after a client request is admitted, before anything is synced: ROAST signs
/// with the others. The admission was not synced, so the restarted node has forgotten it — and
/// it released nothing on it: the approval made no share of this node. The nodes that signed
/// synced their admissions before their shares left, so a replay of the approval in another
/// session is refused by them, also after a restart: no share of theirs, and no signature.
fn crash_after_admission_releases_nothing<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(107, 3, 5);
    let victim = nodes[0].clone();
    net.crash_on(&victim, |n| {
        matches!(n, NodeNotice::ClientRequestAdmitted { .. })
    });
    let message = b"pay 10";
    let approval = net.authorize(&key, &pkp, message);
    let before = remembered_requests(&net, &victim);
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            message,
            approval.clone(),
        )
        .unwrap();
    verify_independently(&pkp, message, &outcome.signature);
    assert!(
        admitted(&net, 0, &victim),
        "the crash point was never reached"
    );
    assert!(!outcome.signers.contains(&victim));
    assert_eq!(net.shares_produced(Some(&victim)), 0);
    assert_eq!(
        remembered_requests(&net, &victim),
        before,
        "an unsynced admission survived the crash"
    );
    for node in &outcome.signers {
        net.crash_and_restart(node);
    }
    let produced: usize = outcome
        .signers
        .iter()
        .map(|n| net.shares_produced(Some(n)))
        .sum();
    let replay = net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        message,
        approval,
    );
    assert!(
        matches!(replay, Err(ProtocolError::ClientNotAuthorized { .. })),
        "{replay:?}"
    );
    // The signers of the first request refuse the replay. (The victim, which lost its
    // admission in the crash, may admit it and, asked in one round, make a share: no `t` can.)
    let replayed: usize = outcome
        .signers
        .iter()
        .map(|n| net.shares_produced(Some(n)))
        .sum();
    assert_eq!(replayed, produced);
}

/// Holds (`true`) or lets end (`false`) every sync `node`'s store starts from now on.
fn hold_sync_ends<S: Suite>(net: &mut Network<S>, node: &NodeId, hold: bool) {
    net.node_mut(node)
        .unwrap()
        .core_mut()
        .unwrap()
        .store_mut()
        .hold_sync_ends(hold);
}

/// Whether `entry` is a signature's admission or its share's entry.
fn signature_entry(entry: &permafrost_keystore::AuditEntry) -> bool {
    matches!(
        entry.kind,
        AuditKind::ClientRequest | AuditKind::SignatureShare
    )
}

/// Group commit off the loop, through the node core: while a node's sync runs, it goes on
/// with the next signature, whose share waits for the sync after it. When the first sync ends
/// its share leaves, and the second sync starts at once (for everything that came meanwhile);
/// the second share leaves when that one ends. Each share leaves only after a sync that began
/// after its entries were written has ended.
fn a_share_waits_for_its_own_sync_while_the_node_goes_on<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(114, 3, 5);
    let victim = nodes[0].clone();
    hold_sync_ends(&mut net, &victim, true);
    let sent = Sent::watch(&mut net);
    let v = victim.clone();
    let held = move |n: &Network<S>, shares: usize| {
        n.node(&v)
            .and_then(|node| node.core())
            .is_some_and(|core| core.held_shares() == shares)
    };
    let start = |net: &mut Network<S>, message: &[u8], request: u8| {
        start_roast(
            net,
            &coordinator,
            &key,
            &pkp,
            &nodes,
            message,
            SessionId([request; 32]),
        )
    };
    let first = start(&mut net, b"first", 14);
    let h = held.clone();
    net.run_until(Duration::from_secs(1), move |n| h(n, 1));
    assert!(held(&net, 1));
    let syncs = net.node(&victim).unwrap().store().unwrap().syncs();
    start(&mut net, b"second", 15);
    let h = held.clone();
    net.run_until(Duration::from_secs(1), move |n| h(n, 2));
    assert!(
        held(&net, 2),
        "the node did not go on with the second signature"
    );
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 0);
    assert_eq!(net.node(&victim).unwrap().store().unwrap().syncs(), syncs);

    // The first sync ends: its share is released; the second's sync starts.
    {
        let core = net.node_mut(&victim).unwrap().core_mut().unwrap();
        core.store_mut().hold_sync_ends(false);
        assert!(core.sync_ended());
        core.store_mut().hold_sync_ends(true);
        assert!(core.sync_running(), "the next sync did not start");
        assert_eq!(core.held_shares(), 1);
        assert!(!core.sync_ended(), "the second sync ended while held");
    }
    net.run(Duration::from_millis(1));
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 1);
    assert_eq!(
        net.node(&victim).unwrap().store().unwrap().syncs(),
        syncs + 1,
        "one sync for the first share"
    );

    // The second ends: its share is released, and both signatures come out with the node.
    {
        let core = net.node_mut(&victim).unwrap().core_mut().unwrap();
        core.store_mut().hold_sync_ends(false);
        assert!(core.sync_ended());
        assert!(!core.sync_running());
        assert_eq!(core.held_shares(), 0);
    }
    net.run(Duration::from_millis(1));
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 2);
    assert_eq!(
        net.node(&victim).unwrap().store().unwrap().syncs(),
        syncs + 2
    );
    // Both requests end, each signed with the node (in whatever order their shares arrive).
    net.run(deadlines::SIGNING_ATTEMPT / 2);
    let public_key = pkp.verifying_key().serialize().unwrap();
    for message in [&b"first"[..], &b"second"[..]] {
        let signed: Vec<&Vec<NodeId>> = net.events[first..]
            .iter()
            .filter_map(|(at, event)| match event {
                permafrost_protocol::Event::SignatureReady {
                    signature, signers, ..
                } if at == &coordinator => {
                    let bytes = signature.serialize().unwrap();
                    permafrost_verifiers::verify(S::CURVE, &public_key, message, &bytes)
                        .is_ok()
                        .then_some(signers)
                }
                _ => None,
            })
            .collect();
        assert_eq!(signed.len(), 1, "{message:?} was not signed once");
        assert!(signed[0].contains(&victim), "{:?}", signed[0]);
    }
    let store = net.node(&victim).unwrap().store().unwrap();
    assert!(store
        .audit_entries()
        .filter(|(e, _)| signature_entry(e))
        .all(|(_, durable)| durable));
}

/// A coordinator that floods a node whose keystore sync hangs cannot make it hold more than
/// `MAX_STAGED_ADMISSIONS` admissions waiting for the keystore: beyond them every signing
/// request is refused at once with a `Limit` that says so, and no share leaves. Once the sync
/// ends, the node writes what it held and signs with the others again.
fn a_flood_while_the_sync_hangs_is_refused_beyond_the_staged_cap<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(116, 2, 3);
    let victim = nodes[0].clone();
    hold_sync_ends(&mut net, &victim, true);
    let remembered = remembered_requests(&net, &victim);
    let sent = Sent::watch(&mut net);
    // A signature whose share waits on the held sync: a sync is running.
    let first = start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        b"first",
        SessionId([16; 32]),
    );
    let v = victim.clone();
    net.run_until(Duration::from_secs(1), move |n| {
        n.node(&v)
            .and_then(|node| node.core())
            .is_some_and(|core| core.held_shares() == 1)
    });
    assert!(net.node(&victim).unwrap().core().unwrap().sync_running());

    let extra = 40;
    let mark = net.refused.len();
    for i in 0..MAX_STAGED_ADMISSIONS + extra {
        let message = format!("flood {i}").into_bytes();
        let client = net.authorize(&key, &pkp, &message);
        let mut session = [0xF1; 32];
        session[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let request = SignRequest {
            session: SessionId(session),
            key_id: key.clone(),
            epoch: Epoch(0),
            message,
            path: DerivationPath::ROOT,
            client: Some(client),
        };
        net.inject(&coordinator, &victim, Message::SignRequest(request));
    }
    net.run(Duration::from_millis(10));
    let waiting = refused_since(&net, mark, &victim)
        .into_iter()
        .filter(|e| {
            matches!(e, ProtocolError::Refused(Refusal::Limit(why))
                if why.contains("admissions wait for the keystore"))
        })
        .count();
    assert_eq!(
        waiting, extra,
        "exactly the requests beyond the cap are refused for the keystore"
    );
    let core = net.node(&victim).unwrap().core().unwrap();
    assert!(core.sync_running(), "the sync still hangs");
    assert_eq!(core.held_shares(), 1, "the flood holds no share");
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 0);

    // The sync ends: the first share leaves and completes its signature. Once the flood's
    // nonces expire (the signer's own cap on open sessions refused part of it), the node signs
    // again.
    {
        let core = net.node_mut(&victim).unwrap().core_mut().unwrap();
        core.store_mut().hold_sync_ends(false);
        assert!(core.sync_ended());
    }
    let (signers, _) = roast_outcome(&mut net, &coordinator, first, &pkp, b"first").unwrap();
    assert!(signers.contains(&victim), "{signers:?}");
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 1);
    // Every admission it held is now in its store (with the first signature's), none lost.
    assert_eq!(
        remembered_requests(&net, &victim),
        remembered + 1 + MAX_STAGED_ADMISSIONS
    );
    net.advance(SignerLimits::default().session_timeout + Duration::from_secs(1));
    let after = start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        b"after",
        SessionId([17; 32]),
    );
    let (signers, culprits) = roast_outcome(&mut net, &coordinator, after, &pkp, b"after").unwrap();
    assert!(signers.contains(&victim), "{signers:?}");
    assert!(culprits.is_empty());
}

/// Group commit, through the node core: a node computes its share but crashes before it is
/// durable — before the flush that would write its admission and the share's audit entry and
/// start their sync, or while that sync runs (on its own thread, the node going on). No share
/// leaves; after the restart neither entry is on its disk (they were never promised to
/// anyone), its nonce is gone, and ROAST signs with the others. The other nodes' shares left
/// only after their sync: their share audit entries are durable.
fn a_crash_before_the_sync_releases_no_share<S: Suite>() {
    for (case, while_syncing) in [("before the flush", false), ("while the sync runs", true)] {
        let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(112, 3, 5);
        let victim = nodes[0].clone();
        if while_syncing {
            hold_sync_ends(&mut net, &victim, true);
        } else {
            net.node_mut(&victim).unwrap().hold_syncs(true);
        }
        let sent = Sent::watch(&mut net);
        let before = remembered_requests(&net, &victim);
        let message = b"pay 30";
        let mark = start_roast(
            &mut net,
            &coordinator,
            &key,
            &pkp,
            &nodes,
            message,
            SessionId([12; 32]),
        );
        let v = victim.clone();
        net.run_until(Duration::from_secs(1), |n| {
            n.node(&v)
                .and_then(|node| node.core())
                .is_some_and(|core| core.held_shares() == 1)
        });
        let core = net.node(&victim).unwrap().core().unwrap();
        assert_eq!(
            core.held_shares(),
            1,
            "{case}: the victim computed no share"
        );
        assert_eq!(core.sync_running(), while_syncing, "{case}");
        let written: Vec<bool> = core
            .store()
            .audit_entries()
            .filter(|(e, _)| signature_entry(e))
            .map(|(_, durable)| durable)
            .collect();
        if while_syncing {
            assert!(
                !written.is_empty() && written.iter().all(|durable| !durable),
                "{case}: the entries are written and wait for the sync: {written:?}"
            );
        } else {
            assert!(written.is_empty(), "{case}: the entries wait for the flush");
        }
        assert_eq!(sent.count(&victim, MessageKind::SignShare), 0, "{case}");

        net.crash_and_restart(&victim);
        let store = net.node(&victim).unwrap().store().unwrap();
        assert!(
            store.audit_entries().all(|(e, _)| !signature_entry(e)),
            "{case}: an unsynced write survived the crash"
        );
        assert_eq!(
            remembered_requests(&net, &victim),
            before,
            "{case}: an unsynced admission survived"
        );
        assert_eq!(net.node(&victim).unwrap().open_signing_sessions(), 0);

        let (signers, _) = roast_outcome(&mut net, &coordinator, mark, &pkp, message).unwrap();
        assert!(!signers.contains(&victim), "{case}");
        assert_eq!(sent.count(&victim, MessageKind::SignShare), 0, "{case}");
        for signer in &signers {
            let store = net.node(signer).unwrap().store().unwrap();
            assert!(store
                .audit_entries()
                .any(|(e, durable)| durable && e.kind == AuditKind::SignatureShare));
        }
    }
}

/// Request ids survive a restart of every node: a replayed approval is refused by all.
fn client_request_ids_survive_a_restart<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(108, 3, 5);
    let message = b"pay 20";
    let approval = net.authorize(&key, &pkp, message);
    net.sign_roast_as(
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        message,
        approval.clone(),
    )
    .unwrap();
    for node in &nodes {
        net.crash_and_restart(node);
    }
    for node in &nodes {
        assert_replay_refused(
            &mut net,
            &coordinator,
            &key,
            &pkp,
            &nodes,
            message,
            approval.clone(),
            node,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn assert_replay_refused<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &KeyId,
    pkp: &frost_core::keys::PublicKeyPackage<S>,
    nodes: &[NodeId],
    message: &[u8],
    approval: ClientAuthorization,
    node: &NodeId,
) {
    let before = net.refused.len();
    let shares = net.shares_produced(Some(node));
    let _ = net.sign_roast_as(coordinator, key, Epoch(0), pkp, nodes, message, approval);
    net.run(Duration::from_secs(1));
    assert!(
        net.refused[before..].iter().any(|r| r.at == *node
            && matches!(&r.error, ProtocolError::Refused(Refusal::ClientNotAuthorized(why)) if why.contains("already used"))),
        "{node} did not refuse the replay"
    );
    assert_eq!(net.shares_produced(Some(node)), shares);
}

/// Replacing a node's client policy keeps the request ids it admitted, also one staged and not
/// yet written (a reload from the store would miss it): a replay of that approval in another
/// session is still refused by the gate.
fn a_policy_change_keeps_staged_request_ids<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(113, 3, 5);
    let victim = nodes[0].clone();
    net.node_mut(&victim).unwrap().hold_syncs(true);
    let before = remembered_requests(&net, &victim);
    let mark = net.notices.len();
    let message = b"pay 40";
    let approval = net.authorize(&key, &pkp, message);
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            message,
            approval.clone(),
        )
        .unwrap();
    verify_independently(&pkp, message, &outcome.signature);
    assert!(admitted(&net, mark, &victim), "the victim was not asked");
    assert_eq!(
        remembered_requests(&net, &victim),
        before,
        "the admission is staged, not written"
    );
    net.set_client_policy(&victim, permafrost_engine::sim::sim_client_policy())
        .unwrap();
    assert_replay_refused(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        message,
        approval,
        &victim,
    );
}

/// The keystore's second line, from the attacker's side: an approval the gate does not
/// remember but the store holds for another session (written here behind the running node's
/// back, as a restored backup or a clock set back could leave it) is replayed by the
/// coordinator. The gate admits it; the store's write refuses it (`Conflict`); the session is
/// revoked, no share of it leaves the node, and ROAST signs with the others.
fn the_store_refuses_an_approval_the_gate_forgot<S: Suite>() {
    use permafrost_engine::node::NodeStore as _;
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(114, 3, 5);
    let victim = nodes[0].clone();
    let message = b"pay 50";
    let approval = net.authorize(&key, &pkp, message);
    let row = permafrost_keystore::ClientRequestRow {
        client: approval.public_key,
        request_id: approval.request_id,
        session: [0xee; 32],
        expires_unix_ms: approval.timestamp_ms
            + permafrost_protocol::sign::client::REQUEST_ID_RETENTION.as_millis() as u64,
    };
    let entry = permafrost_keystore::AuditEntry {
        time_unix_ms: approval.timestamp_ms,
        kind: AuditKind::ClientRequest,
        key_id: key.to_string(),
        epoch: 0,
        message_digest: None,
        requester: None,
        detail: "admitted elsewhere".into(),
        client: None,
    };
    let store = net
        .node_mut(&victim)
        .unwrap()
        .core_mut()
        .unwrap()
        .store_mut();
    store
        .admit_client_request(&row, &entry, approval.timestamp_ms)
        .unwrap();
    store.sync().unwrap();
    let sent = Sent::watch(&mut net);
    let mark = net.notices.len();
    let outcome = net
        .sign_roast_as(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            message,
            approval,
        )
        .unwrap();
    verify_independently(&pkp, message, &outcome.signature);
    assert!(
        admitted(&net, mark, &victim),
        "the gate did not admit it: the store's line was not reached"
    );
    assert!(
        net.notices[mark..].iter().any(|(n, notice)| *n == victim
            && matches!(notice, NodeNotice::StoreFailed { error, .. }
                if error.to_string().contains("already admitted in session"))),
        "the store did not refuse it"
    );
    assert!(!outcome.signers.contains(&victim));
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 0);
}

/// A failed batch write (the admissions and share records of one flush): the shares waiting on
/// it are never sent nor noticed as produced, the failure is named, and ROAST signs with the
/// others. The commitment
/// went out before (it reveals nothing); its nonce was consumed for the withheld share.
fn failed_batch_write_releases_no_share<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(109, 3, 5);
    // The first signature asks the committee's first t (the coordinator rotates from there).
    let victim = nodes[0].clone();
    let sent = Sent::watch(&mut net);
    let mark = net.notices.len();
    // The flush after the request (admission, not synced) passes; the one that would release
    // the share fails.
    fail_write(&mut net, &victim, "write_batch", 1);
    let signers = signs(&mut net, &coordinator, &key, Epoch(0), &pkp, &nodes, b"m");
    assert!(!signers.contains(&victim));
    assert_eq!(sent.count(&victim, MessageKind::SignCommitment), 1);
    // The share was computed, but is not noticed as produced: its entry never became durable
    // (the failure is what is noticed).
    assert_eq!(net.shares_produced(Some(&victim)), 0);
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 0);
    assert!(write_failed(
        &net,
        mark,
        &victim,
        "share audit entries (shares not sent)"
    ));
    let store = net.node(&victim).unwrap().store().unwrap();
    assert!(store
        .audit_entries()
        .all(|(e, _)| e.kind != AuditKind::SignatureShare));
}

/// A batch whose write fails keeps its admissions for the next flush: the share made later
/// under such an admission leaves only once the admission is on disk with it.
fn a_failed_batch_keeps_its_admissions_for_the_next<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(113, 3, 5);
    let victim = nodes[0].clone();
    let before = remembered_requests(&net, &victim);
    let sent = Sent::watch(&mut net);
    let mark = net.notices.len();
    // The flush after the request (the admission alone) fails.
    fail_write(&mut net, &victim, "write_batch", 0);
    let signers = signs(&mut net, &coordinator, &key, Epoch(0), &pkp, &nodes, b"m");
    assert!(write_failed(&net, mark, &victim, "share audit entries"));
    assert!(signers.contains(&victim), "{signers:?}");
    assert_eq!(sent.count(&victim, MessageKind::SignShare), 1);
    assert_eq!(
        remembered_requests(&net, &victim),
        before + 1,
        "the admission was lost"
    );
    // The retried admission is on disk, and the share's record: in two entries if the retry
    // was written before the share was made, or one (the admission saying the share was made
    // too) if they went in the same write.
    let store = net.node(&victim).unwrap().store().unwrap();
    let durable: Vec<(AuditKind, bool)> = store
        .audit_entries()
        .filter(|(e, durable)| {
            *durable && matches!(e.kind, AuditKind::ClientRequest | AuditKind::SignatureShare)
        })
        .map(|(e, _)| (e.kind.clone(), e.client.is_some()))
        .collect();
    assert!(
        durable
            == vec![
                (AuditKind::ClientRequest, true),
                (AuditKind::SignatureShare, false)
            ]
            || durable == vec![(AuditKind::SignatureShare, true)],
        "{durable:?}"
    );
}

// ---- Reshare --------------------------------------------------------------------------------

/// A node refuses a second reshare of a key while one is unconcluded on it, names the first,
/// records nothing of the second, and asks the coordinator for the first one's outcome.
fn a_second_unconcluded_reshare_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(111, 2, 3);
    let member = nodes[1].clone();
    // The first reshare's commit never reaches `member`, so it stays unconcluded there.
    let m = member.clone();
    let sent = Sent::watch_with(&mut net, move |env| match &env.message {
        Message::ReshareCommit(_) | Message::SessionStatus(_) if env.to == m || env.from == m => {
            Fault::Drop
        }
        _ => Fault::Deliver,
    });
    let first = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let first = net.start_reshare(&coordinator, first).unwrap();
    net.run(Duration::from_secs(5));
    assert!(net.node(&member).unwrap().has_reshare_record(&first));
    let mut second = reshare_proposal(&net, &key, &member, &nodes, 3, &nodes);
    second.attempt = 1;
    let statuses = sent.count(&member, MessageKind::SessionStatus);
    let before = net.refused.len();
    let second = net.start_reshare(&coordinator, second).unwrap();
    net.run(Duration::from_millis(200));
    let refusal = net.refused[before..]
        .iter()
        .find(|r| r.at == member && r.kind == "ReshareOpen")
        .map(|r| r.error.to_string())
        .unwrap_or_else(|| panic!("{member} did not refuse the second open"));
    assert!(refusal.contains("not concluded here yet"), "{refusal}");
    assert!(refusal.contains(&first.to_string()), "{refusal}");
    assert!(!net.node(&member).unwrap().has_reshare_record(&second));
    assert!(sent.count(&member, MessageKind::SessionStatus) > statuses);
}

/// Each persistence point of a reshare, with a failed write there: nothing that depends on the
/// write leaves the node, the failure is named, and the old epoch still signs.
fn failed_reshare_writes_release_nothing<S: Suite>() {
    // (operation, how many earlier writes of it succeed, the victim's index (5 = the fresh
    // node), the message that must not leave it, the failure named)
    // (A dealer's dealing has no write of its own: its record, the first site, says it deals.)
    let sites: [(&str, usize, usize, MessageKind, &str); 2] = [
        (
            "put_reshare",
            0,
            0,
            MessageKind::ReshareDealing,
            "cannot record the reshare",
        ),
        (
            "put_pending",
            0,
            5,
            MessageKind::ReshareConfirm,
            "storing a pending share",
        ),
    ];
    for (seed, (operation, after, victim, withheld, named)) in sites.into_iter().enumerate() {
        let (mut net, nodes, coordinator, key, pkp) =
            network_with_key::<S>(120 + seed as u64, 3, 5);
        let fresh = net.add_node();
        let victim = if victim == 5 {
            fresh.clone()
        } else {
            nodes[victim].clone()
        };
        let mut new_committee = nodes[..4].to_vec();
        new_committee.push(fresh);
        fail_write(&mut net, &victim, operation, after);
        let sent = Sent::watch(&mut net);
        let mark = net.notices.len();
        let refused = net.refused.len();
        let p = reshare_proposal(&net, &key, &nodes[0], &new_committee, 3, &nodes[..4]);
        let outcome = net.run_reshare(&coordinator, p);
        assert!(outcome.is_err(), "{operation}: the reshare committed");
        assert_eq!(
            sent.count(&victim, withheld),
            0,
            "{operation}: {withheld:?} left"
        );
        let named_in_notice = notices_since(&net, mark, &victim)
            .iter()
            .any(|n| n.contains(named) && n.contains("injected write failure"));
        let named_in_refusal = net.refused[refused..]
            .iter()
            .any(|r| r.at == victim && r.error.to_string().contains(named));
        assert!(
            named_in_notice || named_in_refusal,
            "{operation}: failure not named"
        );
        net.clear_faults();
        net.run(Duration::from_secs(120));
        signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            b"old epoch",
        );
    }
}

/// A reshare open's approval is written lazily and made durable by the reshare's record (one
/// sync): a crash right after the approval, before anything of the session leaves, keeps the
/// approval's request id, its audit entry and the record, from which the restarted node
/// resumes the reshare.
fn a_reshare_approval_is_durable_with_its_record<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(151, 2, 3);
    let victim = nodes[2].clone();
    let before = remembered_requests(&net, &victim);
    let mark = net.notices.len();
    net.crash_on(&victim, |n| {
        matches!(n, NodeNotice::LifecycleApproved { .. })
    });
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let session = net.start_reshare(&coordinator, p).unwrap();
    net.run_until(Duration::from_secs(1), |n| {
        n.notices[mark..].iter().any(|(node, notice)| {
            node == &victim && matches!(notice, NodeNotice::LifecycleApproved { .. })
        })
    });
    assert_eq!(approved_session(&net, mark, &victim), session);
    assert_eq!(
        approval_survived(&net, &victim, session, AuditKind::Reshare, before),
        (true, true),
        "the approval did not survive the crash"
    );
    assert!(net.node(&victim).unwrap().has_reshare_record(&session));
}

/// A dealer's open is one synced write before its dealing leaves: the operator approval, the
/// reshare record and the fact that it deals reach the disk together (the record says it
/// dealt), where the dealing used to take a synced write of its own.
fn a_dealer_syncs_once_before_its_dealing_leaves<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(152, 2, 3);
    let dealer = nodes[0].clone();
    let syncs = |net: &Network<S>| net.node(&dealer).unwrap().store().unwrap().syncs();
    let before = syncs(&net);
    let mark = net.notices.len();
    let sent = Sent::watch(&mut net);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let session = net.start_reshare(&coordinator, p).unwrap();
    net.run_until(Duration::from_secs(1), |n| {
        n.notices[mark..]
            .iter()
            .any(|(node, notice)| node == &dealer && matches!(notice, NodeNotice::Dealt { .. }))
    });
    assert_eq!(sent.count(&dealer, MessageKind::ReshareDealing), 1);
    assert_eq!(
        syncs(&net) - before,
        1,
        "the dealer synced more than once before its dealing left"
    );
    let records = net
        .node(&dealer)
        .unwrap()
        .store()
        .unwrap()
        .reshares()
        .unwrap();
    let record = records
        .iter()
        .find(|(s, _)| *s == session)
        .map(|(_, r)| r.as_ref().unwrap())
        .expect("no record of the reshare");
    assert!(record.dealt, "the record does not say the node dealt");
    // The reshare completes as before.
    net.run(Duration::from_secs(5));
    assert!(!net.node(&dealer).unwrap().has_reshare_record(&session));
}

/// A reshare whose record is on disk but whose session is gone (a session dropped after its
/// record was written, or a record kept for an operator): an open of that session is
/// refused, so the node never deals twice in one session.
fn a_recorded_reshare_is_not_joined_twice<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(131, 2, 3);
    let victim = nodes[0].clone();
    let captured: Rc<RefCell<Option<Message>>> = Rc::default();
    let c = captured.clone();
    let v = victim.clone();
    let sent = Sent::watch_with(&mut net, move |env| {
        if let Message::ReshareOpen(_) = &env.message {
            if env.to == v {
                c.borrow_mut().get_or_insert_with(|| env.message.clone());
                return Fault::Drop;
            }
        }
        Fault::Deliver
    });
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let session = net.start_reshare(&coordinator, p).unwrap();
    net.run(Duration::from_millis(100));
    let Some(Message::ReshareOpen(open)) = captured.borrow_mut().take() else {
        panic!("no open was sent to the node");
    };
    // The record as the node's open wrote it; its session is not running.
    let record = ReshareRecord {
        coordinator: coordinator.clone(),
        dealt: true,
        open: open.clone(),
    };
    net.node_mut(&victim)
        .unwrap()
        .core_mut()
        .unwrap()
        .store_mut()
        .put_reshare(&record)
        .unwrap();
    assert!(net.node(&victim).unwrap().has_reshare_record(&session));
    let before = net.refused.len();
    net.inject(&coordinator, &victim, Message::ReshareOpen(open));
    net.run(Duration::from_millis(100));
    assert!(net.refused[before..].iter().any(
        |r| r.at == victim && matches!(r.error, ProtocolError::Refused(Refusal::SessionExists))
    ));
    assert_eq!(sent.count(&victim, MessageKind::ReshareDealing), 0);
}

/// A failed conclusion write keeps both epochs on that node (never neither), and says so.
fn failed_reshare_conclusion_keeps_both_epochs<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(130, 2, 3);
    let victim = nodes[2].clone();
    fail_write(&mut net, &victim, "conclude_reshare", 0);
    let mark = net.notices.len();
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let package = net.run_reshare(&coordinator, p).unwrap();
    assert!(write_failed(&net, mark, &victim, "concluding a reshare"));
    let node = net.node(&victim).unwrap();
    assert_eq!(node.active_share(&key).unwrap().epoch, Epoch(0));
    assert_eq!(node.pending_share(&key).unwrap().epoch, Epoch(1));
    // The others promoted; the new epoch signs with them all the same (t = 3 of 3 needs the
    // victim: it is asked after a restart, which resumes the reshare and learns the commit).
    net.crash_and_restart(&victim);
    net.run(Duration::from_secs(120));
    let node = net.node(&victim).unwrap();
    assert_eq!(node.active_share(&key).unwrap().epoch, Epoch(1));
    assert!(node.pending_share(&key).is_none());
    signs(
        &mut net,
        &coordinator,
        &key,
        Epoch(1),
        &package,
        &nodes,
        b"new epoch",
    );
}

/// A liveness probe is answered (accepted) from a coordinator and refused from anyone else;
/// it changes nothing on the node: no message out, no audit entry.
fn a_probe_is_taken_from_a_coordinator_only<S: Suite>() {
    let (mut net, nodes, coordinator, _, _) = network_with_key::<S>(130, 2, 3);
    let node = nodes[0].clone();
    let audit_entries = |net: &Network<S>| {
        let store = net.node(&node).unwrap().store().unwrap();
        store.audit_entries().count()
    };
    let audit_before = audit_entries(&net);
    let sent = Sent::watch(&mut net);
    let probe = |byte: u8| {
        Message::Probe(Probe {
            session: SessionId([byte; 32]),
        })
    };
    net.inject(&coordinator, &node, probe(1));
    net.run(Duration::from_millis(100));
    assert!(refusals_at(&net, &node).is_empty(), "{:?}", net.refused);
    net.inject(&nodes[1], &node, probe(2));
    net.run(Duration::from_millis(100));
    assert_eq!(
        refusals_at(&net, &node),
        vec![Refusal::NotFromCoordinator(nodes[1].clone())]
    );
    assert_eq!(sent.total(&node), 0, "a probe makes the node send nothing");
    assert_eq!(audit_entries(&net), audit_before);
}

/// A malicious coordinator sends, in one batch of the victim, the session's request for `m1`
/// and a second request in the same session for `m2` (another approval, admitted, then
/// refused by the signer: the session exists). The victim signs `m1`. The audit log must say a
/// share was produced for `m1`, and never for `m2`.
fn a_folded_share_keeps_the_message_it_signed<S: Suite>() {
    use permafrost_protocol::wire::SignRequest;
    use sha2::{Digest as _, Sha256};
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(140, 2, 3);
    let victim = nodes[0].clone();
    let (m1, m2) = (b"pay alice 100".to_vec(), b"harmless".to_vec());
    let second_approval = net.authorize(&key, &pkp, &m2);
    net.node_mut(&victim).unwrap().hold_syncs(true);
    let (v, c, second) = (victim.clone(), coordinator.clone(), m2.clone());
    let mut done = false;
    net.set_faults(move |env| match &env.message {
        Message::SignRequest(r) if !done && env.to == v && env.from == c => {
            done = true;
            Fault::DeliverAlso(Message::SignRequest(SignRequest {
                message: second.clone(),
                client: Some(second_approval.clone()),
                ..r.clone()
            }))
        }
        _ => Fault::Deliver,
    });
    start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        &m1,
        SessionId([9; 32]),
    );
    net.run(Duration::from_millis(300));
    assert!(net.node(&victim).unwrap().core().unwrap().held_shares() > 0);
    net.node_mut(&victim).unwrap().hold_syncs(false);
    let (d1, d2): ([u8; 32], [u8; 32]) = (Sha256::digest(&m1).into(), Sha256::digest(&m2).into());
    let store = net.node(&victim).unwrap().store().unwrap();
    let entries: Vec<(AuditKind, Option<[u8; 32]>)> = store
        .audit_entries()
        .filter(|(e, _)| matches!(e.kind, AuditKind::ClientRequest | AuditKind::SignatureShare))
        .map(|(e, _)| (e.kind.clone(), e.message_digest))
        .collect();
    assert!(
        !entries.contains(&(AuditKind::SignatureShare, Some(d2))),
        "the log says m2 was signed, but only m1 was: {entries:?}"
    );
    assert!(
        entries.contains(&(AuditKind::SignatureShare, Some(d1))),
        "the share of m1 is not in the log: {entries:?}"
    );
    assert_eq!(
        entries
            .iter()
            .filter(|(kind, _)| *kind == AuditKind::ClientRequest)
            .count(),
        2,
        "both admissions stay in the log: {entries:?}"
    );
}

per_suite!(
    a_folded_share_keeps_the_message_it_signed,
    a_probe_is_taken_from_a_coordinator_only,
    dkg_crash_after_the_pending_share,
    dkg_crash_after_activation,
    a_dkg_approval_is_durable_with_its_session,
    dkg_failed_pending_write_releases_nothing,
    dkg_failed_activation_is_named,
    dkg_opens_only_from_a_coordinator_for_a_new_key,
    no_pending_share_over_an_active_one,
    crash_after_admission_releases_nothing,
    a_crash_before_the_sync_releases_no_share,
    a_share_waits_for_its_own_sync_while_the_node_goes_on,
    a_flood_while_the_sync_hangs_is_refused_beyond_the_staged_cap,
    client_request_ids_survive_a_restart,
    a_policy_change_keeps_staged_request_ids,
    the_store_refuses_an_approval_the_gate_forgot,
    failed_batch_write_releases_no_share,
    a_failed_batch_keeps_its_admissions_for_the_next,
    a_second_unconcluded_reshare_is_refused,
    a_reshare_approval_is_durable_with_its_record,
    a_recorded_reshare_is_not_joined_twice,
    a_dealer_syncs_once_before_its_dealing_leaves,
    failed_reshare_writes_release_nothing,
    failed_reshare_conclusion_keeps_both_epochs,
);
