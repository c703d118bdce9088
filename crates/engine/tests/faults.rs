//! Faulty and malicious parties: each is named, nothing is activated or signed that should
//! not be, and bad input is refused without changing state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use frost_core::keys::dkg::{self, round2};
use frost_core::keys::SigningShare;
use frost_core::{Field, Group, SigningPackage};
use permafrost_engine::node::NodeNotice;
use permafrost_engine::sim::{Fault, Network, SimIdentity, SimVerifier};
use permafrost_protocol::dkg::{DkgCoordinator, CONFIRM, DEFAULT_DKG_TIMEOUT, ROUND1, ROUND2};
use permafrost_protocol::wire::{
    participant_identifier, DkgComplaint, DkgRound1, Epoch, KeyId, Message, NodeId, SecretBytes,
    SessionId, SignPackage, SignRefusal, SignRequest, SignShare,
};
use permafrost_protocol::{
    dkg::confirm_payload, statement, Event, NodeIdentity, ProtocolError, Refusal, Suite,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn one<S: Suite>() -> <<S::Group as Group>::Field as Field>::Scalar {
    <<S::Group as Group>::Field as Field>::one()
}

/// `share` with its share replaced by the scalar 1: well formed, and not a valid share.
fn forged_share<S: Suite>(share: &SignShare) -> Message {
    let mut forged = share.clone();
    forged.share = <<S::Group as Group>::Field as Field>::serialize(&one::<S>())
        .as_ref()
        .to_vec();
    Message::SignShare(forged)
}

/// Runs a DKG through `net` with fresh nonce and returns the coordinator's result.
fn dkg<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    nodes: &[NodeId],
    t: u16,
) -> Result<(), ProtocolError> {
    net.run_dkg(coordinator, &key_id("key-1"), t, nodes)
        .map(|_| ())
}

/// `original`'s originator signing another round-1 `package` in the same session (with its
/// own identity key, so the package is provably its own).
fn round1_signed_by(key: &SimIdentity, original: &DkgRound1, package: Vec<u8>) -> Message {
    let from = original.from.clone();
    let signature = key.sign(&statement(&original.session, ROUND1, &from, None, &package).0);
    Message::DkgRound1(DkgRound1 {
        session: original.session,
        from,
        package,
        signature,
    })
}

fn member_failures<S: Suite>(net: &Network<S>, node: &NodeId) -> Vec<ProtocolError> {
    net.notices
        .iter()
        .filter(|(n, _)| n == node)
        .filter_map(|(_, e)| match e {
            NodeNotice::SessionFailed { error, .. } | NodeNotice::ReshareAborted { error, .. } => {
                Some(error.clone())
            }
            _ => None,
        })
        .collect()
}

/// A dealer sends one member a round-2 share that does not match its commitment (validly
/// signed, so the complaint is provable): the DKG fails naming the dealer; no key activates.
fn dkg_bad_round2_share_is_named<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(21, 5);
    let cheater = nodes[1].clone();
    let victim = nodes[3].clone();
    let key = net.identity(&cheater).unwrap();
    let (c, v) = (cheater.clone(), victim.clone());
    net.set_faults(move |env| match &env.message {
        Message::DkgRound2(m) if m.from == c && m.to == v => {
            let share = round2::Package::<S>::deserialize(m.share.expose()).unwrap();
            let bad = SigningShare::<S>::new(share.signing_share().to_scalar() + one::<S>());
            let bytes = round2::Package::<S>::new(bad).serialize().unwrap();
            let mut forged = m.clone();
            forged.signature = key.sign(&statement(&m.session, ROUND2, &c, Some(&v), &bytes).0);
            forged.share = SecretBytes::new(bytes);
            Fault::Replace(Message::DkgRound2(forged))
        }
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 3).unwrap_err();
    assert_eq!(error.culprits(), vec![cheater.clone()], "{error}");
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
    // The victim itself named the cheater too.
    assert!(member_failures(&net, &victim)
        .iter()
        .any(|e| e.culprits() == vec![cheater.clone()]));
}

