//! Writes the seed corpora under `fuzz/seeds/<target>/`: valid inputs of each shape, made with
//! a fixed RNG seed, so the fuzzers start from deep inside each decoder instead of from empty
//! input. Regenerate (and commit the result) when a format changes:
//!
//! ```sh
//! cd fuzz && cargo run --example gen_seeds
//! ```
//!
//! Every wire message kind gets a seed (`wire_seeds` and `reshare_seeds`); a new kind gets
//! seeds by adding it there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use frost_core::keys::{dkg, KeyPackage, PublicKeyPackage};
use frost_core::{round1, round2, Ciphersuite, Group, Identifier, SigningPackage};
use permafrost_net::Keypair;
use permafrost_runtime::network::NetworkFile;
use permafrost_wire::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

/// Serialized FROST artefacts of one 2-of-3 DKG and one signature.
struct Frost {
    round1: Vec<u8>,
    round2: Vec<u8>,
    public_key_package: Vec<u8>,
    commitment: Vec<u8>,
    signing_package: Vec<u8>,
    share: Vec<u8>,
    /// The signature's R: the group commitment a signer sends with its share.
    group_commitment: Vec<u8>,
    signature: Vec<u8>,
    vss_commitment: Vec<u8>,
    signing_share: Vec<u8>,
}

fn frost<C: Ciphersuite>(rng: &mut ChaCha20Rng) -> Result<Frost> {
    let ids: Vec<Identifier<C>> = (1u8..=3)
        .map(|i| Identifier::derive(&[i; 38]))
        .collect::<std::result::Result<_, _>>()?;
    let mut secrets1 = BTreeMap::new();
    let mut packages1 = BTreeMap::new();
    for id in &ids {
        let (secret, package) = dkg::part1(*id, 3, 2, &mut *rng)?;
        secrets1.insert(*id, secret);
        packages1.insert(*id, package);
    }
    let others = |me: &Identifier<C>| -> BTreeMap<_, _> {
        packages1
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, p)| (*id, p.clone()))
            .collect()
    };
    let mut secrets2 = BTreeMap::new();
    let mut received: BTreeMap<Identifier<C>, BTreeMap<Identifier<C>, dkg::round2::Package<C>>> =
        BTreeMap::new();
    for (id, secret) in secrets1 {
        let (secret2, outgoing) = dkg::part2(secret, &others(&id))?;
        secrets2.insert(id, secret2);
        for (to, package) in outgoing {
            received.entry(to).or_default().insert(id, package);
        }
    }
    let mut key_packages: BTreeMap<Identifier<C>, KeyPackage<C>> = BTreeMap::new();
    let mut public_key_package: Option<PublicKeyPackage<C>> = None;
    for (id, secret2) in &secrets2 {
        let (kp, pkp) = dkg::part3(secret2, &others(id), &received[id])?;
        key_packages.insert(*id, kp);
        public_key_package = Some(pkp);
    }
    let pkp = public_key_package.ok_or("no public key package")?;

    let signers = &ids[..2];
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for id in signers {
        let (n, c) = round1::commit(key_packages[id].signing_share(), &mut *rng);
        nonces.insert(*id, n);
        commitments.insert(*id, c);
    }
    let signing_package = SigningPackage::new(commitments.clone(), b"permafrost fuzz seed");
    let mut shares = BTreeMap::new();
    for id in signers {
        shares.insert(
            *id,
            round2::sign(&signing_package, &nonces[id], &key_packages[id])?,
        );
    }
    let signature = frost_core::aggregate(&signing_package, &shares, &pkp)?;

    let r1 = &packages1[&ids[0]];
    let r2 = &received[&ids[1]][&ids[0]];
    Ok(Frost {
        round1: r1.serialize()?,
        round2: r2.serialize()?,
        public_key_package: pkp.serialize()?,
        commitment: commitments[&ids[0]].serialize()?,
        signing_package: signing_package.serialize()?,
        share: shares[&ids[0]].serialize(),
        group_commitment: <C::Group as Group>::serialize(signature.R())?
            .as_ref()
            .to_vec(),
        signature: signature.serialize()?,
        vss_commitment: r1.commitment().serialize_whole()?,
        signing_share: key_packages[&ids[0]].signing_share().serialize(),
    })
}

fn frame(dir: &Path, name: &str, message: Message) -> Result<()> {
    let bytes = encode(&message)?;
    assert_eq!(decode(&bytes)?, message);
    write(dir, name, &bytes)
}

