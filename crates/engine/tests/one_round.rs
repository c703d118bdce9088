//! One-round signing from commitment pools, through the production node and coordinator
//! cores: once the pools are filled a signature is one message to each of `t` signers; a
//! pooled nonce is used at most once across refills, retries and restarts; an exhausted pool
//! falls back to two rounds; a signer that refuses, cheats or stays silent in one round is
//! replaced by ROAST and named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use frost_core::SigningPackage;
use permafrost_engine::coordinator::POOL_BATCH;
use permafrost_engine::sim::{Envelope, Fault, Network};
use permafrost_keystore::AuditKind;
use permafrost_protocol::sign::{Signer, SignerLimits, MAX_POOL_BATCH};
use permafrost_protocol::wire::{
    participant_identifier, CommitmentsRequest, Epoch, Message, MessageKind, NodeId, SessionId,
    SignRefusal, SignWithCommitment,
};
use permafrost_protocol::{Output, ProtocolError, Refusal, Session, Suite, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Every message sent, in order.
type Log = Arc<Mutex<Vec<Envelope>>>;

/// Records every message, then applies `hook`.
fn record<S: Suite>(
    net: &mut Network<S>,
    mut hook: impl FnMut(&Envelope) -> Fault + 'static,
) -> Log {
    let log: Log = Arc::default();
    let seen = log.clone();
    net.set_faults(move |env| {
        seen.lock().unwrap().push(env.clone());
        hook(env)
    });
    log
}

/// How many messages of `kind` the log holds to `to` (to anyone if `None`).
fn count(log: &Log, kind: MessageKind, to: Option<&NodeId>) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|e| e.message.kind() == kind && to.is_none_or(|t| e.to == *t))
        .count()
}

/// Asserts that no node's commitment appears in two different signing packages sent (one
/// round or two): each nonce is asked to sign at most one package.
fn assert_no_commitment_in_two_packages<S: Suite>(sent: &[Envelope], nodes: &[NodeId]) {
    let mut packages: BTreeMap<(NodeId, Vec<u8>), BTreeSet<Vec<u8>>> = BTreeMap::new();
    for env in sent {
        let bytes = match &env.message {
            Message::SignWithCommitment(m) => &m.package,
            Message::SignPackage(m) => &m.package,
            _ => continue,
        };
        let package = SigningPackage::<S>::deserialize(bytes).unwrap();
        for node in nodes {
            let id = participant_identifier::<S>(node).unwrap();
            if let Some(commitment) = package.signing_commitment(&id) {
                packages
                    .entry((node.clone(), commitment.serialize().unwrap()))
                    .or_default()
                    .insert(bytes.clone());
            }
        }
    }
    assert!(!packages.is_empty());
    for ((node, _), in_packages) in packages {
        assert_eq!(
            in_packages.len(),
            1,
            "a commitment of {node} was put in two packages"
        );
    }
}

/// A network with a 3-of-5 key whose pools are filled: one signature made (two rounds, as no
/// pool exists yet), and time for the batches it asked for to arrive.
fn network_with_pools<S: Suite>(
    seed: u64,
) -> (
    Network<S>,
    Vec<NodeId>,
    NodeId,
    permafrost_protocol::wire::KeyId,
    frost_core::keys::PublicKeyPackage<S>,
) {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(seed, 3, 5);
    signs(
        &mut net,
        &coordinator,
        &key,
        Epoch(0),
        &pkp,
        &nodes,
        b"first",
    );
    net.run(Duration::from_millis(500));
    for node in &nodes {
        assert!(
            net.node(node).unwrap().pooled_nonces() > 0,
            "{node} holds no pooled nonce"
        );
    }
    (net, nodes, coordinator, key, pkp)
}

