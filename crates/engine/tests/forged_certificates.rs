//! Forged certificates, on every suite. A `ReshareCommit` or a `DkgCommit` proves itself, so a
//! node takes it from the coordinator or from any member (a member hands over the certificate
//! it concluded on). The attacker here is a compromised coordinator together with one
//! compromised member (whose identity key it holds): it takes the genuine certificate off the
//! wire, withholds it, and sends forgeries built from it, each with one defect, both as the
//! coordinator and as the member. Each forgery must be refused, naming the defect, and change
//! nothing: an old-only member keeps its old share ACTIVE (and it still signs), a DKG member
//! keeps its share PENDING (and signs nothing with it). The genuine certificate then concludes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use frost_core::{Field, Group, Signature};
use permafrost_engine::deadlines;
use permafrost_engine::sim::{Fault, Network, Refused};
use permafrost_protocol::wire::{
    Digest, DkgCommit, DkgConfirm, Epoch, KeyId, Message, MessageKind, NodeId, ReshareCommit,
    SessionId,
};
use permafrost_protocol::{dkg, reshare, statement, NodeIdentity, ProtocolError, Refusal, Suite};

/// A certificate the attacker took off the wire.
type Captured<T> = Rc<RefCell<Option<T>>>;

fn reshare_commit(message: &Message) -> Option<&ReshareCommit> {
    match message {
        Message::ReshareCommit(commit) => Some(commit),
        _ => None,
    }
}

fn dkg_commit(message: &Message) -> Option<&DkgCommit> {
    match message {
        Message::DkgCommit(commit) => Some(commit),
        _ => None,
    }
}

/// From now on, the first certificate `pick` finds among what `coordinator` sends is captured;
/// if `withhold`, every one of them is dropped (no member gets it from the coordinator).
fn capture<S: Suite, T: Clone + 'static>(
    net: &mut Network<S>,
    coordinator: &NodeId,
    withhold: bool,
    pick: fn(&Message) -> Option<&T>,
) -> Captured<T> {
    let captured: Captured<T> = Rc::default();
    let (c, coordinator) = (captured.clone(), coordinator.clone());
    net.set_faults(move |env| match pick(&env.message) {
        Some(certificate) if env.from == coordinator => {
            c.borrow_mut().get_or_insert_with(|| certificate.clone());
            if withhold {
                Fault::Drop
            } else {
                Fault::Deliver
            }
        }
        _ => Fault::Deliver,
    });
    captured
}

/// One forged certificate: what is wrong with it, and the refusal that must name it.
struct Forgery<T> {
    what: &'static str,
    certificate: T,
    refusal: Refusal,
}

/// Puts `forged` on the wire from `from` to `to`, as the attacker; asserts that it changed
/// nothing (`unchanged`), and that `to` refused it, exactly once and for `expected`.
fn refused<S: Suite>(
    net: &mut Network<S>,
    from: &NodeId,
    to: &NodeId,
    forged: Message,
    expected: &Refusal,
    what: &str,
    unchanged: &dyn Fn(&Network<S>, &str),
) {
    let kind = forged.kind().name();
    let mark = net.refused.len();
    net.inject(from, to, forged);
    net.run(Duration::from_millis(200));
    unchanged(net, what);
    let seen: Vec<ProtocolError> = net.refused[mark..]
        .iter()
        .filter(|r| r.at == *to && r.from == *from && r.kind == kind)
        .map(|r| r.error.clone())
        .collect();
    assert_eq!(
        seen,
        vec![ProtocolError::Refused(expected.clone())],
        "{what}, sent by {from} to {to}"
    );
}

/// The certificates (reshare or DKG commits) refused since `mark`.
fn certificates_refused<S: Suite>(net: &Network<S>, mark: usize) -> Vec<Refused> {
    let kinds = [
        MessageKind::ReshareCommit.name(),
        MessageKind::DkgCommit.name(),
    ];
    net.refused[mark..]
        .iter()
        .filter(|r| kinds.contains(&r.kind))
        .cloned()
        .collect()
}

