#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Child keys ([`permafrost_protocol::derive`]) checked against implementations that share no
//! code with them: the BIP-32 and BIP-86 test vectors, the `bitcoin` crate's BIP-32 and
//! BIP-341 code, the independent signature verifiers of `permafrost-verifiers`, and a
//! re-computation of the Ed25519 scheme from its documentation on `curve25519-dalek`.

use std::collections::BTreeMap;
use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::key::{TapTweak, TweakedPublicKey, UntweakedPublicKey};
use bitcoin::secp256k1::{Parity, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, KnownHrp, NetworkKind};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::Scalar as EdScalar;
use frost_core::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use frost_core::{Ciphersuite, Group, Identifier, SigningPackage, VerifyingKey};
use hmac::{Hmac, Mac};
use permafrost_protocol::derive::{chain_code, ChainCode, Derivation, ExtendedPublicKey};
use permafrost_protocol::wire::{Curve, DerivationPath, KeyId, HARDENED_OFFSET};
use permafrost_protocol::Suite;
use permafrost_verifiers::verify;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256, Sha512};

type Secp = frost_secp256k1::Secp256K1Sha256;
type Taproot = frost_secp256k1_tr::Secp256K1Sha256TR;
type Ed = frost_ed25519::Ed25519Sha512;

fn path(text: &str) -> DerivationPath {
    text.parse().unwrap()
}

/// The same path as the `bitcoin` crate's child numbers.
fn child_numbers(path: &DerivationPath) -> Vec<ChildNumber> {
    path.indices()
        .iter()
        .map(|&index| ChildNumber::from_normal_idx(index).unwrap())
        .collect()
}

fn key_bytes<S: Ciphersuite>(key: &VerifyingKey<S>) -> Vec<u8> {
    key.serialize().unwrap()
}

fn frost_key<S: Ciphersuite>(xpub: &Xpub) -> VerifyingKey<S> {
    VerifyingKey::deserialize(&xpub.public_key.serialize()).unwrap()
}

fn random_path(rng: &mut ChaCha20Rng, boundaries: bool) -> DerivationPath {
    let depth = 1 + rng.next_u32() % 5;
    let indices = (0..depth)
        .map(|_| {
            let index = rng.next_u32() & (HARDENED_OFFSET - 1);
            // Every tenth key uses only the smallest and the largest non-hardened index.
            match (boundaries, index & 1) {
                (true, 0) => 0,
                (true, _) => HARDENED_OFFSET - 1,
                (false, _) => index,
            }
        })
        .collect();
    DerivationPath::new(indices).unwrap()
}

// ---------------------------------------------------------------------------------------------
// BIP-32
// ---------------------------------------------------------------------------------------------

/// Every step of the BIP-32 test vectors that derives a non-hardened child from an extended
/// public key: (parent ext pub, path from the parent, child ext pub). Source: bip-0032.mediawiki,
/// "Test Vectors" (github.com/bitcoin/bips, commit 7fe0b034ec967b52a5a28276419117326df93263).
/// Test vectors 3 and 4 have hardened steps only.
const BIP32_PUBLIC_STEPS: &[(&str, &str, &str)] = &[
    // Test vector 1: m/0H -> m/0H/1
    (
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        "m/1",
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
    ),
    // Test vector 1: m/0H/1/2H -> m/0H/1/2H/2
    (
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "m/2",
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
    ),
    // Test vector 1: m/0H/1/2H/2 -> m/0H/1/2H/2/1000000000
    (
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        "m/1000000000",
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
    ),
    // Test vector 1: m/0H/1/2H -> m/0H/1/2H/2/1000000000, two levels at once
    (
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "m/2/1000000000",
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
    ),
    // Test vector 2: m -> m/0
    (
        "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
        "m/0",
        "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
    ),
    // Test vector 2: m/0/2147483647H -> m/0/2147483647H/1
    (
        "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
        "m/1",
        "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
    ),
    // Test vector 2: m/0/2147483647H/1/2147483646H -> m/0/2147483647H/1/2147483646H/2
    (
        "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
        "m/2",
        "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
    ),
];

