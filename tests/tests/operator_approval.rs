//! Operator approval of a key's life cycle over real loopback sockets: the nodes list only the
//! custodian's operator key, not the coordinator's gateway operator key. A DKG and a reshare
//! approved with the custodian's key run; a reshare without approvals (the coordinator approves
//! with its gateway key, which no node lists) and one with an approval for another threshold are
//! 403, and every node's keystore holds exactly what it held before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use permafrost_api::{
    ApiError, ClientKey, CreateKeyRequest, Health, KeyRecord, OperatorApproval, ReshareRequest,
};
use permafrost_keystore::{KeyStore, ShareState};
use permafrost_tests::{verify, Cluster, Curve};
use permafrost_wire::{Digest, Epoch, KeyId, LifecycleAction, LifecycleKind, NodeId};

fn committee(health: &Health, names: &[&str]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = names
        .iter()
        .map(|name| {
            let node = health.nodes.iter().find(|n| n.name == *name).unwrap();
            permafrost_runtime::identity::node_id_of_text(&node.peer_id).unwrap()
        })
        .collect();
    ids.sort();
    ids
}

fn reshare_action(key: &KeyRecord, health: &Health, names: &[&str], t: u16) -> LifecycleAction {
    LifecycleAction {
        kind: LifecycleKind::Reshare,
        key_id: KeyId::new(key.key_id.clone()).unwrap(),
        curve: key.curve,
        epoch: Epoch(key.epoch),
        old_public_key_package: Digest(
            hex::decode(&key.public_key_package_digest)
                .unwrap()
                .try_into()
                .unwrap(),
        ),
        committee: committee(health, names),
        threshold: t,
    }
}

fn approve(operator: &ClientKey, health: &Health, action: &LifecycleAction) -> OperatorApproval {
    OperatorApproval::from_wire(&operator.approve(&health.network_id, action))
}

fn forbidden(result: Result<KeyRecord, ApiError>) {
    match result {
        Err(ApiError::Http {
            status,
            code,
            message,
        }) => {
            assert_eq!(status, 403, "{message}");
            assert_eq!(code, "operator_not_approved", "{message}");
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

/// (key id, epoch, state) of every share in every node's keystore.
fn keystores(cluster: &Cluster) -> Vec<Vec<(String, u64, ShareState)>> {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let passphrase = std::fs::read_to_string(node.dir.join("passphrase")).unwrap();
            let store =
                KeyStore::open(&node.dir.join("keystore"), passphrase.trim().as_bytes()).unwrap();
            let mut shares: Vec<(String, u64, ShareState)> = store
                .shares()
                .unwrap()
                .into_iter()
                .map(|s| (s.key_id, s.epoch, s.state))
                .collect();
            shares.sort();
            shares
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_custodians_approval_changes_a_key() {
    let mut cluster = Cluster::prepare_with(3, false);
    for node in &mut cluster.nodes {
        node.start();
    }
    cluster.start_coordinator().await;
    cluster
        .wait_connected(std::time::Duration::from_secs(30))
        .await;
    let client = cluster.client();
    let operator = ClientKey::load(&cluster.path().join("operator.key")).unwrap();
    let health = client.health().await.unwrap();
    assert_eq!(health.network_id, cluster.network_id);
    let all = ["node1", "node2", "node3"];

    // A DKG without approvals: the gateway operator key is not listed by any node.
    let mut create = CreateKeyRequest {
        curve: Curve::Secp256k1Tr,
        threshold: 2,
        nodes: None,
        key_id: Some("k-custodian".into()),
        approvals: Vec::new(),
    };
    forbidden(client.create_key(&create).await);
    // Approved by the custodian: created.
    let action = LifecycleAction {
        kind: LifecycleKind::Dkg,
        key_id: KeyId::new("k-custodian").unwrap(),
        curve: Curve::Secp256k1Tr,
        epoch: Epoch(0),
        old_public_key_package: Digest([0; 32]),
        committee: committee(&health, &all),
        threshold: 2,
    };
    create.approvals = vec![approve(&operator, &health, &action)];
    let key = client.create_key(&create).await.unwrap();
    assert_eq!(key.epoch, 0);

    // Reshares that no node accepts: 403, nothing changes.
    let reshare = |threshold, approvals| ReshareRequest {
        threshold,
        nodes: all.iter().map(|n| n.to_string()).collect(),
        approvals,
    };
    forbidden(client.reshare(&key.key_id, &reshare(3, Vec::new())).await);
    let other_threshold = reshare_action(&key, &health, &all, 2);
    forbidden(
        client
            .reshare(
                &key.key_id,
                &reshare(3, vec![approve(&operator, &health, &other_threshold)]),
            )
            .await,
    );
    assert_eq!(client.key(&key.key_id).await.unwrap().epoch, 0);
    cluster.stop_nodes().await;
    for shares in keystores(&cluster) {
        assert_eq!(
            shares,
            vec![("k-custodian".to_string(), 0, ShareState::Active)]
        );
    }
    for node in &mut cluster.nodes {
        node.start();
    }
    cluster
        .wait_connected(std::time::Duration::from_secs(30))
        .await;

    // Approved by the custodian: the reshare commits, the public key stays.
    let approved = reshare_action(&key, &health, &all, 3);
    let reshared = client
        .reshare(
            &key.key_id,
            &reshare(3, vec![approve(&operator, &health, &approved)]),
        )
        .await
        .unwrap();
    assert_eq!(reshared.epoch, 1);
    assert_eq!(reshared.threshold, 3);
    assert_eq!(reshared.public_key, key.public_key);
    let signed = client
        .sign_as(
            &cluster.client_key(),
            &key.key_id,
            b"after an approved reshare",
        )
        .await
        .unwrap();
    verify(
        Curve::Secp256k1Tr,
        &reshared.public_key,
        b"after an approved reshare",
        &signed.signature,
    );
    cluster.stop().await;
}
