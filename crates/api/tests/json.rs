//! The JSON shapes of design section 6, field for field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use permafrost_api::{
    codes, decode_hex, encode_hex, ApiError, ClientAuthorization, CreateKeyRequest, Curve,
    ErrorBody, Health, KeyList, KeyRecord, LocalnetInfo, LocalnetMetrics, LocalnetNode, NodeHealth,
    OperatorApproval, ProcessInfo, Ready, ReshareRequest, RotationRecord, RotationRequest,
    SignRequest, SignResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// Serializes to exactly `expected` and parses back to `value`.
fn round_trip<T>(value: &T, expected: Value)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(serde_json::to_value(value).unwrap(), expected);
    let back: T = serde_json::from_value(expected).unwrap();
    assert_eq!(&back, value);
}

fn record() -> KeyRecord {
    KeyRecord {
        key_id: "k-1".into(),
        curve: Curve::Secp256k1,
        public_key: "02".repeat(33),
        network_id: "acme-prod".into(),
        threshold: 3,
        nodes: vec!["node1".into(), "node2".into(), "node3".into()],
        epoch: 0,
        public_key_package_digest: "ab".repeat(32),
        chain_code: "cd".repeat(32),
        xpub: Some("xpub661MyMwAqRbc".into()),
        rotation: None,
    }
}

#[test]
fn create_key_request() {
    round_trip(
        &CreateKeyRequest {
            curve: Curve::Secp256k1Tr,
            threshold: 3,
            nodes: Some(vec!["node1".into()]),
            key_id: None,
            approvals: Vec::new(),
        },
        json!({"curve":"secp256k1-tr","threshold":3,"nodes":["node1"]}),
    );
    // `nodes` is optional: absent means every node, and it is omitted when None.
    round_trip(
        &CreateKeyRequest {
            curve: Curve::Ed25519,
            threshold: 2,
            nodes: None,
            key_id: None,
            approvals: Vec::new(),
        },
        json!({"curve":"ed25519","threshold":2}),
    );
}

