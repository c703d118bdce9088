//! Reshare run as sessions over the simulated network, per suite: the committee and threshold
//! change, the group key does not, the new committee signs at epoch e+1, the evicted node's
//! share is retired and useless, faulty dealers are named and left out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use std::collections::BTreeMap;

use common::*;
use frost_core::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use frost_core::{round1, round2, SigningPackage};
use permafrost_engine::deadlines;
use permafrost_engine::node::NodeNotice;
use permafrost_engine::sim::{Fault, Network};
use permafrost_protocol::reshare::{session_id, test_message, test_session_id};
use permafrost_protocol::wire::{
    participant_identifier, DerivationPath, Epoch, KeyId, Message, MessageKind, NodeId,
    ReshareOpen, ReshareProposal, SignPackage, SignRequest,
};
use permafrost_protocol::{ProtocolError, Refusal, Suite};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// After a reshare: every new member holds epoch e+1 with the coordinator's package, every
/// old member outside the new committee holds nothing, and the group key is unchanged.
fn check_outcome<S: Suite>(
    net: &Network<S>,
    key: &KeyId,
    old_package: &PublicKeyPackage<S>,
    new_package: &PublicKeyPackage<S>,
    old_committee: &[NodeId],
    new_committee: &[NodeId],
    epoch: Epoch,
) {
    assert_eq!(
        new_package.verifying_key().serialize().unwrap(),
        old_package.verifying_key().serialize().unwrap()
    );
    for node in new_committee {
        let share = net.node(node).unwrap().active_share(key).unwrap();
        assert_eq!(share.epoch, epoch, "{node}");
        assert_eq!(&share.public_key_package, new_package, "{node}");
        assert!(net.node(node).unwrap().pending_share(key).is_none());
    }
    for node in old_committee.iter().filter(|n| !new_committee.contains(n)) {
        assert!(
            net.node(node).unwrap().active_share(key).is_none(),
            "evicted {node} still holds a share"
        );
    }
}

/// Signs at `epoch` with exactly `signers` and verifies independently.
fn sign<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &KeyId,
    epoch: Epoch,
    package: &PublicKeyPackage<S>,
    signers: &[NodeId],
) {
    let message = format!("epoch {epoch}").into_bytes();
    let outcome = net
        .sign(coordinator, key, epoch, package, signers, &message)
        .unwrap();
    assert_eq!(outcome.signers.len(), signers.len());
    verify_independently(package, &message, &outcome.signature);
}

fn run<S: Suite>(
    seed: u64,
    t: u16,
    n: usize,
    extra: usize,
    pick: impl Fn(&[NodeId], &[NodeId]) -> (Vec<NodeId>, u16, Vec<NodeId>),
) {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(seed, t, n);
    let mut fresh: Vec<NodeId> = (0..extra).map(|_| net.add_node()).collect();
    fresh.sort();
    let (mut new_committee, t_new, dealers) = pick(&nodes, &fresh);
    new_committee.sort();
    let proposal = reshare_proposal(&net, &key, &nodes[0], &new_committee, t_new, &dealers);
    let evicted: Vec<NodeId> = nodes
        .iter()
        .filter(|n| !new_committee.contains(n))
        .cloned()
        .collect();
    let evicted_share = evicted
        .first()
        .map(|n| net.node(n).unwrap().active_share(&key).unwrap().clone());
    let new_package = net.run_reshare(&coordinator, proposal).unwrap();
    check_outcome(
        &net,
        &key,
        &package,
        &new_package,
        &nodes,
        &new_committee,
        Epoch(1),
    );

    // Any t' new members sign at epoch 1 (the last t').
    let t_new_usize = usize::from(t_new);
    sign(
        &mut net,
        &coordinator,
        &key,
        Epoch(1),
        &new_package,
        &new_committee[new_committee.len() - t_new_usize..],
    );
    // t' − 1 cannot: with the rest unreachable the session fails, naming them.
    let reachable: Vec<NodeId> = new_committee[..t_new_usize - 1].to_vec();
    let blocked: Vec<NodeId> = new_committee[t_new_usize - 1..].to_vec();
    let b = blocked.clone();
    net.set_faults(move |env| {
        if b.contains(&env.to) {
            Fault::Drop
        } else {
            Fault::Deliver
        }
    });
    let error = net
        .sign(
            &coordinator,
            &key,
            Epoch(1),
            &new_package,
            &new_committee,
            b"t-1",
        )
        .unwrap_err();
    assert!(matches!(error, ProtocolError::Timeout { .. }), "{error}");
    net.clear_faults();
    let _ = reachable;
    // The old epoch is refused now.
    let error = net.sign(
        &coordinator,
        &key,
        Epoch(0),
        &package,
        &nodes[..usize::from(t)],
        b"old epoch",
    );
    assert!(error.is_err(), "signed at a retired epoch");

    // The evicted node's old share cannot take part with the new shares.
    if let Some(old) = evicted_share {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut commitments = BTreeMap::new();
        let mut nonces = BTreeMap::new();
        let (n0, c0) = round1::commit::<S, _>(old.key_package.signing_share(), &mut rng);
        commitments.insert(*old.key_package.identifier(), c0);
        nonces.insert(*old.key_package.identifier(), (n0, old.key_package.clone()));
        for node in &new_committee[..t_new_usize - 1] {
            let kp = net
                .node(node)
                .unwrap()
                .active_share(&key)
                .unwrap()
                .key_package
                .clone();
            let (n, c) = round1::commit::<S, _>(kp.signing_share(), &mut rng);
            commitments.insert(*kp.identifier(), c);
            nonces.insert(*kp.identifier(), (n, kp));
        }
        let signing_package = SigningPackage::new(commitments, b"mixed");
        let mut shares = BTreeMap::new();
        for (id, (n, kp)) in &nonces {
            // The old share may even refuse to sign (threshold mismatch); if it does, fine.
            if let Ok(share) = round2::sign(&signing_package, n, kp) {
                shares.insert(*id, share);
            }
        }
        assert!(
            frost_core::aggregate(&signing_package, &shares, &new_package).is_err(),
            "an evicted share took part in a valid signature"
        );
    }
}

