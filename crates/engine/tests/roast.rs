//! ROAST in the coordinator: signatures despite silent, refusing, cheating and restarted
//! signers, within n − t + 1 attempts; signers refuse packages that reuse a commitment or
//! have the wrong shape, and an altered package never gets an honest signer blamed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use frost_core::round1::SigningCommitments;
use frost_core::{Identifier, SigningPackage};
use permafrost_engine::deadlines;
use permafrost_engine::sim::{Envelope, Fault, Network};
use permafrost_protocol::sign::{Signer, SignerLimits};
use permafrost_protocol::wire::{
    encode, DerivationPath, Epoch, Message, NodeId, SessionId, SignPackage, SignRefusal,
    SignRequest,
};
use permafrost_protocol::{Output, ProtocolError, Refusal, Session, Suite, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The distinct signing packages the coordinator sent: one per attempt.
type Attempts = Arc<Mutex<BTreeSet<Vec<u8>>>>;

/// Installs `hook` behind a recorder of the packages sent (the attempts).
fn faults_counting_attempts<S: Suite>(
    net: &mut Network<S>,
    mut hook: impl FnMut(&Envelope) -> Fault + 'static,
) -> Attempts {
    let attempts: Attempts = Arc::default();
    let seen = attempts.clone();
    net.set_faults(move |env| {
        if let Message::SignPackage(m) = &env.message {
            seen.lock().unwrap().insert(m.package.clone());
        }
        hook(env)
    });
    attempts
}

fn attempts(recorded: &Attempts) -> usize {
    recorded.lock().unwrap().len()
}

/// Delays the commitments of `order[i]` by `i × step`, so members become ready in that order.
fn ready_order(order: &[NodeId], step: u64, env: &Envelope) -> Option<Fault> {
    match &env.message {
        Message::SignCommitment(_) => order
            .iter()
            .position(|n| *n == env.from)
            .map(|i| Fault::Delay(Duration::from_millis(i as u64 * step))),
        _ => None,
    }
}

/// The same commitment with its two nonce commitments swapped: valid points, another
/// commitment.
fn swapped<S: Suite>(c: &SigningCommitments<S>) -> SigningCommitments<S> {
    SigningCommitments::new(*c.binding(), *c.hiding())
}

/// `package` with the commitment of one member other than `keep` altered.
fn tampered<S: Suite>(package: &[u8], keep: &NodeId) -> Vec<u8> {
    let original = SigningPackage::<S>::deserialize(package).unwrap();
    let keep = permafrost_protocol::wire::participant_identifier::<S>(keep).unwrap();
    let mut commitments = original.signing_commitments().clone();
    let other = *commitments.keys().find(|id| **id != keep).unwrap();
    let altered = swapped(&commitments[&other]);
    commitments.insert(other, altered);
    SigningPackage::new(commitments, original.message())
        .serialize()
        .unwrap()
}

/// n − t members commit and then fall silent (their shares never arrive), and they are the
/// first ready, interleaved with honest ones: ROAST still signs, within n − t + 1 attempts, with
/// none of them; nobody is called a culprit for silence.
fn silent_signers_cost_at_most_n_minus_t_plus_1_attempts<S: Suite>() {
    for (seed, t, n) in [(40u64, 2u16, 4usize), (41, 3, 5), (42, 2, 5)] {
        let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(seed, t, n);
        let t = usize::from(t);
        let silent: Vec<NodeId> = nodes[..n - t].to_vec();
        let honest: Vec<NodeId> = nodes[n - t..].to_vec();
        // Ready order: silent and honest alternating, silent first.
        let mut order = Vec::new();
        for i in 0..n {
            let list = if i % 2 == 0 { &silent } else { &honest };
            if let Some(node) = list.get(i / 2) {
                order.push(node.clone());
            }
        }
        order.extend(
            silent
                .iter()
                .chain(&honest)
                .filter(|x| !order.contains(x))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let quiet = silent.clone();
        let recorded = faults_counting_attempts(&mut net, move |env| {
            if matches!(env.message, Message::SignShare(_)) && quiet.contains(&env.from) {
                return Fault::Drop;
            }
            ready_order(&order, 60, env).unwrap_or(Fault::Deliver)
        });
        let message = format!("roast {seed}").into_bytes();
        let outcome = net
            .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, &message)
            .unwrap_or_else(|e| panic!("({t},{n}): {e}"));
        verify_independently(&pkp, &message, &outcome.signature);
        let used = attempts(&recorded);
        assert!(
            used <= n - t + 1,
            "({t},{n}): {used} attempts, more than n − t + 1"
        );
        assert!(
            used >= 2,
            "({t},{n}): the silent signers were never selected"
        );
        assert_eq!(outcome.signers.len(), t);
        assert!(outcome.signers.iter().all(|s| honest.contains(s)));
        assert!(outcome.culprits.is_empty(), "{:?}", outcome.culprits);
    }
}

/// Two signers (n − t) return garbage shares — one that parses but does not verify, one that
/// does not parse — and are the first ready: the signature still comes out and names both.
fn garbage_shares_are_named_and_signing_completes<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(43, 3, 5);
    let (wrong, unparsable) = (nodes[0].clone(), nodes[1].clone());
    let order: Vec<NodeId> = nodes.clone();
    let (w, u) = (wrong.clone(), unparsable.clone());
    let recorded = faults_counting_attempts(&mut net, move |env| match &env.message {
        Message::SignShare(m) if env.from == w => Fault::Replace(wrong_share::<S>(m)),
        Message::SignShare(m) if env.from == u => {
            let mut forged = m.clone();
            forged.share = vec![0xff; 7];
            Fault::Replace(Message::SignShare(forged))
        }
        _ => ready_order(&order, 60, env).unwrap_or(Fault::Deliver),
    });
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"pay 5")
        .unwrap();
    verify_independently(&pkp, b"pay 5", &outcome.signature);
    let mut cheaters = vec![wrong, unparsable];
    cheaters.sort();
    assert_eq!(outcome.culprits, cheaters);
    assert!(outcome.signers.iter().all(|s| !cheaters.contains(s)));
    assert!(attempts(&recorded) <= 5 - 3 + 1);
}

