//! Round trips for every message kind, and hostile frames that must decode to errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use permafrost_wire::*;
use proptest::prelude::*;

fn node(i: u8) -> NodeId {
    NodeId::new(vec![i; 38]).unwrap()
}

fn session() -> SessionId {
    SessionId([9; 32])
}

fn round1() -> DkgRound1 {
    DkgRound1 {
        session: session(),
        from: node(1),
        package: vec![1, 2, 3],
        signature: vec![4; 64],
    }
}

fn round2() -> DkgRound2 {
    DkgRound2 {
        session: session(),
        from: node(1),
        to: node(2),
        share: SecretBytes::new(vec![5; 36]),
        signature: vec![6; 64],
    }
}

fn confirm() -> DkgConfirm {
    DkgConfirm {
        session: session(),
        from: node(3),
        round1_digests: vec![Digest([1; 32]), Digest([2; 32])],
        public_key_package: Digest([3; 32]),
        signature: vec![7; 64],
    }
}

/// One example of every kind.
fn approval() -> OperatorApproval {
    OperatorApproval {
        public_key: [1; 32],
        request_id: [2; 16],
        timestamp_ms: 1_700_000_000_000,
        signature: vec![3; 64],
    }
}

fn every_kind() -> Vec<Message> {
    let key_id = KeyId::new("key-1").unwrap();
    vec![
        Message::DkgOpen(DkgOpen {
            session: session(),
            key_id: key_id.clone(),
            curve: Curve::Secp256k1Tr,
            threshold: 2,
            committee: vec![node(1), node(2), node(3)],
            nonce: [8; 32],
            approvals: vec![approval()],
        }),
        Message::DkgRound1(round1()),
        Message::DkgRound1Set(DkgRound1Set {
            session: session(),
            packages: vec![round1(), round1()],
        }),
        Message::DkgRound2(round2()),
        Message::DkgConfirm(confirm()),
        Message::DkgComplaint(DkgComplaint {
            session: session(),
            from: node(2),
            evidence: round2(),
            conflicting: Some(round2()),
        }),
        Message::DkgCommit(DkgCommit {
            session: session(),
            confirms: vec![confirm()],
        }),
        Message::DkgAbort(DkgAbort {
            session: session(),
            culprits: vec![node(4)],
            reason: "bad share".into(),
        }),
        Message::SignRequest(SignRequest {
            path: Default::default(),
            session: session(),
            key_id: key_id.clone(),
            epoch: Epoch(3),
            message: b"settle".to_vec(),
            client: Some(ClientAuthorization {
                public_key: [5; 32],
                request_id: [6; 16],
                timestamp_ms: 1_700_000_000_000,
                signature: vec![7; 64],
            }),
        }),
        Message::SignCommitment(SignCommitment {
            session: session(),
            key_id: key_id.clone(),
            epoch: Epoch(3),
            commitment: vec![1; 70],
        }),
        Message::SignPackage(SignPackage {
            session: session(),
            key_id: key_id.clone(),
            epoch: Epoch(3),
            package: vec![2; 300],
        }),
        Message::SignShare(SignShare {
            session: session(),
            key_id: key_id.clone(),
            epoch: Epoch(3),
            share: vec![3; 36],
            package: Digest([4; 32]),
            group_commitment: vec![5; 33],
        }),
        Message::SignRefusal(SignRefusal {
            session: session(),
            reason: "unknown key".into(),
            unauthorized: true,
            commitment_unknown: true,
        }),
        Message::CommitmentsRequest(CommitmentsRequest {
            session: session(),
            key_id: key_id.clone(),
            epoch: Epoch(3),
            count: 64,
        }),
        Message::CommitmentBatch(CommitmentBatch {
            session: session(),
            key_id: key_id.clone(),
            epoch: Epoch(3),
            commitments: vec![vec![1; 70]; 64],
        }),
        Message::SignWithCommitment(SignWithCommitment {
            path: Default::default(),
            session: session(),
            key_id,
            epoch: Epoch(3),
            message: b"settle".to_vec(),
            client: None,
            batch: SessionId([8; 32]),
            index: 17,
            package: vec![2; 300],
        }),
        Message::ReshareOpen(ReshareOpen {
            rotation: None,
            session: session(),
            proposal: ReshareProposal {
                key_id: KeyId::new("key-1").unwrap(),
                curve: Curve::Ed25519,
                epoch: Epoch(4),
                attempt: 1,
                old_committee: vec![node(1), node(2)],
                old_public_key_package: vec![9; 120],
                new_committee: vec![node(2), node(3), node(4)],
                new_threshold: 2,
                dealers: vec![node(1), node(2)],
            },
            approvals: vec![approval(), approval()],
        }),
        Message::ReshareDealing(dealing()),
        Message::ReshareDealingSet(ReshareDealingSet {
            session: session(),
            dealings: vec![dealing(), dealing()],
        }),
        Message::ReshareShare(ReshareShare {
            session: session(),
            from: node(1),
            to: node(3),
            share: SecretBytes::new(vec![7; 32]),
            signature: vec![1; 64],
        }),
        Message::ReshareReport(report()),
        Message::ReshareDealerSet(ReshareDealerSet {
            session: session(),
            reports: vec![report()],
        }),
        Message::ReshareConfirm(reshare_confirm()),
        Message::ReshareCommit(ReshareCommit {
            session: session(),
            confirms: vec![reshare_confirm()],
            test_signature: vec![5; 64],
        }),
        Message::ReshareAbort(ReshareAbort {
            session: session(),
            culprits: vec![node(1)],
            reason: "dealer sent a bad share".into(),
        }),
        Message::SessionStatus(SessionStatus { session: session() }),
        Message::Probe(Probe { session: session() }),
    ]
}