/// Two dealers acting together send one member shares off by +1 and −1 (each validly signed):
/// the member's shares sum to exactly the share every correct one gives, so it checks them by
/// their sum (`vss::dkg_part3`) and finds nothing wrong. The DKG completes, no one is named,
/// every member holds its share, and the key signs with the victim among the signers: the
/// pair gained nothing, and the victim's share is the right one.
fn dkg_shares_whose_errors_cancel_out_harm_no_one<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(23, 5);
    let (up, down, victim) = (nodes[1].clone(), nodes[2].clone(), nodes[3].clone());
    let keys = [
        (up.clone(), net.identity(&up).unwrap(), false),
        (down.clone(), net.identity(&down).unwrap(), true),
    ];
    let v = victim.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgRound2(m) if m.to == v => {
            let Some((from, key, lower)) = keys.iter().find(|(n, _, _)| *n == m.from) else {
                return Fault::Deliver;
            };
            let share = round2::Package::<S>::deserialize(m.share.expose()).unwrap();
            let scalar = share.signing_share().to_scalar();
            let off = if *lower {
                scalar - one::<S>()
            } else {
                scalar + one::<S>()
            };
            let bytes = round2::Package::<S>::new(SigningShare::<S>::new(off))
                .serialize()
                .unwrap();
            let mut forged = m.clone();
            forged.signature = key.sign(&statement(&m.session, ROUND2, from, Some(&v), &bytes).0);
            forged.share = SecretBytes::new(bytes);
            Fault::Replace(Message::DkgRound2(forged))
        }
        _ => Fault::Deliver,
    });
    let key = key_id("key-1");
    let pkp = net.run_dkg(&coordinator, &key, 3, &nodes).unwrap();
    net.clear_faults();
    assert!(member_failures(&net, &victim).is_empty());
    for node in &nodes {
        assert!(
            anyone_active(&net, std::slice::from_ref(node), &key),
            "{node}"
        );
    }
    let committee = [victim.clone(), nodes[0].clone(), nodes[4].clone()];
    let signers = signs(
        &mut net,
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &committee,
        b"m",
    );
    assert!(signers.contains(&victim));
}

/// A dealer signs two different round-2 shares for the same member: the member complains
/// with both as evidence, and the coordinator names the dealer from its own signatures.
fn dkg_equivocating_round2_is_named<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(34, 4);
    let cheater = nodes[0].clone();
    let victim = nodes[2].clone();
    let key = net.identity(&cheater).unwrap();
    let (c, v) = (cheater.clone(), victim.clone());
    net.set_faults(move |env| match &env.message {
        Message::DkgRound2(m) if m.from == c && m.to == v => {
            let share = round2::Package::<S>::deserialize(m.share.expose()).unwrap();
            let other = SigningShare::<S>::new(share.signing_share().to_scalar() + one::<S>());
            let bytes = round2::Package::<S>::new(other).serialize().unwrap();
            let mut second = m.clone();
            second.signature = key.sign(&statement(&m.session, ROUND2, &c, Some(&v), &bytes).0);
            second.share = SecretBytes::new(bytes);
            Fault::DeliverAlso(Message::DkgRound2(second))
        }
        // Both of the cheater's shares reach the victim before it can finish round 2 (a
        // second share that came after the member finished would be refused as late).
        Message::DkgRound2(m) if m.to == v => Fault::Delay(Duration::from_millis(200)),
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 2).unwrap_err();
    assert_eq!(error.culprits(), vec![cheater], "{error}");
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
}