/// Signers send the group commitment R with their shares, and the coordinator takes it when
/// they all agree and the signature verifies with it. A signer that sends another R (another
/// point, bytes that are no point, none, or every signer the same wrong point) with a valid
/// share costs the coordinator the computation of R, nothing else: the signature comes out in
/// the first attempt, with it among the signers, and nobody is named.
fn a_wrong_group_commitment_costs_only_its_computation<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(47, 3, 5);
    let another_point = pkp.verifying_key().serialize().unwrap();
    let claims: [(bool, Vec<u8>); 4] = [
        (false, another_point.clone()),
        (false, vec![0xff; 33]),
        (false, Vec::new()),
        (true, another_point),
    ];
    for (round, (everyone, claim)) in claims.into_iter().enumerate() {
        // The liar is the first signer whose share comes (the coordinator rotates its order
        // of preference from one request to the next).
        let liar: Arc<Mutex<Option<NodeId>>> = Arc::default();
        let l = liar.clone();
        let order: Vec<NodeId> = nodes.clone();
        // The packages sent, in two rounds or one (after the first request the signers'
        // pools are filled): one per attempt.
        let packages: Attempts = Arc::default();
        let seen = packages.clone();
        net.set_faults(move |env| match &env.message {
            Message::SignPackage(m) => {
                seen.lock().unwrap().insert(m.package.clone());
                Fault::Deliver
            }
            Message::SignWithCommitment(m) => {
                seen.lock().unwrap().insert(m.package.clone());
                Fault::Deliver
            }
            Message::SignShare(m) => {
                let mut first = l.lock().unwrap();
                let first = first.get_or_insert_with(|| env.from.clone());
                if !everyone && *first != env.from {
                    return Fault::Deliver;
                }
                let mut lied = m.clone();
                lied.group_commitment = claim.clone();
                Fault::Replace(Message::SignShare(lied))
            }
            _ => ready_order(&order, 60, env).unwrap_or(Fault::Deliver),
        });
        let message = format!("pay {round}");
        let outcome = net
            .sign_roast(
                &coordinator,
                &key,
                Epoch(0),
                &pkp,
                &nodes,
                message.as_bytes(),
            )
            .unwrap();
        verify_independently(&pkp, message.as_bytes(), &outcome.signature);
        let liar = liar.lock().unwrap().clone().unwrap();
        assert!(outcome.signers.contains(&liar), "round {round}");
        assert!(
            outcome.culprits.is_empty(),
            "round {round}: {:?}",
            outcome.culprits
        );
        assert_eq!(attempts(&packages), 1, "round {round}");
    }
}

