//! End to end, in one process over real loopback sockets: DKG and signing on all three
//! curves, restarts, passphrases, encryption at rest, and the HTTP API's errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use permafrost_api::ApiError;
use permafrost_tests::{create, verify, Cluster, Curve};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dkg_3_of_5_and_signatures_on_every_curve() {
    let cluster = Cluster::start(5).await;
    let client = cluster.client();
    for curve in Curve::ALL {
        let started = Instant::now();
        let key = client.create_key(&create(curve, 3, None)).await.unwrap();
        let dkg_time = started.elapsed();
        assert_eq!(key.curve, curve);
        assert_eq!(key.threshold, 3);
        assert_eq!(key.epoch, 0);
        assert_eq!(key.nodes.len(), 5);
        assert_eq!(
            hex::decode(&key.public_key).unwrap().len(),
            if curve == Curve::Ed25519 { 32 } else { 33 }
        );
        for i in 0..3 {
            let message = format!("settlement {i} on {curve}").into_bytes();
            let signed = client.sign(&key.key_id, &message).await.unwrap();
            assert_eq!(signed.public_key, key.public_key);
            assert_eq!(signed.signers.len(), 3);
            verify(curve, &key.public_key, &message, &signed.signature);
        }
        println!("{curve}: DKG 3-of-5 in {dkg_time:?}");
        assert_eq!(client.key(&key.key_id).await.unwrap(), key);
    }
    assert_eq!(client.keys().await.unwrap().keys.len(), 3);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_keeps_its_keys_and_signs_again() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let key = client
        .create_key(&create(Curve::Secp256k1, 3, None))
        .await
        .unwrap();
    cluster.nodes[1].stop().await;
    cluster.nodes[1].start();
    cluster.wait_connected(Duration::from_secs(30)).await;
    let signed = client.sign(&key.key_id, b"after restart").await.unwrap();
    verify(
        Curve::Secp256k1,
        &key.public_key,
        b"after restart",
        &signed.signature,
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_data_directory_holds_no_share_in_plaintext_and_a_wrong_passphrase_is_refused() {
    let mut cluster = Cluster::start(2).await;
    let client = cluster.client();
    client
        .create_key(&create(Curve::Ed25519, 2, None))
        .await
        .unwrap();
    cluster.stop_nodes().await;

    // Read the share back through the keystore with the right passphrase...
    let node = &cluster.nodes[0];
    let passphrase = std::fs::read(node.dir.join("passphrase")).unwrap();
    let store = permafrost_keystore_for_tests::open(&node.dir.join("keystore"), &passphrase);
    let shares = store.shares().unwrap();
    assert_eq!(shares.len(), 1);
    let record = store
        .share(&shares[0].key_id, shares[0].epoch)
        .unwrap()
        .unwrap();
    let secret = record.secret.to_vec();
    drop(store);
    // ...and search every file of the data directory for it, and for its scalar.
    let scalar = &secret[secret.len() - 32..];
    for entry in walk(&node.dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !contains(&bytes, &secret),
            "{} holds the share",
            entry.display()
        );
        assert!(
            !contains(&bytes, scalar),
            "{} holds the share scalar",
            entry.display()
        );
    }

    // A passphrase file others can read: refused, and it says how to fix it.
    std::fs::write(node.dir.join("passphrase"), "world readable").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let path = node.dir.join("passphrase");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let config = permafrost_node::NodeConfig::load(&node.config_path).unwrap();
    let error = permafrost_node::run(config, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("chmod 600"), "{error}");
    // A wrong passphrase: the node refuses to start and says why.
    permafrost_tests::write_private(&node.dir.join("passphrase"), "not the passphrase");
    let config = permafrost_node::NodeConfig::load(&node.config_path).unwrap();
    let error = permafrost_node::run(config, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("wrong passphrase"), "{error}");
    // No passphrase at all: refused too.
    std::fs::remove_file(node.dir.join("passphrase")).unwrap();
    let config = permafrost_node::NodeConfig::load(&node.config_path).unwrap();
    let error = permafrost_node::run(config, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("passphrase"), "{error}");
    cluster.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

mod permafrost_keystore_for_tests {
    pub fn open(dir: &std::path::Path, passphrase: &[u8]) -> permafrost_keystore::KeyStore {
        permafrost_keystore::KeyStore::open(dir, passphrase).unwrap()
    }
}

async fn status_of(result: Result<impl std::fmt::Debug, ApiError>) -> u16 {
    match result {
        Err(ApiError::Http { status, .. }) => status,
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_errors_have_the_right_status_and_change_nothing() {
    let cluster = Cluster::start(3).await;
    let url = cluster.api_url();
    let client = cluster.client();
    let key = client
        .create_key(&create(Curve::Ed25519, 2, None))
        .await
        .unwrap();

    let wrong = permafrost_api::Client::new(url.clone(), "wrong-token-wrong-token").unwrap();
    assert_eq!(status_of(wrong.keys().await).await, 401);
    let http = reqwest_like::Http::new(&url);
    assert_eq!(http.post("/v1/keys", None, "{}").await, 401);
    assert_eq!(
        http.post("/v1/keys", Some(&cluster.token), "{not json")
            .await,
        400
    );
    assert_eq!(
        http.post(
            &format!("/v1/keys/{}/sign", key.key_id),
            Some(&cluster.token),
            r#"{"message":"zz"}"#
        )
        .await,
        400
    );
    assert_eq!(status_of(client.key("no-such-key").await).await, 404);
    // A path naming no key is 404 even with a bad body; a wrong method is a JSON 405.
    assert_eq!(
        http.post("/v1/keys/no-such-key/sign", Some(&cluster.token), "{bad")
            .await,
        404
    );
    assert_eq!(
        http.post("/v1/health", Some(&cluster.token), "{}").await,
        405
    );
    assert_eq!(status_of(client.sign("no-such-key", b"m").await).await, 404);
    let huge = format!(r#"{{"message":"{}"}}"#, "00".repeat(1 << 20));
    assert_eq!(
        http.post(
            &format!("/v1/keys/{}/sign", key.key_id),
            Some(&cluster.token),
            &huge
        )
        .await,
        413
    );
    assert_eq!(
        status_of(client.create_key(&create(Curve::Ed25519, 0, None)).await).await,
        400
    );
    assert_eq!(
        status_of(client.create_key(&create(Curve::Ed25519, 4, None)).await).await,
        400
    );
    assert_eq!(
        status_of(
            client
                .create_key(&create(Curve::Ed25519, 2, Some(vec!["node1", "node9"])))
                .await
        )
        .await,
        400
    );
    // Still working, and nothing was created by the refused requests.
    let signed = client.sign(&key.key_id, b"still fine").await.unwrap();
    verify(
        Curve::Ed25519,
        &key.public_key,
        b"still fine",
        &signed.signature,
    );
    assert_eq!(client.keys().await.unwrap().keys.len(), 1);
    cluster.stop().await;
}

/// A minimal raw HTTP/1.1 client, for requests the typed client cannot send (bad JSON, no
/// token, oversized bodies).
mod reqwest_like {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub struct Http {
        addr: String,
    }

    impl Http {
        pub fn new(url: &str) -> Self {
            Http {
                addr: url.trim_start_matches("http://").to_owned(),
            }
        }

        /// POSTs `body` and returns the status code.
        pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> u16 {
            let mut stream = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
            let auth = token
                .map(|t| format!("Authorization: Bearer {t}\r\n"))
                .unwrap_or_default();
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.addr,
                body.len()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let _ = stream.write_all(body.as_bytes()).await;
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response).await;
            let text = String::from_utf8_lossy(&response);
            text.split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        }
    }
}

/// A peer that is not in the network file, and a peer of another network, get nothing
/// processed by a node; the cluster keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_and_other_networks_are_refused() {
    use permafrost_net::{Keypair, NetConfig, PeerInfo};

    let cluster = Cluster::start(2).await;
    let client = cluster.client();
    let key = client
        .create_key(&create(Curve::Secp256k1Tr, 2, None))
        .await
        .unwrap();
    let network = permafrost_runtime::network::NetworkFile::load(&cluster.network_file())
        .unwrap()
        .validate()
        .unwrap();
    let target = &network.nodes[0];
    let target_info = PeerInfo {
        peer_id: target.peer_id,
        addrs: vec![target.addr.clone()],
    };
    // A well-formed message a coordinator would send, approved by a client the nodes accept.
    let key_id = permafrost_wire::KeyId::new(key.key_id.clone()).unwrap();
    let request = permafrost_wire::encode(&permafrost_wire::Message::SignRequest(
        permafrost_wire::SignRequest {
            session: permafrost_wire::SessionId([7; 32]),
            client: Some(
                cluster
                    .client_key()
                    .authorize_key(&key, &permafrost_wire::DerivationPath::ROOT, b"steal")
                    .unwrap(),
            ),
            key_id,
            epoch: permafrost_wire::Epoch(0),
            message: b"steal".to_vec(),
            path: permafrost_wire::DerivationPath::ROOT,
        },
    ))
    .unwrap();

    // 1. A fresh identity on the right network id.
    let mut stranger = NetConfig::new(Keypair::generate_ed25519(), cluster.network_id.clone());
    stranger.peers = vec![target_info.clone()];
    stranger.request_timeout = Duration::from_secs(3);
    let (stranger, _inbound) = permafrost_net::start(stranger).await.unwrap();
    assert!(stranger
        .request(target.peer_id, request.clone())
        .await
        .is_err());

    // 2. A listed identity (the coordinator's) but another network id.
    let coordinator_key = permafrost_runtime::identity::load_identity_file(
        &cluster.coordinator_config.identity_path(),
    )
    .unwrap();
    let mut other = NetConfig::new(coordinator_key, "another-network");
    other.peers = vec![target_info];
    other.request_timeout = Duration::from_secs(3);
    let (other, _inbound) = permafrost_net::start(other).await.unwrap();
    assert!(other.request(target.peer_id, request).await.is_err());

    // Nothing was signed for them, and the node still serves the real coordinator.
    let mut cluster = cluster;
    let node_dir = cluster.nodes[0].dir.clone();
    let signed = client.sign(&key.key_id, b"real").await.unwrap();
    verify(
        Curve::Secp256k1Tr,
        &key.public_key,
        b"real",
        &signed.signature,
    );
    stranger.shutdown().await;
    other.shutdown().await;
    cluster.stop_nodes().await;
    let passphrase = std::fs::read(node_dir.join("passphrase")).unwrap();
    let store = permafrost_keystore_for_tests::open(&node_dir.join("keystore"), &passphrase);
    let audit = store.audit().unwrap();
    let shares_signed = audit
        .iter()
        .filter(|(_, e)| e.kind == permafrost_keystore::AuditKind::SignatureShare)
        .count();
    // node1 took part in the one real signature at most (2-of-2: exactly one).
    assert_eq!(shares_signed, 1, "{audit:?}");
    drop(store);
    cluster.stop().await;
}

/// The example configs in configs/ parse and validate, so they cannot drift from the code.
#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let network = permafrost_runtime::network::NetworkFile::load(&dir.join("network.toml"))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(network.nodes.len(), 3);
    assert_eq!(network.coordinators.len(), 1);
    let node = permafrost_node::NodeConfig::load(&dir.join("node.toml")).unwrap();
    assert!(node.passphrase_file.is_some());
    let coordinator =
        permafrost_coordinator::CoordinatorConfig::load(&dir.join("coordinator.toml")).unwrap();
    assert_eq!(coordinator.api_listen.port(), 8700);
}

/// A coordinator without a gateway client key cannot approve anything itself: a sign request
/// without its own approval is 400 and nothing is asked of the nodes; with an approval from a
/// client key the nodes list, it signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_gateway_key_each_request_needs_its_own_approval() {
    let mut cluster = Cluster::prepare(2);
    cluster.coordinator_config.gateway_client_key_file = None;
    for node in &mut cluster.nodes {
        node.start();
    }
    cluster.start_coordinator().await;
    cluster.wait_connected(Duration::from_secs(30)).await;
    let client = cluster.client();
    let key = client
        .create_key(&create(Curve::Ed25519, 2, None))
        .await
        .unwrap();
    let error = client.sign(&key.key_id, b"no approval").await.unwrap_err();
    assert_eq!(error.status(), Some(400), "{error}");
    assert!(error.to_string().contains("gateway client key"), "{error}");
    let signed = client
        .sign_as(&cluster.client_key(), &key.key_id, b"approved")
        .await
        .unwrap();
    verify(
        Curve::Ed25519,
        &key.public_key,
        b"approved",
        &signed.signature,
    );
    // Each node's audit log holds the one approved signature (its admission and its share) and
    // nothing about the request the coordinator answered 400: no admission, share or refusal
    // of another message.
    cluster.stop_nodes().await;
    for node in &cluster.nodes {
        let passphrase = std::fs::read(node.dir.join("passphrase")).unwrap();
        let store = permafrost_keystore_for_tests::open(&node.dir.join("keystore"), &passphrase);
        let signing: Vec<_> = store
            .audit()
            .unwrap()
            .into_iter()
            .map(|(_, entry)| entry)
            .filter(|e| {
                matches!(
                    e.kind,
                    permafrost_keystore::AuditKind::SignatureShare
                        | permafrost_keystore::AuditKind::ClientRequest
                        | permafrost_keystore::AuditKind::Refused
                )
            })
            .collect();
        let shares = signing
            .iter()
            .filter(|e| e.kind == permafrost_keystore::AuditKind::SignatureShare)
            .count();
        assert_eq!(shares, 1, "{signing:?}");
        assert!(
            signing
                .iter()
                .all(|e| e.message_digest == signing[0].message_digest),
            "an entry about another message than the approved one: {signing:?}"
        );
    }
    cluster.stop().await;
}