fn overlapping_3_of_5_to_4_of_6<S: Suite>() {
    run::<S>(51, 3, 5, 1, |nodes, fresh| {
        (
            nodes[..4].iter().chain(fresh).cloned().collect(),
            4,
            nodes[..4].to_vec(),
        )
    });
}

fn disjoint_3_of_5_to_4_of_6<S: Suite>() {
    run::<S>(52, 3, 5, 6, |nodes, fresh| {
        (fresh.to_vec(), 4, nodes.to_vec())
    });
}

fn shrink_3_of_5_to_2_of_3<S: Suite>() {
    run::<S>(53, 3, 5, 0, |nodes, _| {
        (nodes[2..].to_vec(), 2, nodes.to_vec())
    });
}

fn grow_2_of_3_to_5_of_7<S: Suite>() {
    run::<S>(54, 2, 3, 4, |nodes, fresh| {
        (
            nodes.iter().chain(fresh).cloned().collect(),
            5,
            nodes[1..].to_vec(),
        )
    });
}

fn refresh<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(55, 3, 4);
    let before: Vec<_> = nodes
        .iter()
        .map(|n| {
            net.node(n)
                .unwrap()
                .active_share(&key)
                .unwrap()
                .key_package
                .clone()
        })
        .collect();
    let proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let new_package = net.run_reshare(&coordinator, proposal).unwrap();
    check_outcome(&net, &key, &package, &new_package, &nodes, &nodes, Epoch(1));
    for (node, old) in nodes.iter().zip(&before) {
        let now = &net
            .node(node)
            .unwrap()
            .active_share(&key)
            .unwrap()
            .key_package;
        assert_ne!(
            now.signing_share(),
            old.signing_share(),
            "{node} kept its share"
        );
    }
    sign(
        &mut net,
        &coordinator,
        &key,
        Epoch(1),
        &new_package,
        &nodes[1..],
    );
    // A second refresh moves to epoch 2.
    let proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
    let again = net.run_reshare(&coordinator, proposal).unwrap();
    check_outcome(&net, &key, &package, &again, &nodes, &nodes, Epoch(2));
    sign(&mut net, &coordinator, &key, Epoch(2), &again, &nodes[..3]);
}

/// Every message of a reshare after its open delivered twice (what a redelivery does when the
/// first copy was taken and its answer lost): each receiver takes the second copy as the
/// first or refuses it, the reshare commits with no dealer excluded, and the new epoch signs.
fn every_reshare_message_twice_changes_nothing<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(61, 2, 4);
    let fresh = net.add_node();
    let mut new_committee = nodes.clone();
    new_committee.push(fresh);
    new_committee.sort();
    // Every kind the outbox sends again (the open is not one of them).
    net.set_faults(|env| match env.message {
        Message::ReshareDealing(_)
        | Message::ReshareShare(_)
        | Message::ReshareDealingSet(_)
        | Message::ReshareReport(_)
        | Message::ReshareDealerSet(_)
        | Message::ReshareConfirm(_) => Fault::Duplicate,
        _ => Fault::Deliver,
    });
    reshare_leaving_out(
        &mut net,
        &nodes,
        &new_committee,
        &coordinator,
        &key,
        &package,
        3,
        &[],
        &new_committee[..3],
    );
}