/// A coordinator puts a signer's spent commitment into a second package: refused as a
/// replay, no second share; the signer's fresh commitment of the same session stays live.
fn spent_commitment_in_a_second_package_is_refused<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(44, 2, 3);
    let target = nodes[1].clone();
    let committee = nodes[..2].to_vec();
    let captured: Arc<Mutex<Option<SignPackage>>> = Arc::default();
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
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &committee, b"once")
        .unwrap();
    verify_independently(&pkp, b"once", &outcome.signature);
    net.clear_faults();
    let first = captured.lock().unwrap().take().unwrap();
    assert_eq!(net.shares_produced(Some(&target)), 1);

    // The coordinator asks again in the same session (as ROAST does): a fresh commitment.
    let client = Some(net.authorize(&key, &pkp, b"once"));
    net.inject(
        &coordinator,
        &target,
        Message::SignRequest(SignRequest {
            path: Default::default(),
            session: first.session,
            key_id: key.clone(),
            epoch: Epoch(0),
            message: b"once".to_vec(),
            client,
        }),
    );
    net.run(Duration::from_millis(100));
    assert_eq!(net.node(&target).unwrap().open_signing_sessions(), 1);

    // A second package with the spent commitment and another co-signer commitment.
    let mut second = first.clone();
    second.package = tampered::<S>(&first.package, &target);
    assert_ne!(second.package, first.package);
    net.inject(&coordinator, &target, Message::SignPackage(second));
    net.run(Duration::from_millis(100));
    assert_eq!(refusals_at(&net, &target), vec![Refusal::NonceConsumed]);
    assert_eq!(
        net.shares_produced(Some(&target)),
        1,
        "signed a spent commitment"
    );
    assert_eq!(
        net.node(&target).unwrap().open_signing_sessions(),
        1,
        "a replay voided the fresh commitment"
    );
}

/// Different signers get different packages for one attempt (one altered commitment of a
/// co-signer; for another signer, another message): the signer of the altered package signs
/// it, but its share names that package, so the coordinator sets it aside without blaming
/// it; the one shown another message refuses. ROAST signs with the others; no culprit.
fn different_packages_blame_no_honest_signer<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(45, 3, 5);
    let (altered, relabelled) = (nodes[0].clone(), nodes[1].clone());
    let order: Vec<NodeId> = nodes.clone();
    let (a, r) = (altered.clone(), relabelled.clone());
    let (mut done_a, mut done_r) = (false, false);
    let recorded = faults_counting_attempts(&mut net, move |env| match &env.message {
        Message::SignPackage(m) if env.to == a && !done_a => {
            done_a = true;
            let mut forged = m.clone();
            forged.package = tampered::<S>(&m.package, &a);
            Fault::Replace(Message::SignPackage(forged))
        }
        Message::SignPackage(m) if env.to == r && !done_r => {
            done_r = true;
            let original = SigningPackage::<S>::deserialize(&m.package).unwrap();
            let other = SigningPackage::new(original.signing_commitments().clone(), b"pay 500");
            let mut forged = m.clone();
            forged.package = other.serialize().unwrap();
            Fault::Replace(Message::SignPackage(forged))
        }
        _ => ready_order(&order, 60, env).unwrap_or(Fault::Deliver),
    });
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"pay 5")
        .unwrap();
    verify_independently(&pkp, b"pay 5", &outcome.signature);
    // The altered package really was signed: without the digest its share would not verify
    // against the coordinator's package and its honest signer would be named.
    assert_eq!(net.shares_produced(Some(&altered)), 1);
    assert!(refusals_at(&net, &relabelled).contains(&Refusal::MessageNotApproved));
    assert!(outcome.culprits.is_empty(), "blamed {:?}", outcome.culprits);
    assert!(!outcome.signers.contains(&altered));
    assert!(!outcome.signers.contains(&relabelled));
    assert!(attempts(&recorded) >= 2);
}

/// A signer restarts after committing, and its commitment is in the first attempt: it
/// refuses the package (its nonce is gone), and ROAST moves on to the other signers at once.
fn restarted_signer_is_passed_over<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(46, 3, 5);
    let restarting = nodes[2].clone();
    let mut order = vec![restarting.clone()];
    order.extend(nodes.iter().filter(|n| **n != restarting).cloned());
    let recorded = faults_counting_attempts(&mut net, move |env| {
        ready_order(&order, 60, env).unwrap_or(Fault::Deliver)
    });
    let started = net.now();
    let mark = start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        b"restart",
        SessionId([9; 32]),
    );
    let r = restarting.clone();
    net.run_until(Duration::from_secs(1), |n| {
        n.node(&r).unwrap().open_signing_sessions() > 0
    });
    net.crash_and_restart(&restarting);
    assert_eq!(net.node(&restarting).unwrap().open_signing_sessions(), 0);
    let (signers, culprits) =
        roast_outcome(&mut net, &coordinator, mark, &pkp, b"restart").unwrap();
    assert!(refusals_at(&net, &restarting).contains(&Refusal::UnknownSession));
    assert!(!signers.contains(&restarting));
    assert!(culprits.is_empty());
    assert_eq!(
        attempts(&recorded),
        2,
        "the restarted signer was not in the first attempt"
    );
    assert!(
        net.now().0 - started.0 < deadlines::SIGNING_ATTEMPT.as_millis() as u64,
        "ROAST waited for a deadline instead of moving on"
    );
}