fn dealing() -> ReshareDealing {
    ReshareDealing {
        session: session(),
        from: node(1),
        commitment: vec![2; 99],
        signature: vec![3; 64],
    }
}

fn report() -> ReshareReport {
    ReshareReport {
        session: session(),
        from: node(3),
        accepted: vec![node(1), node(2)],
        signature: vec![4; 64],
    }
}

fn reshare_confirm() -> ReshareConfirm {
    ReshareConfirm {
        session: session(),
        from: node(3),
        public_key_package: Digest([6; 32]),
        signature: vec![8; 64],
    }
}

#[test]
fn every_kind_round_trips_and_every_truncation_fails() {
    let all = every_kind();
    assert_eq!(all.len(), 27, "a new message kind needs an example here");
    for message in all {
        let frame = encode(&message).unwrap();
        assert_eq!(frame[0..2], WIRE_VERSION.to_be_bytes());
        assert_eq!(frame[2], message.kind().tag());
        assert_eq!(decode(&frame).unwrap(), message);
        for cut in 0..frame.len() {
            assert!(
                decode(&frame[..cut]).is_err(),
                "{:?} cut at {cut}",
                message.kind()
            );
        }
        let mut longer = frame.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer),
            Err(WireError::TrailingBytes { .. })
        ));
    }
}

#[test]
fn oversized_frames_are_refused_before_decoding() {
    let huge = vec![0u8; 16 << 20];
    assert!(matches!(
        decode(&huge),
        Err(WireError::Oversized {
            kind: "any frame",
            ..
        })
    ));

    // A SignShare header followed by 5 KiB: over the 4 KiB SignShare cap.
    let mut frame = WIRE_VERSION.to_be_bytes().to_vec();
    frame.push(MessageKind::SignShare.tag());
    frame.extend(std::iter::repeat_n(0u8, 5 << 10));
    assert!(matches!(
        decode(&frame),
        Err(WireError::Oversized {
            kind: "SignShare",
            ..
        })
    ));
}

#[test]
fn encode_refuses_what_the_receiver_would_refuse() {
    let message = Message::SignShare(SignShare {
        session: session(),
        key_id: KeyId::new("k").unwrap(),
        epoch: Epoch(0),
        share: vec![0; 8 << 10],
        package: Digest([0; 32]),
        group_commitment: Vec::new(),
    });
    assert!(matches!(encode(&message), Err(WireError::Encode { .. })));
}

#[test]
fn wrong_version_and_unknown_kind_are_refused() {
    let mut frame = encode(&every_kind()[0]).unwrap();
    frame[1] = 99;
    assert!(matches!(
        decode(&frame),
        Err(WireError::UnsupportedVersion { got: 99, .. })
    ));
    let mut frame = encode(&every_kind()[0]).unwrap();
    frame[2] = 200;
    assert!(matches!(decode(&frame), Err(WireError::UnknownKind(200))));
}