/// Runs a reshare of `key` (epoch 0, held by `nodes` under `package`, all of them dealing) to
/// `new_committee` with threshold `t_new` under the faults set on `net`: it commits with
/// exactly `left_out` excluded, and the new epoch signs with `signers` once the faults are
/// cleared.
#[allow(clippy::too_many_arguments)]
fn reshare_leaving_out<S: Suite>(
    net: &mut Network<S>,
    nodes: &[NodeId],
    new_committee: &[NodeId],
    coordinator: &NodeId,
    key: &KeyId,
    package: &PublicKeyPackage<S>,
    t_new: u16,
    left_out: &[NodeId],
    signers: &[NodeId],
) {
    let proposal = reshare_proposal(net, key, &nodes[0], new_committee, t_new, nodes);
    let new_package = net.run_reshare(coordinator, proposal).unwrap();
    check_outcome(
        net,
        key,
        package,
        &new_package,
        nodes,
        new_committee,
        Epoch(1),
    );
    let excluded = net.events.iter().find_map(|(_, e)| match e {
        permafrost_protocol::Event::KeyReshared { excluded, .. } => Some(excluded.clone()),
        _ => None,
    });
    assert_eq!(excluded, Some(left_out.to_vec()), "the dealers excluded");
    net.clear_faults();
    sign(net, coordinator, key, Epoch(1), &new_package, signers);
}

/// A dealer whose commitment does not start with its own verifying share (it deals something
/// else) is named and left out; the others (still at least t) complete the reshare.
fn dealer_with_wrong_constant_term_is_excluded<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(56, 2, 4);
    let liar = nodes[0].clone();
    let liar_key = net.identity(&liar).unwrap();
    let l = liar.clone();
    let t_new = 3u16;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    net.set_faults(move |env| match &env.message {
        Message::ReshareDealing(d) if d.from == l => {
            // A fresh commitment to a random polynomial, validly signed by the liar.
            let random = frost_core::keys::SigningShare::<S>::new(
                <<S::Group as frost_core::Group>::Field as frost_core::Field>::random(&mut rng),
            );
            let ids: std::collections::BTreeSet<_> =
                [permafrost_protocol::wire::participant_identifier::<S>(&l).unwrap()].into();
            let fake = permafrost_protocol::reshare::deal::<S>(
                &random,
                2,
                &ids.iter()
                    .copied()
                    .chain(std::iter::once(
                        frost_core::Identifier::<S>::derive(b"x").unwrap(),
                    ))
                    .collect(),
                &mut rng,
            )
            .unwrap();
            let _ = t_new;
            let commitment = fake.commitment.serialize_whole().unwrap();
            let mut forged = d.clone();
            forged.signature = permafrost_protocol::NodeIdentity::sign(
                liar_key.as_ref(),
                &permafrost_protocol::statement(
                    &d.session,
                    permafrost_protocol::reshare::DEALING,
                    &l,
                    None,
                    &commitment,
                )
                .0,
            );
            forged.commitment = commitment;
            Fault::Replace(Message::ReshareDealing(forged))
        }
        _ => Fault::Deliver,
    });
    reshare_leaving_out(
        &mut net,
        &nodes,
        &nodes,
        &coordinator,
        &key,
        &package,
        2,
        std::slice::from_ref(&liar),
        &nodes[2..],
    );
}

/// A dealer that sends one new member a share inconsistent with its commitment: that member
/// rejects it, the dealer is left out of H, and the reshare completes.
fn dealer_with_inconsistent_share_is_excluded<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(57, 2, 4);
    let cheater = nodes[1].clone();
    let victim = nodes[3].clone();
    let cheater_key = net.identity(&cheater).unwrap();
    let (c, v) = (cheater.clone(), victim.clone());
    net.set_faults(move |env| match &env.message {
        Message::ReshareShare(m) if m.from == c && m.to == v => {
            let share = frost_core::keys::SigningShare::<S>::deserialize(m.share.expose()).unwrap();
            let bad = frost_core::keys::SigningShare::<S>::new(
                share.to_scalar()
                    + <<S::Group as frost_core::Group>::Field as frost_core::Field>::one(),
            );
            let bytes = bad.serialize();
            let mut forged = m.clone();
            forged.signature = permafrost_protocol::NodeIdentity::sign(
                cheater_key.as_ref(),
                &permafrost_protocol::statement(
                    &m.session,
                    permafrost_protocol::reshare::SHARE,
                    &c,
                    Some(&v),
                    &bytes,
                )
                .0,
            );
            forged.share = permafrost_protocol::wire::SecretBytes::new(bytes);
            Fault::Replace(Message::ReshareShare(forged))
        }
        _ => Fault::Deliver,
    });
    reshare_leaving_out(
        &mut net,
        &nodes,
        &nodes,
        &coordinator,
        &key,
        &package,
        3,
        std::slice::from_ref(&cheater),
        &nodes[1..],
    );
}