/// Too many refusals end the request at once with "fewer than t reachable", naming them;
/// too many silent members end it at the deadline, naming them.
fn too_few_reachable_fails_naming_who<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(47, 3, 4);
    let refusing = nodes[..2].to_vec();
    let r = refusing.clone();
    net.set_faults(move |env| match &env.message {
        Message::SignCommitment(m) if r.contains(&env.from) => {
            Fault::Replace(Message::SignRefusal(SignRefusal {
                session: m.session,
                reason: "policy".into(),
                unauthorized: false,
                commitment_unknown: false,
            }))
        }
        _ => Fault::Deliver,
    });
    let started = net.now();
    let error = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"no")
        .unwrap_err();
    assert!(
        matches!(error, ProtocolError::TooFewSigners { .. }),
        "{error}"
    );
    assert_eq!(error.culprits(), refusing);
    assert!(net.now().0 - started.0 < 1_000, "waited for the deadline");

    let silent = nodes[2..].to_vec();
    let s = silent.clone();
    net.set_faults(move |env| {
        if s.contains(&env.to) {
            Fault::Drop
        } else {
            Fault::Deliver
        }
    });
    let error = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"no")
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProtocolError::Timeout {
                phase: "ROAST signing",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.culprits(), silent);
}

/// A package claiming 100,000 commitments (about 7 MB: far over the 128 KiB frame cap, so it
/// goes to the signer directly) is refused from its header, before any point is decoded: its
/// entries are not even valid points. Through the network, a package of 2 × committee
/// commitments is refused too. No share, and the live nonce survives.
fn oversized_package_is_refused_before_arithmetic<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(48, 2, 3);
    let target = nodes[0].clone();
    let share = net
        .node(&target)
        .unwrap()
        .active_share(&key)
        .unwrap()
        .clone();
    let mut signer = Signer::new(share, SignerLimits::default()).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let session = SessionId([5; 32]);
    let request = SignRequest {
        path: Default::default(),
        session,
        key_id: key.clone(),
        epoch: Epoch(0),
        message: b"m".to_vec(),
        // The signer alone does not check clients; the node's gate does, before it.
        client: None,
    };
    signer
        .handle_message(
            &coordinator,
            Message::SignRequest(request.clone()),
            Timestamp(0),
            &mut rng,
        )
        .unwrap();
    let commitment = match signer.poll_output() {
        Some(Output::Send {
            message: Message::SignCommitment(c),
            ..
        }) => SigningCommitments::<S>::deserialize(&c.commitment).unwrap(),
        other => panic!("{other:?}"),
    };
    // frost's layout: version (1) ‖ suite id (4) ‖ varint count ‖ entries ‖ message.
    let me = permafrost_protocol::wire::participant_identifier::<S>(&target).unwrap();
    let one = SigningPackage::new([(me, commitment)].into(), b"m")
        .serialize()
        .unwrap();
    assert_eq!(one[5], 1);
    let tail = 2; // varint length of the message, and the message
    let entry_len = one.len() - 6 - tail;
    let mut huge = one[..5].to_vec();
    let mut count = 100_000u32;
    while count >= 0x80 {
        huge.push((count as u8 & 0x7f) | 0x80);
        count >>= 7;
    }
    huge.push(count as u8);
    huge.extend(std::iter::repeat_n(0xffu8, entry_len * 100_000));
    huge.extend_from_slice(&one[one.len() - tail..]);
    let package = SignPackage {
        session,
        key_id: key.clone(),
        epoch: Epoch(0),
        package: huge,
    };
    assert!(encode(&Message::SignPackage(package.clone())).is_err());
    let error = signer
        .handle_message(
            &coordinator,
            Message::SignPackage(package),
            Timestamp(1),
            &mut rng,
        )
        .unwrap_err();
    match error {
        ProtocolError::Refused(Refusal::CommitmentSet(why)) => {
            assert!(why.contains("100000 commitments"), "{why}")
        }
        other => panic!("expected a commitment-set refusal, got {other}"),
    }
    assert!(matches!(
        signer.poll_output(),
        Some(Output::Send {
            message: Message::SignRefusal(_),
            ..
        })
    ));
    assert!(signer.poll_output().is_none(), "a share or event came out");
    assert_eq!(signer.open_sessions(), 1);

    // Through the wire: 6 commitments (2 × the committee) fit the frame and are refused.
    let request = SignRequest {
        client: Some(net.authorize(&key, &pkp, b"m")),
        ..request
    };
    net.inject(&coordinator, &target, Message::SignRequest(request));
    net.run(Duration::from_millis(100));
    let mut commitments: std::collections::BTreeMap<Identifier<S>, _> = Default::default();
    for i in 0..6u8 {
        commitments.insert(Identifier::derive(&[i]).unwrap(), commitment);
    }
    let package = SignPackage {
        session,
        key_id: key,
        epoch: Epoch(0),
        package: SigningPackage::new(commitments, b"m").serialize().unwrap(),
    };
    net.inject(&coordinator, &target, Message::SignPackage(package));
    net.run(Duration::from_millis(100));
    assert!(refusals_at(&net, &target)
        .iter()
        .any(|r| matches!(r, Refusal::CommitmentSet(why) if why.contains("6 commitments"))));
    assert_eq!(net.shares_produced(Some(&target)), 0);
}