/// The first signature goes in two rounds and asks every member for a batch; every later one
/// is one message to each of `t` signers and one share back, also after the pools were
/// topped up several times over.
fn signatures_after_the_first_take_one_round<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(300, 3, 5);
    let log = record(&mut net, |_| Fault::Deliver);
    net.sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"first")
        .unwrap();
    net.run(Duration::from_millis(500));
    assert_eq!(count(&log, MessageKind::SignRequest, None), 3);
    assert_eq!(count(&log, MessageKind::CommitmentsRequest, None), 5);
    assert_eq!(count(&log, MessageKind::CommitmentBatch, None), 5);
    // What the coordinator's metrics read: its first t signers asked in two rounds, and now
    // a batch pooled for every member.
    let core = net.coordinator(&coordinator).unwrap().core().unwrap();
    let asks = core.signer_asks();
    assert_eq!((asks.one_round, asks.two_round), (0, 3));
    let pooled = core.pooled_commitments();
    assert_eq!(pooled.len(), 5, "{pooled:?}");
    assert!(pooled
        .values()
        .all(|depth| *depth == usize::from(POOL_BATCH)));

    log.lock().unwrap().clear();
    let (node_notices, coordinator_notices) = (net.notices.len(), net.coordinator_notices.len());
    let signatures = 150; // more than a pool holds: it is topped up on the way
    for i in 0..signatures {
        let message = format!("one round {i}").into_bytes();
        let signers = signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &message,
        );
        assert_eq!(signers.len(), 3);
    }
    assert_eq!(count(&log, MessageKind::SignRequest, None), 0);
    assert_eq!(count(&log, MessageKind::SignPackage, None), 0);
    assert_eq!(count(&log, MessageKind::SignCommitment, None), 0);
    assert_eq!(
        count(&log, MessageKind::SignWithCommitment, None),
        3 * signatures
    );
    assert_eq!(count(&log, MessageKind::SignShare, None), 3 * signatures);
    assert!(count(&log, MessageKind::CommitmentBatch, None) > 0);
    let asks = net
        .coordinator(&coordinator)
        .unwrap()
        .core()
        .unwrap()
        .signer_asks();
    assert_eq!((asks.one_round, asks.two_round), (3 * signatures as u64, 3));
    // Nothing a signature notices is logged above DEBUG, on the nodes or the coordinator (the
    // shells log a routine notice at DEBUG, any other at INFO or above).
    let loud: Vec<String> = net.notices[node_notices..]
        .iter()
        .filter(|(_, notice)| !notice.is_routine())
        .map(|(at, notice)| format!("{at}: {notice}"))
        .chain(
            net.coordinator_notices[coordinator_notices..]
                .iter()
                .filter(|(_, notice)| !notice.is_routine())
                .map(|(at, notice)| format!("{at}: {notice}")),
        )
        .collect();
    assert!(loud.is_empty(), "{loud:#?}");
    assert!(net.notices.len() > node_notices, "no notice to check");

    // One audit entry per one-round signature on each signer: its admission, which says the
    // share was made too (written together); the first signature, in two rounds, has two.
    for node in &nodes {
        let store = net.node(node).unwrap().store().unwrap();
        let (mut folded, mut admissions, mut bare_shares) = (BTreeSet::new(), 0, 0);
        for (entry, durable) in store.audit_entries() {
            assert!(durable, "{entry:?}");
            match (&entry.kind, &entry.client) {
                (AuditKind::SignatureShare, Some(client)) => {
                    assert!(folded.insert(client.session), "one entry per session");
                }
                (AuditKind::ClientRequest, Some(_)) => admissions += 1,
                (AuditKind::SignatureShare, None) => bare_shares += 1,
                _ => {}
            }
        }
        let one_round = count(&log, MessageKind::SignWithCommitment, Some(node));
        assert_eq!(folded.len(), one_round, "{node}");
        assert!(admissions <= 1 && admissions == bare_shares, "{node}");
    }
}