/// A member complains about a share that is in fact valid: the coordinator checks the
/// evidence and names the complainer, not the dealer.
fn false_complaint_names_the_complainer<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(22, 4);
    let liar = nodes[0].clone();
    let mut evidence = None;
    let l = liar.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgRound2(m) if m.to == l && evidence.is_none() => {
            evidence = Some(m.clone());
            Fault::Deliver
        }
        Message::DkgConfirm(m) if m.from == l => match &evidence {
            Some(evidence) => Fault::Replace(Message::DkgComplaint(DkgComplaint {
                session: m.session,
                from: l.clone(),
                evidence: evidence.clone(),
                conflicting: None,
            })),
            None => Fault::Deliver,
        },
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 2).unwrap_err();
    assert_eq!(error.culprits(), vec![liar], "{error}");
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
}

/// A member signs two different round-1 packages (trying to show members different
/// commitments through the relay): the coordinator holds both signatures, names it, aborts,
/// and no member activates the key.
fn dkg_equivocating_round1_is_named<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(23, 5);
    let cheater = nodes[2].clone();
    let key = net.identity(&cheater).unwrap();
    let id = participant_identifier::<S>(&cheater).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let c = cheater.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgRound1(m) if m.from == c => {
            let (_, other) = dkg::part1::<S, _>(id, 5, 3, &mut rng).unwrap();
            Fault::DeliverAlso(round1_signed_by(&key, m, other.serialize().unwrap()))
        }
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 3).unwrap_err();
    assert_eq!(error.culprits(), vec![cheater], "{error}");
    assert!(error.to_string().contains("two different round-1 packages"));
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
    for node in &nodes {
        assert!(
            member_failures(&net, node)
                .iter()
                .any(|e| matches!(e, ProtocolError::Aborted { .. })),
            "{node} was not told of the abort"
        );
    }
}

/// A member signs a round-1 package claiming 100,000 coefficients (a threshold-3 DKG needs 3):
/// the coordinator reads the count from the bytes and aborts naming the member, without
/// decoding a point (the bytes after the count are not points at all); no key activates.
fn dkg_round1_with_too_many_coefficients_is_named_before_decoding<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(24, 5);
    let cheater = nodes[1].clone();
    let key = net.identity(&cheater).unwrap();
    let c = cheater.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgRound1(m) if m.from == c => {
            // frost's header (version 0, ciphersuite id), then LEB128 100000, then junk.
            let mut package = m.package[..5].to_vec();
            package.extend_from_slice(&[0xa0, 0x8d, 0x06]);
            package.extend_from_slice(&[0xff; 64]);
            Fault::Replace(round1_signed_by(&key, m, package))
        }
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 3).unwrap_err();
    assert_eq!(error.culprits(), vec![cheater], "{error}");
    assert!(
        error
            .to_string()
            .contains("claims Some(100000) coefficients"),
        "{error}"
    );
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
}

/// A member signs a confirmation with a public key package digest that differs from
/// everyone else's: the DKG fails naming it as the one who disagreed; nobody activates.
fn dkg_disagreeing_confirmation_is_named<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(24, 4);
    let liar = nodes[3].clone();
    let key = net.identity(&liar).unwrap();
    let l = liar.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgConfirm(m) if m.from == l => {
            let mut forged = m.clone();
            forged.public_key_package.0[0] ^= 1;
            forged.signature =
                key.sign(&statement(&m.session, CONFIRM, &l, None, &confirm_payload(&forged)).0);
            Fault::Replace(Message::DkgConfirm(forged))
        }
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 3).unwrap_err();
    assert!(
        matches!(error, ProtocolError::ConfirmationMismatch { .. }),
        "{error}"
    );
    assert_eq!(error.culprits(), vec![liar]);
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
}

/// A member that never speaks: the DKG ends at its deadline naming exactly that member.
fn dkg_silent_member_is_named<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(25, 4);
    let silent = nodes[2].clone();
    let s = silent.clone();
    net.set_faults(move |env| {
        if env.from == s {
            Fault::Drop
        } else {
            Fault::Deliver
        }
    });
    let error = dkg(&mut net, &coordinator, &nodes, 3).unwrap_err();
    assert!(matches!(error, ProtocolError::Timeout { .. }), "{error}");
    assert_eq!(error.culprits(), vec![silent]);
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
    assert!(net.now().0 >= DEFAULT_DKG_TIMEOUT.as_millis() as u64);
}