fn wire_seeds(dir: &Path, ed: &Frost, secp: &Frost) -> Result<()> {
    let session = SessionId([7; 32]);
    let node = |i: u8| NodeId::new(vec![i; 38]);
    let committee = vec![node(1)?, node(2)?, node(3)?];
    let key_id = KeyId::new("key-0001")?;
    let round1 = |from: u8, package: &[u8]| -> Result<DkgRound1> {
        Ok(DkgRound1 {
            session,
            from: node(from)?,
            package: package.to_vec(),
            signature: vec![0xa5; 64],
        })
    };
    let round2 = DkgRound2 {
        session,
        from: node(1)?,
        to: node(2)?,
        share: SecretBytes::new(ed.round2.clone()),
        signature: vec![0x5a; 64],
    };
    let confirm = |from: u8| -> Result<DkgConfirm> {
        Ok(DkgConfirm {
            session,
            from: node(from)?,
            round1_digests: vec![Digest([1; 32]), Digest([2; 32]), Digest([3; 32])],
            public_key_package: Digest([9; 32]),
            signature: vec![0x33; 64],
        })
    };
    frame(
        dir,
        "dkg_open",
        Message::DkgOpen(DkgOpen {
            session,
            key_id: key_id.clone(),
            curve: Curve::Secp256k1Tr,
            threshold: 2,
            committee: committee.clone(),
            nonce: [0x42; 32],
            approvals: vec![OperatorApproval {
                public_key: [0x0b; 32],
                request_id: [0x0c; 16],
                timestamp_ms: 1_700_000_000_000,
                signature: vec![0x0d; 64],
            }],
        }),
    )?;
    frame(
        dir,
        "dkg_round1",
        Message::DkgRound1(round1(1, &ed.round1)?),
    )?;
    frame(
        dir,
        "dkg_round1_set",
        Message::DkgRound1Set(DkgRound1Set {
            session,
            packages: vec![
                round1(1, &secp.round1)?,
                round1(2, &secp.round1)?,
                round1(3, &secp.round1)?,
            ],
        }),
    )?;
    frame(dir, "dkg_round2", Message::DkgRound2(round2.clone()))?;
    frame(dir, "dkg_confirm", Message::DkgConfirm(confirm(2)?))?;
    frame(
        dir,
        "dkg_complaint",
        Message::DkgComplaint(DkgComplaint {
            session,
            from: node(2)?,
            evidence: round2.clone(),
            conflicting: Some(round2),
        }),
    )?;
    frame(
        dir,
        "dkg_commit",
        Message::DkgCommit(DkgCommit {
            session,
            confirms: vec![confirm(1)?, confirm(2)?, confirm(3)?],
        }),
    )?;
    frame(
        dir,
        "dkg_abort",
        Message::DkgAbort(DkgAbort {
            session,
            culprits: vec![node(3)?],
            reason: "round-2 share inconsistent with commitment".into(),
        }),
    )?;
    frame(
        dir,
        "sign_request",
        Message::SignRequest(SignRequest {
            session,
            key_id: key_id.clone(),
            epoch: Epoch(1),
            message: b"transfer 10 BTC".to_vec(),
            path: DerivationPath::new(vec![44, 0, 7])?,
            client: Some(ClientAuthorization {
                public_key: [0x3b; 32],
                request_id: [0x42; 16],
                timestamp_ms: 1_790_000_000_000,
                signature: vec![0x5c; 64],
            }),
        }),
    )?;
    frame(
        dir,
        "sign_commitment",
        Message::SignCommitment(SignCommitment {
            session,
            key_id: key_id.clone(),
            epoch: Epoch(0),
            commitment: secp.commitment.clone(),
        }),
    )?;
    frame(
        dir,
        "sign_package",
        Message::SignPackage(SignPackage {
            session,
            key_id: key_id.clone(),
            epoch: Epoch(300),
            package: ed.signing_package.clone(),
        }),
    )?;
    frame(
        dir,
        "sign_share",
        Message::SignShare(SignShare {
            session,
            key_id,
            epoch: Epoch(u64::MAX),
            share: ed.share.clone(),
            package: Digest([0x66; 32]),
            group_commitment: ed.group_commitment.clone(),
        }),
    )?;
    frame(
        dir,
        "sign_refusal",
        Message::SignRefusal(SignRefusal {
            session,
            reason: "key not held".into(),
            unauthorized: false,
            commitment_unknown: true,
        }),
    )?;
    frame(
        dir,
        "commitments_request",
        Message::CommitmentsRequest(CommitmentsRequest {
            session,
            key_id: KeyId::new("custody-hot-1")?,
            epoch: Epoch(2),
            count: 64,
        }),
    )?;
    frame(
        dir,
        "commitment_batch",
        Message::CommitmentBatch(CommitmentBatch {
            session,
            key_id: KeyId::new("custody-hot-1")?,
            epoch: Epoch(2),
            commitments: vec![ed.commitment.clone(); 3],
        }),
    )?;
    frame(
        dir,
        "sign_with_commitment",
        Message::SignWithCommitment(SignWithCommitment {
            session,
            key_id: KeyId::new("custody-hot-1")?,
            epoch: Epoch(2),
            message: b"settle batch 42".to_vec(),
            path: DerivationPath::new(Vec::new())?,
            client: None,
            batch: SessionId([0x42; 32]),
            index: 7,
            package: ed.signing_package.clone(),
        }),
    )?;
    reshare_seeds(dir, secp)
}