/// A member that refuses (or cannot be reached for) the next attempt after it gave a valid
/// share still counts for the attempt holding that share: with t = n = 3, the request completes
/// instead of failing when the refusal arrives before the other shares.
fn a_refusal_after_a_share_does_not_spoil_its_attempt<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(50, 3, 3);
    let leaving = nodes[0].clone();
    let l = leaving.clone();
    let mut commitments = 0;
    net.set_faults(move |env| match &env.message {
        Message::SignCommitment(m) if env.from == l => {
            commitments += 1;
            if commitments == 2 {
                Fault::Replace(Message::SignRefusal(SignRefusal {
                    session: m.session,
                    reason: "going away".into(),
                    unauthorized: false,
                    commitment_unknown: false,
                }))
            } else {
                Fault::Deliver
            }
        }
        // The others' shares come late, after the refusal.
        Message::SignShare(_) if env.from != l => Fault::Delay(Duration::from_millis(200)),
        _ => Fault::Deliver,
    });
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"last one")
        .unwrap();
    verify_independently(&pkp, b"last one", &outcome.signature);
    assert!(outcome.signers.contains(&leaving));
}

/// The coordinator asks t members, not n: a signature asks exactly t for a commitment, and
/// nothing arrives that nobody needed. A member that stays silent among the first t is
/// replaced after the attempt timeout (one more is asked), and the signature comes out without
/// it.
fn only_t_are_asked_and_a_silent_one_is_replaced<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(51, 3, 5);
    let asked: Arc<Mutex<Vec<NodeId>>> = Arc::default();
    let log = asked.clone();
    net.set_faults(move |env| {
        if matches!(env.message, Message::SignRequest(_)) {
            log.lock().unwrap().push(env.to.clone());
        }
        Fault::Deliver
    });
    let refused_before = net.refused.len();
    let outcome = net
        .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"just t")
        .unwrap();
    verify_independently(&pkp, b"just t", &outcome.signature);
    assert!(outcome.passed_over.is_empty(), "{:?}", outcome.passed_over);
    net.run(Duration::from_secs(1));
    let mut first: Vec<NodeId> = asked.lock().unwrap().clone();
    first.sort();
    assert_eq!(first, outcome.signers, "asked {first:?}");
    assert_eq!(
        net.refused.len(),
        refused_before,
        "late messages were refused"
    );

    // The first in the order is silent: after the attempt timeout one more is asked.
    let silent = nodes[0].clone();
    asked.lock().unwrap().clear();
    let (log, quiet) = (asked.clone(), silent.clone());
    net.set_faults(move |env| {
        if matches!(env.message, Message::SignRequest(_)) {
            log.lock().unwrap().push(env.to.clone());
        }
        if env.to == quiet {
            Fault::Drop
        } else {
            Fault::Deliver
        }
    });
    let started = net.now();
    let mark = start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        b"one silent",
        SessionId([51; 32]),
    );
    let (signers, _) = roast_outcome(&mut net, &coordinator, mark, &pkp, b"one silent").unwrap();
    assert!(!signers.contains(&silent));
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked[..3], nodes[..3], "the first t in order");
    assert_eq!(asked.len(), 4, "one more, not all: {asked:?}");
    let waited = net.now().0 - started.0;
    assert!(
        waited >= deadlines::SIGNING_ATTEMPT.as_millis() as u64,
        "asked another before the attempt timeout ({waited} ms)"
    );
}

