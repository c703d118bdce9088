//! The API's error body, its codes, and the client's error type.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every failed request: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An error body with `code` (one of [`codes`]) and a human-readable message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code: one of [`codes`].
    #[schema(schema_with = code_schema)]
    pub code: String,
    /// A human-readable explanation, naming the culprit where there is one.
    pub message: String,
}

/// The schema of [`ErrorDetail::code`]: a string, one of [`codes::STATUSES`]' codes.
fn code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(codes::STATUSES.iter().map(|(code, _)| *code)))
        .description(Some("A stable, machine-readable code."))
        .build()
}

/// The error codes of [`ErrorDetail::code`], each with its HTTP status.
pub mod codes {
    /// 400: malformed JSON, bad hex, an unknown curve or node, an impossible threshold.
    pub const BAD_REQUEST: &str = "bad_request";
    /// 401: no bearer token, or a wrong one.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 404: the path names no key (or no route).
    pub const NOT_FOUND: &str = "not_found";
    /// 413: the request body is over the limit (1 MiB by default).
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 409: a conflicting operation, e.g. a reshare of this key is already running.
    pub const CONFLICT: &str = "conflict";
    /// 503: not enough nodes reachable to run the operation.
    pub const UNAVAILABLE: &str = "unavailable";
    /// 500: a fault of the coordinator itself, never a client's mistake.
    pub const INTERNAL: &str = "internal";
    /// 504: the operation did not finish before its deadline.
    pub const TIMEOUT: &str = "timeout";
    /// 502: a node provably misbehaved (bad share, invalid proof, lying confirmation); the
    /// message names it.
    pub const NODE_MISBEHAVED: &str = "node_misbehaved";
    /// 501: the endpoint exists in the API but is not implemented by this coordinator yet.
    pub const NOT_IMPLEMENTED: &str = "not_implemented";
    /// 405: the path exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 403: the signer nodes refused the request's client authorization (a client key they do
    /// not accept, a signature not over this key and message, a stale timestamp, a request id
    /// already used); the message says why. Asking again with the same authorization will not
    /// help.
    pub const CLIENT_NOT_AUTHORIZED: &str = "client_not_authorized";
    /// 403: a member refused to join the DKG or reshare under its life-cycle policy (no valid
    /// approval from an operator key it lists, a replayed or stale approval, or below its
    /// minimum threshold or committee size); nothing changed on any node. The message names
    /// the node and says why.
    pub const OPERATOR_NOT_APPROVED: &str = "operator_not_approved";
    /// 409: a member refused to join the DKG or reshare for another reason (a key it already
    /// holds, a wrong epoch, a session it already concluded); the message names it and says why.
    pub const REFUSED_BY_NODE: &str = "refused_by_node";

    /// Every code with the HTTP status it is answered with.
    pub const STATUSES: [(&str, u16); 14] = [
        (BAD_REQUEST, 400),
        (UNAUTHORIZED, 401),
        (NOT_FOUND, 404),
        (PAYLOAD_TOO_LARGE, 413),
        (CONFLICT, 409),
        (UNAVAILABLE, 503),
        (INTERNAL, 500),
        (TIMEOUT, 504),
        (NODE_MISBEHAVED, 502),
        (NOT_IMPLEMENTED, 501),
        (METHOD_NOT_ALLOWED, 405),
        (CLIENT_NOT_AUTHORIZED, 403),
        (OPERATOR_NOT_APPROVED, 403),
        (REFUSED_BY_NODE, 409),
    ];

    /// The HTTP status that answers `code`; unknown codes are 500.
    pub fn status(code: &str) -> u16 {
        STATUSES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(500, |(_, status)| *status)
    }

    /// The code that best describes an HTTP status, for answers that carry no
    /// [`ErrorBody`](crate::ErrorBody) (a proxy's error page, for instance).
    /// A bare 502 is a gateway's error, not a node's misbehaviour, so it is `internal`.
    pub fn for_status(status: u16) -> &'static str {
        match STATUSES
            .iter()
            .filter(|(c, _)| *c != NODE_MISBEHAVED)
            .find(|(_, s)| *s == status)
        {
            Some((code, _)) => code,
            None if status == 408 => TIMEOUT,
            None if (500..600).contains(&status) => INTERNAL,
            None => BAD_REQUEST,
        }
    }
}

/// Everything that can go wrong talking to the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The coordinator answered with a non-2xx status.
    #[error("HTTP {status} ({code}): {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The [`ErrorDetail::code`], or one derived from the status (see
        /// [`codes::for_status`]) when the answer was not an [`ErrorBody`].
        code: String,
        /// The [`ErrorDetail::message`], or the raw answer text when it was not JSON.
        message: String,
    },
    /// The request never got an answer: connection refused, reset, timed out.
    #[error("transport error: {0}")]
    Transport(String),
    /// A 2xx answer whose body is not the expected JSON.
    #[error("could not decode the answer: {0}")]
    Decode(String),
    /// A hex field that does not decode.
    #[error("invalid hex in {field:?}: {reason}")]
    InvalidHex {
        /// The JSON field (or argument) the value came from.
        field: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// A key id that cannot be put in a URL path (empty, `.` or `..`); no such key can
    /// be addressed, so nothing was sent.
    #[error("invalid key id {key_id:?}: {reason}")]
    InvalidKeyId {
        /// The key id as given.
        key_id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The client could not be set up: a bad base URL or token.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ApiError {
    /// The HTTP status, for [`ApiError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code (one of [`codes`]), for [`ApiError::Http`].
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Http { code, .. } => Some(code),
            _ => None,
        }
    }
}