/// A pooled nonce is used at most once. Every batch and every commitment handed out is
/// distinct, and each one named once; a one-round request naming a used commitment again (in
/// a new session, with a fresh approval of the same message) is refused and makes no share;
/// a restarted signer refuses the commitments it handed out before, and the signature still
/// comes out (the signer asked again in two rounds, or another one).
fn a_nonce_is_used_once_across_refills_retries_and_restarts<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_pools::<S>(301);
    // Every seventh one-round request is delivered twice (a retransmission).
    let mut one_round = 0;
    let log = record(&mut net, move |env| match &env.message {
        Message::SignWithCommitment(_) => {
            one_round += 1;
            if one_round % 7 == 0 {
                Fault::Duplicate
            } else {
                Fault::Deliver
            }
        }
        _ => Fault::Deliver,
    });
    for i in 0..100 {
        let message = format!("refills {i}").into_bytes();
        signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &message,
        );
        if i == 60 {
            // The coordinator restarts: its pools are gone; the nodes still hold the batches.
            net.restart_coordinator(&coordinator);
        }
    }
    net.run(Duration::from_millis(500));
    let sent = log.lock().unwrap().clone();
    assert_no_commitment_in_two_packages::<S>(&sent, &nodes);
    for node in &nodes {
        assert!(
            !refusals_at(&net, node).contains(&Refusal::UnknownCommitment),
            "{node} was named a commitment it did not hold"
        );
    }
    let batches: Vec<SessionId> = sent
        .iter()
        .filter_map(|e| match &e.message {
            Message::CommitmentsRequest(m) => Some(m.session),
            _ => None,
        })
        .collect();
    assert!(batches.len() >= 2, "the pools were never topped up");
    assert_eq!(batches.iter().collect::<BTreeSet<_>>().len(), batches.len());
    let commitments: Vec<&Vec<u8>> = sent
        .iter()
        .filter_map(|e| match &e.message {
            Message::CommitmentBatch(m) => Some(m.commitments.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        commitments.iter().collect::<BTreeSet<_>>().len(),
        commitments.len(),
        "a commitment was handed out twice"
    );
    let named: Vec<(NodeId, SessionId, u16)> = sent
        .iter()
        .filter_map(|e| match &e.message {
            Message::SignWithCommitment(m) => Some((e.to.clone(), m.batch, m.index)),
            _ => None,
        })
        .collect();
    // Each pooled commitment named once by the coordinator, before and after its restart
    // (after it, a few signatures went in two rounds while the pools filled again).
    assert_eq!(named.iter().collect::<BTreeSet<_>>().len(), named.len());
    assert!(named.len() >= 3 * 90, "{} one-round requests", named.len());
    // The copies were refused as replays of their sessions, without an answer.
    let replays = net
        .refused
        .iter()
        .filter(|r| matches!(r.error, ProtocolError::Refused(Refusal::SessionExists)))
        .count();
    assert!(replays >= 30, "{replays} copies refused");

    // The coordinator (or anyone holding its messages) names a used commitment again, in a
    // new session with a fresh approval of the same message: refused, no share.
    let Some(used) = sent.iter().rev().find_map(|e| match &e.message {
        Message::SignWithCommitment(m) => Some((e.to.clone(), m.clone())),
        _ => None,
    }) else {
        panic!("no one-round request sent");
    };
    let (target, mut again) = used;
    again.session = SessionId([0x5e; 32]);
    again.client = Some(net.authorize(&key, &pkp, &again.message));
    let shares = net.shares_produced(Some(&target));
    net.inject(&coordinator, &target, Message::SignWithCommitment(again));
    net.run(Duration::from_millis(100));
    assert!(refusals_at(&net, &target).contains(&Refusal::UnknownCommitment));
    assert_eq!(net.shares_produced(Some(&target)), shares);

    // A restart voids every pooled nonce: the coordinator's pool of that node is stale. (Not
    // the node above: its refusal already emptied its pools at the coordinator.)
    let Some(restarted) = nodes.iter().find(|n| **n != target).cloned() else {
        panic!("one node only");
    };
    net.crash_and_restart(&restarted);
    assert_eq!(net.node(&restarted).unwrap().pooled_nonces(), 0);
    log.lock().unwrap().clear();
    let mark = net.refused.len();
    let stale = |net: &Network<S>| {
        net.refused[mark..]
            .iter()
            .filter(|r| {
                r.at == restarted
                    && matches!(r.error, ProtocolError::Refused(Refusal::UnknownCommitment))
            })
            .count()
    };
    for i in 0..10 {
        let message = format!("after restart {i}").into_bytes();
        signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &message,
        );
    }
    // Its first refusal emptied its pools at the coordinator (no second one); it was asked
    // again in two rounds, and for a fresh batch.
    assert_eq!(
        stale(&net),
        1,
        "the restarted node was not asked in one round once"
    );
    assert!(count(&log, MessageKind::SignRequest, Some(&restarted)) >= 1);
    assert!(count(&log, MessageKind::CommitmentsRequest, Some(&restarted)) >= 1);
}