/// A dealer whose share never reaches one new member (lost on the way: the dealer itself may
/// be honest): that member reports at half the session's time without it, the dealer is left
/// out of H and named, and the reshare completes. Without the member's deadline the session
/// timed out naming the member, which had done nothing wrong.
fn dealer_whose_share_never_arrives_is_left_out_and_named<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(58, 2, 4);
    let dealer = nodes[1].clone();
    let member = nodes[3].clone();
    let (d, m) = (dealer.clone(), member.clone());
    net.set_faults(move |env| match &env.message {
        Message::ReshareShare(share) if share.from == d && share.to == m => Fault::Drop,
        _ => Fault::Deliver,
    });
    let started = net.now();
    reshare_leaving_out(
        &mut net,
        &nodes,
        &nodes,
        &coordinator,
        &key,
        &package,
        3,
        std::slice::from_ref(&dealer),
        &nodes[1..],
    );
    let took = Duration::from_millis(net.now().0 - started.0);
    assert!(
        took >= deadlines::RESHARE / 2 && took < deadlines::RESHARE,
        "the member reported at half the session's time, not at its end: {took:?}"
    );
}

/// A dealer that signs two different commitments is caught by the coordinator, named, and the
/// reshare aborts with the old epoch intact and still signing.
fn dealer_sending_two_commitments_is_caught<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(58, 2, 3);
    let cheater = nodes[2].clone();
    let cheater_key = net.identity(&cheater).unwrap();
    let c = cheater.clone();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    net.set_faults(move |env| match &env.message {
        Message::ReshareDealing(d) if d.from == c => {
            let mut other = d.clone();
            let mut bytes = d.commitment.clone();
            // Another valid-looking commitment: re-deal is impossible without the share, so
            // reuse the first point and randomise nothing else but the last coefficient.
            let last = bytes.len() - 1;
            bytes[last] ^= (rand_core::RngCore::next_u32(&mut rng) as u8) | 1;
            other.signature = permafrost_protocol::NodeIdentity::sign(
                cheater_key.as_ref(),
                &permafrost_protocol::statement(
                    &d.session,
                    permafrost_protocol::reshare::DEALING,
                    &c,
                    None,
                    &bytes,
                )
                .0,
            );
            other.commitment = bytes;
            Fault::DeliverAlso(Message::ReshareDealing(other))
        }
        // Both of the cheater's dealings reach the coordinator before it has every dealing (a
        // dealing that came after the set was relayed would be refused as late).
        Message::ReshareDealing(_) => Fault::Delay(Duration::from_millis(200)),
        _ => Fault::Deliver,
    });
    let proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let error = net.run_reshare(&coordinator, proposal).unwrap_err();
    assert_eq!(error.culprits(), vec![cheater], "{error}");
    net.clear_faults();
    for node in &nodes {
        let share = net.node(node).unwrap().active_share(&key).unwrap();
        assert_eq!(share.epoch, Epoch(0), "{node} moved to a failed epoch");
        assert!(
            net.node(node).unwrap().pending_share(&key).is_none(),
            "{node} kept a pending share of an aborted reshare"
        );
    }
    sign(
        &mut net,
        &coordinator,
        &key,
        Epoch(0),
        &package,
        &nodes[..2],
    );
}

/// The wrong epoch, a proposal whose old key package is not the node's, and a proposal naming
/// a non-member dealer are refused before any dealing.
fn bad_proposals_are_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, _) = network_with_key::<S>(59, 2, 3);
    let mut wrong_epoch = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    wrong_epoch.epoch = Epoch(7);
    let error = net.run_reshare(&coordinator, wrong_epoch).unwrap_err();
    assert!(
        matches!(
            error,
            ProtocolError::OpenRefused { ref reason, not_approved: false, .. }
                if reason.contains("wrong epoch 7")
        ),
        "{error}"
    );
    assert!(net
        .refused
        .iter()
        .any(|r| matches!(r.error, ProtocolError::Refused(Refusal::WrongEpoch { .. }))));
    let stranger = net.add_node();
    let mut bad_dealer = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    bad_dealer.dealers.push(stranger);
    bad_dealer.dealers.sort();
    assert!(matches!(
        net.run_reshare(&coordinator, bad_dealer),
        Err(ProtocolError::InvalidParameters(_))
    ));
    for node in &nodes {
        assert_eq!(
            net.node(node).unwrap().active_share(&key).unwrap().epoch,
            Epoch(0)
        );
    }
}