fn reshare_seeds(dir: &Path, secp: &Frost) -> Result<()> {
    let session = SessionId([9; 32]);
    let node = |i: u8| NodeId::new(vec![i; 38]);
    let proposal = ReshareProposal {
        key_id: KeyId::new("key-0002")?,
        curve: Curve::Secp256k1,
        epoch: Epoch(3),
        attempt: 1,
        old_committee: vec![node(1)?, node(2)?, node(3)?],
        old_public_key_package: secp.public_key_package.clone(),
        new_committee: vec![node(2)?, node(3)?, node(4)?, node(5)?],
        new_threshold: 3,
        dealers: vec![node(1)?, node(2)?],
    };
    let dealing = |from: u8| -> Result<ReshareDealing> {
        Ok(ReshareDealing {
            session,
            from: node(from)?,
            commitment: secp.vss_commitment.clone(),
            signature: vec![0x11; 64],
        })
    };
    let report = |from: u8| -> Result<ReshareReport> {
        Ok(ReshareReport {
            session,
            from: node(from)?,
            accepted: vec![node(1)?, node(2)?],
            signature: vec![0x22; 64],
        })
    };
    let confirm = |from: u8| -> Result<ReshareConfirm> {
        Ok(ReshareConfirm {
            session,
            from: node(from)?,
            public_key_package: Digest([0x44; 32]),
            signature: vec![0x33; 64],
        })
    };
    frame(
        dir,
        "reshare_open",
        Message::ReshareOpen(ReshareOpen {
            session,
            proposal,
            approvals: Vec::new(),
            rotation: Some(86_400),
        }),
    )?;
    frame(dir, "reshare_dealing", Message::ReshareDealing(dealing(1)?))?;
    frame(
        dir,
        "reshare_dealing_set",
        Message::ReshareDealingSet(ReshareDealingSet {
            session,
            dealings: vec![dealing(1)?, dealing(2)?],
        }),
    )?;
    frame(
        dir,
        "reshare_share",
        Message::ReshareShare(ReshareShare {
            session,
            from: node(1)?,
            to: node(4)?,
            share: SecretBytes::new(secp.signing_share.clone()),
            signature: vec![0x55; 64],
        }),
    )?;
    frame(dir, "reshare_report", Message::ReshareReport(report(4)?))?;
    frame(
        dir,
        "reshare_dealer_set",
        Message::ReshareDealerSet(ReshareDealerSet {
            session,
            reports: vec![report(2)?, report(3)?, report(4)?, report(5)?],
        }),
    )?;
    frame(dir, "reshare_confirm", Message::ReshareConfirm(confirm(5)?))?;
    frame(
        dir,
        "reshare_commit",
        Message::ReshareCommit(ReshareCommit {
            session,
            confirms: vec![confirm(2)?, confirm(3)?, confirm(4)?, confirm(5)?],
            test_signature: secp.signature.clone(),
        }),
    )?;
    frame(
        dir,
        "reshare_abort",
        Message::ReshareAbort(ReshareAbort {
            session,
            culprits: vec![node(1)?],
            reason: "dealer sent a bad share".into(),
        }),
    )?;
    frame(
        dir,
        "session_status",
        Message::SessionStatus(SessionStatus { session }),
    )?;
    frame(dir, "probe", Message::Probe(Probe { session }))?;
    Ok(())
}

