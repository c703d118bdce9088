//! One id per HTTP request, to follow it through the logs: taken from the `X-Request-Id`
//! header when the caller (or its load balancer) sets one, made up otherwise, and returned in
//! the answer's `X-Request-Id` header either way.
//!
//! Handlers run inside a `tracing` span carrying the id, and the engine receives the id with
//! each command: it logs the id beside the id of the session it opens for the request (a
//! DEBUG event of [`SESSION_LOG_TARGET`]), and the nodes log that session id.
//!
//! [`SESSION_LOG_TARGET`]: permafrost_runtime::process::SESSION_LOG_TARGET

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use permafrost_api::codes;
use permafrost_runtime::process::SESSION_LOG_TARGET;
use rand_core::{OsRng, RngCore};
use tracing::Instrument;

/// The header carrying the id, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id accepted from a caller.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request this task is serving.
    static CURRENT: String;
}

/// The id of the HTTP request being served, if called while serving one.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Whether `id` is an id a caller may choose: 1 to [`MAX_LEN`] characters of
/// `A-Z a-z 0-9 - _ . :` (UUIDs, ULIDs, hex and most tracing ids fit; nothing that could break
/// a log line or a header does).
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A fresh id: 16 random bytes, hex.
fn fresh() -> String {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    hex::encode(id)
}

/// Marks a request whose caller gave a malformed id (it is served under a fresh one until
/// [`refuse_malformed`] answers it).
#[derive(Clone, Copy)]
struct Malformed;

/// The outer middleware: gives the request its id, serves it inside a span carrying the id, and
/// returns the id in the answer. A malformed id given by the caller is replaced by a fresh one
/// and the request marked, for [`refuse_malformed`] to refuse once the token was checked.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(&HEADER).map(|v| v.to_str());
    let id = match given {
        None => fresh(),
        Some(Ok(id)) if is_valid(id) => id.to_owned(),
        Some(_) => {
            request.extensions_mut().insert(Malformed);
            fresh()
        }
    };
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let mut response = CURRENT
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    span.in_scope(|| {
        tracing::debug!(
            target: SESSION_LOG_TARGET,
            status = response.status().as_u16(),
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The inner middleware, after authentication (a missing token is a 401 before anything else
/// is looked at): a request whose caller gave a malformed id is a 400 that changes nothing.
pub async fn refuse_malformed(request: Request, next: Next) -> Response {
    if request.extensions().get::<Malformed>().is_some() {
        return crate::http::ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            format!("X-Request-Id: use 1 to {MAX_LEN} characters of A-Z a-z 0-9 - _ . :"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_callers_are_checked() {
        assert!(is_valid("3f2b1c9e-0d4a-4c1e-9a57-2b8f0c6d1e42"));
        assert!(is_valid("01HZX3K4Q7T2M9B8C5D6E7F8G9"));
        assert!(is_valid("trace.1:a_b"));
        assert!(is_valid(&"a".repeat(MAX_LEN)));
        assert!(!is_valid(""));
        assert!(!is_valid(&"a".repeat(MAX_LEN + 1)));
        assert!(!is_valid("two words"));
        assert!(!is_valid("line\nbreak"));
        assert!(!is_valid("quote\"d"));
        assert!(!is_valid("é"));
    }

    #[test]
    fn fresh_ids_are_valid_and_differ() {
        let (a, b) = (fresh(), fresh());
        assert!(is_valid(&a));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