/// A new member that the reshare's open cannot reach (the dial fails) ends the reshare at once,
/// naming it, with every share where it was; a dealer that is not a new member and cannot be
/// reached is one that does not deal: the reshare goes on without it. Reached again, the
/// member takes part.
fn unreachable_members<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(83, 2, 4);
    let down = nodes[3].clone();
    net.set_faults(unreachable(&down));
    let refresh = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let started = net.now();
    let error = net.run_reshare(&coordinator, refresh).unwrap_err();
    assert!(
        matches!(error, ProtocolError::MemberUnreachable { ref node, .. } if *node == down),
        "{error}"
    );
    assert_eq!(error.culprits(), vec![down.clone()]);
    assert!(
        net.now().0 - started.0 < 1_000,
        "ended {} ms after the open",
        net.now().0 - started.0
    );
    for node in &nodes {
        let state = net.node(node).unwrap();
        assert_eq!(state.active_share(&key).unwrap().epoch, Epoch(0), "{node}");
        assert!(state.pending_share(&key).is_none(), "{node}");
    }

    // Evicting the node that cannot be reached: it only deals, and the others are enough.
    let staying = &nodes[..3];
    let evict = reshare_proposal(&net, &key, &nodes[0], staying, 2, &nodes);
    let reshared = net.run_reshare(&coordinator, evict).unwrap();
    assert_eq!(reshared.verifying_key(), package.verifying_key());
    sign(
        &mut net,
        &coordinator,
        &key,
        Epoch(1),
        &reshared,
        &staying[1..],
    );
}

/// A coordinator cannot fake a commit certificate's test signature with the old shares: an
/// ordinary signer refuses any message in the reshare test domain.
fn ordinary_signers_refuse_reshare_test_messages<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(81, 2, 3);
    let p = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    let message =
        permafrost_protocol::reshare::test_message(&permafrost_protocol::reshare::session_id(&p));
    let error = net
        .sign(&coordinator, &key, Epoch(0), &package, &nodes, &message)
        .unwrap_err();
    assert!(
        net.refused
            .iter()
            .any(|r| matches!(r.error, ProtocolError::Refused(Refusal::MessageNotApproved))),
        "{error}"
    );
    // An ordinary message still signs.
    net.sign(&coordinator, &key, Epoch(0), &package, &nodes, b"ordinary")
        .unwrap();
}

/// Every message any of `from` sends from now on, by sender and kind (all are delivered).
fn watch_sent<S: Suite>(
    net: &mut Network<S>,
    from: &[NodeId],
) -> Rc<RefCell<Vec<(NodeId, MessageKind)>>> {
    let sent: Rc<RefCell<Vec<(NodeId, MessageKind)>>> = Rc::default();
    let (log, from) = (sent.clone(), from.to_vec());
    net.set_faults(move |env| {
        if from.contains(&env.from) {
            log.borrow_mut()
                .push((env.from.clone(), env.message.kind()));
        }
        Fault::Deliver
    });
    sent
}

/// No reshare dealing and no sub-share left any node, and no node dealt or joined a reshare
/// since notice index `notices`.
fn nothing_dealt<S: Suite>(
    net: &Network<S>,
    sent: &Rc<RefCell<Vec<(NodeId, MessageKind)>>>,
    notices: usize,
) {
    let dealt: Vec<_> = sent
        .borrow()
        .iter()
        .filter(|(_, kind)| {
            matches!(
                kind,
                MessageKind::ReshareDealing | MessageKind::ReshareShare
            )
        })
        .cloned()
        .collect();
    assert!(dealt.is_empty(), "dealt: {dealt:?}");
    assert!(
        !net.notices[notices..].iter().any(|(_, n)| matches!(
            n,
            NodeNotice::Dealt { .. } | NodeNotice::ReshareJoined { .. }
        )),
        "a node joined or dealt"
    );
}

/// Every node of `nodes` still holds `key` at epoch 0 and nothing PENDING, and t of them sign
/// at epoch 0 under `package`.
fn epoch_zero_still_signs<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    nodes: &[NodeId],
    key: &KeyId,
    package: &PublicKeyPackage<S>,
    t: usize,
) {
    in_force_at(net, nodes, key, Epoch(0));
    sign(net, coordinator, key, Epoch(0), package, &nodes[..t]);
}

/// The open of `proposal` as a malicious coordinator puts it on the wire, with an approval of
/// exactly that proposal by the operator key every node lists.
fn approved_open<S: Suite>(net: &mut Network<S>, proposal: ReshareProposal) -> Message {
    let approvals = reshare_approvals(net, &proposal);
    Message::ReshareOpen(ReshareOpen {
        rotation: None,
        session: session_id(&proposal),
        proposal,
        approvals,
    })
}