/// `bytes` with one bit flipped at `at`.
fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[at] ^= 1;
    bytes
}

/// `signature` with its response `z` replaced by `z + 1`: well formed, and not a signature.
fn z_plus_one<S: Suite>(signature: &[u8]) -> Vec<u8> {
    let signature = Signature::<S>::deserialize(signature).unwrap();
    let one = <<S::Group as Group>::Field as Field>::one();
    Signature::<S>::new(*signature.R(), *signature.z() + one)
        .serialize()
        .unwrap()
}

/// `node` holds its epoch-0 share of `key` ACTIVE, and nothing PENDING.
fn still_holds_epoch_zero<S: Suite>(net: &Network<S>, node: &NodeId, key: &KeyId, after: &str) {
    let n = net.node(node).unwrap();
    assert_eq!(
        n.active_share(key).map(|s| s.epoch),
        Some(Epoch(0)),
        "{node} retired its epoch-0 share after {after}"
    );
    assert!(n.pending_share(key).is_none(), "{node}: {after}");
}

/// A 2-of-3 key moved to a committee without its third holder (the old-only member, which
/// retires epoch 0 on the certificate) and with a fresh node. Once every new member confirmed
/// and the test signature is made, the attacker takes the genuine certificate off the wire
/// (no member gets it) and sends the old-only member, as the coordinator and again as a
/// compromised member of both committees, certificates built from it with one defect each:
/// the last confirmation missing; a confirmation signed with the compromised member's key in
/// another member's name; a confirmation's signature with a bit flipped; the compromised
/// member's own confirmation, validly signed, of another public key package (so the
/// confirmations disagree on the digest); as the test signature, an ordinary signature under
/// the group key over another message, the genuine test signature with `z + 1`, or another
/// reshare's test signature; and another reshare's genuine certificate relabelled with this
/// session's id. Each is refused by `verify_certificate`, naming the defect; the old-only
/// member keeps its epoch-0 share ACTIVE, and epoch 0 signs with it. The genuine certificate,
/// handed over by the compromised member, then retires it, and the new epoch signs.
fn a_forged_reshare_commit_retires_nothing<S: Suite>() {
    let (mut net, nodes, coordinator, key, pkp) = network_with_key::<S>(401, 2, 3);
    let fresh = net.add_node();
    let retiring = nodes[2].clone();
    let insider = nodes[0].clone();
    let mut committee = nodes[..2].to_vec();
    committee.push(fresh.clone());

    // Material from elsewhere: an ordinary signature under the group key, and the genuine
    // certificate of a reshare of another key between the same committees.
    let ordinary = net
        .sign_roast(
            &coordinator,
            &key,
            Epoch(0),
            &pkp,
            &nodes,
            b"an ordinary message",
        )
        .unwrap()
        .signature
        .serialize()
        .unwrap();
    let other_key = key_id("key-2");
    net.run_dkg(&coordinator, &other_key, 2, &nodes).unwrap();
    let captured = capture(&mut net, &coordinator, false, reshare_commit);
    let p = reshare_proposal(&net, &other_key, &nodes[0], &committee, 2, &nodes[..2]);
    net.run_reshare(&coordinator, p).unwrap();
    let other = captured.borrow_mut().take().unwrap();

    // The reshare under attack: its certificate is withheld from every member.
    let captured = capture(&mut net, &coordinator, true, reshare_commit);
    let p = reshare_proposal(&net, &key, &nodes[0], &committee, 2, &nodes[..2]);
    let session = net.start_reshare(&coordinator, p).unwrap();
    let c = captured.clone();
    net.run_until(deadlines::RESHARE, move |_| c.borrow().is_some());
    let genuine = captured.borrow_mut().take().unwrap();
    assert_eq!(genuine.session, session);
    assert_ne!(other.session, session);
    for node in &committee {
        let n = net.node(node).unwrap();
        assert!(n.pending_share(&key).is_some(), "{node} did not confirm");
        let old = (*node != fresh).then_some(Epoch(0));
        assert_eq!(n.active_share(&key).map(|s| s.epoch), old);
    }
    still_holds_epoch_zero(&net, &retiring, &key, "the reshare ran");

    let at = |node: &NodeId| {
        genuine
            .confirms
            .iter()
            .position(|c| c.from == *node)
            .unwrap()
    };
    let digest = genuine.confirms[0].public_key_package;
    let insider_key = net.identity(&insider).unwrap();
    let signed_by_insider = |from: &NodeId, digest: &Digest| {
        insider_key.sign(&statement(&session, reshare::CONFIRM, from, None, &digest.0).0)
    };
    let forged = |change: &dyn Fn(&mut ReshareCommit)| {
        let mut commit = genuine.clone();
        change(&mut commit);
        assert_ne!(commit, genuine);
        commit
    };
    let no_test_signature =
        Refusal::Malformed("test signature does not verify under the group key".into());
    let forgeries = vec![
        Forgery {
            what: "the last confirmation missing",
            certificate: forged(&|c| {
                c.confirms.pop();
            }),
            refusal: Refusal::Malformed("commit lacks confirmations".into()),
        },
        Forgery {
            what: "a confirmation signed with another member's key",
            certificate: forged(&|c| {
                c.confirms[at(&fresh)].signature = signed_by_insider(&fresh, &digest);
            }),
            refusal: Refusal::BadSignature(fresh.clone()),
        },
        Forgery {
            what: "a confirmation's signature altered",
            certificate: forged(&|c| {
                let i = at(&nodes[1]);
                c.confirms[i].signature = flipped(&c.confirms[i].signature, 0);
            }),
            refusal: Refusal::BadSignature(nodes[1].clone()),
        },
        Forgery {
            what: "confirmations that disagree on the digest",
            certificate: forged(&|c| {
                let other_digest = Digest(flipped(&digest.0, 0).try_into().unwrap());
                let i = at(&insider);
                c.confirms[i].public_key_package = other_digest;
                c.confirms[i].signature = signed_by_insider(&insider, &other_digest);
            }),
            refusal: Refusal::SenderMismatch,
        },
        Forgery {
            what: "an ordinary signature under the group key as the test signature",
            certificate: forged(&|c| c.test_signature = ordinary.clone()),
            refusal: no_test_signature.clone(),
        },
        Forgery {
            what: "the test signature altered",
            certificate: forged(&|c| c.test_signature = z_plus_one::<S>(&c.test_signature)),
            refusal: no_test_signature.clone(),
        },
        Forgery {
            what: "another reshare's test signature",
            certificate: forged(&|c| c.test_signature = other.test_signature.clone()),
            refusal: no_test_signature,
        },
        Forgery {
            what: "another reshare's certificate under this session's id",
            certificate: forged(&|c| {
                *c = ReshareCommit {
                    session,
                    ..other.clone()
                }
            }),
            refusal: Refusal::SenderMismatch,
        },
    ];
    for forgery in forgeries {
        for sender in [&coordinator, &insider] {
            refused(
                &mut net,
                sender,
                &retiring,
                Message::ReshareCommit(forgery.certificate.clone()),
                &forgery.refusal,
                forgery.what,
                &|net, what| still_holds_epoch_zero(net, &retiring, &key, what),
            );
        }
    }

    // Epoch 0 still signs with the old-only member's share (it is asked first).
    let message = b"epoch 0, after the forgeries";
    let first_asked = [retiring.clone(), insider.clone(), nodes[1].clone()];
    let mark = start_roast(
        &mut net,
        &coordinator,
        &key,
        &pkp,
        &first_asked,
        message,
        SessionId([41; 32]),
    );
    let (signers, _) = roast_outcome(&mut net, &coordinator, mark, &pkp, message).unwrap();
    assert!(signers.contains(&retiring), "signed by {signers:?}");

    // The genuine certificate, handed over by a member: the old-only member retires epoch 0.
    let mark = net.refused.len();
    net.inject(&insider, &retiring, Message::ReshareCommit(genuine.clone()));
    for node in &committee {
        net.inject(&coordinator, node, Message::ReshareCommit(genuine.clone()));
    }
    net.run(Duration::from_secs(1));
    let refusals = certificates_refused(&net, mark);
    assert!(
        refusals.is_empty(),
        "the genuine certificate was refused: {refusals:?}"
    );
    assert!(
        net.node(&retiring).unwrap().active_share(&key).is_none(),
        "the genuine certificate did not retire epoch 0"
    );
    let package = net
        .node(&fresh)
        .unwrap()
        .active_share(&key)
        .unwrap()
        .public_key_package;
    for node in &committee {
        let n = net.node(node).unwrap();
        assert_eq!(n.active_share(&key).map(|s| s.epoch), Some(Epoch(1)));
        assert!(n.pending_share(&key).is_none());
    }
    assert_eq!(
        package.verifying_key().serialize().unwrap(),
        pkp.verifying_key().serialize().unwrap()
    );
    net.clear_faults();
    signs(
        &mut net,
        &coordinator,
        &key,
        Epoch(1),
        &package,
        &committee,
        b"epoch 1",
    );
}