#[test]
fn secp256k1_children_match_the_bip32_test_vectors() {
    let secp = Secp256k1::verification_only();
    for &(parent, steps, child) in BIP32_PUBLIC_STEPS {
        let parent = Xpub::from_str(parent).unwrap();
        let child = Xpub::from_str(child).unwrap();
        let steps = path(steps);
        // The vectors are transcribed right: the child is `steps` below the parent.
        assert_eq!(
            child.depth as usize,
            parent.depth as usize + steps.indices().len()
        );
        assert_eq!(
            child.child_number,
            *child_numbers(&steps).last().unwrap(),
            "{steps}"
        );
        assert_eq!(
            parent.derive_pub(&secp, &child_numbers(&steps)).unwrap(),
            child
        );

        let derivation = Derivation::<Secp>::new(
            &frost_key(&parent),
            ChainCode(parent.chain_code.to_bytes()),
            &steps,
        )
        .unwrap();
        let expected = child.public_key.serialize().to_vec();
        assert_eq!(key_bytes(&derivation.derived_key()), expected, "{steps}");
        assert_eq!(key_bytes(&derivation.verifying_key()), expected, "{steps}");
        assert_eq!(
            derivation.chain_code.0,
            child.chain_code.to_bytes(),
            "{steps}"
        );
        assert_eq!(derivation.path, steps);
    }
}

// ---------------------------------------------------------------------------------------------
// BIP-86
// ---------------------------------------------------------------------------------------------

/// Account 0 (`m/86'/0'/0'`) of the BIP-86 test vectors.
const BIP86_ACCOUNT_XPUB: &str = "xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ";

struct Bip86Address {
    /// Path below the account.
    path: &'static str,
    xpub: &'static str,
    internal_key: &'static str,
    output_key: &'static str,
    script_pubkey: &'static str,
    address: &'static str,
}

/// Source: bip-0086.mediawiki, "Test vectors" (github.com/bitcoin/bips, commit
/// 7fe0b034ec967b52a5a28276419117326df93263).
const BIP86_ADDRESSES: &[Bip86Address] = &[
    // m/86'/0'/0'/0/0
    Bip86Address {
        path: "m/0/0",
        xpub: "xpub6H3W6JmYJXN49h5TfcVjLC3onS6uPeUTTJoVvRC8oG9vsTn2J8LwigLzq5tHbrwAzH9DGo6ThGUdWsqce8dGfwHVBxSbixjDADGGdzF7t2B",
        internal_key: "cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115",
        output_key: "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c",
        script_pubkey: "5120a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c",
        address: "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr",
    },
    // m/86'/0'/0'/0/1
    Bip86Address {
        path: "m/0/1",
        xpub: "xpub6H3W6JmYJXN4CCKUSnriaiQRCZmG6aq4sCMDqTu1ACyngw7HShf59hAxYjXgKDuuHThVEUzdHrc3aXCr9kfvQvZPit5dnD3K9xVRBzjK3rX",
        internal_key: "83dfe85a3151d2517290da461fe2815591ef69f2b18a2ce63f01697a8b313145",
        output_key: "a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb",
        script_pubkey: "5120a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb",
        address: "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh",
    },
    // m/86'/0'/0'/1/0
    Bip86Address {
        path: "m/1/0",
        xpub: "xpub6GL8SnQwRCGDhB59LEz9HMyM6sRYoByXBzXK3iEKWgCz8XrZNHUzd9L3AUBELW5NzA7dEFvMas1F84TuPH3xqdUA5tumaGWFgihJzWytXe3",
        internal_key: "399f1b2f4393f29a18c937859c5dd8a77350103157eb880f02e8c08214277cef",
        output_key: "882d74e5d0572d5a816cef0041a96b6c1de832f6f9676d9605c44d5e9a97d3dc",
        script_pubkey: "5120882d74e5d0572d5a816cef0041a96b6c1de832f6f9676d9605c44d5e9a97d3dc",
        address: "bc1p3qkhfews2uk44qtvauqyr2ttdsw7svhkl9nkm9s9c3x4ax5h60wqwruhk7",
    },
];