#[test]
fn every_curve_has_its_api_name() {
    for (curve, name) in [
        (Curve::Ed25519, "ed25519"),
        (Curve::Secp256k1, "secp256k1"),
        (Curve::Secp256k1Tr, "secp256k1-tr"),
    ] {
        let request = CreateKeyRequest {
            curve,
            threshold: 1,
            nodes: None,
            key_id: None,
            approvals: Vec::new(),
        };
        round_trip(&request, json!({"curve": name, "threshold": 1}));
    }
    for bad in ["p256", "Ed25519", "Secp256k1Tr", "secp256k1_tr", ""] {
        let err = serde_json::from_value::<CreateKeyRequest>(json!({"curve": bad, "threshold": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("secp256k1-tr"), "{bad}: {err}");
    }
    assert!(
        serde_json::from_value::<CreateKeyRequest>(json!({"curve": 1, "threshold": 1})).is_err()
    );
}

#[test]
fn request_bodies_refuse_unknown_fields() {
    let err = serde_json::from_value::<CreateKeyRequest>(
        json!({"curve":"ed25519","threshold":2,"treshold":3}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("treshold"), "{err}");
    assert!(serde_json::from_value::<SignRequest>(json!({"message":"00","key":"x"})).is_err());
    assert!(serde_json::from_value::<ReshareRequest>(
        json!({"threshold":2,"nodes":[],"force":true})
    )
    .is_err());
    let err = serde_json::from_value::<RotationRequest>(json!({"every_secs":60,"every":"1h"}))
        .unwrap_err();
    assert!(err.to_string().contains("every"), "{err}");
}

#[test]
fn request_bodies_need_their_fields() {
    assert!(serde_json::from_value::<CreateKeyRequest>(json!({"curve":"ed25519"})).is_err());
    assert!(serde_json::from_value::<SignRequest>(json!({})).is_err());
    assert!(serde_json::from_value::<ReshareRequest>(json!({"threshold":2})).is_err());
    assert!(
        serde_json::from_value::<CreateKeyRequest>(json!({"curve":"ed25519","threshold":-1}))
            .is_err()
    );
    assert!(serde_json::from_value::<CreateKeyRequest>(
        json!({"curve":"ed25519","threshold":70000})
    )
    .is_err());
}

#[test]
fn key_record_and_list() {
    let expected = json!({
        "key_id": "k-1",
        "curve": "secp256k1",
        "public_key": "02".repeat(33),
        "network_id": "acme-prod",
        "threshold": 3,
        "nodes": ["node1", "node2", "node3"],
        "epoch": 0,
        "public_key_package_digest": "ab".repeat(32),
        "chain_code": "cd".repeat(32),
        "xpub": "xpub661MyMwAqRbc",
        "rotation": null,
    });
    round_trip(&record(), expected.clone());
    round_trip(
        &KeyList {
            keys: vec![record()],
        },
        json!({ "keys": [expected] }),
    );
    round_trip(&KeyList { keys: vec![] }, json!({"keys": []}));
}

#[test]
fn sign_bodies() {
    round_trip(
        &SignRequest {
            message: "deadbeef".into(),
            path: None,
            client: None,
        },
        json!({"message":"deadbeef"}),
    );
    round_trip(
        &SignRequest {
            message: "deadbeef".into(),
            path: Some("m/0/17".into()),
            client: None,
        },
        json!({"message":"deadbeef","path":"m/0/17"}),
    );
    let client = ClientAuthorization {
        public_key: "11".repeat(32),
        request_id: "22".repeat(16),
        timestamp_ms: 1_790_000_000_000,
        signature: "33".repeat(64),
    };
    round_trip(
        &SignRequest {
            message: "deadbeef".into(),
            path: None,
            client: Some(client.clone()),
        },
        json!({"message":"deadbeef","client":{
            "public_key": "11".repeat(32),
            "request_id": "22".repeat(16),
            "timestamp_ms": 1_790_000_000_000u64,
            "signature": "33".repeat(64),
        }}),
    );
    let wire = client.to_wire().unwrap();
    assert_eq!(ClientAuthorization::from_wire(&wire), client);
    for (field, bad) in [
        ("public_key", "11".repeat(31)),
        ("request_id", "22".repeat(17)),
        ("signature", "zz".repeat(64)),
    ] {
        let mut wrong = client.clone();
        match field {
            "public_key" => wrong.public_key = bad,
            "request_id" => wrong.request_id = bad,
            _ => wrong.signature = bad,
        }
        let error = wrong.to_wire().unwrap_err();
        assert!(error.contains(field), "{error}");
    }
    // Unknown fields in the authorization are refused.
    assert!(
        serde_json::from_value::<SignRequest>(json!({"message":"00","client":{
        "public_key": "11".repeat(32), "request_id": "22".repeat(16),
        "timestamp_ms": 1, "signature": "33".repeat(64), "extra": 1}}))
        .is_err()
    );
    round_trip(
        &SignResponse {
            signature: "ab".repeat(64),
            public_key: "cd".repeat(32),
            path: "m/3".into(),
            epoch: 1,
            signers: vec!["node1".into(), "node4".into()],
            culprits: vec!["node2".into()],
        },
        json!({
            "signature": "ab".repeat(64),
            "public_key": "cd".repeat(32),
            "path": "m/3",
            "epoch": 1,
            "signers": ["node1", "node4"],
            "culprits": ["node2"],
        }),
    );
    // An answer without `culprits` (an older coordinator) reads as none.
    let old: SignResponse = serde_json::from_value(json!({
        "signature": "ab", "public_key": "cd", "epoch": 0, "signers": []
    }))
    .unwrap();
    assert!(old.culprits.is_empty());
    assert_eq!(old.path, "m");
}

#[test]
fn reshare_request() {
    round_trip(
        &ReshareRequest {
            threshold: 4,
            nodes: vec!["node1".into(), "node2".into()],
            approvals: Vec::new(),
        },
        json!({"threshold":4,"nodes":["node1","node2"]}),
    );
}

fn approval() -> OperatorApproval {
    OperatorApproval {
        public_key: "11".repeat(32),
        request_id: "22".repeat(16),
        timestamp_ms: 1_790_000_000_000,
        signature: "33".repeat(64),
    }
}

#[test]
fn rotation_request() {
    // No approvals: the field is left out (the gateway operator key approves).
    round_trip(
        &RotationRequest {
            every_secs: 86_400,
            approvals: Vec::new(),
        },
        json!({"every_secs": 86_400}),
    );
    round_trip(
        &RotationRequest {
            every_secs: 3_600,
            approvals: vec![approval()],
        },
        json!({"every_secs": 3_600, "approvals": [{
            "public_key": "11".repeat(32),
            "request_id": "22".repeat(16),
            "timestamp_ms": 1_790_000_000_000u64,
            "signature": "33".repeat(64),
        }]}),
    );
    // `every_secs` is required, a whole non-negative number; unknown fields are refused.
    for bad in [
        json!({}),
        json!({"approvals": []}),
        json!({"every_secs": -60}),
        json!({"every_secs": 60.5}),
        json!({"every_secs": "3600"}),
        json!({"every_secs": 3600, "committee": ["node1"]}),
        json!({"every_secs": 3600, "approvals": [{"public_key": "11"}]}),
    ] {
        assert!(
            serde_json::from_value::<RotationRequest>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn key_record_with_a_rotation() {
    let mut key = record();
    key.rotation = Some(RotationRecord {
        every_secs: 3_600,
        last_ms: None,
        next_ms: 1_790_003_600_000,
        threshold: 3,
        nodes: vec!["node1".into(), "node2".into(), "node3".into()],
    });
    let mut expected = serde_json::to_value(record()).unwrap();
    expected["rotation"] = json!({
        "every_secs": 3_600,
        "last_ms": null,
        "next_ms": 1_790_003_600_000u64,
        "threshold": 3,
        "nodes": ["node1", "node2", "node3"],
    });
    round_trip(&key, expected.clone());
    if let Some(rotation) = key.rotation.as_mut() {
        rotation.last_ms = Some(1_790_000_000_000);
    }
    expected["rotation"]["last_ms"] = json!(1_790_000_000_000u64);
    round_trip(&key, expected.clone());
    round_trip(&KeyList { keys: vec![key] }, json!({ "keys": [expected] }));

    // A record from a coordinator without rotation policies reads as none.
    let mut old = serde_json::to_value(record()).unwrap();
    old.as_object_mut().unwrap().remove("rotation");
    let old: KeyRecord = serde_json::from_value(old).unwrap();
    assert_eq!(old.rotation, None);
    assert_eq!(old, record());
}

#[test]
fn health() {
    round_trip(
        &Health {
            status: "ok".into(),
            nodes: vec![
                NodeHealth {
                    name: "node1".into(),
                    peer_id: "12D3KooWabc".into(),
                    connected: true,
                    healthy: true,
                    last_round_trip_us: Some(412),
                    last_probe_age_ms: Some(640),
                    probe_error: None,
                },
                NodeHealth {
                    name: "node2".into(),
                    peer_id: "12D3KooWdef".into(),
                    connected: true,
                    healthy: false,
                    last_round_trip_us: None,
                    last_probe_age_ms: None,
                    probe_error: Some("no answer within 3000 ms".into()),
                },
            ],
            network_id: "custody-1".into(),
        },
        json!({"status":"ok","network_id":"custody-1","nodes":[
            {"name":"node1","peer_id":"12D3KooWabc","connected":true,"healthy":true,
             "last_round_trip_us":412,"last_probe_age_ms":640,"probe_error":null},
            {"name":"node2","peer_id":"12D3KooWdef","connected":true,"healthy":false,
             "last_round_trip_us":null,"last_probe_age_ms":null,
             "probe_error":"no answer within 3000 ms"}]}),
    );
    // A coordinator of an earlier build sends no probe fields: a node is then not healthy.
    let old: Health = serde_json::from_value(json!({"status":"ok","nodes":[
        {"name":"node1","peer_id":"12D3KooWabc","connected":true}]}))
    .unwrap();
    assert!(!old.nodes[0].healthy);
    round_trip(&Ready { ready: false }, json!({"ready":false}));
}

#[test]
fn error_body_and_codes() {
    round_trip(
        &ErrorBody::new(codes::NOT_FOUND, "no key k-9"),
        json!({"error":{"code":"not_found","message":"no key k-9"}}),
    );
    assert_eq!(codes::BAD_REQUEST, "bad_request");
    assert_eq!(codes::UNAUTHORIZED, "unauthorized");
    assert_eq!(codes::NOT_FOUND, "not_found");
    assert_eq!(codes::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(codes::CONFLICT, "conflict");
    assert_eq!(codes::UNAVAILABLE, "unavailable");
    assert_eq!(codes::INTERNAL, "internal");
    assert_eq!(codes::TIMEOUT, "timeout");
    assert_eq!(codes::NODE_MISBEHAVED, "node_misbehaved");
    assert_eq!(codes::NOT_IMPLEMENTED, "not_implemented");
    assert_eq!(codes::METHOD_NOT_ALLOWED, "method_not_allowed");
    for (code, status) in codes::STATUSES {
        assert_eq!(codes::status(code), status);
        // Codes that share their status with another one: the status maps to the other.
        if ![
            codes::NODE_MISBEHAVED,
            codes::OPERATOR_NOT_APPROVED,
            codes::REFUSED_BY_NODE,
        ]
        .contains(&code)
        {
            assert_eq!(codes::for_status(status), code);
        }
    }
    assert_eq!(codes::status("nonsense"), 500);
    assert_eq!(codes::for_status(405), codes::METHOD_NOT_ALLOWED);
    assert_eq!(codes::for_status(502), codes::INTERNAL);
}

#[test]
fn localnet_file() {
    let info = LocalnetInfo {
        api: "http://127.0.0.1:8700".into(),
        token: "tok".into(),
        coordinator: ProcessInfo { pid: 100 },
        nodes: vec![LocalnetNode {
            name: "node1".into(),
            peer_id: "12D3KooWabc".into(),
            addr: "/ip4/127.0.0.1/tcp/9001".into(),
            pid: 101,
        }],
        metrics: None,
    };
    // A file written before metrics existed reads as one without them.
    round_trip(
        &info,
        json!({
            "api": "http://127.0.0.1:8700",
            "token": "tok",
            "coordinator": {"pid": 100},
            "nodes": [{"name":"node1","peer_id":"12D3KooWabc","addr":"/ip4/127.0.0.1/tcp/9001","pid":101}],
        }),
    );
    let with_metrics = LocalnetInfo {
        metrics: Some(LocalnetMetrics {
            coordinator: "http://127.0.0.1:9100".into(),
            nodes: [("node1".to_owned(), "http://127.0.0.1:9101".to_owned())].into(),
        }),
        ..info
    };
    round_trip(
        &with_metrics,
        json!({
            "api": "http://127.0.0.1:8700",
            "token": "tok",
            "coordinator": {"pid": 100},
            "nodes": [{"name":"node1","peer_id":"12D3KooWabc","addr":"/ip4/127.0.0.1/tcp/9001","pid":101}],
            "metrics": {"coordinator": "http://127.0.0.1:9100", "nodes": {"node1": "http://127.0.0.1:9101"}},
        }),
    );
}

#[test]
fn hex_helpers() {
    assert_eq!(encode_hex(&[0xde, 0xad, 0xBE, 0xef, 0x00]), "deadbeef00");
    assert_eq!(encode_hex(&[]), "");
    assert_eq!(
        decode_hex("message", "deadBEEF").unwrap(),
        [0xde, 0xad, 0xbe, 0xef]
    );
    assert_eq!(decode_hex("message", "").unwrap(), Vec::<u8>::new());

    let err = decode_hex("message", "abc").unwrap_err();
    assert!(matches!(
        err,
        ApiError::InvalidHex {
            field: "message",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "invalid hex in \"message\": odd number of digits (3)"
    );
    let err = decode_hex("public_key", "0g").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid hex in \"public_key\": invalid character 'g' at position 1"
    );
    assert!(decode_hex("message", "0x00").is_err());
}

#[test]
fn error_display() {
    let err = ApiError::Http {
        status: 404,
        code: "not_found".into(),
        message: "no key k-9".into(),
    };
    assert_eq!(err.to_string(), "HTTP 404 (not_found): no key k-9");
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("not_found"));
    let err = ApiError::Transport("connection refused".into());
    assert_eq!(err.to_string(), "transport error: connection refused");
    assert_eq!(err.status(), None);
}
