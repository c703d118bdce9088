//! Reshare through the HTTP API, in one process over real loopback sockets: a new member
//! joins, the threshold changes, the public key does not; bad requests are refused and change
//! nothing; a second reshare of the same key while one runs is 409, and signing goes on
//! meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use permafrost_api::{ApiError, ReshareRequest};
use permafrost_tests::{create, verify, Cluster, Curve};

fn request(threshold: u16, nodes: &[&str]) -> ReshareRequest {
    ReshareRequest {
        threshold,
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        approvals: Vec::new(),
    }
}

fn status(result: Result<impl std::fmt::Debug, ApiError>) -> u16 {
    match result {
        Err(ApiError::Http { status, .. }) => status,
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reshare_over_the_api_on_every_curve() {
    let cluster = Cluster::start(4).await;
    let client = cluster.client();
    for curve in Curve::ALL {
        let key = client
            .create_key(&create(curve, 2, Some(vec!["node1", "node2", "node3"])))
            .await
            .unwrap();

        // Refused, changing nothing.
        assert_eq!(
            status(
                client
                    .reshare("k-missing", &request(2, &["node1", "node2"]))
                    .await
            ),
            404
        );
        assert_eq!(
            status(
                client
                    .reshare(&key.key_id, &request(1, &["node1", "node2"]))
                    .await
            ),
            400
        );
        assert_eq!(
            status(
                client
                    .reshare(&key.key_id, &request(3, &["node1", "node2"]))
                    .await
            ),
            400
        );
        assert_eq!(
            status(
                client
                    .reshare(&key.key_id, &request(2, &["node1", "node9"]))
                    .await
            ),
            400
        );
        assert_eq!(
            status(
                client
                    .reshare(&key.key_id, &request(2, &["node1", "node1"]))
                    .await
            ),
            400
        );
        assert_eq!(client.key(&key.key_id).await.unwrap(), key);

        // (2,3) → (3,4): node4 joins with nothing but its identity. Two identical reshares
        // are sent at once: one runs, the other is refused with 409; a signature made
        // meanwhile is at epoch 0 or 1 and verifies under the same key.
        let all = ["node1", "node2", "node3", "node4"];
        let spawn = || {
            let client = client.clone();
            let key_id = key.key_id.clone();
            tokio::spawn(async move { client.reshare(&key_id, &request(3, &all)).await })
        };
        let (a, b) = (spawn(), spawn());
        let signed = client
            .sign(&key.key_id, b"during the reshare")
            .await
            .unwrap();
        verify(
            curve,
            &key.public_key,
            b"during the reshare",
            &signed.signature,
        );
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let (reshared, refused) = match (a, b) {
            (Ok(r), Err(e)) | (Err(e), Ok(r)) => (r, e),
            other => panic!("{curve}: expected one reshare and one 409, got {other:?}"),
        };
        assert_eq!(status(Err::<(), _>(refused)), 409);
        assert_eq!(reshared.public_key, key.public_key, "{curve}");
        assert_eq!((reshared.epoch, reshared.threshold), (1, 3));
        let mut nodes = reshared.nodes.clone();
        nodes.sort();
        assert_eq!(nodes, all);
        assert_eq!(client.key(&key.key_id).await.unwrap(), reshared);

        let signed = client.sign(&key.key_id, b"epoch 1").await.unwrap();
        assert_eq!(signed.epoch, 1);
        assert!(signed.signers.len() >= 3);
        verify(curve, &key.public_key, b"epoch 1", &signed.signature);
    }
    cluster.stop().await;
}

/// A node that restarts keeps the epoch it committed to; a refresh then needs it and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_holds_the_reshared_epoch() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let key = client
        .create_key(&create(Curve::Ed25519, 2, None))
        .await
        .unwrap();
    let nodes = ["node1", "node2", "node3"];
    let refreshed = client
        .reshare(&key.key_id, &request(3, &nodes))
        .await
        .unwrap();
    assert_eq!(refreshed.epoch, 1);
    cluster.nodes[0].stop().await;
    cluster.nodes[0].start();
    cluster.wait_connected(Duration::from_secs(30)).await;
    // 3-of-3: node1 must sign, with its epoch-1 share.
    let signed = client.sign(&key.key_id, b"after restart").await.unwrap();
    assert_eq!(signed.epoch, 1);
    verify(
        Curve::Ed25519,
        &key.public_key,
        b"after restart",
        &signed.signature,
    );
    let again = client
        .reshare(&key.key_id, &request(2, &nodes))
        .await
        .unwrap();
    assert_eq!((again.epoch, again.threshold), (2, 2));
    assert_eq!(again.public_key, key.public_key);
    cluster.stop().await;
}