/// A 2-of-3 DKG whose commit the attacker takes off the wire once every member confirmed (no
/// member gets it from the coordinator). A compromised member, and the coordinator, send the
/// two honest members commits built from the genuine one with one defect each: the last
/// confirmation missing; an honest member's confirmation signed with the compromised member's
/// key; a confirmation's signature with a bit flipped; the compromised member's own
/// confirmation, validly signed, of another public key package or of other round-1 packages
/// (so it differs from the receiver's); and another DKG's genuine commit relabelled with this
/// session's id. Each is refused, naming the defect; no member activates: each keeps its share
/// PENDING, runs no signer for the key, and a signing request for it fails. The genuine commit,
/// handed over by the compromised member, then activates every member, and the key signs.
fn a_forged_dkg_commit_activates_nothing<S: Suite>() {
    let (mut net, nodes, coordinator) = Network::<S>::with_nodes(402, 3);
    let insider = nodes[0].clone();

    // Another DKG between the same members, its commit taken off the wire (and delivered).
    let captured = capture(&mut net, &coordinator, false, dkg_commit);
    net.run_dkg(&coordinator, &key_id("other"), 2, &nodes)
        .unwrap();
    let other = captured.borrow_mut().take().unwrap();

    // The DKG under attack: its commit is withheld from every member.
    let captured = capture(&mut net, &coordinator, true, dkg_commit);
    let key = key_id("key-1");
    let pkp = net.run_dkg(&coordinator, &key, 2, &nodes).unwrap();
    let genuine = captured.borrow_mut().take().unwrap();
    let session = genuine.session;
    assert_ne!(other.session, session);
    let pending_only = |net: &Network<S>, after: &str| {
        for node in &nodes {
            let n = net.node(node).unwrap();
            assert!(
                n.active_share(&key).is_none(),
                "{node} activated its share after {after}"
            );
            assert!(n.pending_share(&key).is_some(), "{node}: {after}");
            assert!(
                !n.core().unwrap().signs_for(&key),
                "{node} signs for the key after {after}"
            );
        }
    };
    pending_only(&net, "the withheld commit");

    let at = |node: &NodeId| {
        genuine
            .confirms
            .iter()
            .position(|c| c.from == *node)
            .unwrap()
    };
    let insider_key = net.identity(&insider).unwrap();
    let resigned = |confirm: &mut DkgConfirm| {
        confirm.signature = insider_key.sign(
            &statement(
                &session,
                dkg::CONFIRM,
                &confirm.from,
                None,
                &dkg::confirm_payload(confirm),
            )
            .0,
        );
    };
    let forged = |change: &dyn Fn(&mut DkgCommit)| {
        let mut commit = genuine.clone();
        change(&mut commit);
        assert_ne!(commit, genuine);
        commit
    };
    let differs = Refusal::Malformed(format!(
        "commit carries a confirmation by {insider} that differs from ours"
    ));
    for (receiver, third) in [(&nodes[1], &nodes[2]), (&nodes[2], &nodes[1])] {
        let forgeries = vec![
            Forgery {
                what: "the last confirmation missing",
                certificate: forged(&|c| {
                    c.confirms.pop();
                }),
                refusal: Refusal::Malformed("commit lacks confirmations".into()),
            },
            Forgery {
                what: "a confirmation signed with another member's key",
                certificate: forged(&|c| resigned(&mut c.confirms[at(third)])),
                refusal: Refusal::BadSignature(third.clone()),
            },
            Forgery {
                what: "a confirmation's signature altered",
                certificate: forged(&|c| {
                    let i = at(third);
                    c.confirms[i].signature = flipped(&c.confirms[i].signature, 0);
                }),
                refusal: Refusal::BadSignature(third.clone()),
            },
            Forgery {
                what: "a confirmation of another public key package",
                certificate: forged(&|c| {
                    let confirm = &mut c.confirms[at(&insider)];
                    confirm.public_key_package.0[0] ^= 1;
                    resigned(confirm);
                }),
                refusal: differs.clone(),
            },
            Forgery {
                what: "a confirmation of other round-1 packages",
                certificate: forged(&|c| {
                    let confirm = &mut c.confirms[at(&insider)];
                    confirm.round1_digests[0].0[0] ^= 1;
                    resigned(confirm);
                }),
                refusal: differs.clone(),
            },
            Forgery {
                what: "another DKG's commit under this session's id",
                certificate: forged(&|c| {
                    *c = DkgCommit {
                        session,
                        ..other.clone()
                    }
                }),
                refusal: Refusal::SenderMismatch,
            },
        ];
        for forgery in forgeries {
            for sender in [&insider, &coordinator] {
                refused(
                    &mut net,
                    sender,
                    receiver,
                    Message::DkgCommit(forgery.certificate.clone()),
                    &forgery.refusal,
                    forgery.what,
                    &pending_only,
                );
            }
        }
    }
    // Every member refuses to sign with it: no signer runs for the key.
    match net.sign_roast(&coordinator, &key, Epoch(0), &pkp, &nodes, b"too early") {
        Err(e @ ProtocolError::TooFewSigners { .. }) => {
            assert!(e.to_string().contains("unknown key id"), "{e}")
        }
        other => panic!("a key no member activated: {other:?}"),
    }
    pending_only(&net, "a signing request");

    // The genuine commit, handed over by a member (and by the coordinator to that member).
    let mark = net.refused.len();
    for node in &nodes[1..] {
        net.inject(&insider, node, Message::DkgCommit(genuine.clone()));
    }
    net.inject(&coordinator, &insider, Message::DkgCommit(genuine.clone()));
    net.run(Duration::from_secs(1));
    let refusals = certificates_refused(&net, mark);
    assert!(
        refusals.is_empty(),
        "the genuine commit was refused: {refusals:?}"
    );
    for node in &nodes {
        let n = net.node(node).unwrap();
        assert_eq!(n.active_share(&key).map(|s| s.epoch), Some(Epoch(0)));
        assert!(n.pending_share(&key).is_none());
        assert!(n.core().unwrap().signs_for(&key));
    }
    net.clear_faults();
    for signers in [&nodes[1..], &nodes[..2]] {
        signs(&mut net, &coordinator, &key, Epoch(0), &pkp, signers, b"m");
    }
}

per_suite!(
    a_forged_reshare_commit_retires_nothing,
    a_forged_dkg_commit_activates_nothing,
);