fn network_seeds(dir: &Path, root: &Path) -> Result<()> {
    let peer = |i: u8| -> Result<String> {
        Ok(Keypair::ed25519_from_bytes([i; 32])?
            .public()
            .to_peer_id()
            .to_string())
    };
    let valid = format!(
        "network_id = \"fuzz-net\"\n\n\
         [[nodes]]\nname = \"node1\"\npeer_id = \"{}\"\naddr = \"/ip4/127.0.0.1/tcp/7001\"\n\n\
         [[nodes]]\nname = \"node_2\"\npeer_id = \"{}\"\naddr = \"/ip6/::1/tcp/7002\"\n\n\
         [[nodes]]\nname = \"node-3\"\npeer_id = \"{}\"\naddr = \"/dns4/node3.example/tcp/7003\"\n\n\
         [[coordinators]]\npeer_id = \"{}\"\naddr = \"/ip4/127.0.0.1/tcp/7100\"\n",
        peer(1)?, peer(2)?, peer(3)?, peer(9)?
    );
    let file: NetworkFile = toml::from_str(&valid)?;
    file.validate()?;
    write(dir, "valid", valid.as_bytes())?;
    write(dir, "inline", format!(
        "network_id = 'x'\nnodes = [{{ name = 'a', peer_id = '{}', addr = '/ip4/1.2.3.4/tcp/1' }}]\ncoordinators = []\n",
        peer(4)?
    ).as_bytes())?;
    let example = std::fs::read(root.join("configs/network.toml"))?;
    write(dir, "configs_network", &example)?;
    Ok(())
}

fn api_seeds(dir: &Path) -> Result<()> {
    for (name, body) in [
        ("create_key", r#"{"curve":"secp256k1-tr","threshold":2}"#),
        (
            "create_key_nodes",
            r#"{"curve":"ed25519","threshold":2,"nodes":["node1","node2","node3"]}"#,
        ),
        (
            "create_key_secp",
            r#"{"curve":"secp256k1","threshold":65535,"nodes":[]}"#,
        ),
        ("sign", r#"{"message":"48656c6c6f2c20776f726c6421"}"#),
        (
            "sign_client",
            r#"{"message":"00","client":{"public_key":"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29","request_id":"000102030405060708090a0b0c0d0e0f","timestamp_ms":1790000000000,"signature":"abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab"}}"#,
        ),
        ("sign_upper", r#"{"message":"DEADBEEF"}"#),
        ("sign_escaped", r#"{"message":"\u0030\u0031"}"#),
        (
            "reshare",
            r#"{"threshold":3,"nodes":["node1","node2","node4","node5"]}"#,
        ),
        ("hex", "00ff10Ab"),
        // Answers, as the client parses them.
        (
            "key_record",
            r#"{"key_id":"k-1","curve":"secp256k1-tr","public_key":"02aa","threshold":2,"nodes":["node1","node2"],"epoch":0}"#,
        ),
        (
            "key_list",
            r#"{"keys":[{"key_id":"k-1","curve":"ed25519","public_key":"aa","threshold":2,"nodes":["node1"],"epoch":3}]}"#,
        ),
        (
            "sign_response",
            r#"{"signature":"00ff","public_key":"02aa","epoch":1,"signers":["node1","node3"]}"#,
        ),
        (
            "health",
            r#"{"status":"ok","nodes":[{"name":"node1","peer_id":"12D3KooW","connected":true}]}"#,
        ),
        (
            "error_body",
            r#"{"error":{"code":"bad_request","message":"invalid hex in \"message\""}}"#,
        ),
        (
            "localnet",
            r#"{"api":"http://127.0.0.1:8700","token":"t","coordinator":{"pid":42},"nodes":[{"name":"node1","peer_id":"p","addr":"/ip4/127.0.0.1/tcp/1","pid":43}]}"#,
        ),
    ] {
        write(dir, name, body.as_bytes())?;
    }
    Ok(())
}

fn frost_seeds(dir: &Path, suite: &str, f: &Frost) -> Result<()> {
    for (name, bytes) in [
        ("round1", &f.round1),
        ("round2", &f.round2),
        ("public_key_package", &f.public_key_package),
        ("commitment", &f.commitment),
        ("signing_package", &f.signing_package),
        ("signature_share", &f.share),
        ("signature", &f.signature),
        ("vss_commitment", &f.vss_commitment),
        ("signing_share", &f.signing_share),
    ] {
        write(dir, &format!("{suite}_{name}"), bytes)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = fuzz.join("seeds");
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
    let ed = frost::<frost_ed25519::Ed25519Sha512>(&mut rng)?;
    let secp = frost::<frost_secp256k1::Secp256K1Sha256>(&mut rng)?;
    let tr = frost::<frost_secp256k1_tr::Secp256K1Sha256TR>(&mut rng)?;

    wire_seeds(&seeds.join("wire_decode"), &ed, &secp)?;
    network_seeds(
        &seeds.join("network_file"),
        fuzz.parent().ok_or("no repo root")?,
    )?;
    api_seeds(&seeds.join("api_bodies"))?;
    let dir = seeds.join("frost_packages");
    frost_seeds(&dir, "ed25519", &ed)?;
    frost_seeds(&dir, "secp256k1", &secp)?;
    frost_seeds(&dir, "secp256k1_tr", &tr)?;
    println!("seeds written under {}", seeds.display());
    Ok(())
}