/// A member the DKG's open cannot reach (the dial fails: the node is down or not listening
/// yet): the DKG ends at once, long before its deadline, naming that member; nothing is
/// stored anywhere, and the same DKG succeeds once the member can be reached.
fn dkg_unreachable_member_is_named_at_once<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(26, 4);
    let down = nodes[1].clone();
    net.set_faults(unreachable(&down));
    let started = net.now();
    let error = dkg(&mut net, &coordinator, &nodes, 3).unwrap_err();
    assert!(
        matches!(error, ProtocolError::MemberUnreachable { ref node, .. } if *node == down),
        "{error}"
    );
    assert_eq!(error.culprits(), vec![down]);
    // run_dkg lets one more second pass after the outcome; the deadline is a minute.
    assert!(
        net.now().0 - started.0 <= 2_000,
        "ended {} ms after the open",
        net.now().0 - started.0
    );
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")));
    net.clear_faults();
    dkg(&mut net, &coordinator, &nodes, 3).unwrap();
}

/// The DKG ends at once because a member cannot be reached, and its abort reaches another
/// member before the open does: that member keeps the abort for the open, which it then ends,
/// so the key can be created again right away (not refused as "already running here" until
/// the dead DKG's deadline).
fn dkg_abort_overtaking_its_open_ends_it<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(27, 4);
    let (down, slow) = (nodes[1].clone(), nodes[2].clone());
    let (d, s) = (down.clone(), slow.clone());
    net.set_faults(move |env| match &env.message {
        _ if env.to == d => Fault::Unreachable,
        Message::DkgOpen(_) if env.to == s => Fault::Delay(Duration::from_millis(500)),
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 3).unwrap_err();
    assert_eq!(error.culprits(), vec![down], "{error}");
    let aborted = member_failures(&net, &slow);
    assert!(
        aborted
            .iter()
            .any(|e| matches!(e, ProtocolError::Aborted { .. })),
        "{slow} did not end the DKG on the abort that came first: {aborted:?}"
    );
    net.clear_faults();
    dkg(&mut net, &coordinator, &nodes, 3).unwrap();
}

/// A relayed round-1 package altered in transit fails its originator's signature: refused
/// by the member, which changes nothing there; no key activates.
fn tampered_relay_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(26, 3);
    let victim = nodes[0].clone();
    let v = victim.clone();
    net.set_faults(move |env| match &env.message {
        Message::DkgRound1Set(m) if env.to == v => {
            let mut forged = m.clone();
            let last = forged.packages[1].package.len() - 1;
            forged.packages[1].package[last] ^= 1;
            Fault::Replace(Message::DkgRound1Set(forged))
        }
        _ => Fault::Deliver,
    });
    let error = dkg(&mut net, &coordinator, &nodes, 2).unwrap_err();
    assert!(net
        .refused
        .iter()
        .any(|r| r.at == victim
            && matches!(r.error, ProtocolError::Refused(Refusal::BadSignature(_)))));
    assert!(!anyone_active(&net, &nodes, &key_id("key-1")), "{error}");
}

/// Signs over a committee of three where the first member returns a share that does not
/// verify and the second member's share meets `second`: the error names the first member for
/// an invalid share.
fn cheater_is_named<S: Suite>(seed: u64, second: fn(&SignShare) -> Fault) {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(seed, 3, 5);
    let (cheater, other) = (nodes[0].clone(), nodes[1].clone());
    let (c, o) = (cheater.clone(), other.clone());
    net.set_faults(move |env| match &env.message {
        Message::SignShare(m) if env.from == c => Fault::Replace(forged_share::<S>(m)),
        Message::SignShare(m) if env.from == o => second(m),
        _ => Fault::Deliver,
    });
    // Ask exactly a committee that contains the cheater, so it is selected.
    let committee = nodes[..3].to_vec();
    let error = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &committee, b"pay")
        .unwrap_err();
    assert_eq!(error.culprits(), vec![cheater], "{error}");
    assert!(
        error.to_string().contains("invalid signature share"),
        "{error}"
    );
}

