//! The async HTTP client.

use std::fmt;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::{
    codes, encode_hex, ApiError, ChildKey, ClientAuthorization, ClientKey, CreateKeyRequest,
    DerivationPath, ErrorBody, Health, KeyList, KeyRecord, LocalnetInfo, ReshareRequest,
    RotationRequest, SignRequest, SignResponse,
};

/// The default per-request deadline. Generous because a DKG or a reshare answers only once
/// every node has finished (and persisted) its part.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(150);

/// The largest answer body the client reads; a larger one is refused rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How much of an error answer's text is kept when it is not an [`ErrorBody`].
const MAX_ERROR_TEXT: usize = 1024;

/// An async client for the coordinator's HTTP API.
///
/// Every request carries `Authorization: Bearer <token>` and has a deadline
/// ([`DEFAULT_TIMEOUT`] unless set with [`Client::with_timeout`]). Redirects are not
/// followed, so the token only ever goes to the configured base URL. Cloning is cheap and
/// clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the API at `base_url` (e.g. `http://127.0.0.1:8700`; a path prefix is
    /// allowed, a trailing `/` is ignored) authenticating with `token`.
    ///
    /// Refuses, with [`ApiError::Config`], a base URL that is not `http://` (this build has
    /// no TLS) or carries a query, credentials or fragment, and a token that is empty or not
    /// visible ASCII (it could not be sent in a header).
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Result<Self, ApiError> {
        let base_url = base_url.into();
        let token = token.into();
        let url = reqwest::Url::parse(&base_url)
            .map_err(|e| ApiError::Config(format!("base URL {base_url:?}: {e}")))?;
        if url.scheme() != "http" {
            return Err(ApiError::Config(format!(
                "base URL {base_url:?}: scheme {:?} is not supported, use http://",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(ApiError::Config(format!("base URL {base_url:?}: no host")));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ApiError::Config(format!(
                "base URL {base_url:?}: must not have a query or fragment"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ApiError::Config(format!(
                "base URL {base_url:?}: must not carry credentials, use the token"
            )));
        }
        if token.is_empty() {
            return Err(ApiError::Config("empty token".to_owned()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::Config(
                "token must be visible ASCII without spaces".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Client {
            base: url.as_str().trim_end_matches('/').to_owned(),
            token,
            http,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// A client for the coordinator of a localnet, from its `localnet.json`.
    pub fn from_localnet(info: &LocalnetInfo) -> Result<Self, ApiError> {
        Client::new(info.api.clone(), info.token.clone())
    }

    /// Sets the per-request deadline: from connecting until the whole answer is read.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL, normalized, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The per-request deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ApiError> {
        self.get("/v1/health").await
    }

    /// `POST /v1/keys`: runs a DKG and returns the new key (epoch 0).
    pub async fn create_key(&self, request: &CreateKeyRequest) -> Result<KeyRecord, ApiError> {
        self.post("/v1/keys", request).await
    }

    /// `GET /v1/keys`: every key.
    pub async fn keys(&self) -> Result<KeyList, ApiError> {
        self.get("/v1/keys").await
    }

    /// `GET /v1/keys/{key_id}`: one key. An unknown key is [`ApiError::Http`] with status
    /// 404 and code [`codes::NOT_FOUND`].
    pub async fn key(&self, key_id: &str) -> Result<KeyRecord, ApiError> {
        self.get(&key_path(key_id, "")?).await
    }

    /// `POST /v1/keys/{key_id}/sign`: a threshold signature over `message` (sent as hex),
    /// approved by the coordinator's gateway client key.
    pub async fn sign(&self, key_id: &str, message: &[u8]) -> Result<SignResponse, ApiError> {
        self.sign_at(key_id, &DerivationPath::ROOT, message).await
    }

    /// `POST /v1/keys/{key_id}/sign` with the child key at `path`, approved by the
    /// coordinator's gateway client key.
    pub async fn sign_at(
        &self,
        key_id: &str,
        path: &DerivationPath,
        message: &[u8],
    ) -> Result<SignResponse, ApiError> {
        let request = SignRequest {
            message: encode_hex(message),
            path: path_field(path),
            client: None,
        };
        self.sign_request(key_id, &request).await
    }

    /// `GET /v1/keys/{key_id}/derive?path=…`: the child key at `path`.
    pub async fn derive(&self, key_id: &str, path: &DerivationPath) -> Result<ChildKey, ApiError> {
        // A path is `m` and `/digits`: nothing in it needs escaping in a query.
        self.get(&format!("{}?path={path}", key_path(key_id, "/derive")?))
            .await
    }

    /// `POST /v1/keys/{key_id}/sign` approved by `client` (a fresh request id, now). The
    /// approval covers the key's group public key and the network id, so this first asks
    /// `GET /v1/keys/{key_id}` for them; with the [`KeyRecord`] at hand, use
    /// [`Client::sign_key_as`].
    pub async fn sign_as(
        &self,
        client: &ClientKey,
        key_id: &str,
        message: &[u8],
    ) -> Result<SignResponse, ApiError> {
        let key = self.key(key_id).await?;
        self.sign_key_as(client, &key, &DerivationPath::ROOT, message)
            .await
    }

    /// `POST /v1/keys/{key_id}/sign` for `key`'s child at `path` (the key itself for the
    /// empty path), approved by `client` for `key`'s network id and group public key and this
    /// path (a fresh request id, now).
    pub async fn sign_key_as(
        &self,
        client: &ClientKey,
        key: &KeyRecord,
        path: &DerivationPath,
        message: &[u8],
    ) -> Result<SignResponse, ApiError> {
        let request = SignRequest {
            message: encode_hex(message),
            path: path_field(path),
            client: Some(ClientAuthorization::from_wire(
                &client.authorize_key(key, path, message)?,
            )),
        };
        self.sign_request(&key.key_id, &request).await
    }

    /// `POST /v1/keys/{key_id}/sign` with a request body as given.
    pub async fn sign_request(
        &self,
        key_id: &str,
        request: &SignRequest,
    ) -> Result<SignResponse, ApiError> {
        self.post(&key_path(key_id, "/sign")?, request).await
    }

    /// `POST /v1/keys/{key_id}/reshare`: moves the key to a new committee and/or
    /// threshold; answers with the new epoch's record (same `public_key`) once committed.
    pub async fn reshare(
        &self,
        key_id: &str,
        request: &ReshareRequest,
    ) -> Result<KeyRecord, ApiError> {
        self.post(&key_path(key_id, "/reshare")?, request).await
    }

    /// `PUT /v1/keys/{key_id}/rotation`: sets (or replaces) the key's rotation policy, a
    /// refresh of its shares every `request.every_secs` that keeps its current committee and
    /// threshold; answers with the key's record, its `rotation` filled in. The coordinator
    /// checks the approvals' form only: every member checks them at every refresh.
    pub async fn set_rotation(
        &self,
        key_id: &str,
        request: &RotationRequest,
    ) -> Result<KeyRecord, ApiError> {
        self.put(&key_path(key_id, "/rotation")?, request).await
    }

    /// `DELETE /v1/keys/{key_id}/rotation`: removes the key's rotation policy, if it has one;
    /// answers with the key's record (`rotation` is `None`).
    pub async fn clear_rotation(&self, key_id: &str) -> Result<KeyRecord, ApiError> {
        self.delete(&key_path(key_id, "/rotation")?).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let request = self.http.get(&url);
        self.send(request, "GET", &url).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let request = self.http.delete(&url);
        self.send(request, "DELETE", &url).await
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.with_body(reqwest::Method::POST, path, body).await
    }

    async fn put<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.with_body(reqwest::Method::PUT, path, body).await
    }

    /// A `method` request with `body` as JSON.
    async fn with_body<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body)
            .map_err(|e| ApiError::Decode(format!("encoding the body of {method} {url}: {e}")))?;
        let request = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request, method.as_str(), &url).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        method: &str,
        url: &str,
    ) -> Result<T, ApiError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                ApiError::Transport(format!(
                    "{method} {url}: no answer within {:?}",
                    self.timeout
                ))
            } else {
                ApiError::Transport(format!("{method} {url}: {}", error_chain(&e)))
            }
        };
        let mut response = request
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            let (body, truncated) = read_capped(&mut response, MAX_RESPONSE_BYTES)
                .await
                .map_err(transport)?;
            if truncated {
                return Err(ApiError::Decode(format!(
                    "{method} {url}: answer larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::Decode(format!("{method} {url} ({status}): {e}")))
        } else {
            let (body, _) = read_capped(&mut response, MAX_RESPONSE_BYTES)
                .await
                .map_err(transport)?;
            Err(http_error(status, &body))
        }
    }
}

/// The path of one key (plus `suffix`), with the key id percent-encoded so that no id can
/// reach another route: only `[A-Za-z0-9._~-]` stay as they are.
/// The `path` field of a sign request: absent for the key itself.
fn path_field(path: &DerivationPath) -> Option<String> {
    (!path.is_root()).then(|| path.to_string())
}

fn key_path(key_id: &str, suffix: &str) -> Result<String, ApiError> {
    let invalid = |reason| ApiError::InvalidKeyId {
        key_id: key_id.to_owned(),
        reason,
    };
    match key_id {
        "" => return Err(invalid("empty")),
        // URL parsers resolve `.` and `..` segments (even percent-encoded), so such an id
        // would address a different path.
        "." | ".." => return Err(invalid("a dot segment cannot be addressed in a URL path")),
        _ => {}
    }
    let mut path = String::with_capacity(9 + key_id.len() * 3 + suffix.len());
    path.push_str("/v1/keys/");
    for byte in key_id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'~' | b'-') {
            path.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            path.push('%');
            path.push(char::from(HEX[usize::from(byte >> 4)]));
            path.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    path.push_str(suffix);
    Ok(path)
}

/// Reads the body, stopping after `cap` bytes; the flag says whether it was cut.
async fn read_capped(
    response: &mut Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Maps a non-2xx answer to [`ApiError::Http`]: its [`ErrorBody`] when it has one,
/// otherwise a code derived from the status and the (shortened) raw text.
fn http_error(status: StatusCode, body: &[u8]) -> ApiError {
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        return ApiError::Http {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no error body")
            .to_owned()
    } else if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text.to_owned()
    };
    ApiError::Http {
        status: status.as_u16(),
        code: codes::for_status(status.as_u16()).to_owned(),
        message,
    }
}

/// An error with its causes, `outer: inner: …`: reqwest's own message alone rarely says
/// what happened ("error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_percent_encoded() {
        assert_eq!(key_path("abc-1.2_~", "").unwrap(), "/v1/keys/abc-1.2_~");
        assert_eq!(
            key_path("a/../b?c#d e%", "/sign").unwrap(),
            "/v1/keys/a%2F..%2Fb%3Fc%23d%20e%25/sign"
        );
        assert_eq!(key_path("é", "").unwrap(), "/v1/keys/%C3%A9");
        assert_eq!(key_path("..a", "").unwrap(), "/v1/keys/..a");
    }

    #[test]
    fn unaddressable_key_ids_are_refused() {
        for id in ["", ".", ".."] {
            assert!(matches!(
                key_path(id, "/sign"),
                Err(ApiError::InvalidKeyId { .. })
            ));
        }
    }

    #[test]
    fn error_answers_are_parsed_or_kept_as_text() {
        let body = br#"{"error":{"code":"conflict","message":"a reshare is running"}}"#;
        assert_eq!(
            http_error(StatusCode::CONFLICT, body),
            ApiError::Http {
                status: 409,
                code: "conflict".into(),
                message: "a reshare is running".into()
            }
        );
        assert_eq!(
            http_error(StatusCode::BAD_GATEWAY, b"  <html>bad gateway</html>\n"),
            ApiError::Http {
                status: 502,
                code: codes::INTERNAL.into(),
                message: "<html>bad gateway</html>".into()
            }
        );
        assert_eq!(
            http_error(StatusCode::SERVICE_UNAVAILABLE, b""),
            ApiError::Http {
                status: 503,
                code: codes::UNAVAILABLE.into(),
                message: "Service Unavailable".into()
            }
        );
        let long = "é".repeat(MAX_ERROR_TEXT);
        let ApiError::Http { message, .. } = http_error(StatusCode::BAD_REQUEST, long.as_bytes())
        else {
            panic!("not an HTTP error");
        };
        assert!(message.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
        assert!(message.ends_with('…'));
    }

    #[test]
    fn base_urls_and_tokens_are_checked() {
        let client = Client::new("http://127.0.0.1:8700/", "t0k3n").unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:8700");
        assert_eq!(client.timeout(), DEFAULT_TIMEOUT);
        let client = Client::new("http://localhost:1/prefix/", "t").unwrap();
        assert_eq!(client.base_url(), "http://localhost:1/prefix");
        let client = client.with_timeout(Duration::from_secs(5));
        assert_eq!(client.timeout(), Duration::from_secs(5));
        assert!(!format!("{client:?}").contains("\"t\""));

        for (base, token) in [
            ("127.0.0.1:8700", "t"),
            ("https://example.com", "t"),
            ("http://example.com/?q=1", "t"),
            ("http://user:pw@example.com", "t"),
            ("http://example.com", ""),
            ("http://example.com", "two words"),
            ("http://example.com", "line\nbreak"),
        ] {
            assert!(
                matches!(Client::new(base, token), Err(ApiError::Config(_))),
                "{base} {token:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let client = Client::new("http://127.0.0.1:8700", "super-secret-token").unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("super-secret-token"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