/// What the fault hook of [`pending_shares_sign_only_their_reshare_test_message`] saw.
#[derive(Default)]
struct Forging {
    /// The coordinator's own test signature has started (its requests are held back a while).
    started: bool,
    /// The attacker is at work: the new members' answers in the test session are taken off
    /// the wire (the coordinator's session never sees them) and kept here.
    on: bool,
    commitments: BTreeMap<NodeId, Vec<u8>>,
    shares: Vec<NodeId>,
}

/// During a reshare, once every new member stored its PENDING share and confirmed and the
/// test signature is being made, the coordinator sends every new member signing requests in
/// the reshare's test session (the one session a PENDING share signs in) for a message of its
/// own: an ordinary message, then the test message of another reshare (one whose certificate
/// it would fake with these shares). Wherever a member commits to a nonce, it follows with a
/// signing package of that message. Every member refuses each request as not approved; no
/// commitment and no signature share leave any member for them; and the reshare's own test
/// signature is then made, the reshare commits, and the new epoch signs.
fn pending_shares_sign_only_their_reshare_test_message<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(84, 2, 3);
    let fresh = net.add_node();
    let mut committee = nodes[1..].to_vec();
    committee.push(fresh);
    committee.sort();
    let t_new = 2u16;
    let p = reshare_proposal(&net, &key, &nodes[0], &committee, t_new, &nodes);
    let test = test_session_id(&session_id(&p));
    let mut another = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
    another.attempt = 1;
    let forged_messages = [
        ("an ordinary message", b"an ordinary message".to_vec()),
        (
            "another reshare's test message",
            test_message(&session_id(&another)),
        ),
    ];

    // How long the coordinator's own test requests are held back (the test signature has 10 s).
    const HOLD: Duration = Duration::from_secs(2);
    let forging: Rc<RefCell<Forging>> = Rc::default();
    let (f, c) = (forging.clone(), coordinator.clone());
    net.set_faults(move |env| {
        let mut f = f.borrow_mut();
        match &env.message {
            // The coordinator's own requests wait while the attacker works.
            Message::SignRequest(r) if r.session == test && env.from == c => {
                f.started = true;
                Fault::Delay(HOLD)
            }
            Message::SignCommitment(m) if m.session == test && f.on => {
                f.commitments.insert(env.from.clone(), m.commitment.clone());
                Fault::Drop
            }
            Message::SignShare(m) if m.session == test && f.on => {
                f.shares.push(env.from.clone());
                Fault::Drop
            }
            _ => Fault::Deliver,
        }
    });
    let mark = net.events.len();
    net.start_reshare(&coordinator, p).unwrap();
    net.run_until(deadlines::RESHARE, |_| forging.borrow().started);
    assert!(forging.borrow().started, "the test signature never started");
    let held_until = net.now().after(HOLD);
    for node in &committee {
        assert!(
            net.node(node).unwrap().pending_share(&key).is_some(),
            "{node} holds no PENDING share yet"
        );
    }

    for (what, message) in &forged_messages {
        forging.borrow_mut().on = true;
        let refusals = net.refused.len();
        let produced = net.shares_produced(None);
        for node in &committee {
            let request = Message::SignRequest(SignRequest {
                session: test,
                key_id: key.clone(),
                epoch: Epoch(1),
                message: message.clone(),
                path: DerivationPath::ROOT,
                client: None,
            });
            net.inject(&coordinator, node, request);
        }
        net.run(Duration::from_millis(200));
        // Wherever a member committed, the attacker asks for the share.
        let committed: Vec<(NodeId, Vec<u8>)> = forging
            .borrow()
            .commitments
            .iter()
            .take(usize::from(t_new))
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        if committed.len() == usize::from(t_new) {
            let commitments = committed
                .iter()
                .map(|(n, c)| {
                    (
                        participant_identifier::<S>(n).unwrap(),
                        round1::SigningCommitments::<S>::deserialize(c).unwrap(),
                    )
                })
                .collect();
            let bytes = SigningPackage::new(commitments, message)
                .serialize()
                .unwrap();
            for (node, _) in &committed {
                let package = Message::SignPackage(SignPackage {
                    session: test,
                    key_id: key.clone(),
                    epoch: Epoch(1),
                    package: bytes.clone(),
                });
                net.inject(&coordinator, node, package);
            }
            net.run(Duration::from_millis(200));
        }
        let mut f = forging.borrow_mut();
        f.on = false;
        assert!(
            f.shares.is_empty() && net.shares_produced(None) == produced,
            "a PENDING share signed {what}: {:?}",
            f.shares
        );
        assert!(
            f.commitments.is_empty(),
            "committed a nonce to {what}: {:?}",
            f.commitments.keys()
        );
        for node in &committee {
            let refused = refused_since(&net, refusals, node);
            assert!(
                refused
                    .iter()
                    .any(|e| matches!(e, ProtocolError::Refused(Refusal::MessageNotApproved))),
                "{node} did not refuse {what}: {refused:?}"
            );
        }
    }

    // The forged requests came first: no member had a signing slot in the test session yet,
    // so nothing but the message check stood in their way.
    assert!(
        net.now() < held_until,
        "the coordinator's own requests arrived first"
    );
    // The reshare's own test signature is still made, and it commits.
    let new_package = net.finish_reshare(&coordinator, mark).unwrap();
    net.clear_faults();
    check_outcome(
        &net,
        &key,
        &package,
        &new_package,
        &nodes,
        &committee,
        Epoch(1),
    );
    sign(
        &mut net,
        &coordinator,
        &key,
        Epoch(1),
        &new_package,
        &committee[1..],
    );
}

