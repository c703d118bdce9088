//! The client against a tiny in-process axum server with canned answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use permafrost_api::{
    codes, decode_hex, ApiError, ChildKey, Client, ClientKey, CreateKeyRequest, Curve,
    DerivationPath, ErrorBody, Health, KeyList, KeyRecord, NodeHealth, OperatorApproval,
    ReshareRequest, RotationRecord, RotationRequest, SignRequest, SignResponse,
};

const TOKEN: &str = "s3cret-token";

/// Raw request targets (path and query, still percent-encoded) seen by the server.
type Seen = Arc<Mutex<Vec<String>>>;

fn record(key_id: &str, epoch: u64) -> KeyRecord {
    KeyRecord {
        key_id: key_id.into(),
        curve: Curve::Ed25519,
        public_key: "ab".repeat(32),
        network_id: "net-1".into(),
        threshold: 2,
        nodes: vec!["node1".into(), "node2".into(), "node3".into()],
        epoch,
        public_key_package_digest: String::new(),
        chain_code: "cd".repeat(32),
        xpub: None,
        rotation: None,
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

async fn auth(State(seen): State<Seen>, request: Request, next: Next) -> Response {
    seen.lock().unwrap().push(request.uri().to_string());
    let expected = format!("Bearer {TOKEN}");
    match request.headers().get(header::AUTHORIZATION) {
        Some(value) if value.as_bytes() == expected.as_bytes() => next.run(request).await,
        _ => error(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, "bad token"),
    }
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        nodes: vec![NodeHealth {
            name: "node1".into(),
            peer_id: "12D3KooWnode1".into(),
            connected: true,
            healthy: true,
            last_round_trip_us: Some(420),
            last_probe_age_ms: Some(300),
            probe_error: None,
        }],
        network_id: String::new(),
    })
}

async fn create_key(body: String) -> Response {
    // Strict parsing, as the coordinator does: unknown fields are refused.
    match serde_json::from_str::<CreateKeyRequest>(&body) {
        Ok(request) => {
            let mut key = record("k-new", 0);
            key.curve = request.curve;
            key.threshold = request.threshold;
            if let Some(nodes) = request.nodes {
                key.nodes = nodes;
            }
            (StatusCode::CREATED, Json(key)).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, &e.to_string()),
    }
}

async fn keys() -> Json<KeyList> {
    Json(KeyList {
        keys: vec![record("k-1", 0), record("k-2", 3)],
    })
}

async fn key(Path(key_id): Path<String>) -> Response {
    match key_id.as_str() {
        "k-1" | "a/b c" => Json(record(&key_id, 0)).into_response(),
        "plain" => (StatusCode::BAD_GATEWAY, "upstream went away").into_response(),
        "garbage" => (StatusCode::OK, "this is not json").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Json(record(&key_id, 0)).into_response()
        }
        _ => error(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            &format!("no key {key_id:?}"),
        ),
    }
}