/// A frame of the previous wire version (6: a signer's commitment or share never came as the answer to the request that asked for it) is
/// refused before its body is read, with an error naming both versions.
#[test]
fn a_frame_of_the_previous_wire_version_is_refused() {
    assert_eq!(WIRE_VERSION, 7);
    for message in every_kind() {
        let mut frame = encode(&message).unwrap();
        assert_eq!(frame[0..2], 7u16.to_be_bytes());
        frame[0..2].copy_from_slice(&6u16.to_be_bytes());
        let error = decode(&frame).unwrap_err();
        assert_eq!(
            error,
            WireError::UnsupportedVersion {
                got: 6,
                expected: 7
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("wire version 6") && text.contains("wire version 7"),
            "{text}"
        );
    }
}

#[test]
fn length_prefix_claiming_more_than_the_frame_is_refused() {
    // A SignRefusal whose reason claims 2^40 bytes: must error, not allocate.
    let mut frame = WIRE_VERSION.to_be_bytes().to_vec();
    frame.push(MessageKind::SignRefusal.tag());
    frame.extend_from_slice(&[9; 32]);
    frame.push(253); // varint u64 marker
    frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(decode(&frame), Err(WireError::Malformed { .. })));
}

#[test]
fn invalid_ids_inside_a_body_are_refused() {
    let mut message = every_kind()[0].clone();
    if let Message::DkgOpen(open) = &mut message {
        open.key_id = KeyId::new("ok").unwrap();
    }
    let frame = encode(&message).unwrap();
    // Replace the key id "ok" by "o " (a space is not allowed in key ids).
    let at = frame.windows(2).position(|w| w == b"ok").unwrap();
    let mut bad = frame.clone();
    bad[at + 1] = b' ';
    assert!(matches!(decode(&bad), Err(WireError::Malformed { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn random_bodies_behind_valid_headers_never_panic(
        tag in prop::sample::select(every_kind().iter().map(|m| m.kind().tag()).collect::<Vec<_>>()),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut frame = WIRE_VERSION.to_be_bytes().to_vec();
        frame.push(tag);
        frame.extend_from_slice(&body);
        let _ = decode(&frame);
    }

    #[test]
    fn bit_flips_in_valid_frames_never_panic(index in any::<prop::sample::Index>(), bit in 0u8..8, which in 0usize..23) {
        let mut frame = encode(&every_kind()[which]).unwrap();
        let i = index.index(frame.len());
        frame[i] ^= 1 << bit;
        let _ = decode(&frame);
    }
}

fn target<'a>(network_id: &'a str, group_key: &'a [u8], key_id: &'a KeyId) -> ApprovalTarget<'a> {
    ApprovalTarget {
        network_id,
        group_key,
        key_id,
        path: &ROOT,
    }
}

static ROOT: DerivationPath = DerivationPath::ROOT;

/// An approval covers its child key's path: it does not verify for another child, a parent,
/// a grandchild or the key itself, nor an approval of the key itself for any child. For the
/// key itself the signed bytes are those of approvals made before child keys existed; for a
/// child, the path follows them.
#[test]
fn client_authorizations_cover_the_child_key_path() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let key_id = KeyId::new("key-1").unwrap();
    let group_key = [2u8; 33];
    let root = target("net-a", &group_key, &key_id);
    let paths: Vec<DerivationPath> = ["m", "m/0", "m/0/1", "m/0/2", "m/0/1/0", "m/1/0", "m/256"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    for approved in &paths {
        let approved_target = ApprovalTarget {
            path: approved,
            ..root
        };
        let auth = ClientAuthorization::sign(&key, &approved_target, b"pay 10", [1; 16], 1_000);
        for asked in &paths {
            let asked_target = ApprovalTarget {
                path: asked,
                ..root
            };
            assert_eq!(
                auth.verify(&asked_target, b"pay 10").is_ok(),
                asked == approved,
                "approved {approved}, asked {asked}"
            );
        }
    }
    let v2 = ClientAuthorization::signed_bytes(&root, b"pay 10", &[1; 16], 1_000);
    let child: DerivationPath = "m/0/256".parse().unwrap();
    let with_path = ClientAuthorization::signed_bytes(
        &ApprovalTarget {
            path: &child,
            ..root
        },
        b"pay 10",
        &[1; 16],
        1_000,
    );
    let mut expected = v2.clone();
    expected.extend_from_slice(b"path\x02\x00\x00\x00\x00\x00\x00\x01\x00");
    assert_eq!(with_path, expected);
    assert!(v2.ends_with(&1_000u64.to_be_bytes()));
}

/// A client's authorization verifies over exactly the network id, group key, key id and
/// message it was made for; changing any signed field, or the signature, makes it fail.
#[test]
fn client_authorizations_verify_only_for_what_they_approve() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let key_id = KeyId::new("key-1").unwrap();
    let group_key = [2u8; 33];
    let approved = target("net-a", &group_key, &key_id);
    let auth = ClientAuthorization::sign(&key, &approved, b"pay 10", [1; 16], 1_000);
    assert_eq!(auth.verify(&approved, b"pay 10"), Ok(()));
    assert!(auth.verify(&approved, b"pay 11").is_err());
    let other_id = KeyId::new("key-2").unwrap();
    assert!(auth
        .verify(&target("net-a", &group_key, &other_id), b"pay 10")
        .is_err());
    // Another network, or another group key under the same key id: refused, saying so.
    let error = auth
        .verify(&target("net-b", &group_key, &key_id), b"pay 10")
        .unwrap_err();
    assert!(
        error.contains("does not verify over this network id, group key, key id, path and message"),
        "{error}"
    );
    let mut other_group_key = group_key;
    other_group_key[32] ^= 1;
    assert!(auth
        .verify(&target("net-a", &other_group_key, &key_id), b"pay 10")
        .is_err());
    assert!(auth
        .verify(&target("net-a", &group_key[..32], &key_id), b"pay 10")
        .is_err());
    let mut changed = auth.clone();
    changed.request_id[0] ^= 1;
    assert!(changed.verify(&approved, b"pay 10").is_err());
    let mut changed = auth.clone();
    changed.timestamp_ms += 1;
    assert!(changed.verify(&approved, b"pay 10").is_err());
    let mut changed = auth.clone();
    changed.signature[10] ^= 1;
    assert!(changed.verify(&approved, b"pay 10").is_err());
    let mut changed = auth.clone();
    changed.signature.push(0);
    assert!(changed
        .verify(&approved, b"pay 10")
        .unwrap_err()
        .contains("65 bytes"));
    let mut changed = auth;
    changed.public_key = ed25519_dalek::SigningKey::from_bytes(&[8; 32])
        .verifying_key()
        .to_bytes();
    assert!(changed.verify(&approved, b"pay 10").is_err());
}

/// An approval signed the version-1 way (domain v1, no network id or group key) does not
/// verify, for the same key id and message.
#[test]
fn a_v1_approval_does_not_verify() {
    use ed25519_dalek::Signer as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let key_id = KeyId::new("key-1").unwrap();
    let (message, request_id, timestamp_ms) = (b"pay 10", [1u8; 16], 1_000u64);
    let mut v1 = b"permafrost/client-authorization/v1".to_vec();
    for part in [key_id.as_str().as_bytes(), message] {
        v1.extend_from_slice(&(part.len() as u32).to_be_bytes());
        v1.extend_from_slice(part);
    }
    v1.extend_from_slice(&request_id);
    v1.extend_from_slice(&timestamp_ms.to_be_bytes());
    let auth = ClientAuthorization {
        public_key: key.verifying_key().to_bytes(),
        request_id,
        timestamp_ms,
        signature: key.sign(&v1).to_bytes().to_vec(),
    };
    let group_key = [2u8; 32];
    for network_id in ["", "net-a"] {
        for group_key in [&group_key[..], &[]] {
            assert!(auth
                .verify(&target(network_id, group_key, &key_id), message)
                .unwrap_err()
                .contains("does not verify"));
        }
    }
}

/// The signed bytes: the v2 domain, then each variable-length field with its u32 length, so
/// that bytes moved between neighbouring fields always change them, and a change of the
/// network id or of the group key changes them.
#[test]
fn signed_bytes_cover_every_field_and_separate_them_by_length() {
    let key_id = KeyId::new("k").unwrap();
    let bytes = ClientAuthorization::signed_bytes(
        &target("net", &[0xaa, 0xbb], &key_id),
        b"msg",
        &[7; 16],
        0x0102,
    );
    let mut expected = b"permafrost/client-authorization/v2".to_vec();
    expected.extend_from_slice(&[0, 0, 0, 3]);
    expected.extend_from_slice(b"net");
    expected.extend_from_slice(&[0, 0, 0, 2, 0xaa, 0xbb]);
    expected.extend_from_slice(&[0, 0, 0, 1]);
    expected.extend_from_slice(b"k");
    expected.extend_from_slice(&[0, 0, 0, 3]);
    expected.extend_from_slice(b"msg");
    expected.extend_from_slice(&[7; 16]);
    expected.extend_from_slice(&0x0102u64.to_be_bytes());
    assert_eq!(bytes, expected);
    assert_eq!(
        ClientAuthorization::DOMAIN,
        b"permafrost/client-authorization/v2"
    );

    let signed = |network_id: &str, group_key: &[u8], key_id: &str, message: &[u8]| {
        ClientAuthorization::signed_bytes(
            &target(network_id, group_key, &KeyId::new(key_id).unwrap()),
            message,
            &[0; 16],
            0,
        )
    };
    let base = signed("net-a", &[1; 32], "k", b"m");
    assert_ne!(base, signed("net-b", &[1; 32], "k", b"m"), "network id");
    assert_ne!(base, signed("net-a", &[2; 32], "k", b"m"), "group key");
    // A byte moved across each boundary between variable-length fields.
    assert_ne!(signed("ab", b"c", "k", b"m"), signed("a", b"bc", "k", b"m"));
    assert_ne!(signed("n", b"gk", "k", b"m"), signed("n", b"g", "kk", b"m"));
    assert_ne!(signed("n", b"g", "ab", b"c"), signed("n", b"g", "a", b"bc"));
    assert_ne!(signed("n", b"", "k", b"m"), signed("", b"n", "k", b"m"));
    // Together: the same concatenation of field bytes, split differently.
    assert_ne!(
        signed("ab", b"cd", "e", b"f"),
        signed("a", b"bcd", "ef", b"")
    );
}

fn action() -> LifecycleAction {
    LifecycleAction {
        kind: LifecycleKind::Reshare,
        key_id: KeyId::new("key-1").unwrap(),
        curve: Curve::Secp256k1,
        epoch: Epoch(3),
        old_public_key_package: Digest([5; 32]),
        committee: vec![node(1), node(2), node(3)],
        threshold: 2,
    }
}

/// An operator approval verifies over exactly its network and action: every field changed, and
/// another network id, makes it fail.
#[test]
fn operator_approvals_bind_the_network_and_every_field_of_the_action() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let approval = OperatorApproval::sign(&key, "net-a", &action(), [4; 16], 1_000);
    approval.verify("net-a", &action()).unwrap();
    assert!(approval.verify("net-b", &action()).is_err());
    let changes: [fn(&mut LifecycleAction); 8] = [
        |a| a.kind = LifecycleKind::Dkg,
        |a| a.key_id = KeyId::new("key-2").unwrap(),
        |a| a.curve = Curve::Secp256k1Tr,
        |a| a.epoch = Epoch(4),
        |a| a.old_public_key_package = Digest([6; 32]),
        |a| a.committee.push(node(4)),
        |a| a.committee = vec![node(1), node(2)],
        |a| a.threshold = 3,
    ];
    for change in changes {
        let mut other = action();
        change(&mut other);
        assert!(approval.verify("net-a", &other).is_err(), "{other:?}");
    }
    // A rotation policy binds its interval, and its bytes are a reshare's with the kind's name
    // and the interval: an approval of one is never one of the other.
    let mut hourly = action();
    hourly.kind = LifecycleKind::Rotation { every_secs: 3600 };
    let policy = OperatorApproval::sign(&key, "net-a", &hourly, [4; 16], 1_000);
    policy.verify("net-a", &hourly).unwrap();
    for every_secs in [60, 3599, 3601] {
        let mut other = hourly.clone();
        other.kind = LifecycleKind::Rotation { every_secs };
        assert!(policy.verify("net-a", &other).is_err(), "{every_secs}");
    }
    assert!(policy.verify("net-a", &action()).is_err());
    assert!(approval.verify("net-a", &hourly).is_err());
    let reshare_bytes = OperatorApproval::signed_bytes("net-a", &action(), &[0; 16], 0);
    let rotation_bytes = OperatorApproval::signed_bytes("net-a", &hourly, &[0; 16], 0);
    assert_eq!(
        rotation_bytes.len(),
        reshare_bytes.len() + "rotation".len() - "reshare".len() + 8
    );
    assert!(rotation_bytes[..rotation_bytes.len() - 24].ends_with(&3600u64.to_be_bytes()));
    // The length prefixes: moving bytes between the network id and the key id changes them.
    let mut shifted = action();
    shifted.key_id = KeyId::new("-1").unwrap();
    assert_ne!(
        OperatorApproval::signed_bytes("net-a", &action(), &[0; 16], 0),
        OperatorApproval::signed_bytes("net-akey", &shifted, &[0; 16], 0)
    );
    // A short signature is refused by size, not by a panic.
    let mut short = approval.clone();
    short.signature.truncate(10);
    assert!(short
        .verify("net-a", &action())
        .unwrap_err()
        .contains("10 bytes"));
}