/// A member that gave a bad share in an attempt given up for another member's silence is named
/// when the attempt is given up (its share is judged then), and is not put in a later
/// attempt; the signature comes out with the honest members.
fn a_cheater_in_a_given_up_attempt_is_named_at_once<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(53, 2, 4);
    let (silent, cheat) = (nodes[0].clone(), nodes[1].clone());
    let (s, c) = (silent.clone(), cheat.clone());
    net.set_faults(move |env| match &env.message {
        // The silent member never gives its share; the cheat gives a bad one.
        Message::SignShare(_) if env.from == s => Fault::Drop,
        Message::SignShare(m) if env.from == c => Fault::Replace(wrong_share::<S>(m)),
        _ => Fault::Deliver,
    });
    let mark = start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        b"cheat",
        SessionId([53; 32]),
    );
    let (signers, culprits) = roast_outcome(&mut net, &coordinator, mark, &pkp, b"cheat").unwrap();
    let mut honest = nodes[2..].to_vec();
    honest.sort();
    assert_eq!(signers, honest);
    assert!(culprits.contains(&cheat), "{culprits:?}");
}

/// A signer asked again in its session in the same millisecond as it signed (a fresh nonce for
/// ROAST's next attempt) still lets that nonce expire: it is not kept for ever.
fn a_nonce_asked_for_again_at_once_still_expires<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(54, 2, 3);
    let share = |n: &NodeId| net.node(n).unwrap().active_share(&key).unwrap().clone();
    let mut signers: Vec<Signer<S>> = nodes[..2]
        .iter()
        .map(|n| Signer::new(share(n), SignerLimits::default()).unwrap())
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let session = SessionId([54; 32]);
    let request = Message::SignRequest(SignRequest {
        path: Default::default(),
        session,
        key_id: key.clone(),
        epoch: Epoch(0),
        message: b"m".to_vec(),
        client: Some(net.authorize(&key, &pkp, b"m")),
    });
    let at = Timestamp(1_000);
    let mut commitments = std::collections::BTreeMap::new();
    for (signer, node) in signers.iter_mut().zip(&nodes) {
        signer
            .handle_message(&coordinator, request.clone(), at, &mut rng)
            .unwrap();
        let Some(Output::Send {
            message: Message::SignCommitment(c),
            ..
        }) = signer.poll_output()
        else {
            panic!("no commitment");
        };
        let id = permafrost_protocol::wire::participant_identifier::<S>(node).unwrap();
        commitments.insert(
            id,
            SigningCommitments::<S>::deserialize(&c.commitment).unwrap(),
        );
    }
    let package = SignPackage {
        session,
        key_id: key.clone(),
        epoch: Epoch(0),
        package: SigningPackage::new(commitments, b"m").serialize().unwrap(),
    };
    let first = &mut signers[0];
    first
        .handle_message(&coordinator, Message::SignPackage(package), at, &mut rng)
        .unwrap();
    first
        .handle_message(&coordinator, request, at, &mut rng)
        .unwrap();
    assert_eq!(first.open_sessions(), 1);
    let later = at.after(SignerLimits::default().session_timeout);
    assert_eq!(first.poll_timeout(), Some(later));
    first.handle_timeout(later);
    assert_eq!(first.open_sessions(), 0, "the fresh nonce never expires");
    assert_eq!(first.poll_timeout(), None);
}

/// The outcomes (signature or failure) the coordinator gave since event index `mark`.
fn outcomes_since<S: Suite>(
    net: &Network<S>,
    coordinator: &NodeId,
    mark: usize,
) -> Vec<Result<frost_core::Signature<S>, ProtocolError>> {
    use permafrost_protocol::Event;
    net.events[mark..]
        .iter()
        .filter(|(at, _)| at == coordinator)
        .filter_map(|(_, event)| match event {
            Event::SignatureReady { signature, .. } => Some(Ok(*signature)),
            Event::Failed(error) => Some(Err(error.clone())),
            _ => None,
        })
        .collect()
}

/// Starts a signature of `message` with `key` through the coordinator core, approved by the
/// simulator's client; returns the mark its outcome comes after.
fn start_signature<S: Suite>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    key: &permafrost_protocol::wire::KeyId,
    pkp: &frost_core::keys::PublicKeyPackage<S>,
    committee: &[NodeId],
    message: &[u8],
) -> usize {
    let client = net.authorize(key, pkp, message);
    net.start_sign_roast(
        coordinator,
        key,
        Epoch(0),
        pkp,
        committee,
        &DerivationPath::ROOT,
        message,
        client,
    )
    .unwrap()
}