/// A signer whose batches stop arriving drains its pool; it is then asked in two rounds while
/// the others still go in one, and every signature comes out.
fn an_exhausted_pool_falls_back_to_two_rounds<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_pools::<S>(302);
    let starved = nodes[1].clone();
    let s = starved.clone();
    let log = record(&mut net, move |env| match &env.message {
        Message::CommitmentBatch(_) if env.from == s => Fault::Drop,
        _ => Fault::Deliver,
    });
    let mut signed = 0;
    while count(&log, MessageKind::SignRequest, Some(&starved)) == 0 {
        assert!(signed < 400, "the starved pool never ran dry");
        let message = format!("drain {signed}").into_bytes();
        signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &message,
        );
        signed += 1;
    }
    // It held at least the batch pooled with the first signature, each used once.
    assert!(
        signed > usize::from(POOL_BATCH),
        "the pool ran dry after {signed} signatures"
    );
    // Mixed from now on: the starved signer in two rounds, the others in one.
    log.lock().unwrap().clear();
    for i in 0..10 {
        let message = format!("mixed {i}").into_bytes();
        signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &message,
        );
    }
    assert!(count(&log, MessageKind::SignRequest, Some(&starved)) > 0);
    assert_eq!(
        count(&log, MessageKind::SignWithCommitment, Some(&starved)),
        0
    );
    let others: usize = nodes
        .iter()
        .filter(|n| **n != starved)
        .map(|n| count(&log, MessageKind::SignWithCommitment, Some(n)))
        .sum();
    assert!(others > 0, "the others left one round too");

    // Its batches arrive again: the batches asked for and lost are forgotten (no timeout of
    // any session is needed for that), and it is back to one round.
    let log = record(&mut net, |_| Fault::Deliver);
    net.advance(Duration::from_secs(3));
    for i in 0..20 {
        let message = format!("recovered {i}").into_bytes();
        signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &message,
        );
    }
    assert!(count(&log, MessageKind::CommitmentsRequest, Some(&starved)) > 0);
    assert!(count(&log, MessageKind::SignWithCommitment, Some(&starved)) > 0);
}

/// A one-round request delivered twice changes nothing: the copy is refused without an answer
/// (the session exists), the pooled nonce is not touched again, the coordinator keeps the
/// node's pools, and every signature comes out with the node among its signers when asked.
fn a_duplicated_one_round_request_changes_nothing<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_pools::<S>(305);
    let twice = nodes[0].clone();
    let t = twice.clone();
    let log = record(&mut net, move |env| match &env.message {
        Message::SignWithCommitment(_) if env.to == t => Fault::Duplicate,
        _ => Fault::Deliver,
    });
    let mark = net.refused.len();
    let mut signed_by_it = 0;
    for i in 0..10 {
        let message = format!("twice {i}").into_bytes();
        let before = count(&log, MessageKind::SignWithCommitment, Some(&twice));
        let signers = signs(
            &mut net,
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            &message,
        );
        if count(&log, MessageKind::SignWithCommitment, Some(&twice)) > before {
            assert!(signers.contains(&twice), "try {i}");
            signed_by_it += 1;
        }
    }
    assert!(signed_by_it > 0, "never asked in one round");
    let refused: Vec<&ProtocolError> = net.refused[mark..]
        .iter()
        .filter(|r| r.at == twice)
        .map(|r| &r.error)
        .collect();
    assert!(refused
        .iter()
        .all(|e| matches!(e, ProtocolError::Refused(Refusal::SessionExists))));
    assert_eq!(refused.len(), signed_by_it);
    assert_eq!(count(&log, MessageKind::SignRequest, Some(&twice)), 0);
    assert_eq!(count(&log, MessageKind::SignRefusal, None), 0);
}

/// A plain refusal of `session` (not about the client, not about a pooled commitment).
fn not_today(session: SessionId) -> Message {
    Message::SignRefusal(SignRefusal {
        session,
        reason: "not today".into(),
        unauthorized: false,
        commitment_unknown: false,
    })
}