/// A coordinator opens a reshare of the nodes' key whose old public key package is another
/// one, carrying a valid operator approval of exactly that proposal: a package it dealt
/// itself for the same members, and the package of another key the same nodes hold. Every
/// old member refuses the open as not its key's, deals nothing, and keeps epoch 0, which
/// still signs.
fn a_proposal_for_another_old_key_package_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(85, 2, 3);
    let other_key = net
        .run_dkg(&coordinator, &key_id("key-2"), 2, &nodes)
        .unwrap();
    let ids: Vec<_> = nodes
        .iter()
        .map(|n| participant_identifier::<S>(n).unwrap())
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(85);
    let (_, dealt_by_the_attacker) = frost_core::keys::generate_with_dealer::<S, _>(
        3,
        2,
        IdentifierList::Custom(&ids),
        &mut rng,
    )
    .unwrap();
    let sent = watch_sent(&mut net, &nodes);
    let notices = net.notices.len();
    for foreign in [&dealt_by_the_attacker, &other_key] {
        let mut proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
        proposal.old_public_key_package = foreign.serialize().unwrap();
        let open = approved_open(&mut net, proposal);
        let mark = net.refused.len();
        for node in &nodes {
            net.inject(&coordinator, node, open.clone());
        }
        net.run(Duration::from_secs(1));
        for node in &nodes {
            let refused = refused_since(&net, mark, node);
            assert!(
                refused.iter().any(|e| matches!(e,
                    ProtocolError::InvalidParameters(why) if why.contains("is not ours"))),
                "{node}: {refused:?}"
            );
        }
    }
    nothing_dealt(&net, &sent, notices);
    net.clear_faults();
    epoch_zero_still_signs(&mut net, &coordinator, &nodes, &key, &package, 2);
}

/// A coordinator skips its own check and puts on the wire a reshare open, approved by the
/// operator, whose dealers include one that is not an old member: a signer node that holds no
/// share of the key, then a coordinator identity (no signer node at all). Every old member
/// refuses each open (not old members; not a signer node), deals nothing, and keeps epoch 0,
/// which still signs.
fn a_stranger_dealer_is_refused_by_every_node<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(86, 2, 3);
    let stranger = net.add_node();
    let accomplice = net.add_coordinator();
    let sent = watch_sent(&mut net, &nodes);
    let notices = net.notices.len();
    for dealer in [&stranger, &accomplice] {
        let mut proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 2, &nodes);
        proposal.dealers.push(dealer.clone());
        proposal.dealers.sort();
        let open = approved_open(&mut net, proposal);
        let mark = net.refused.len();
        for node in &nodes {
            net.inject(&coordinator, node, open.clone());
        }
        net.run(Duration::from_secs(1));
        for node in &nodes {
            let refused = refused_since(&net, mark, node);
            let expected = |e: &ProtocolError| {
                if dealer == &accomplice {
                    matches!(e, ProtocolError::Refused(Refusal::NotASignerNode(n)) if n == dealer)
                } else {
                    matches!(e, ProtocolError::InvalidParameters(why)
                        if why.contains("members of the old committee"))
                }
            };
            assert!(refused.iter().any(expected), "{node}: {refused:?}");
        }
    }
    nothing_dealt(&net, &sent, notices);
    net.clear_faults();
    epoch_zero_still_signs(&mut net, &coordinator, &nodes, &key, &package, 2);
}

/// One FROST signature of `message` by `signers` (each signs with its own key package), made
/// outside the network; returns the signing package and the shares.
#[allow(clippy::type_complexity)]
fn frost_sign<S: Suite>(
    signers: &[&KeyPackage<S>],
    message: &[u8],
    rng: &mut ChaCha20Rng,
) -> (
    SigningPackage<S>,
    BTreeMap<frost_core::Identifier<S>, round2::SignatureShare<S>>,
) {
    let mut commitments = BTreeMap::new();
    let mut nonces = Vec::new();
    for kp in signers {
        let (n, c) = round1::commit::<S, _>(kp.signing_share(), rng);
        commitments.insert(*kp.identifier(), c);
        nonces.push((n, *kp));
    }
    let signing_package = SigningPackage::new(commitments, message);
    let shares = nonces
        .iter()
        .map(|(n, kp)| {
            (
                *kp.identifier(),
                round2::sign(&signing_package, n, kp).unwrap(),
            )
        })
        .collect();
    (signing_package, shares)
}