/// A signer returns a share that does not verify: the coordinator names it.
fn signer_bad_share_is_named<S: Suite>() {
    cheater_is_named::<S>(27, |_| Fault::Deliver);
}

/// A signer returns a share that does not verify while another stays silent: at the deadline
/// the coordinator checks the shares it holds and names the cheater, not the silent one (the
/// shares are verified with the aggregate, not one by one on arrival).
fn bad_share_is_named_before_the_silent<S: Suite>() {
    cheater_is_named::<S>(28, |_| Fault::Drop);
}

/// A signer returns a share that does not verify, then another selected signer refuses: the
/// coordinator checks the shares it holds and names the cheater, not the refuser.
fn bad_share_is_named_before_a_refuser<S: Suite>() {
    // The refusal comes after the bad share is held.
    cheater_is_named::<S>(31, |m| {
        Fault::ReplaceLater(
            Message::SignRefusal(SignRefusal {
                session: m.session,
                reason: "changed its mind".into(),
                unauthorized: false,
                commitment_unknown: false,
            }),
            Duration::from_millis(100),
        )
    });
}

/// Captures the first signing package sent to `target` during a signature, and returns it.
fn sign_capturing_package<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &KeyId,
    pkp: &frost_core::keys::PublicKeyPackage<S>,
    committee: &[NodeId],
    target: &NodeId,
) -> SignPackage {
    let captured = Arc::new(std::sync::Mutex::new(None));
    let (slot, t) = (captured.clone(), target.clone());
    net.set_faults(move |env| {
        if let Message::SignPackage(m) = &env.message {
            if env.to == t {
                slot.lock().unwrap().get_or_insert_with(|| m.clone());
            }
        }
        Fault::Deliver
    });
    let outcome = net
        .sign(coordinator, key, Epoch(0), pkp, committee, b"first")
        .unwrap();
    verify_independently(pkp, b"first", &outcome.signature);
    net.clear_faults();
    let package = captured.lock().unwrap().take().unwrap();
    package
}

/// A replayed signing package, a second package in the same session and a package in
/// another session carrying the old commitment are all refused; no second share is made.
fn replayed_and_reused_packages_are_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(28, 2, 3);
    let target = nodes[1].clone();
    let committee = nodes[..2].to_vec();
    let package = sign_capturing_package(&mut net, &coordinator, &key, &pkp, &committee, &target);
    assert_eq!(net.shares_produced(Some(&target)), 1);

    // 1. The same package again.
    net.inject(&coordinator, &target, Message::SignPackage(package.clone()));
    net.run(Duration::from_secs(1));
    // 2. Another package in the same session (another message, same commitments).
    let original = SigningPackage::<S>::deserialize(&package.package).unwrap();
    let other = SigningPackage::new(original.signing_commitments().clone(), b"steal");
    let mut second = package.clone();
    second.package = other.serialize().unwrap();
    net.inject(&coordinator, &target, Message::SignPackage(second));
    net.run(Duration::from_secs(1));
    // 3. The old commitment under a new session id.
    let mut moved = package.clone();
    moved.session = SessionId([0xee; 32]);
    net.inject(&coordinator, &target, Message::SignPackage(moved));
    net.run(Duration::from_secs(1));

    assert_eq!(
        refusals_at(&net, &target),
        vec![
            Refusal::NonceConsumed,
            Refusal::NonceConsumed,
            Refusal::UnknownSession
        ]
    );
    assert_eq!(
        net.shares_produced(Some(&target)),
        1,
        "a refused package produced a share"
    );
}