/// In one round, a signer that refuses, one that gives a bad share and one that stays silent
/// are each replaced by ROAST: the signature comes out without them, and names each (the cheat
/// as a culprit, the others as passed over, with why).
/// When too many refuse or stay silent, the request fails naming exactly them.
fn one_round_signers_that_fail_are_replaced_and_named<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_pools::<S>(303);
    for (case, bad) in nodes.iter().take(3).enumerate() {
        let b = bad.clone();
        let log = record(&mut net, move |env| match &env.message {
            Message::SignShare(m) if env.from == b => match case {
                0 => Fault::Replace(not_today(m.session)),
                1 => Fault::Replace(wrong_share::<S>(m)),
                _ => Fault::Drop,
            },
            _ => Fault::Deliver,
        });
        // Sign until the bad signer is among the first t (the order rotates).
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries <= 10, "case {case}: {bad} never asked");
            log.lock().unwrap().clear();
            let message = format!("case {case} try {tries}").into_bytes();
            let outcome = net
                .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, &message)
                .unwrap();
            verify_independently(&pkp, &message, &outcome.signature);
            if count(&log, MessageKind::SignWithCommitment, Some(bad)) == 0 {
                continue;
            }
            assert!(!outcome.signers.contains(bad), "case {case}");
            // Each is named with the signature it was replaced in: the cheat as a culprit,
            // the refusal with its reason, the silence as such.
            let passed_over: Vec<(&NodeId, &str)> = outcome
                .passed_over
                .iter()
                .map(|(node, why)| (node, why.as_str()))
                .collect();
            match case {
                0 => {
                    assert!(outcome.culprits.is_empty());
                    assert_eq!(passed_over, vec![(bad, "refused: not today")]);
                }
                1 => {
                    assert_eq!(outcome.culprits, vec![bad.clone()]);
                    assert!(passed_over.is_empty(), "{passed_over:?}");
                }
                _ => {
                    assert!(outcome.culprits.is_empty());
                    assert_eq!(passed_over, vec![(bad, "did not answer in time")]);
                }
            }
            break;
        }
        net.clear_faults();
        net.run(Duration::from_secs(3));
    }

    // Three of five refuse (in one round or two): the request fails naming them.
    let refusing: Vec<NodeId> = nodes[..3].to_vec();
    let r = refusing.clone();
    net.set_faults(move |env| {
        let session = match &env.message {
            Message::SignShare(m) => m.session,
            Message::SignCommitment(m) => m.session,
            _ => return Fault::Deliver,
        };
        if !r.contains(&env.from) {
            return Fault::Deliver;
        }
        Fault::Replace(not_today(session))
    });
    match net.sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"refused") {
        Err(ProtocolError::TooFewSigners { refused, .. }) => {
            assert_eq!(refused, refusing, "{refused:?}");
        }
        other => panic!("expected too few signers, got {other:?}"),
    }
    net.clear_faults();
    net.run(Duration::from_secs(3));

    // Three of five silent: the request fails at its deadline naming them.
    let silent: Vec<NodeId> = nodes[2..].to_vec();
    let q = silent.clone();
    net.set_faults(move |env| {
        if q.contains(&env.to) || q.contains(&env.from) {
            Fault::Drop
        } else {
            Fault::Deliver
        }
    });
    match net.sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"silent") {
        Err(ProtocolError::Timeout { silent: named, .. }) => {
            assert_eq!(named, silent, "{named:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// What a coordinator can make a signer hold ahead of time is bounded: batches of at most
/// `MAX_POOL_BATCH`, at most `max_pooled` nonces (a new batch evicts the oldest, whose
/// commitments are refused from then on), for `pool_lifetime`; a batch id is never reused; and
/// one coordinator cannot name (or burn) another's pooled commitments.
fn pooled_nonces_are_bounded_and_kept_per_coordinator<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(304, 2, 3);
    let share = net.node(&nodes[0]).unwrap().active_share(&key).unwrap();
    let limits = SignerLimits {
        max_pooled: 100,
        pool_lifetime: Duration::from_secs(5),
        ..SignerLimits::default()
    };
    let mut signer = Signer::<S>::new(share, limits).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let at = Timestamp(1_000);
    let ask = |batch: u8, count: u16| {
        Message::CommitmentsRequest(CommitmentsRequest {
            session: SessionId([batch; 32]),
            key_id: key.clone(),
            epoch: Epoch(0),
            count,
        })
    };
    for count in [0, MAX_POOL_BATCH + 1] {
        let refused = signer.handle_message(&coordinator, ask(1, count), at, &mut rng);
        assert!(
            matches!(refused, Err(ProtocolError::Refused(Refusal::Limit(_)))),
            "{refused:?}"
        );
    }
    assert_eq!(signer.pooled_nonces(), 0);
    let batch = |signer: &mut Signer<S>, id: u8, rng: &mut ChaCha20Rng| {
        signer
            .handle_message(&coordinator, ask(id, 64), at, rng)
            .unwrap();
        match signer.poll_output() {
            Some(Output::Send {
                message: Message::CommitmentBatch(b),
                ..
            }) => b.commitments,
            other => panic!("no batch: {other:?}"),
        }
    };
    let first = batch(&mut signer, 1, &mut rng);
    assert_eq!(first.len(), 64);
    assert_eq!(signer.pooled_nonces(), 64);
    let again = signer.handle_message(&coordinator, ask(1, 64), at, &mut rng);
    assert!(matches!(
        again,
        Err(ProtocolError::Refused(Refusal::SessionExists))
    ));
    // A second batch would exceed 100: the first is evicted.
    batch(&mut signer, 2, &mut rng);
    assert_eq!(signer.pooled_nonces(), 64);
    let client = net.authorize(&key, &pkp, b"m");
    let name = |batch: u8, index: u16, session: u8| {
        Message::SignWithCommitment(SignWithCommitment {
            path: Default::default(),
            session: SessionId([session; 32]),
            key_id: key.clone(),
            epoch: Epoch(0),
            message: b"m".to_vec(),
            client: Some(client.clone()),
            batch: SessionId([batch; 32]),
            index,
            package: Vec::new(),
        })
    };
    let evicted = signer.handle_message(&coordinator, name(1, 0, 10), at, &mut rng);
    assert!(matches!(
        evicted,
        Err(ProtocolError::Refused(Refusal::UnknownCommitment))
    ));
    // Another coordinator names the second batch: unknown to it, and nothing is burnt.
    let other = nodes[1].clone();
    let foreign = signer.handle_message(&other, name(2, 0, 11), at, &mut rng);
    assert!(matches!(
        foreign,
        Err(ProtocolError::Refused(Refusal::UnknownCommitment))
    ));
    assert_eq!(signer.pooled_nonces(), 64);
    // Named once, even in a request that fails its checks (an empty package): gone.
    let bad = signer.handle_message(&coordinator, name(2, 0, 12), at, &mut rng);
    assert!(bad.is_err());
    assert_eq!(signer.pooled_nonces(), 63);
    let twice = signer.handle_message(&coordinator, name(2, 0, 13), at, &mut rng);
    assert!(matches!(
        twice,
        Err(ProtocolError::Refused(Refusal::UnknownCommitment))
    ));
    // Their time runs out.
    let later = at.after(Duration::from_secs(5));
    assert_eq!(signer.poll_timeout(), Some(later));
    signer.handle_timeout(later);
    assert_eq!(signer.pooled_nonces(), 0);
}

/// Signs until `victim` is asked in one round (the order of the first `t` rotates), with
/// `log` recording; returns how the signature came out, and its message.
fn sign_until_asked_in_one_round<S: Suite>(
    net: &mut Network<S>,
    log: &Log,
    (coordinator, key, pkp, nodes): (
        &NodeId,
        &permafrost_protocol::wire::KeyId,
        &frost_core::keys::PublicKeyPackage<S>,
        &[NodeId],
    ),
    victim: &NodeId,
) -> (Vec<NodeId>, Vec<u8>) {
    for i in 0..10 {
        let before = count(log, MessageKind::SignWithCommitment, Some(victim));
        let message = format!("asked {i}").into_bytes();
        let signers = signs(net, coordinator, key, Epoch(0), pkp, nodes, &message);
        if count(log, MessageKind::SignWithCommitment, Some(victim)) > before {
            return (signers, message);
        }
    }
    panic!("{victim} was never asked in one round");
}

/// Signs until `victim` is asked in one round, and checks that the signature came out without
/// it and that it sent no share; returns the message signed.
fn left_out_in_one_round<S: Suite>(
    net: &mut Network<S>,
    log: &Log,
    setup: (
        &NodeId,
        &permafrost_protocol::wire::KeyId,
        &frost_core::keys::PublicKeyPackage<S>,
        &[NodeId],
    ),
    victim: &NodeId,
) -> Vec<u8> {
    let (signers, message) = sign_until_asked_in_one_round(net, log, setup, victim);
    assert!(!signers.contains(victim), "{signers:?}");
    assert!(no_share_from(log, victim));
    message
}

/// The entries of `node`'s audit log about the message `digest`: kind, durable, whether it
/// keeps a client's approval, and its detail.
fn entries_about<S: Suite>(
    net: &Network<S>,
    node: &NodeId,
    digest: [u8; 32],
) -> Vec<(AuditKind, bool, bool, String)> {
    net.node(node)
        .unwrap()
        .store()
        .unwrap()
        .audit_entries()
        .filter(|(e, _)| e.message_digest == Some(digest))
        .map(|(e, durable)| {
            (
                e.kind.clone(),
                durable,
                e.client.is_some(),
                e.detail.clone(),
            )
        })
        .collect()
}

/// Whether `log` holds no signature share sent by `node`.
fn no_share_from(log: &Log, node: &NodeId) -> bool {
    log.lock()
        .unwrap()
        .iter()
        .all(|e| !(e.from == *node && e.message.kind() == MessageKind::SignShare))
}

fn digest(message: &[u8]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(message).into()
}

/// A one-round request that comes alone has its admission written as its share's entry (with
/// the client's approval), and the sync of that write started, before the share is computed;
/// the share waits for the sync. A crash before the sync ends releases no share and leaves no
/// entry and no request id: ROAST signs with the others. With early syncs off (a shell's batch
/// of many), nothing is written before the flush, and the crash leaves the same.
fn a_crash_before_an_early_sync_ends_releases_no_share<S: Suite>() {
    for early in [true, false] {
        let (mut net, nodes, coordinator, key, pkp) = network_with_pools::<S>(306);
        let victim = nodes[0].clone();
        let node = net.node_mut(&victim).unwrap();
        node.hold_syncs(true);
        node.core_mut().unwrap().sync_early(early);
        let log = record(&mut net, |_| Fault::Deliver);
        let before = remembered_requests(&net, &victim);
        let message =
            left_out_in_one_round(&mut net, &log, (&coordinator, &key, &pkp, &nodes), &victim);
        let core = net.node(&victim).unwrap().core().unwrap();
        assert_eq!(core.held_shares(), 1, "early {early}: no share computed");
        let written = entries_about(&net, &victim, digest(&message));
        if early {
            assert_eq!(
                written,
                vec![(AuditKind::SignatureShare, false, true, String::new())],
                "the admission is written as the share's entry, not yet durable"
            );
        } else {
            assert_eq!(written, vec![], "nothing is written before the flush");
        }
        net.crash_and_restart(&victim);
        assert_eq!(
            entries_about(&net, &victim, digest(&message)),
            vec![],
            "early {early}: an unsynced entry survived the crash"
        );
        assert_eq!(remembered_requests(&net, &victim), before, "early {early}");
        assert!(no_share_from(&log, &victim));
    }
}

/// The sync started before a one-round share is computed fails (to start, or when waited
/// for): the share is not released, the failure is named, and ROAST signs with the others.
fn a_failed_early_sync_releases_no_share<S: Suite>() {
    for operation in ["start_sync", "finish_sync"] {
        let (mut net, nodes, coordinator, key, pkp) = network_with_pools::<S>(307);
        let victim = nodes[0].clone();
        net.node_mut(&victim)
            .unwrap()
            .core_mut()
            .unwrap()
            .store_mut()
            .fail_write(operation, 0);
        let log = record(&mut net, |_| Fault::Deliver);
        let mark = net.notices.len();
        left_out_in_one_round(&mut net, &log, (&coordinator, &key, &pkp, &nodes), &victim);
        assert!(
            net.notices[mark..].iter().any(|(n, notice)| n == &victim
                && notice
                    .to_string()
                    .contains("syncing a signature share's admission")
                && notice.to_string().contains("injected write failure")),
            "{operation}: the failure is not named"
        );
    }
}

/// A one-round signature the node signs is one durable entry in its log: the admission,
/// written early as the share's entry, with the client's approval. Then a coordinator sends a
/// one-round request whose signing package is for another message than the one the client
/// approved. The node admits the request (the approval is good), writes it as its share's
/// entry and starts the sync, then the signer refuses the package: no share leaves, and the
/// entry that follows in the log says that no share was produced, and why. The signature
/// comes out without the node.
fn a_share_refused_after_its_early_write_is_audited<S: Suite>() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (mut net, nodes, coordinator, key, pkp) = network_with_pools::<S>(308);
    let victim = nodes[0].clone();
    let v = victim.clone();
    let swap = Arc::new(AtomicBool::new(false));
    let swapping = swap.clone();
    let log = record(&mut net, move |env| match &env.message {
        Message::SignWithCommitment(m) if env.to == v && swapping.load(Ordering::Relaxed) => {
            let package = SigningPackage::<S>::deserialize(&m.package).unwrap();
            let other = SigningPackage::new(
                package.signing_commitments().clone(),
                b"pay mallory everything",
            );
            Fault::Replace(Message::SignWithCommitment(SignWithCommitment {
                package: other.serialize().unwrap(),
                ..m.clone()
            }))
        }
        _ => Fault::Deliver,
    });
    let (signers, message) =
        sign_until_asked_in_one_round(&mut net, &log, (&coordinator, &key, &pkp, &nodes), &victim);
    assert!(signers.contains(&victim));
    assert_eq!(
        entries_about(&net, &victim, digest(&message)),
        vec![(AuditKind::SignatureShare, true, true, String::new())]
    );

    swap.store(true, Ordering::Relaxed);
    log.lock().unwrap().clear();
    let message =
        left_out_in_one_round(&mut net, &log, (&coordinator, &key, &pkp, &nodes), &victim);
    net.run(Duration::from_secs(2));
    let entries = entries_about(&net, &victim, digest(&message));
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        (&entries[0].0, entries[0].1, entries[0].2),
        (&AuditKind::SignatureShare, true, true),
        "{entries:?}"
    );
    assert_eq!(entries[1].0, AuditKind::Refused, "{entries:?}");
    assert!(
        entries[1].3.contains("no signature share was produced")
            && entries[1].3.contains("message"),
        "{entries:?}"
    );
}