/// The coordinator's aggregations run off its loop, the keys taking turns. While a signature
/// with key A waits for its aggregation (held, as a worker busy with key A would hold it), a
/// signature with key B is made and answered; A's is answered, and verifies, once its
/// aggregation ends.
fn a_key_waiting_for_its_aggregation_does_not_stall_another<S: Suite>() {
    let (mut net, nodes, coordinator, key_a, pkp_a) = network_with_key::<S>(71, 2, 3);
    let key_b = key_id("key-2");
    let pkp_b = net.run_dkg(&coordinator, &key_b, 2, &nodes).unwrap();
    net.coordinator_mut(&coordinator)
        .unwrap()
        .hold_aggregations(&key_a);
    let mark = start_signature(&mut net, &coordinator, &key_a, &pkp_a, &nodes, b"with A");
    net.run_until(deadlines::SIGNING_ATTEMPT, |n| {
        n.coordinator(&coordinator).unwrap().held_aggregations() == 1
    });
    assert_eq!(
        net.coordinator(&coordinator).unwrap().held_aggregations(),
        1,
        "A's shares are all in and its aggregation waits"
    );
    assert!(outcomes_since(&net, &coordinator, mark).is_empty());

    let signers = signs(
        &mut net,
        &coordinator,
        &key_b,
        Epoch(0),
        &pkp_b,
        &nodes,
        b"with B",
    );
    assert_eq!(signers.len(), 2);
    let outcomes = outcomes_since(&net, &coordinator, mark);
    assert_eq!(outcomes.len(), 1, "only B's request was answered");
    verify_independently(&pkp_b, b"with B", outcomes[0].as_ref().unwrap());

    net.coordinator_mut(&coordinator)
        .unwrap()
        .release_aggregations(&key_a);
    net.run_until(deadlines::SIGNING, |n| {
        outcomes_since(n, &coordinator, mark).len() == 2
    });
    let outcomes = outcomes_since(&net, &coordinator, mark);
    assert_eq!(outcomes.len(), 2);
    verify_independently(&pkp_a, b"with A", outcomes[1].as_ref().unwrap());
    assert_eq!(
        net.coordinator(&coordinator).unwrap().held_aggregations(),
        0
    );
}