/// Requests and packages naming the wrong key, the wrong epoch or an unknown session are
/// refused, and the coordinator hears why.
fn wrong_key_epoch_or_session_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(29, 2, 3);
    let target = nodes[0].clone();
    let request = SignRequest {
        path: Default::default(),
        session: SessionId([1; 32]),
        key_id: key.clone(),
        epoch: Epoch(1),
        message: b"m".to_vec(),
        client: Some(net.authorize(&key, &pkp, b"m")),
    };
    net.inject(&coordinator, &target, Message::SignRequest(request.clone()));
    let mut wrong_key = request.clone();
    wrong_key.key_id = KeyId::new("no-such-key").unwrap();
    net.inject(&coordinator, &target, Message::SignRequest(wrong_key));
    let package = SignPackage {
        session: SessionId([2; 32]),
        key_id: key.clone(),
        epoch: Epoch(0),
        package: vec![1, 2, 3],
    };
    net.inject(&coordinator, &target, Message::SignPackage(package));
    net.run(Duration::from_secs(1));
    assert_eq!(
        refusals_at(&net, &target),
        vec![
            Refusal::WrongEpoch {
                expected: Epoch(0),
                got: Epoch(1)
            },
            Refusal::WrongKey,
            Refusal::UnknownSession
        ]
    );
    assert_eq!(
        net.node(&target).unwrap().active_share(&key).unwrap().epoch,
        Epoch(0)
    );
    // A DKG message for a session the coordinator does not run is refused there too.
    net.inject(
        &target,
        &coordinator,
        Message::DkgRound1(DkgRound1 {
            session: SessionId([3; 32]),
            from: target.clone(),
            package: vec![],
            signature: vec![],
        }),
    );
    net.run(Duration::from_secs(1));
    assert!(refusals_at(&net, &coordinator).contains(&Refusal::WrongSession));
}

/// Selected signers that commit and then fall silent end the session at its deadline,
/// named; a member that never answers the request is named when too few commit.
fn silent_signers_are_named<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(30, 3, 4);
    let quiet = nodes[3].clone();
    let q = quiet.clone();
    net.set_faults(move |env| match &env.message {
        Message::SignShare(_) if env.from == q => Fault::Drop,
        _ => Fault::Deliver,
    });
    let committee = nodes[1..].to_vec();
    let error = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &committee, b"late")
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProtocolError::Timeout {
                phase: "signature shares",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.culprits(), vec![quiet]);
}

/// A signer that restarts between its commitment and the package has forgotten the nonce:
/// it refuses, and the coordinator names it at once instead of waiting for the deadline.
fn restarted_signer_voids_its_commitment<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(31, 2, 3);
    let restarting = nodes[0].clone();
    let committee = nodes[..2].to_vec();
    let session = SessionId([7; 32]);
    let signing = permafrost_protocol::sign::SigningCoordinator::<S>::new(
        session,
        key.clone(),
        Epoch(0),
        b"restart".to_vec(),
        Some(net.authorize(&key, &pkp, b"restart")),
        pkp.clone(),
        committee,
        net.now(),
        permafrost_protocol::sign::DEFAULT_SIGN_TIMEOUT,
    )
    .unwrap();
    let started = net.now();
    net.start(&coordinator, Box::new(signing), session);
    let r = restarting.clone();
    net.run_until(Duration::from_secs(1), |n| {
        n.node(&r).unwrap().open_signing_sessions() > 0
    });
    assert_eq!(net.node(&restarting).unwrap().open_signing_sessions(), 1);
    net.crash_and_restart(&restarting);
    assert_eq!(net.node(&restarting).unwrap().open_signing_sessions(), 0);
    net.run_until(Duration::from_secs(30), |n| {
        n.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Failed(_) | Event::SignatureReady { .. }))
    });
    let failure = net
        .events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Failed(err) => Some(err.clone()),
            Event::SignatureReady { .. } => panic!("signed with a voided commitment"),
            _ => None,
        })
        .unwrap();
    assert_eq!(failure.culprits(), vec![restarting.clone()], "{failure}");
    assert!(refusals_at(&net, &restarting).contains(&Refusal::UnknownSession));
    assert!(
        net.now().0 - started.0 < 1_000,
        "the coordinator waited for its deadline instead of hearing the refusal"
    );
    // And the restarted node signs again in a new session.
    let outcome = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &nodes[..2], b"again")
        .unwrap();
    verify_independently(&pkp, b"again", &outcome.signature);
}