per_suite!(
    a_crash_before_an_early_sync_ends_releases_no_share,
    a_failed_early_sync_releases_no_share,
    a_share_refused_after_its_early_write_is_audited,
    pooled_nonces_are_bounded_and_kept_per_coordinator,
    signatures_after_the_first_take_one_round,
    a_nonce_is_used_once_across_refills_retries_and_restarts,
    an_exhausted_pool_falls_back_to_two_rounds,
    a_duplicated_one_round_request_changes_nothing,
    one_round_signers_that_fail_are_replaced_and_named,
);

/// In one round, a member's pooled commitments have a point outside the prime-order subgroup
/// (ed25519): the coordinator pools them unchecked; when one goes into a package, the honest
/// signers refuse it (their pooled nonces are gone with it), the coordinator checks the
/// package, names that member, and asks the refusers for fresh commitments in two rounds: the
/// signature comes out without it, and no honest member is named or left out.
#[test]
fn a_pooled_commitment_outside_the_group_is_named() {
    type S = Ed25519;
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(304, 3, 5);
    let bad = nodes[1].clone();
    let b = bad.clone();
    let log = record(&mut net, move |env| match &env.message {
        Message::CommitmentBatch(m) if env.from == b => {
            let mut forged = m.clone();
            forged.commitments = m
                .commitments
                .iter()
                .map(|c| ed25519_commitment_outside_the_group(c))
                .collect();
            Fault::Replace(Message::CommitmentBatch(forged))
        }
        _ => Fault::Deliver,
    });
    // The first signature (two rounds) fills the pools.
    net.sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"first")
        .unwrap();
    net.run(Duration::from_millis(500));
    // Sign until the bad member's pooled commitment is used (the order rotates).
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(tries <= 10, "{bad} never asked in one round");
        log.lock().unwrap().clear();
        let message = format!("try {tries}").into_bytes();
        let outcome = net
            .sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, &message)
            .unwrap();
        verify_independently(&pkp, &message, &outcome.signature);
        if count(&log, MessageKind::SignWithCommitment, Some(&bad)) == 0 {
            assert!(outcome.culprits.is_empty());
            continue;
        }
        assert_eq!(outcome.culprits, vec![bad.clone()]);
        assert!(outcome.passed_over.is_empty(), "{:?}", outcome.passed_over);
        assert!(!outcome.signers.contains(&bad));
        // The honest members of that attempt refused it and signed with fresh commitments.
        let refusers: BTreeSet<NodeId> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e.message, Message::SignRefusal(_)) && e.from != bad)
            .map(|e| e.from.clone())
            .collect();
        assert_eq!(refusers.len(), 2, "{refusers:?}");
        for refuser in &refusers {
            assert!(outcome.signers.contains(refuser), "{refuser} left out");
            assert_eq!(count(&log, MessageKind::SignRequest, Some(refuser)), 1);
        }
        break;
    }
}