#[test]
fn taproot_children_match_the_bip86_test_vectors() {
    let account = Xpub::from_str(BIP86_ACCOUNT_XPUB).unwrap();
    let key = frost_key::<Taproot>(&account);
    let code = ChainCode(account.chain_code.to_bytes());
    for vector in BIP86_ADDRESSES {
        let derivation = Derivation::<Taproot>::new(&key, code, &path(vector.path)).unwrap();
        let internal = key_bytes(&derivation.derived_key());
        let output = key_bytes(&derivation.verifying_key());
        assert_eq!(
            hex::encode(&internal[1..]),
            vector.internal_key,
            "{}",
            vector.path
        );
        assert_eq!(
            hex::encode(&output[1..]),
            vector.output_key,
            "{}",
            vector.path
        );

        // The internal key is the BIP-32 child, parity included, with the child's chain code.
        let child = Xpub::from_str(vector.xpub).unwrap();
        assert_eq!(
            internal,
            child.public_key.serialize().to_vec(),
            "{}",
            vector.path
        );
        assert_eq!(derivation.chain_code.0, child.chain_code.to_bytes());

        // The output key is the address a wallet shows.
        let output_key = bitcoin::XOnlyPublicKey::from_slice(&output[1..]).unwrap();
        let address = Address::p2tr_tweaked(
            TweakedPublicKey::dangerous_assume_tweaked(output_key),
            KnownHrp::Mainnet,
        );
        assert_eq!(address.to_string(), vector.address);
        assert_eq!(
            hex::encode(address.script_pubkey().as_bytes()),
            vector.script_pubkey
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Random keys and paths against the bitcoin crate
// ---------------------------------------------------------------------------------------------

/// A random secp256k1 key (made by libsecp256k1, not by frost) with a random key id, and the
/// `bitcoin` crate's reading of its exported xpub, which must be the key at depth 0.
fn random_xpub(rng: &mut ChaCha20Rng, curve: Curve, n: usize) -> (KeyId, Vec<u8>, Xpub) {
    let secp = Secp256k1::signing_only();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let public = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&secret).unwrap());
    let key_id = KeyId::new(format!("random-{n}-{:08x}", rng.next_u32())).unwrap();
    let bytes = public.serialize().to_vec();
    let extended = ExtendedPublicKey::new(curve, &key_id, bytes.clone());
    assert_eq!(extended.chain_code, chain_code(curve, &key_id, &bytes));
    let xpub = Xpub::from_str(&extended.xpub().unwrap()).unwrap();
    assert_eq!(xpub.network, NetworkKind::Main);
    assert_eq!(xpub.depth, 0);
    assert_eq!(xpub.parent_fingerprint.to_bytes(), [0; 4]);
    assert_eq!(xpub.child_number, ChildNumber::from_normal_idx(0).unwrap());
    assert_eq!(xpub.public_key, public);
    assert_eq!(xpub.chain_code.to_bytes(), extended.chain_code.0);
    (key_id, bytes, xpub)
}

#[test]
fn secp256k1_children_agree_with_the_bitcoin_crate() {
    let secp = Secp256k1::verification_only();
    let mut rng = ChaCha20Rng::seed_from_u64(0x5ec9_256b);
    for n in 0..50 {
        let (key_id, bytes, xpub) = random_xpub(&mut rng, Curve::Secp256k1, n);
        let key = VerifyingKey::<Secp>::deserialize(&bytes).unwrap();
        let child_path = random_path(&mut rng, n % 10 == 0);
        let derivation = Derivation::<Secp>::of_key(&key_id, &key, &child_path).unwrap();
        let expected = xpub.derive_pub(&secp, &child_numbers(&child_path)).unwrap();
        let want = expected.public_key.serialize().to_vec();
        assert_eq!(
            key_bytes(&derivation.verifying_key()),
            want,
            "key {n} {child_path}"
        );
        assert_eq!(
            key_bytes(&derivation.derived_key()),
            want,
            "key {n} {child_path}"
        );
        assert_eq!(derivation.chain_code.0, expected.chain_code.to_bytes());
    }
}

#[test]
fn taproot_children_agree_with_the_bitcoin_crate() {
    let secp = Secp256k1::verification_only();
    let mut rng = ChaCha20Rng::seed_from_u64(0x7a9_2007);
    let mut odd_outputs = 0;
    for n in 0..50 {
        let (key_id, bytes, xpub) = random_xpub(&mut rng, Curve::Secp256k1Tr, n);
        let key = VerifyingKey::<Taproot>::deserialize(&bytes).unwrap();
        let child_path = random_path(&mut rng, n % 10 == 0);
        let derivation = Derivation::<Taproot>::of_key(&key_id, &key, &child_path).unwrap();

        // `tr(xpub/path)`: the BIP-32 child is the internal key, tweaked with no script path.
        let child = xpub.derive_pub(&secp, &child_numbers(&child_path)).unwrap();
        let internal: UntweakedPublicKey = child.to_x_only_pub();
        let (output, parity) = internal.tap_tweak(&secp, None);

        let derived = key_bytes(&derivation.derived_key());
        assert_eq!(
            derived,
            child.public_key.serialize().to_vec(),
            "key {n} {child_path}"
        );
        assert_eq!(derivation.chain_code.0, child.chain_code.to_bytes());
        let verifying = key_bytes(&derivation.verifying_key());
        assert_eq!(
            verifying[1..],
            output.to_x_only_public_key().serialize(),
            "key {n} {child_path}"
        );
        // The full output point, not only its x coordinate.
        let odd = parity == Parity::Odd;
        assert_eq!(verifying[0], if odd { 0x03 } else { 0x02 }, "key {n}");
        odd_outputs += usize::from(odd);
    }
    // Both parities of the output key were exercised.
    assert!((1..50).contains(&odd_outputs), "{odd_outputs}");
}

// ---------------------------------------------------------------------------------------------
// Ed25519: the documented scheme, re-implemented
// ---------------------------------------------------------------------------------------------

/// `DerivationScheme::Ed25519Additive` from its doc comment, on curve25519-dalek:
/// `I = HMAC-SHA512(c, "permafrost/ed25519-child/v1" ‖ A ‖ ser32(i))`, `δ` = `IL` little-endian
/// with the top four bits of its last byte cleared, child `A + δ·B`, child chain code `IR`.
fn ed25519_child_by_the_doc(
    key: [u8; 32],
    code: [u8; 32],
    indices: &[u32],
) -> ([u8; 32], [u8; 32]) {
    let mut point: EdwardsPoint = CompressedEdwardsY(key).decompress().unwrap();
    let mut code = code;
    for &index in indices {
        let parent = point.compress().to_bytes();
        let mut mac = Hmac::<Sha512>::new_from_slice(&code).unwrap();
        mac.update(b"permafrost/ed25519-child/v1");
        mac.update(&parent);
        mac.update(&index.to_be_bytes());
        let i = mac.finalize().into_bytes();
        let mut il: [u8; 32] = i[..32].try_into().unwrap();
        il[31] &= 0x0f;
        let delta = Option::<EdScalar>::from(EdScalar::from_canonical_bytes(il)).unwrap();
        point += EdwardsPoint::mul_base(&delta);
        assert!(!point.is_small_order());
        code = i[32..].try_into().unwrap();
    }
    (point.compress().to_bytes(), code)
}

#[test]
fn ed25519_children_follow_the_documented_scheme() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xed_25519);
    for n in 0..50 {
        let signing = ed25519_dalek::SigningKey::generate(&mut rng);
        let key: [u8; 32] = signing.verifying_key().to_bytes();
        let key_id = KeyId::new(format!("ed-{n}")).unwrap();
        let child_path = random_path(&mut rng, n % 10 == 0);
        let root = VerifyingKey::<Ed>::deserialize(&key).unwrap();
        let derivation = Derivation::<Ed>::of_key(&key_id, &root, &child_path).unwrap();
        let code = chain_code(Curve::Ed25519, &key_id, &key);
        let (want_key, want_code) = ed25519_child_by_the_doc(key, code.0, child_path.indices());
        assert_eq!(
            key_bytes(&derivation.verifying_key()),
            want_key,
            "key {n} {child_path}"
        );
        assert_eq!(key_bytes(&derivation.derived_key()), want_key);
        assert_eq!(derivation.chain_code.0, want_code);
        // A level at a time gives the same key: the derivation of a child's child.
        let (first, rest) = child_path.indices().split_at(1);
        let parent =
            Derivation::<Ed>::new(&root, code, &DerivationPath::new(first.to_vec()).unwrap())
                .unwrap();
        let stepwise = Derivation::<Ed>::new(
            &parent.verifying_key(),
            parent.chain_code,
            &DerivationPath::new(rest.to_vec()).unwrap(),
        )
        .unwrap();
        assert_eq!(key_bytes(&stepwise.verifying_key()), want_key);
    }
}