per_suite!(
    dkg_round1_with_too_many_coefficients_is_named_before_decoding,
    dkg_bad_round2_share_is_named,
    dkg_shares_whose_errors_cancel_out_harm_no_one,
    dkg_equivocating_round2_is_named,
    false_complaint_names_the_complainer,
    dkg_equivocating_round1_is_named,
    dkg_disagreeing_confirmation_is_named,
    dkg_silent_member_is_named,
    dkg_unreachable_member_is_named_at_once,
    dkg_abort_overtaking_its_open_ends_it,
    tampered_relay_is_refused,
    signer_bad_share_is_named,
    bad_share_is_named_before_the_silent,
    bad_share_is_named_before_a_refuser,
    replayed_and_reused_packages_are_refused,
    wrong_key_epoch_or_session_is_refused,
    silent_signers_are_named,
    restarted_signer_voids_its_commitment,
);

/// Random bytes and truncated frames delivered to every party are refused as wire errors;
/// nothing panics and the honest run afterwards still succeeds.
#[test]
fn garbage_frames_are_refused_and_change_nothing() {
    let (mut net, nodes, coordinator) = Network::<Ed25519>::with_nodes(32, 3);
    let mut i = 0u32;
    net.set_faults(move |env| {
        i += 1;
        let frame = permafrost_protocol::wire::encode(&env.message).unwrap();
        match i % 4 {
            0 => Fault::ReplaceBytes(frame[..frame.len() / 2].to_vec()),
            1 => Fault::ReplaceBytes((0..i * 37 % 300).map(|b| (b * 131 + i) as u8).collect()),
            _ => Fault::Deliver,
        }
    });
    let _ = net.run_dkg(&coordinator, &key_id("garbage"), 2, &nodes);
    assert!(net
        .refused
        .iter()
        .any(|r| matches!(r.error, ProtocolError::Wire(_))));
    net.clear_faults();
    let pkp = net
        .run_dkg(&coordinator, &key_id("clean"), 2, &nodes)
        .unwrap();
    let sig = net
        .sign(
            &coordinator,
            &key_id("clean"),
            Epoch(0),
            &pkp,
            &nodes,
            b"ok",
        )
        .unwrap();
    verify_independently(&pkp, b"ok", &sig.signature);
}

/// A coordinator that offers a bad session id (not the hash of the parameters) is refused
/// by every member before any key material is generated.
#[test]
fn dkg_open_with_forged_session_id_is_refused() {
    let (mut net, nodes, coordinator) = Network::<Secp256k1>::with_nodes(33, 3);
    let session = DkgCoordinator::<Secp256k1>::new(
        key_id("k"),
        2,
        nodes.clone(),
        [5; 32],
        dkg_approvals(&mut net, &key_id("k"), 2, &nodes),
        Arc::new(SimVerifier),
        net.now(),
        DEFAULT_DKG_TIMEOUT,
    )
    .unwrap();
    let id = session.session();
    net.set_faults(|env| match &env.message {
        Message::DkgOpen(open) => {
            let mut forged = open.clone();
            forged.threshold = 3;
            Fault::Replace(Message::DkgOpen(forged))
        }
        _ => Fault::Deliver,
    });
    net.start(&coordinator, Box::new(session), id);
    net.run(Duration::from_secs(1));
    for node in &nodes {
        assert!(
            refusals_at(&net, node).contains(&Refusal::WrongSession),
            "{node}"
        );
    }
}