/// An aggregation that does not come back in time fails its request at the request's
/// deadline, naming the coordinator's own aggregation and no signer; its late result changes
/// nothing, and the key signs again.
fn an_aggregation_late_past_the_deadline_fails_its_request_naming_no_signer<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(72, 2, 3);
    net.coordinator_mut(&coordinator)
        .unwrap()
        .hold_aggregations(&key);
    let mark = start_signature(&mut net, &coordinator, &key, &pkp, &nodes, b"late");
    net.run_until(deadlines::SIGNING * 2, |n| {
        !outcomes_since(n, &coordinator, mark).is_empty()
    });
    let outcomes = outcomes_since(&net, &coordinator, mark);
    assert_eq!(outcomes.len(), 1);
    match &outcomes[0] {
        Err(ProtocolError::Timeout { phase, silent }) => {
            assert!(phase.contains("aggregation"), "{phase}");
            assert!(silent.is_empty(), "signers blamed: {silent:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        net.coordinator(&coordinator).unwrap().held_aggregations(),
        1
    );

    net.coordinator_mut(&coordinator)
        .unwrap()
        .release_aggregations(&key);
    net.run(deadlines::SIGNING_ATTEMPT);
    assert_eq!(
        outcomes_since(&net, &coordinator, mark).len(),
        1,
        "the late result answered nothing"
    );
    signs(
        &mut net,
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"again",
    );
}

per_suite!(
    a_cheater_in_a_given_up_attempt_is_named_at_once,
    a_key_waiting_for_its_aggregation_does_not_stall_another,
    an_aggregation_late_past_the_deadline_fails_its_request_naming_no_signer,
    a_nonce_asked_for_again_at_once_still_expires,
    only_t_are_asked_and_a_silent_one_is_replaced,
    a_refusal_after_a_share_does_not_spoil_its_attempt,
    silent_signers_cost_at_most_n_minus_t_plus_1_attempts,
    garbage_shares_are_named_and_signing_completes,
    a_wrong_group_commitment_costs_only_its_computation,
    spent_commitment_in_a_second_package_is_refused,
    different_packages_blame_no_honest_signer,
    restarted_signer_is_passed_over,
    too_few_reachable_fails_naming_who,
    oversized_package_is_refused_before_arithmetic,
);

/// The one-shot coordinator refuses a share computed on a package it did not send (it names
/// that package), instead of blaming its signer.
#[test]
fn one_shot_coordinator_refuses_a_share_on_another_package() {
    type S = Ed25519;
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(49, 2, 3);
    let victim = nodes[0].clone();
    let v = victim.clone();
    let mut done = false;
    net.set_faults(move |env| match &env.message {
        Message::SignPackage(m) if env.to == v && !done => {
            done = true;
            let mut forged = m.clone();
            forged.package = tampered::<S>(&m.package, &v);
            Fault::Replace(Message::SignPackage(forged))
        }
        _ => Fault::Deliver,
    });
    let error = net
        .sign(&coordinator, &key, Epoch(0), &pkp, &nodes[..2], b"x")
        .unwrap_err();
    assert!(
        !matches!(error, ProtocolError::Misbehaviour { .. }),
        "{error}"
    );
    assert!(refusals_at(&net, &coordinator).contains(&Refusal::PackageMismatch));
}

/// A member's commitment has a point outside the prime-order subgroup (ed25519, the only suite
/// with a cofactor), and it is first in line. The coordinator reads commitments without that
/// check, so the point goes into the first attempt's package; every honest signer refuses the
/// package; the first refusal makes the coordinator check the package, name that member and
/// keep the refusers in (their nonces are still live: their commitments go into the next
/// attempt), asking only one more member. With a 3-of-5 key, two honest refusers left out
/// would leave too few: the signature comes out from the next three, only that member is
/// named, and the fifth is never asked.
#[test]
fn a_commitment_outside_the_group_is_named_and_the_refusers_stay_in() {
    type S = Ed25519;
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(50, 3, 5);
    let bad = nodes[0].clone();
    let b = bad.clone();
    let requests: Arc<Mutex<Vec<NodeId>>> = Arc::default();
    let asked = requests.clone();
    let recorded = faults_counting_attempts(&mut net, move |env| match &env.message {
        Message::SignCommitment(m) if env.from == b => {
            let mut forged = m.clone();
            forged.commitment = ed25519_commitment_outside_the_group(&m.commitment);
            Fault::Replace(Message::SignCommitment(forged))
        }
        Message::SignRequest(_) => {
            asked.lock().unwrap().push(env.to.clone());
            Fault::Deliver
        }
        _ => Fault::Deliver,
    });
    let request = SessionId([50; 32]);
    let mark = start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &nodes,
        b"pay 6",
        request,
    );
    let (signers, culprits) = roast_outcome(&mut net, &coordinator, mark, &pkp, b"pay 6").unwrap();
    assert_eq!(culprits, vec![bad.clone()]);
    assert_eq!(signers, nodes[1..4].to_vec());
    assert_eq!(attempts(&recorded), 2);
    // The honest members of the first attempt refused its package for the point, and each
    // signed the second with the commitment it had made for the first: asked once, the same
    // commitment in both packages. The fourth was asked once, for the second attempt; the
    // fifth never.
    // A package is version ‖ suite ‖ count (one byte for 3) ‖ 3 × (identifier ‖ commitment of
    // 5 + 2 × 32 bytes) ‖ message; the first one holds a point frost's decoder refuses.
    let entry_of = |package: &[u8], id: &[u8]| -> Vec<u8> {
        package[6..]
            .chunks(32 + 5 + 64)
            .take(3)
            .find(|entry| entry[..32] == *id)
            .unwrap()[32..]
            .to_vec()
    };
    let packages: Vec<Vec<u8>> = recorded.lock().unwrap().iter().cloned().collect();
    let requests = requests.lock().unwrap().clone();
    for (i, node) in nodes.iter().enumerate() {
        let expected = usize::from(i < 4);
        let asked = requests.iter().filter(|n| *n == node).count();
        assert_eq!(asked, expected, "{node}");
    }
    for honest in &nodes[1..3] {
        let id = permafrost_protocol::wire::participant_identifier::<S>(honest)
            .unwrap()
            .serialize();
        let used: BTreeSet<_> = packages.iter().map(|p| entry_of(p, &id)).collect();
        assert_eq!(used.len(), 1, "{honest}: {} commitments", used.len());
    }
    for honest in &nodes[1..3] {
        assert!(
            refusals_at(&net, honest)
                .iter()
                .any(|r| matches!(r, Refusal::Malformed(e) if e.contains("point"))),
            "{honest}: {:?}",
            refusals_at(&net, honest)
        );
    }
}
