#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The independent verifiers accept real FROST signatures from all three
//! ciphersuites, reject every tampering, report bad encodings as malformed,
//! and agree with published known-answer vectors.

use std::collections::BTreeMap;

use permafrost_verifiers::{
    verify, verify_bip340, verify_ed25519, verify_frost_secp256k1, Curve, VerifyError,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const MESSAGE: &[u8] = b"permafrost: threshold signatures are standard signatures";

/// Runs trusted-dealer keygen (3-of-5) and a full 3-signer FROST session with
/// the given frost ciphersuite crate; returns the serialized verifying key and
/// signature. frost's own verifier is checked as a sanity baseline.
macro_rules! frost_sign {
    ($frost:ident, $seed:expr, $msg:expr) => {{
        use $frost as frost;
        let msg: &[u8] = $msg;
        let mut rng = ChaCha20Rng::seed_from_u64($seed);
        let (shares, pubkeys) =
            frost::keys::generate_with_dealer(5, 3, frost::keys::IdentifierList::Default, &mut rng)
                .unwrap();
        let key_packages: BTreeMap<_, _> = shares
            .into_iter()
            .take(3)
            .map(|(id, share)| (id, frost::keys::KeyPackage::try_from(share).unwrap()))
            .collect();
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for (id, kp) in &key_packages {
            let (n, c) = frost::round1::commit(kp.signing_share(), &mut rng);
            nonces.insert(*id, n);
            commitments.insert(*id, c);
        }
        let signing_package = frost::SigningPackage::new(commitments, msg);
        let mut sig_shares = BTreeMap::new();
        for (id, kp) in &key_packages {
            let share = frost::round2::sign(&signing_package, &nonces[id], kp).unwrap();
            sig_shares.insert(*id, share);
        }
        let signature = frost::aggregate(&signing_package, &sig_shares, &pubkeys).unwrap();
        pubkeys
            .verifying_key()
            .verify(msg, &signature)
            .expect("frost itself accepts its signature");
        (
            pubkeys.verifying_key().serialize().unwrap(),
            signature.serialize().unwrap(),
        )
    }};
}

/// (public key, signature) from a real 3-of-5 FROST run on `curve`.
fn frost_signature(curve: Curve, seed: u64, msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match curve {
        Curve::Ed25519 => frost_sign!(frost_ed25519, seed, msg),
        Curve::Secp256k1 => frost_sign!(frost_secp256k1, seed, msg),
        Curve::Secp256k1Tr => frost_sign!(frost_secp256k1_tr, seed, msg),
    }
}

/// The serialized (key, signature) lengths each curve must produce.
fn lengths(curve: Curve) -> (usize, usize) {
    match curve {
        Curve::Ed25519 => (32, 64),
        Curve::Secp256k1 => (33, 65),
        Curve::Secp256k1Tr => (33, 64),
    }
}

fn is_invalid(r: &Result<(), VerifyError>) -> bool {
    matches!(r, Err(VerifyError::InvalidSignature { .. }))
}

fn is_malformed_key(r: &Result<(), VerifyError>) -> bool {
    matches!(r, Err(VerifyError::MalformedKey { .. }))
}

fn is_malformed_sig(r: &Result<(), VerifyError>) -> bool {
    matches!(r, Err(VerifyError::MalformedSignature { .. }))
}

#[test]
fn frost_signatures_verify_with_independent_verifiers() {
    for curve in Curve::ALL {
        for seed in 0..8 {
            let (pk, sig) = frost_signature(curve, seed, MESSAGE);
            assert_eq!(
                (pk.len(), sig.len()),
                lengths(curve),
                "{curve} encoding sizes"
            );
            assert_eq!(
                verify(curve, &pk, MESSAGE, &sig),
                Ok(()),
                "{curve} seed {seed}"
            );
            let direct = match curve {
                Curve::Ed25519 => verify_ed25519(&pk, MESSAGE, &sig),
                Curve::Secp256k1 => verify_frost_secp256k1(&pk, MESSAGE, &sig),
                Curve::Secp256k1Tr => verify_bip340(&pk, MESSAGE, &sig),
            };
            assert_eq!(direct, Ok(()), "{curve} direct verifier, seed {seed}");
        }
    }
}

#[test]
fn empty_and_long_messages_verify() {
    // BIP-340 with arbitrary-length messages, and the hand-written H2 over
    // messages spanning several SHA-256 blocks.
    let long = vec![0xa5u8; 1000];
    for curve in Curve::ALL {
        for msg in [&b""[..], &long[..]] {
            let (pk, sig) = frost_signature(curve, 42, msg);
            assert_eq!(
                verify(curve, &pk, msg, &sig),
                Ok(()),
                "{curve}, {} bytes",
                msg.len()
            );
        }
    }
}

#[test]
fn secp256k1_tr_keys_with_odd_y_verify_via_x_only() {
    // Dealer keys are not normalised to even y; the BIP-340 verifier must use
    // the x-only part of the 33-byte key. Make sure both parities occur.
    let mut prefixes = Vec::new();
    for seed in 0..16 {
        let (pk, sig) = frost_signature(Curve::Secp256k1Tr, seed, MESSAGE);
        prefixes.push(pk[0]);
        assert_eq!(verify_bip340(&pk, MESSAGE, &sig), Ok(()), "seed {seed}");
        // The parity byte is irrelevant for an x-only key.
        let mut other_parity = pk.clone();
        other_parity[0] ^= 0x01;
        assert_eq!(
            verify_bip340(&other_parity, MESSAGE, &sig),
            Ok(()),
            "seed {seed}"
        );
    }
    assert!(
        prefixes.contains(&0x02) && prefixes.contains(&0x03),
        "{prefixes:?}"
    );
}

#[test]
fn frost_secp256k1_key_parity_matters() {
    // Unlike BIP-340, RFC 9591 hashes and uses the full point: -PK must fail.
    let (mut pk, sig) = frost_signature(Curve::Secp256k1, 3, MESSAGE);
    pk[0] ^= 0x01;
    assert!(is_invalid(&verify_frost_secp256k1(&pk, MESSAGE, &sig)));
}

#[test]
fn every_flipped_message_bit_is_rejected() {
    for curve in Curve::ALL {
        let (pk, sig) = frost_signature(curve, 7, MESSAGE);
        for bit in 0..MESSAGE.len() * 8 {
            let mut msg = MESSAGE.to_vec();
            msg[bit / 8] ^= 1 << (bit % 8);
            let r = verify(curve, &pk, &msg, &sig);
            assert!(
                is_invalid(&r),
                "{curve}: message bit {bit} flipped gave {r:?}"
            );
        }
        // Appending or truncating a byte is rejected too.
        let mut longer = MESSAGE.to_vec();
        longer.push(0);
        assert!(is_invalid(&verify(curve, &pk, &longer, &sig)), "{curve}");
        assert!(
            is_invalid(&verify(curve, &pk, &MESSAGE[..MESSAGE.len() - 1], &sig)),
            "{curve}"
        );
    }
}

#[test]
fn every_flipped_signature_bit_is_rejected() {
    for curve in Curve::ALL {
        let (pk, sig) = frost_signature(curve, 11, MESSAGE);
        for bit in 0..sig.len() * 8 {
            let mut bad = sig.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let r = verify(curve, &pk, MESSAGE, &bad);
            // A flip may break an encoding (malformed) or just the equation
            // (invalid); it must never verify nor be blamed on the key.
            assert!(
                is_invalid(&r) || is_malformed_sig(&r),
                "{curve}: signature bit {bit} flipped gave {r:?}"
            );
        }
        // The lowest bit of the scalar keeps it in range: strictly invalid.
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[if curve == Curve::Ed25519 { 32 } else { last }] ^= 1;
        assert!(is_invalid(&verify(curve, &pk, MESSAGE, &bad)), "{curve}");
    }
}

#[test]
fn a_different_public_key_is_rejected() {
    for curve in Curve::ALL {
        let (pk, sig) = frost_signature(curve, 1, MESSAGE);
        let (other_pk, other_sig) = frost_signature(curve, 2, MESSAGE);
        assert_ne!(pk, other_pk);
        let r = verify(curve, &other_pk, MESSAGE, &sig);
        assert!(is_invalid(&r), "{curve}: {r:?}");
        let r = verify(curve, &pk, MESSAGE, &other_sig);
        assert!(is_invalid(&r), "{curve}: {r:?}");
    }
}

#[test]
fn wrong_lengths_are_malformed_not_panics() {
    for curve in Curve::ALL {
        let (pk, sig) = frost_signature(curve, 5, MESSAGE);
        let (pk_len, sig_len) = lengths(curve);
        for len in [0, 1, pk_len - 1, pk_len + 1, 64, 65, 100] {
            if len == pk_len {
                continue;
            }
            let key = vec![0x02; len];
            let r = verify(curve, &key, MESSAGE, &sig);
            assert!(
                is_malformed_key(&r),
                "{curve}: key of {len} bytes gave {r:?}"
            );
        }
        for len in [0, 1, 32, 33, sig_len - 1, sig_len + 1, 128] {
            if len == sig_len {
                continue;
            }
            let mut s = sig.clone();
            s.resize(len, 0);
            let r = verify(curve, &pk, MESSAGE, &s);
            assert!(
                is_malformed_sig(&r),
                "{curve}: signature of {len} bytes gave {r:?}"
            );
        }
    }
    // A signature from one scheme handed to another is malformed, not accepted.
    let (ed_pk, ed_sig) = frost_signature(Curve::Ed25519, 5, MESSAGE);
    let (k_pk, k_sig) = frost_signature(Curve::Secp256k1, 5, MESSAGE);
    assert!(is_malformed_key(&verify(
        Curve::Secp256k1,
        &ed_pk,
        MESSAGE,
        &k_sig
    )));
    assert!(is_malformed_sig(&verify(
        Curve::Secp256k1,
        &k_pk,
        MESSAGE,
        &ed_sig
    )));
    assert!(is_malformed_sig(&verify(
        Curve::Ed25519,
        &ed_pk,
        MESSAGE,
        &k_sig
    )));
}

/// secp256k1 field modulus p and group order n, big-endian.
const P: &str = "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f";
const N: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

#[test]
fn invalid_secp256k1_encodings_are_malformed() {
    let (pk, sig) = frost_signature(Curve::Secp256k1, 9, MESSAGE);
    let (tr_pk, tr_sig) = frost_signature(Curve::Secp256k1Tr, 9, MESSAGE);

    // x = p is not a field element; prefixes other than 02/03 (including the
    // 0x00 identity tag and the 0x04 uncompressed tag) are rejected.
    let mut x_eq_p = vec![0x02];
    x_eq_p.extend(hex::decode(P).unwrap());
    for bad_key in [
        x_eq_p.clone(),
        [&[0x00][..], &pk[1..]].concat(),
        [&[0x04][..], &pk[1..]].concat(),
    ] {
        let r = verify_frost_secp256k1(&bad_key, MESSAGE, &sig);
        assert!(is_malformed_key(&r), "{r:?}");
        let r = verify_bip340(&bad_key, MESSAGE, &tr_sig);
        assert!(is_malformed_key(&r), "{r:?}");
    }

    // R: same rules.
    let mut bad_r = sig.clone();
    bad_r[..33].copy_from_slice(&x_eq_p);
    assert!(is_malformed_sig(&verify_frost_secp256k1(
        &pk, MESSAGE, &bad_r
    )));
    let mut bad_r = sig.clone();
    bad_r[0] = 0x00;
    assert!(is_malformed_sig(&verify_frost_secp256k1(
        &pk, MESSAGE, &bad_r
    )));

    // z = n and z = 2^256 - 1 are out of range.
    for z in [hex::decode(N).unwrap(), vec![0xff; 32]] {
        let mut bad_z = sig.clone();
        bad_z[33..].copy_from_slice(&z);
        let r = verify_frost_secp256k1(&pk, MESSAGE, &bad_z);
        assert!(is_malformed_sig(&r), "{r:?}");
    }

    // BIP-340: s = n must not verify (libsecp256k1 treats it as invalid).
    let mut bad_s = tr_sig.clone();
    bad_s[32..].copy_from_slice(&hex::decode(N).unwrap());
    assert!(verify_bip340(&tr_pk, MESSAGE, &bad_s).is_err());
}

#[test]
fn errors_have_clear_messages() {
    let e = verify_ed25519(&[0; 31], b"", &[0; 64]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed ed25519 public key: expected 32 bytes, got 31"
    );
    let e = verify_frost_secp256k1(&[0x02; 33], b"", &[0; 64]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed frost-secp256k1 signature: expected 65 bytes, got 64"
    );
    let (pk, sig) = frost_signature(Curve::Secp256k1Tr, 0, MESSAGE);
    let e = verify_bip340(&pk, b"other", &sig).unwrap_err();
    assert!(e.to_string().starts_with("invalid bip340 signature"), "{e}");
}

#[test]
fn rfc8032_test_1() {
    // RFC 8032 section 7.1, TEST 1 (empty message).
    let pk =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
    let sig = hex::decode(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    )
    .unwrap();
    assert_eq!(verify_ed25519(&pk, b"", &sig), Ok(()));
    assert_eq!(verify(Curve::Ed25519, &pk, b"", &sig), Ok(()));
    assert!(is_invalid(&verify_ed25519(&pk, b"\x00", &sig)));
    let mut bad = sig.clone();
    bad[0] ^= 0x01;
    assert!(verify_ed25519(&pk, b"", &bad).is_err());
}

#[test]
fn bip340_test_vector_1() {
    // BIP-340 test-vectors.csv, index 1 (expected result TRUE).
    let x_only =
        hex::decode("dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659").unwrap();
    let msg =
        hex::decode("243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89").unwrap();
    let sig = hex::decode(
        "6896bd60eeae296db48a229ff71dfe071bde413e6d43f917dc8dcf8c78de33418906d11ac976abccb20b091292bff4ea897efcb639ea871cfa95f6de339e4b0a",
    )
    .unwrap();
    let pk = [&[0x02][..], &x_only[..]].concat();
    assert_eq!(verify_bip340(&pk, &msg, &sig), Ok(()));
    assert_eq!(verify(Curve::Secp256k1Tr, &pk, &msg, &sig), Ok(()));
    let mut bad_msg = msg.clone();
    bad_msg[31] ^= 0x01;
    assert!(is_invalid(&verify_bip340(&pk, &bad_msg, &sig)));
    let mut bad_sig = sig.clone();
    bad_sig[63] ^= 0x01;
    assert!(is_invalid(&verify_bip340(&pk, &msg, &bad_sig)));
}
