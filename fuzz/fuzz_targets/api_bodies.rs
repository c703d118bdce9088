//! The HTTP API's JSON bodies: every request type as the coordinator parses it (axum's `Json`
//! is `serde_json::from_slice`), the hex of a sign request's message, and every answer type
//! as the client (`permafrost` CLI, `permafrost-load`) parses it from a possibly hostile
//! coordinator, plus the localnet file. Nothing may panic; what parses must serialize back to
//! JSON that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permafrost_api::{
    decode_hex, encode_hex, CreateKeyRequest, ErrorBody, Health, KeyList, KeyRecord, LocalnetInfo,
    ReshareRequest, SignRequest, SignResponse,
};
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    data: &[u8],
) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let json = match serde_json::to_vec(&value) {
        Ok(json) => json,
        Err(e) => panic!(
            "a parsed {} does not serialize: {e}",
            std::any::type_name::<T>()
        ),
    };
    match serde_json::from_slice::<T>(&json) {
        Ok(again) => assert_eq!(again, value),
        Err(e) => panic!(
            "a re-serialized {} does not parse: {e}",
            std::any::type_name::<T>()
        ),
    }
    Some(value)
}

fn check_hex(text: &str) {
    if let Ok(bytes) = decode_hex("message", text) {
        assert_eq!(bytes.len() * 2, text.len());
        assert!(encode_hex(&bytes).eq_ignore_ascii_case(text));
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = round_trip::<CreateKeyRequest>(data);
    let _ = round_trip::<ReshareRequest>(data);
    if let Some(request) = round_trip::<SignRequest>(data) {
        check_hex(&request.message);
        if let Some(client) = &request.client {
            // The conversion the coordinator does: an error or an exact round trip.
            if let Ok(wire) = client.to_wire() {
                let back = permafrost_api::ClientAuthorization::from_wire(&wire);
                assert_eq!(back.to_wire().ok(), Some(wire));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_hex(text);
    }
    // Answers (client side). `KeyList` covers `KeyRecord`, `Health` covers `NodeHealth`.
    let _ = round_trip::<KeyRecord>(data);
    let _ = round_trip::<KeyList>(data);
    let _ = round_trip::<SignResponse>(data);
    let _ = round_trip::<Health>(data);
    let _ = round_trip::<ErrorBody>(data);
    let _ = round_trip::<LocalnetInfo>(data);
});