/// After a committed refresh (same committee, same threshold), an attacker who stole one
/// node's share of the epoch before it and t−1 other nodes' shares of the epoch after it
/// cannot sign: with the new package the aggregate names the old share as the culprit, with the
/// old package it names none of it. Checked for epoch 0 against epoch 1, and for epoch 1
/// against epoch 2 after a second refresh (a dealer whose polynomial repeats from one refresh
/// to the next would make those two epochs' shares the same). Any t shares of one epoch sign.
fn an_old_share_does_not_sign_with_refreshed_shares<S: Suite>() {
    let (mut net, nodes, coordinator, key, package) = network_with_key::<S>(87, 3, 4);
    let t = 3;
    let shares = |net: &Network<S>| -> Vec<KeyPackage<S>> {
        nodes
            .iter()
            .map(|n| {
                net.node(n)
                    .unwrap()
                    .active_share(&key)
                    .unwrap()
                    .key_package
                    .clone()
            })
            .collect()
    };
    let mut epochs = vec![(shares(&net), package.clone())];
    for epoch in [Epoch(1), Epoch(2)] {
        let proposal = reshare_proposal(&net, &key, &nodes[0], &nodes, 3, &nodes);
        let refreshed = net.run_reshare(&coordinator, proposal).unwrap();
        check_outcome(&net, &key, &package, &refreshed, &nodes, &nodes, epoch);
        epochs.push((shares(&net), refreshed));
    }
    let mut rng = ChaCha20Rng::seed_from_u64(87);
    for (e, pair) in epochs.windows(2).enumerate() {
        let [(old, old_package), (new, new_package)] = pair else {
            unreachable!()
        };
        for stolen in 0..nodes.len() {
            // The stolen share of epoch e, and epoch e+1's shares of the next t − 1 nodes.
            let mut signers = vec![&old[stolen]];
            signers.extend((1..t).map(|k| &new[(stolen + k) % nodes.len()]));
            let (signing_package, sig_shares) = frost_sign(&signers, b"mixed", &mut rng);
            let culprit = *old[stolen].identifier();
            let thief = &nodes[stolen];
            match frost_core::aggregate(&signing_package, &sig_shares, new_package) {
                Err(frost_core::Error::InvalidSignatureShare { culprits }) => {
                    assert_eq!(culprits, vec![culprit], "{thief}, epoch {e}")
                }
                other => panic!(
                    "{thief}'s epoch-{e} share signed with epoch-{} shares: {other:?}",
                    e + 1
                ),
            }
            match frost_core::aggregate(&signing_package, &sig_shares, old_package) {
                Err(frost_core::Error::InvalidSignatureShare { culprits }) => {
                    assert!(!culprits.contains(&culprit), "{thief}, epoch {e}")
                }
                other => panic!(
                    "{thief}'s epoch-{e} share signed with epoch-{} shares under the old package: \
                     {other:?}",
                    e + 1
                ),
            }
        }
        // Any t shares of epoch e+1 do sign.
        for first in 0..nodes.len() {
            let signers: Vec<_> = (0..t).map(|k| &new[(first + k) % nodes.len()]).collect();
            let (signing_package, sig_shares) = frost_sign(&signers, b"refreshed", &mut rng);
            let signature =
                frost_core::aggregate(&signing_package, &sig_shares, new_package).unwrap();
            verify_independently(new_package, b"refreshed", &signature);
        }
    }
}

per_suite!(
    ordinary_signers_refuse_reshare_test_messages,
    overlapping_3_of_5_to_4_of_6,
    disjoint_3_of_5_to_4_of_6,
    shrink_3_of_5_to_2_of_3,
    grow_2_of_3_to_5_of_7,
    refresh,
    dealer_with_wrong_constant_term_is_excluded,
    dealer_with_inconsistent_share_is_excluded,
    dealer_whose_share_never_arrives_is_left_out_and_named,
    every_reshare_message_twice_changes_nothing,
    dealer_sending_two_commitments_is_caught,
    bad_proposals_are_refused,
    unreachable_members,
    pending_shares_sign_only_their_reshare_test_message,
    a_proposal_for_another_old_key_package_is_refused,
    a_stranger_dealer_is_refused_by_every_node,
    an_old_share_does_not_sign_with_refreshed_shares,
);
