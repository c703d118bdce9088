//! The Permafrost HTTP API: the JSON request and response types of the coordinator's
//! client interface, and an async Rust [`Client`] for it.
//!
//! Every type here serializes to exactly the shapes of the API contract
//! (design section 6, the client interface):
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/health` | — | [`Health`] |
//! | `GET /v1/ready` (no token) | — | [`Ready`] (200, or 503 when not ready) |
//! | `POST /v1/keys` | [`CreateKeyRequest`] | 201 [`KeyRecord`] |
//! | `GET /v1/keys` | — | [`KeyList`] |
//! | `GET /v1/keys/{key_id}` | — | [`KeyRecord`] |
//! | `POST /v1/keys/{key_id}/sign` | [`SignRequest`] | [`SignResponse`] |
//! | `POST /v1/keys/{key_id}/reshare` | [`ReshareRequest`] | [`KeyRecord`] |
//! | `PUT /v1/keys/{key_id}/rotation` | [`RotationRequest`] | [`KeyRecord`] |
//! | `DELETE /v1/keys/{key_id}/rotation` | — | [`KeyRecord`] |
//!
//! Failures are answered with an [`ErrorBody`] whose `code` is one of [`codes`].
//! Binary values (public keys, signatures, messages) are lowercase hex: see
//! [`encode_hex`] and [`decode_hex`].
//!
//! ```
//! use permafrost_api::{CreateKeyRequest, Curve};
//!
//! let request = CreateKeyRequest { curve: Curve::Secp256k1Tr, threshold: 3, nodes: None, key_id: None, approvals: Vec::new(),  };
//! assert_eq!(
//!     serde_json::to_string(&request).unwrap(),
//!     r#"{"curve":"secp256k1-tr","threshold":3}"#,
//! );
//! ```
//!
//! A client call (this needs a running coordinator, so it is only compiled):
//!
//! ```no_run
//! # async fn demo() -> Result<(), permafrost_api::ApiError> {
//! use permafrost_api::{Client, CreateKeyRequest, Curve};
//!
//! let client = Client::new("http://127.0.0.1:8700", "my-token")?;
//! let key = client
//!     .create_key(&CreateKeyRequest { curve: Curve::Ed25519, threshold: 2, nodes: None, key_id: None, approvals: Vec::new(),  })
//!     .await?;
//! let signature = client.sign(&key.key_id, b"settle batch 42").await?;
//! println!("{} signed by {:?}", signature.signature, signature.signers);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod binary;
mod client;
mod client_key;
pub mod curve_name;
mod error;
mod localnet;
mod types;

pub use binary::{decode_hex, encode_hex};
pub use client::{Client, DEFAULT_TIMEOUT, MAX_RESPONSE_BYTES};
pub use client_key::{ClientKey, ClientKeyError};
pub use error::{codes, ApiError, ErrorBody, ErrorDetail};
pub use localnet::{process_running, LocalnetInfo, LocalnetMetrics, LocalnetNode, ProcessInfo};
pub use permafrost_wire::{Curve, DerivationPath};
pub use types::{
    ChildKey, ClientAuthorization, CreateKeyRequest, Health, KeyList, KeyRecord, NodeHealth,
    OperatorApproval, Ready, ReshareRequest, RotationRecord, RotationRequest, SignRequest,
    SignResponse,
};