// ---------------------------------------------------------------------------------------------
// Chain codes and extended public keys
// ---------------------------------------------------------------------------------------------

/// `chain_code` from its doc comment: SHA-256 of the tag and the length-prefixed curve name,
/// key id and group key.
fn chain_code_by_the_doc(curve: &str, key_id: &str, group_key: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"permafrost/chain-code/v1");
    for part in [curve.as_bytes(), key_id.as_bytes(), group_key] {
        hash.update((part.len() as u32).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

#[test]
fn chain_codes_and_xpubs_are_as_documented() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xc4a1_c0de);
    let secp = Secp256k1::signing_only();
    let key_id = KeyId::new("treasury/cold-1").unwrap();
    for (curve, name) in [
        (Curve::Ed25519, "ed25519"),
        (Curve::Secp256k1, "secp256k1"),
        (Curve::Secp256k1Tr, "secp256k1-tr"),
    ] {
        let key = match curve {
            Curve::Ed25519 => ed25519_dalek::SigningKey::generate(&mut rng)
                .verifying_key()
                .to_bytes()
                .to_vec(),
            _ => {
                let mut secret = [0u8; 32];
                rng.fill_bytes(&mut secret);
                let secret = SecretKey::from_slice(&secret).unwrap();
                PublicKey::from_secret_key(&secp, &secret)
                    .serialize()
                    .to_vec()
            }
        };
        let code = chain_code(curve, &key_id, &key);
        assert_eq!(code.0, chain_code_by_the_doc(name, key_id.as_str(), &key));
        let extended = ExtendedPublicKey::new(curve, &key_id, key.clone());
        assert_eq!(extended.chain_code, code);
        assert_eq!(extended.public_key, key);
        match curve {
            Curve::Ed25519 => assert_eq!(extended.xpub(), None),
            _ => {
                let text = extended.xpub().unwrap();
                assert!(text.starts_with("xpub"), "{text}");
                let xpub = Xpub::from_str(&text).unwrap();
                assert_eq!(xpub.depth, 0);
                assert_eq!(xpub.network, NetworkKind::Main);
                assert_eq!(xpub.parent_fingerprint.to_bytes(), [0; 4]);
                assert_eq!(xpub.child_number, ChildNumber::from_normal_idx(0).unwrap());
                assert_eq!(xpub.chain_code.to_bytes(), code.0);
                assert_eq!(xpub.public_key.serialize().to_vec(), key);
            }
        }
        // The chain code separates curves, key ids and keys.
        let other_id = KeyId::new("treasury/cold-2").unwrap();
        assert_ne!(chain_code(curve, &other_id, &key), code);
        let mut other_key = key.clone();
        other_key[5] ^= 1;
        assert_ne!(chain_code(curve, &key_id, &other_key), code);
    }
    let key = [2u8; 33];
    assert_ne!(
        chain_code(Curve::Secp256k1, &key_id, &key),
        chain_code(Curve::Secp256k1Tr, &key_id, &key)
    );
}