async fn sign(Path(key_id): Path<String>, Json(request): Json<SignRequest>) -> Response {
    if key_id != "k-1" {
        return error(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such key");
    }
    let message = decode_hex("message", &request.message).unwrap();
    assert_eq!(message, b"settle batch 42");
    // A client's approval is for the key's network id and group key, as `GET` answers them,
    // and for the path asked.
    let path: DerivationPath = request.path.as_deref().unwrap_or("m").parse().unwrap();
    if let Some(approval) = request.client {
        let approval = approval.to_wire().unwrap();
        let verified = record(&key_id, 0)
            .with_approval_target(&path, |target| approval.verify(target, &message))
            .unwrap();
        if let Err(why) = verified {
            return error(StatusCode::FORBIDDEN, codes::CLIENT_NOT_AUTHORIZED, &why);
        }
    }
    // The API spelling of binary values is lowercase hex.
    assert_eq!(request.message, request.message.to_lowercase());
    Json(SignResponse {
        signature: "cd".repeat(64),
        public_key: "ab".repeat(32),
        path: path.to_string(),
        epoch: 0,
        signers: vec!["node1".into(), "node3".into()],
        culprits: vec![],
    })
    .into_response()
}

#[derive(serde::Deserialize)]
struct DeriveQuery {
    path: String,
}

async fn derive(Path(key_id): Path<String>, Query(query): Query<DeriveQuery>) -> Response {
    Json(ChildKey {
        key_id,
        path: query.path,
        public_key: "ef".repeat(32),
        internal_key: None,
    })
    .into_response()
}

async fn reshare(Path(key_id): Path<String>, Json(request): Json<ReshareRequest>) -> Response {
    if key_id == "busy" {
        return error(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            "a reshare of busy is already running",
        );
    }
    let mut key = record(&key_id, 1);
    key.threshold = request.threshold;
    key.nodes = request.nodes;
    Json(key).into_response()
}

/// `PUT …/rotation`: strict parsing, as the coordinator does; the answer's policy echoes the
/// interval, and keeps 2 of as many nodes as approvals came (to show they arrived).
async fn set_rotation(Path(key_id): Path<String>, body: String) -> Response {
    if key_id != "k-1" && key_id != "a/b c" {
        return error(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such key");
    }
    let request = match serde_json::from_str::<RotationRequest>(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, &e.to_string()),
    };
    if request.every_secs < 60 {
        return error(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            "a rotation every 59 s is more often than every 60 s",
        );
    }
    let mut key = record(&key_id, 0);
    key.rotation = Some(RotationRecord {
        every_secs: request.every_secs,
        last_ms: None,
        next_ms: 1_790_000_000_000 + request.every_secs * 1000,
        threshold: 2,
        nodes: request
            .approvals
            .iter()
            .map(|a| a.public_key.clone())
            .collect(),
    });
    Json(key).into_response()
}

async fn clear_rotation(Path(key_id): Path<String>) -> Response {
    if key_id != "k-1" {
        return error(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such key");
    }
    Json(record(&key_id, 0)).into_response()
}

/// Starts the server on 127.0.0.1:0 and returns its base URL.
async fn serve() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/keys", post(create_key).get(keys))
        .route("/v1/keys/{key_id}", get(key))
        .route("/v1/keys/{key_id}/sign", post(sign))
        .route("/v1/keys/{key_id}/derive", get(derive))
        .route("/v1/keys/{key_id}/reshare", post(reshare))
        .route(
            "/v1/keys/{key_id}/rotation",
            put(set_rotation).delete(clear_rotation),
        )
        .layer(middleware::from_fn_with_state(seen.clone(), auth));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn client() -> (Client, Seen) {
    let (base, seen) = serve().await;
    (Client::new(base, TOKEN).unwrap(), seen)
}

#[tokio::test]
async fn health_and_listing() {
    let (client, _) = client().await;
    let health = client.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.nodes[0].name, "node1");
    assert!(health.nodes[0].connected);

    let list = client.keys().await.unwrap();
    assert_eq!(list.keys, vec![record("k-1", 0), record("k-2", 3)]);
    assert_eq!(client.key("k-1").await.unwrap(), record("k-1", 0));
}

#[tokio::test]
async fn create_sign_reshare() {
    let (client, _) = client().await;
    let key = client
        .create_key(&CreateKeyRequest {
            curve: Curve::Secp256k1Tr,
            threshold: 3,
            nodes: Some(vec!["node1".into(), "node2".into(), "node4".into()]),
            key_id: None,
            approvals: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(key.key_id, "k-new");
    assert_eq!(key.curve, Curve::Secp256k1Tr);
    assert_eq!(key.threshold, 3);
    assert_eq!(key.nodes, ["node1", "node2", "node4"]);
    assert_eq!(key.epoch, 0);

    let signature = client.sign("k-1", b"settle batch 42").await.unwrap();
    assert_eq!(signature.signers, ["node1", "node3"]);
    assert_eq!(
        decode_hex("signature", &signature.signature).unwrap().len(),
        64
    );

    let reshared = client
        .reshare(
            "k-1",
            &ReshareRequest {
                threshold: 2,
                nodes: vec!["node1".into(), "node2".into()],
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(reshared.epoch, 1);
    assert_eq!(reshared.threshold, 2);
    assert_eq!(reshared.public_key, key.public_key);
}

#[tokio::test]
async fn rotation_is_set_with_put_and_cleared_with_delete() {
    let (client, seen) = client().await;
    let set = client
        .set_rotation(
            "k-1",
            &RotationRequest {
                every_secs: 3_600,
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap();
    let rotation = set.rotation.unwrap();
    assert_eq!(rotation.every_secs, 3_600);
    assert_eq!(rotation.next_ms, 1_790_003_600_000);
    assert!(rotation.nodes.is_empty());

    // The approvals go in the body, as given.
    let approval = OperatorApproval {
        public_key: "11".repeat(32),
        request_id: "22".repeat(16),
        timestamp_ms: 1_790_000_000_000,
        signature: "33".repeat(64),
    };
    let set = client
        .set_rotation(
            "a/b c",
            &RotationRequest {
                every_secs: 86_400,
                approvals: vec![approval.clone(), approval],
            },
        )
        .await
        .unwrap();
    assert_eq!(set.key_id, "a/b c");
    assert_eq!(
        set.rotation.unwrap().nodes,
        ["11".repeat(32), "11".repeat(32)]
    );

    let error = client
        .set_rotation(
            "k-1",
            &RotationRequest {
                every_secs: 59,
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(400), Some(codes::BAD_REQUEST))
    );
    assert!(error.to_string().contains("every 60 s"), "{error}");

    let cleared = client.clear_rotation("k-1").await.unwrap();
    assert_eq!(cleared.rotation, None);
    let error = client.clear_rotation("k-404").await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    let error = client
        .set_rotation(
            "k-404",
            &RotationRequest {
                every_secs: 60,
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404));

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|p| p == "/v1/keys/a%2Fb%20c/rotation"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn unknown_key_is_not_found() {
    let (client, _) = client().await;
    let err = client.key("k-404").await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Http {
            status: 404,
            code: codes::NOT_FOUND.into(),
            message: "no key \"k-404\"".into(),
        }
    );
    assert_eq!(err.code(), Some("not_found"));
    let err = client.sign("k-404", b"m").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let (base, _) = serve().await;
    let client = Client::new(base, "wrong").unwrap();
    let err = client.health().await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Http { status: 401, code, .. } if code == codes::UNAUTHORIZED),
        "{err:?}"
    );
}

#[tokio::test]
async fn conflict_is_mapped() {
    let (client, _) = client().await;
    let err = client
        .reshare(
            "busy",
            &ReshareRequest {
                threshold: 2,
                nodes: vec!["node1".into()],
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.code(), Some(codes::CONFLICT));
    assert!(err.to_string().contains("already running"), "{err}");
}

/// `sign_as` fetches the key first and approves for its network id and group key; an approval
/// for a record of another network does not verify for this one.
#[tokio::test]
async fn sign_as_approves_for_the_keys_network_and_group_key() {
    let (client, seen) = client().await;
    let client_seen = seen.clone();
    let me = ClientKey::generate();
    let signed = client
        .sign_as(&me, "k-1", b"settle batch 42")
        .await
        .unwrap();
    assert_eq!(signed.signers, ["node1", "node3"]);
    let seen = seen.lock().unwrap().clone();
    let at = seen.iter().position(|p| p == "/v1/keys/k-1").unwrap();
    assert_eq!(seen[at + 1], "/v1/keys/k-1/sign", "{seen:?}");

    let elsewhere = KeyRecord {
        network_id: "net-2".into(),
        ..record("k-1", 0)
    };
    let root = DerivationPath::ROOT;
    let err = client
        .sign_key_as(&me, &elsewhere, &root, b"settle batch 42")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::CLIENT_NOT_AUTHORIZED), "{err}");
    assert!(err
        .to_string()
        .contains("does not verify over this network id, group key, key id, path and message"));
    // A child key's approval covers its path: the request carries it, and it verifies.
    let child: DerivationPath = "m/7/9".parse().unwrap();
    let signed = client
        .sign_key_as(&me, &record("k-1", 0), &child, b"settle batch 42")
        .await
        .unwrap();
    assert_eq!(signed.path, "m/7/9");
    let derived = client.derive("k-1", &child).await.unwrap();
    assert_eq!(derived.path, "m/7/9");
    let seen = client_seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|p| p == "/v1/keys/k-1/derive?path=m/7/9"),
        "{seen:?}"
    );
    let bad = KeyRecord {
        public_key: "zz".into(),
        ..record("k-1", 0)
    };
    assert!(matches!(
        client
            .sign_key_as(&me, &bad, &root, b"settle batch 42")
            .await,
        Err(ApiError::InvalidHex {
            field: "public_key",
            ..
        })
    ));
}

#[tokio::test]
async fn key_ids_are_escaped_in_paths() {
    let (client, seen) = client().await;
    // Decoded by the server back to the same id, and never a different route.
    assert_eq!(client.key("a/b c").await.unwrap().key_id, "a/b c");
    let err = client.key("../keys?x=1#frag").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&"/v1/keys/a%2Fb%20c".to_owned()), "{seen:?}");
    assert!(
        seen.contains(&"/v1/keys/..%2Fkeys%3Fx%3D1%23frag".to_owned()),
        "{seen:?}"
    );

    for id in ["", ".", ".."] {
        assert!(matches!(
            client.key(id).await,
            Err(ApiError::InvalidKeyId { .. })
        ));
    }
}

#[tokio::test]
async fn non_json_error_keeps_the_text() {
    let (client, _) = client().await;
    let err = client.key("plain").await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Http {
            status: 502,
            code: codes::INTERNAL.into(),
            message: "upstream went away".into(),
        }
    );
}

#[tokio::test]
async fn bad_success_body_is_a_decode_error() {
    let (client, _) = client().await;
    let err = client.key("garbage").await.unwrap_err();
    assert!(matches!(err, ApiError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn requests_have_a_deadline() {
    let (client, _) = client().await;
    let client = client.with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = client.key("slow").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(&err, ApiError::Transport(message) if message.contains("no answer within")),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_coordinator_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(format!("http://{addr}"), TOKEN).unwrap();
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, ApiError::Transport(_)), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn base_url_with_trailing_slash() {
    let (base, seen) = serve().await;
    let client = Client::new(format!("{base}/"), TOKEN).unwrap();
    client.health().await.unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), ["/v1/health"]);
}