// ---------------------------------------------------------------------------------------------
// Shares: threshold signatures for child keys
// ---------------------------------------------------------------------------------------------

const PATHS: [&str; 4] = ["m", "m/0", "m/0/17", "m/2147483647/5/9"];
const MESSAGE: &[u8] = b"permafrost: a child key signs with the parent's shares";

/// Trusted dealer 3-of-5, with `finish` applied to every key package and
/// `Suite::finish_dkg_public_key_package` to the public package: what a DKG leaves the members.
fn dealer<S: Suite>(
    seed: u64,
    finish: fn(KeyPackage<S>) -> KeyPackage<S>,
) -> (BTreeMap<Identifier<S>, KeyPackage<S>>, PublicKeyPackage<S>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (shares, public) =
        frost_core::keys::generate_with_dealer::<S, _>(5, 3, IdentifierList::Default, &mut rng)
            .unwrap();
    let packages = shares
        .into_iter()
        .map(|(id, share)| (id, finish(KeyPackage::try_from(share).unwrap())))
        .collect();
    (packages, S::finish_dkg_public_key_package(public))
}

/// Derives every signer's child key package and the child public key package at each of
/// [`PATHS`], signs with three signers (a different three at each path), and checks each
/// signature with the independent verifier for the curve against the child's key.
fn sign_for_children<S: Suite>(
    packages: &BTreeMap<Identifier<S>, KeyPackage<S>>,
    public: &PublicKeyPackage<S>,
    seed: u64,
) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let key_id = KeyId::new(format!("child-keys-{}", S::CURVE.as_str())).unwrap();
    let group_key = public.verifying_key();
    // Every member sees the same group key.
    for package in packages.values() {
        assert_eq!(package.verifying_key(), group_key);
    }
    let ids: Vec<Identifier<S>> = packages.keys().copied().collect();
    let mut signed: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut prefixes = Vec::new();
    for (n, text) in PATHS.iter().enumerate() {
        let child_path = path(text);
        let derivation = Derivation::<S>::of_key(&key_id, group_key, &child_path).unwrap();
        let child_key = derivation.verifying_key();
        if child_path.is_root() {
            assert_eq!(&child_key, group_key);
            assert_eq!(&derivation.derived_key(), group_key);
            let code = chain_code(S::CURVE, &key_id, &key_bytes(group_key));
            assert_eq!(derivation.chain_code, code);
        } else {
            assert_ne!(&child_key, group_key, "{text}");
            prefixes.push(key_bytes(&derivation.derived_key())[0]);
        }

        let child_public = derivation.public_key_package(public);
        assert_eq!(child_public.verifying_key(), &child_key, "{text}");
        assert_eq!(child_public.min_signers(), public.min_signers());
        let children: BTreeMap<_, _> = packages
            .iter()
            .map(|(id, package)| (*id, derivation.key_package(package)))
            .collect();
        for (id, child) in &children {
            assert_eq!(child.identifier(), id);
            assert_eq!(child.verifying_key(), &child_key, "{text}");
            assert_eq!(child.min_signers(), packages[id].min_signers());
            // The child verifying share is the child signing share times G, and is the one in
            // the child public key package.
            let share_point = S::Group::generator() * child.signing_share().to_scalar();
            assert!(
                share_point == child.verifying_share().to_element(),
                "{text}"
            );
            assert_eq!(
                &child_public.verifying_shares()[id],
                child.verifying_share(),
                "{text}"
            );
        }

        // Three signers, a different three at each path.
        let signers: Vec<Identifier<S>> = (0..3).map(|k| ids[(n + k) % ids.len()]).collect();
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for id in &signers {
            let (nonce, commitment) =
                frost_core::round1::commit(children[id].signing_share(), &mut rng);
            nonces.insert(*id, nonce);
            commitments.insert(*id, commitment);
        }
        let signing_package = SigningPackage::new(commitments, MESSAGE);
        let shares: BTreeMap<_, _> = signers
            .iter()
            .map(|id| {
                let share =
                    frost_core::round2::sign(&signing_package, &nonces[id], &children[id]).unwrap();
                (*id, share)
            })
            .collect();
        let signature = frost_core::aggregate(&signing_package, &shares, &child_public).unwrap();
        let signature = signature.serialize().unwrap();
        let key = key_bytes(&child_key);
        verify(S::CURVE, &key, MESSAGE, &signature)
            .unwrap_or_else(|e| panic!("{} {text}: {e}", S::CURVE.as_str()));
        signed.push((text.to_string(), key, signature));
    }

    // A signature for one path verifies under no other path's key.
    for (path_a, _, signature) in &signed {
        for (path_b, key, _) in &signed {
            if path_a != path_b {
                assert!(
                    verify(S::CURVE, key, MESSAGE, signature).is_err(),
                    "{}: a signature for {path_a} verifies under {path_b}",
                    S::CURVE.as_str()
                );
            }
        }
    }
    prefixes
}

#[test]
fn ed25519_shares_sign_for_child_keys() {
    let (packages, public) = dealer::<Ed>(1, |package| package);
    sign_for_children(&packages, &public, 11);
}

#[test]
fn secp256k1_shares_sign_for_child_keys() {
    let (packages, public) = dealer::<Secp>(2, |package| package);
    sign_for_children(&packages, &public, 12);
}

#[test]
fn taproot_shares_sign_for_child_keys() {
    use frost_secp256k1_tr::keys::Tweak;
    // Several dealings, so that both parities of the group key and of the derived (internal)
    // keys occur: frost's tweak negates the shares of a key with an odd y.
    let mut group_prefixes = Vec::new();
    let mut child_prefixes = Vec::new();
    for seed in 3..9 {
        let (packages, public) = dealer::<Taproot>(seed, |package| package.tweak::<&[u8]>(None));
        group_prefixes.push(key_bytes(public.verifying_key())[0]);
        child_prefixes.extend(sign_for_children(&packages, &public, 10 + seed));
    }
    for prefixes in [group_prefixes, child_prefixes] {
        assert!(
            prefixes.contains(&2) && prefixes.contains(&3),
            "{prefixes:?}"
        );
    }
}
