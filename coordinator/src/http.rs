//! The HTTP API of design section 6: JSON over HTTP, bearer tokens, JSON errors with the
//! listed status codes, never a 500 for a client's mistake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use permafrost_api::{
    codes, ChildKey, CreateKeyRequest, ErrorBody, ErrorDetail, Health, KeyList, KeyRecord,
    NodeHealth, ReshareRequest, RotationRecord, RotationRequest, SignResponse,
};
use permafrost_net::{Client, PeerId};
use permafrost_protocol::cache::BoundedCache;
use permafrost_protocol::derive::ExtendedPublicKey;
use permafrost_protocol::sign::MAX_SIGN_MESSAGE_LEN;
use permafrost_protocol::ProtocolError;
use permafrost_runtime::any::AnyEvent;
use permafrost_runtime::identity;
use permafrost_runtime::metrics::Outcome as MetricOutcome;
use permafrost_runtime::network::Network;
use permafrost_wire::{
    ApprovalTarget, Curve, DerivationPath, KeyId, NodeId, OperatorApproval, MAX_APPROVALS,
};
use rand_core::{OsRng, RngCore};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Command, Outcome, Traced};
use crate::metrics::{CoordinatorMetrics, SessionKind};
use crate::store::MetadataDb;
use permafrost_engine::coordinator::{KeyMeta, MetadataStore, RotationPolicy};

/// Everything the handlers share.
pub struct ApiState {
    pub(crate) tokens: Vec<[u8; 32]>,
    pub(crate) store: MetadataDb,
    pub(crate) network: Arc<Network>,
    /// Keys with a reshare running (a second one is 409).
    pub(crate) resharing: std::sync::Mutex<std::collections::BTreeSet<String>>,
    pub(crate) client: Client,
    pub(crate) commands: mpsc::Sender<Traced>,
    /// What `/metrics` reports, updated as requests end.
    pub(crate) metrics: Arc<CoordinatorMetrics>,
    /// Every metric of this process, for `/metrics`.
    pub(crate) registry: Arc<permafrost_runtime::metrics::Registry>,
    /// Approves sign requests that carry no client authorization.
    pub(crate) gateway: Option<permafrost_api::ClientKey>,
    /// The nodes' liveness probes.
    pub(crate) probes: Arc<crate::probe::Probes>,
    /// The last readiness verdict, and when it was made.
    pub(crate) ready: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// Child keys already derived for answers, by key and path (at most [`CHILD_KEYS_KEPT`]).
    pub(crate) children:
        std::sync::Mutex<BoundedCache<ChildSlot, permafrost_runtime::any::ChildKey>>,
}

/// Child keys the API keeps derived, over every key.
pub(crate) const CHILD_KEYS_KEPT: usize = 4096;

/// What a child key is derived from: the key (curve, id and group key, so a key recreated under
/// the same id is derived anew) and the path.
pub(crate) type ChildSlot = (Curve, KeyId, Vec<u8>, DerivationPath);

/// An API error: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }
    fn not_found(key_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("no key {key_id:?}"),
        )
    }
    fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, codes::CONFLICT, message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The code of an error answer, for [`count_refusals`].
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

/// Counts the requests answered with a 4xx error, by code.
async fn count_refusals(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.status().is_client_error() {
        if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
            state.metrics.api_refused(code);
        }
    }
    response
}

/// `Json` whose rejections are our JSON errors: 413 over the body limit, 400 otherwise.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::PAYLOAD_TOO_LARGE,
                    "request body exceeds the limit",
                ))
            }
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Builds the router.
pub fn router(state: Arc<ApiState>, body_limit: usize) -> Router {
    let api = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{key_id}", get(get_key))
        .route("/v1/keys/{key_id}/sign", post(sign))
        .route("/v1/keys/{key_id}/derive", get(derive))
        .route("/v1/keys/{key_id}/reshare", post(reshare))
        .route(
            "/v1/keys/{key_id}/rotation",
            put(set_rotation).delete(clear_rotation),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD_NOT_ALLOWED,
                "method not allowed on this path",
            )
        })
        .layer(middleware::from_fn(crate::request_id::refuse_malformed))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(body_limit));
    // For load balancers: no token, and nothing in the answer but the verdict.
    let public = Router::new()
        .route("/v1/ready", get(ready))
        .route("/v1/openapi.json", get(crate::openapi::serve))
        .layer(middleware::from_fn(crate::request_id::refuse_malformed));
    public
        .merge(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_refusals,
        ))
        .layer(middleware::from_fn(crate::request_id::layer))
        .with_state(state)
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn token_digests(tokens: &[String]) -> Vec<[u8; 32]> {
    tokens.iter().map(|t| token_digest(t)).collect()
}

async fn authenticate(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(token_digest);
    // Comparing digests keeps the comparison independent of where a guess first differs.
    let ok = presented.is_some_and(|p| state.tokens.iter().fold(false, |acc, t| acc | (*t == p)));
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing or wrong bearer token",
        )
        .into_response();
    }
    next.run(request).await
}

#[utoipa::path(get, path = "/v1/health", tag = "status", security(("bearer" = [])),
    summary = "Whether the coordinator serves, and each node's connection and liveness probe",
    responses(
        (status = 200, body = Health, description = "The coordinator and every node of the network file"),
        (status = 400, body = ErrorBody, description = "A malformed X-Request-Id"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 500, body = ErrorBody, description = "The network task is down"),
    ))]
async fn health(State(state): State<Arc<ApiState>>) -> Result<Json<Health>, ApiError> {
    let connected = state
        .client
        .connected_peers()
        .await
        .map_err(|e| ApiError::internal(format!("network: {e}")))?;
    let now = std::time::Instant::now();
    let nodes = state
        .network
        .nodes
        .iter()
        .map(|m| {
            let probe = state.probes.status(&m.peer_id, now);
            NodeHealth {
                name: m.name.clone().unwrap_or_default(),
                peer_id: m.peer_id.to_string(),
                connected: connected.contains(&m.peer_id),
                healthy: probe.healthy,
                last_round_trip_us: probe
                    .last_round_trip
                    .map(|rtt| u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
                last_probe_age_ms: probe
                    .last_success_age
                    .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                probe_error: probe.last_error,
            }
        })
        .collect();
    Ok(Json(Health {
        status: "ok".into(),
        network_id: state.network.network_id.clone(),
        nodes,
    }))
}

#[utoipa::path(get, path = "/v1/ready", tag = "status",
    summary = "For load balancers: whether a key can be signed with now (no token)",
    responses(
        (status = 200, body = permafrost_api::Ready, description = "Ready: at least one key has its threshold of healthy committee members (with no key yet: a node is healthy)"),
        (status = 400, body = ErrorBody, description = "A malformed X-Request-Id"),
        (status = 503, body = permafrost_api::Ready, description = "Not ready"),
    ))]
/// `GET /v1/ready`: 200 when at least one key has its threshold of healthy committee members
/// (with no key yet: when at least one node is healthy), 503 otherwise. Anyone may ask (no
/// token), so the verdict is computed at most once per probe interval and served from memory
/// meanwhile.
async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    let now = std::time::Instant::now();
    let cached = *state.ready.lock().unwrap_or_else(|e| e.into_inner());
    let ready = match cached {
        Some((at, ready)) if now.saturating_duration_since(at) < state.probes.interval() => ready,
        _ => {
            let ready = readiness(&state, now);
            *state.ready.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, ready));
            ready
        }
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(permafrost_api::Ready { ready })).into_response()
}

/// Whether any key can be signed with now (see [`ready`]).
fn readiness(state: &ApiState, now: std::time::Instant) -> bool {
    let healthy: std::collections::BTreeSet<NodeId> = state
        .network
        .nodes
        .iter()
        .filter(|m| state.probes.status(&m.peer_id, now).healthy)
        .filter_map(|m| identity::node_id(&m.peer_id).ok())
        .collect();
    match state.store.keys() {
        Ok(keys) if keys.is_empty() => !healthy.is_empty(),
        Ok(keys) => keys.iter().any(|key| {
            let up = key
                .committee
                .iter()
                .filter(|m| healthy.contains(*m))
                .count();
            up >= usize::from(key.threshold)
        }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cannot list the keys");
            false
        }
    }
}

/// Every rotation policy in the metadata database.
fn rotations(state: &ApiState) -> Result<Vec<RotationPolicy>, ApiError> {
    state
        .store
        .rotations()
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The record of `meta`, with its rotation policy as the metadata database has it.
fn key_record(state: &ApiState, meta: &KeyMeta) -> Result<KeyRecord, ApiError> {
    let rotations = rotations(state)?;
    let rotation = rotations.iter().find(|p| p.key_id == meta.key_id);
    Ok(record(state, meta, rotation))
}

/// The record of `meta`, with `rotation`, its rotation policy if it has one.
fn record(state: &ApiState, meta: &KeyMeta, rotation: Option<&RotationPolicy>) -> KeyRecord {
    let extended = ExtendedPublicKey::new(meta.curve, &meta.key_id, meta.public_key.clone());
    KeyRecord {
        key_id: meta.key_id.as_str().to_owned(),
        curve: meta.curve,
        public_key: hex::encode(&meta.public_key),
        network_id: state.network.network_id.clone(),
        threshold: meta.threshold,
        nodes: meta.nodes.clone(),
        epoch: meta.epoch.0,
        public_key_package_digest: hex::encode(
            permafrost_protocol::lifecycle::public_key_package_digest(&meta.public_key_package).0,
        ),
        chain_code: hex::encode(extended.chain_code.0),
        xpub: extended.xpub(),
        rotation: rotation.map(|policy| RotationRecord {
            every_secs: policy.every_secs,
            last_ms: policy.last_ms,
            next_ms: policy.next_ms,
            threshold: policy.threshold,
            nodes: policy
                .committee
                .iter()
                .map(|node| node_name(&state.network, node))
                .collect(),
        }),
    }
}

/// A `path` from a request (`m/0/17`; absent: the key itself), or a 400 saying what is wrong.
fn parse_path(path: Option<&str>) -> Result<DerivationPath, ApiError> {
    match path {
        None => Ok(DerivationPath::ROOT),
        Some(text) => text
            .parse()
            .map_err(|e: permafrost_wire::WireError| ApiError::bad_request(format!("path: {e}"))),
    }
}

/// The child of `meta` at `path`, or a 400 for the index BIP-32 calls invalid.
fn child_key(
    state: &ApiState,
    meta: &KeyMeta,
    path: &DerivationPath,
) -> Result<permafrost_runtime::any::ChildKey, ApiError> {
    let derive = || {
        permafrost_runtime::any::derive_child(meta.curve, &meta.key_id, &meta.public_key, path)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    };
    // The key itself derives nothing: no need for the cache.
    if path.is_root() {
        return derive();
    }
    let slot = (
        meta.curve,
        meta.key_id.clone(),
        meta.public_key.clone(),
        path.clone(),
    );
    // A cache holds nothing a panic could leave half made: a poisoned lock is still usable.
    let mut children = state.children.lock().unwrap_or_else(|e| e.into_inner());
    children.get_or_try_insert(&slot, derive).cloned()
}

/// The key a path names; whatever the path's form, a key that does not exist is 404.
fn lookup(state: &ApiState, key_id: &str) -> Result<KeyMeta, ApiError> {
    let Ok(id) = KeyId::new(key_id) else {
        return Err(ApiError::not_found(key_id));
    };
    state
        .store
        .key(&id)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(key_id))
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    summary = "Every key, sorted by key id",
    responses(
        (status = 200, body = KeyList, description = "The keys"),
        (status = 400, body = ErrorBody, description = "A malformed X-Request-Id"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 500, body = ErrorBody, description = "The metadata database failed"),
    ))]
async fn list_keys(State(state): State<Arc<ApiState>>) -> Result<Json<KeyList>, ApiError> {
    let keys = state
        .store
        .keys()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let rotations = rotations(&state)?;
    Ok(Json(KeyList {
        keys: keys
            .iter()
            .map(|meta| {
                let rotation = rotations.iter().find(|p| p.key_id == meta.key_id);
                record(&state, meta, rotation)
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys", security(("bearer" = [])),
    summary = "One key",
    params(("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, body = KeyRecord, description = "The key's current epoch"),
        (status = 400, body = ErrorBody, description = "A malformed X-Request-Id"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 404, body = ErrorBody, description = "No key of this id"),
        (status = 500, body = ErrorBody, description = "The metadata database failed"),
    ))]
async fn get_key(
    State(state): State<Arc<ApiState>>,
    Path(key_id): Path<String>,
) -> Result<Json<KeyRecord>, ApiError> {
    Ok(Json(key_record(&state, &lookup(&state, &key_id)?)?))
}

/// The query of `GET /v1/keys/{key_id}/derive`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeriveQuery {
    path: String,
}

#[utoipa::path(get, path = "/v1/keys/{key_id}/derive", tag = "keys", security(("bearer" = [])),
    summary = "A child key",
    params(
        ("key_id" = String, Path, description = "The key's id"),
        ("path" = String, Query, description = "The child's path, as m/0/17: non-hardened indices below 2^31, at most 16 levels", pattern = "^m(/(0|[1-9][0-9]{0,9})){0,16}$"),
    ),
    responses(
        (status = 200, body = ChildKey, description = "The child key, as every signer derives it"),
        (status = 400, body = ErrorBody, description = "No path, a malformed or hardened path, an unknown query parameter, or a malformed X-Request-Id"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 404, body = ErrorBody, description = "No key of this id"),
        (status = 500, body = ErrorBody, description = "The metadata database failed"),
    ))]
async fn derive(
    State(state): State<Arc<ApiState>>,
    Path(key_id): Path<String>,
    query: Result<Query<DeriveQuery>, QueryRejection>,
) -> Result<Json<ChildKey>, ApiError> {
    // A path naming no key is 404 whatever the query.
    let meta = lookup(&state, &key_id)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let path = parse_path(Some(&query.path))?;
    let child = child_key(&state, &meta, &path)?;
    Ok(Json(ChildKey {
        key_id: meta.key_id.as_str().to_owned(),
        path: path.to_string(),
        public_key: hex::encode(&child.public_key),
        internal_key: child.internal_key.as_ref().map(hex::encode),
    }))
}

/// Names of nodes, for error messages.
fn names(network: &Network, nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| node_name(network, n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A node's name in the network file (its node id if it has none).
fn node_name(network: &Network, node: &NodeId) -> String {
    identity::peer_id(node)
        .and_then(|p| network.name_of(&p).map(str::to_owned))
        .unwrap_or_else(|| node.to_string())
}

/// Maps a failed session to an API error naming the nodes responsible.
fn session_error(network: &Network, error: &ProtocolError) -> ApiError {
    let culprits = error.culprits();
    let message = if culprits.is_empty() {
        error.to_string()
    } else {
        format!("{error} [nodes responsible: {}]", names(network, &culprits))
    };
    match error {
        ProtocolError::Timeout { .. }
        | ProtocolError::SignersRefused { .. }
        | ProtocolError::TooFewSigners { .. }
        | ProtocolError::MemberUnreachable { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, message)
        }
        ProtocolError::InvalidParameters(_) => ApiError::bad_request(message),
        ProtocolError::ClientNotAuthorized { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, codes::CLIENT_NOT_AUTHORIZED, message)
        }
        ProtocolError::OpenRefused {
            not_approved: true, ..
        } => ApiError::new(StatusCode::FORBIDDEN, codes::OPERATOR_NOT_APPROVED, message),
        ProtocolError::OpenRefused { .. } => {
            ApiError::new(StatusCode::CONFLICT, codes::REFUSED_BY_NODE, message)
        }
        ProtocolError::Misbehaviour { .. } | ProtocolError::ConfirmationMismatch { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, codes::NODE_MISBEHAVED, message)
        }
        _ => ApiError::internal(message),
    }
}

/// Runs a session of `kind` on a key of `curve` through the engine and waits at most `limit`
/// for its outcome, which goes into the metrics with its latency and culprits.
async fn run_command(
    state: &ApiState,
    kind: SessionKind,
    curve: Curve,
    make: impl FnOnce(oneshot::Sender<Outcome>) -> Command,
    limit: Duration,
) -> Result<AnyEvent, ApiError> {
    let started = Instant::now();
    let (reply, answer) = oneshot::channel();
    let traced = Traced {
        request_id: crate::request_id::current(),
        command: make(reply),
    };
    state
        .commands
        .send(traced)
        .await
        .map_err(|_| ApiError::internal("the coordinator is stopping"))?;
    let answer = tokio::time::timeout(limit, answer).await;
    let (outcome, culprits) = match &answer {
        Ok(Ok(Ok(AnyEvent::SignatureReady { culprits, .. }))) => {
            (MetricOutcome::Ok, culprits.clone())
        }
        Ok(Ok(Ok(_))) => (MetricOutcome::Ok, Vec::new()),
        Ok(Ok(Err(error))) => (metric_outcome(error), error.culprits()),
        Ok(Err(_)) | Err(_) => (MetricOutcome::Failed, Vec::new()),
    };
    state
        .metrics
        .session_ended(kind, curve, outcome, started.elapsed(), &culprits);
    match answer {
        Ok(Ok(Ok(event))) => Ok(event),
        Ok(Ok(Err(error))) => Err(session_error(&state.network, &error)),
        Ok(Err(_)) => Err(ApiError::internal("session dropped")),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            codes::TIMEOUT,
            "the session did not finish before its deadline",
        )),
    }
}

/// A failed session's outcome label: `refused` when members (or the approvals they check)
/// refused it, `failed` otherwise.
fn metric_outcome(error: &ProtocolError) -> MetricOutcome {
    match error {
        ProtocolError::SignersRefused { .. }
        | ProtocolError::ClientNotAuthorized { .. }
        | ProtocolError::OpenRefused { .. } => MetricOutcome::Refused,
        _ => MetricOutcome::Failed,
    }
}

/// The wire form of a request's operator approvals; the coordinator does not judge them (every
/// member checks them against its own list).
fn approvals(
    given: &[permafrost_api::OperatorApproval],
) -> Result<Vec<OperatorApproval>, ApiError> {
    if given.len() > MAX_APPROVALS {
        return Err(ApiError::bad_request(format!(
            "{} approvals, at most {MAX_APPROVALS}",
            given.len()
        )));
    }
    given
        .iter()
        .map(|a| a.to_wire().map_err(ApiError::bad_request))
        .collect()
}

/// The node ids of a committee, in its order.
fn node_ids(members: &[(PeerId, String)]) -> Result<Vec<NodeId>, ApiError> {
    members
        .iter()
        .map(|(p, _)| identity::node_id(p).map_err(|e| ApiError::internal(e.to_string())))
        .collect()
}

/// A committee from node names, in the protocol's order (sorted by PeerId bytes), checked:
/// every name known, none twice, at least 2 nodes, 2 ≤ threshold ≤ n.
fn committee(
    network: &Network,
    names: &[String],
    threshold: u16,
) -> Result<Vec<(PeerId, String)>, ApiError> {
    let mut members: Vec<(PeerId, String)> = Vec::new();
    for name in names {
        let member = network
            .node_by_name(name)
            .ok_or_else(|| ApiError::bad_request(format!("unknown node {name:?}")))?;
        if members.iter().any(|(p, _)| *p == member.peer_id) {
            return Err(ApiError::bad_request(format!("node {name:?} listed twice")));
        }
        members.push((member.peer_id, name.clone()));
    }
    let n = members.len();
    if n < 2 {
        return Err(ApiError::bad_request("a key needs at least 2 nodes"));
    }
    if threshold < 2 || usize::from(threshold) > n {
        return Err(ApiError::bad_request(format!(
            "threshold {threshold} must be between 2 and the number of nodes ({n})"
        )));
    }
    members.sort_by_key(|(p, _)| p.to_bytes());
    Ok(members)
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    summary = "Create a key: run a DKG",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, body = KeyRecord, description = "The DKG committed"),
        (status = 400, body = ErrorBody, description = "Bad JSON or Content-Type, an unknown field, unknown or repeated node, threshold outside 2..=n, a bad key_id or approval, approvals without key_id, no approvals and no gateway operator key"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 403, body = ErrorBody, description = "A member refused under its life-cycle policy (operator_not_approved)"),
        (status = 409, body = ErrorBody, description = "The key_id is taken (conflict), or a member refused for another reason (refused_by_node)"),
        (status = 413, body = ErrorBody, description = "The body is over the limit"),
        (status = 500, body = ErrorBody, description = "A fault of the coordinator"),
        (status = 502, body = ErrorBody, description = "A member misbehaved; the message names it"),
        (status = 503, body = ErrorBody, description = "Members did not answer in time"),
        (status = 504, body = ErrorBody, description = "No outcome before the deadline"),
    ))]
async fn create_key(
    State(state): State<Arc<ApiState>>,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<KeyRecord>), ApiError> {
    let network = &state.network;
    let names: Vec<String> = match body.nodes {
        Some(nodes) => nodes,
        None => network
            .nodes
            .iter()
            .filter_map(|m| m.name.clone())
            .collect(),
    };
    let members = committee(network, &names, body.threshold)?;
    let approvals = approvals(&body.approvals)?;
    let key_id = match &body.key_id {
        Some(id) => {
            let path_safe = id.len() <= 64
                && id != "."
                && id != ".."
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !path_safe {
                return Err(ApiError::bad_request(format!(
                    "key_id {id:?}: use at most 64 of A-Z a-z 0-9 . _ - (not \".\" or \"..\")"
                )));
            }
            let id = KeyId::new(id.clone())
                .map_err(|e| ApiError::bad_request(format!("key_id: {e}")))?;
            if lookup(&state, id.as_str()).is_ok() {
                return Err(ApiError::conflict(format!("key {id} already exists")));
            }
            id
        }
        None if !approvals.is_empty() => {
            return Err(ApiError::bad_request(
                "a request with approvals must name its key_id (the approvals cover it)",
            ))
        }
        None => {
            let mut id = [0u8; 12];
            OsRng.fill_bytes(&mut id);
            KeyId::new(format!("k-{}", hex::encode(id)))
                .map_err(|e| ApiError::internal(e.to_string()))?
        }
    };
    let committee = node_ids(&members)?;
    let (curve, threshold) = (body.curve, body.threshold);
    let event = run_command(
        &state,
        SessionKind::Dkg,
        curve,
        |reply| Command::CreateKey {
            curve,
            key_id: key_id.clone(),
            threshold,
            committee: committee.clone(),
            approvals,
            reply,
        },
        permafrost_engine::deadlines::DKG + Duration::from_secs(5),
    )
    .await;
    event?;
    // The engine recorded the key before its commit went out.
    let meta = lookup(&state, key_id.as_str())?;
    Ok((StatusCode::CREATED, Json(key_record(&state, &meta)?)))
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/sign", tag = "keys", security(("bearer" = [])),
    summary = "Sign one message",
    params(("key_id" = String, Path, description = "The key's id")),
    request_body = permafrost_api::SignRequest,
    responses(
        (status = 200, body = SignResponse, description = "The signature"),
        (status = 400, body = ErrorBody, description = "Bad JSON or Content-Type, an unknown field, bad hex, a message over 64 KiB, a malformed or hardened path, a malformed client approval, no client approval and no gateway client key"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 403, body = ErrorBody, description = "The nodes refused the client approval (client_not_authorized)"),
        (status = 404, body = ErrorBody, description = "No key of this id"),
        (status = 413, body = ErrorBody, description = "The body is over the limit"),
        (status = 500, body = ErrorBody, description = "A fault of the coordinator"),
        (status = 503, body = ErrorBody, description = "Fewer than the threshold of signers answered or were left"),
        (status = 504, body = ErrorBody, description = "No outcome before the deadline"),
    ))]
async fn sign(
    State(state): State<Arc<ApiState>>,
    Path(key_id): Path<String>,
    body: Result<ApiJson<permafrost_api::SignRequest>, ApiError>,
) -> Result<Json<SignResponse>, ApiError> {
    // A path naming no key is 404 whatever the body.
    let meta = lookup(&state, &key_id)?;
    let ApiJson(body) = body?;
    let message = permafrost_api::decode_hex("message", &body.message)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if message.len() > MAX_SIGN_MESSAGE_LEN {
        return Err(ApiError::bad_request(format!(
            "message of {} bytes exceeds {MAX_SIGN_MESSAGE_LEN}",
            message.len()
        )));
    }
    let path = parse_path(body.path.as_deref())?;
    // The key the signature will verify under; the signers each derive it on their own.
    let child = child_key(&state, &meta, &path)?;
    // The coordinator does not judge the client's approval: every signer checks it.
    let client = match (&body.client, &state.gateway) {
        (Some(client), _) => client.to_wire().map_err(ApiError::bad_request)?,
        (None, Some(gateway)) => gateway.authorize(
            &ApprovalTarget {
                network_id: &state.network.network_id,
                group_key: &meta.public_key,
                key_id: &meta.key_id,
                path: &path,
            },
            &message,
        ),
        (None, None) => {
            return Err(ApiError::bad_request(
                "the request carries no \"client\" authorization, and this coordinator has no gateway client key",
            ))
        }
    };
    let curve = meta.curve;
    let event = run_command(
        &state,
        SessionKind::Sign,
        curve,
        |reply| Command::Sign {
            key: meta.clone(),
            message,
            path: path.clone(),
            client,
            reply,
        },
        permafrost_engine::deadlines::SIGNING + Duration::from_secs(5),
    )
    .await?;
    let AnyEvent::SignatureReady {
        signature,
        signers,
        culprits,
        passed_over,
    } = event
    else {
        return Err(ApiError::internal("unexpected signing outcome"));
    };
    if !culprits.is_empty() {
        tracing::warn!(key = %meta.key_id, culprits = %names(&state.network, &culprits), "signature made without members that sent bad shares");
    }
    if !passed_over.is_empty() {
        let named: Vec<String> = passed_over
            .iter()
            .map(|(node, why)| format!("{}: {why}", node_name(&state.network, node)))
            .collect();
        tracing::warn!(key = %meta.key_id, members = %named.join("; "), "signature made without members that refused or did not answer");
    }
    let name = |n: &NodeId| node_name(&state.network, n);
    Ok(Json(SignResponse {
        signature: hex::encode(signature),
        public_key: hex::encode(&child.public_key),
        path: path.to_string(),
        epoch: meta.epoch.0,
        signers: signers.iter().map(name).collect(),
        culprits: culprits.iter().map(name).collect(),
    }))
}

/// Marks a key as resharing for as long as it lives.
struct ResharingGuard<'a> {
    state: &'a ApiState,
    key_id: String,
}

impl<'a> ResharingGuard<'a> {
    fn take(state: &'a ApiState, key_id: &str) -> Result<Self, ApiError> {
        let mut running = state
            .resharing
            .lock()
            .map_err(|_| ApiError::internal("reshare registry poisoned"))?;
        if !running.insert(key_id.to_owned()) {
            return Err(ApiError::conflict(format!(
                "a reshare of key {key_id:?} is already running"
            )));
        }
        Ok(ResharingGuard {
            state,
            key_id: key_id.to_owned(),
        })
    }
}

impl Drop for ResharingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.state.resharing.lock() {
            running.remove(&self.key_id);
        }
    }
}

#[utoipa::path(post, path = "/v1/keys/{key_id}/reshare", tag = "keys", security(("bearer" = [])),
    summary = "Move the key to a new committee and/or threshold",
    params(("key_id" = String, Path, description = "The key's id")),
    request_body = ReshareRequest,
    responses(
        (status = 200, body = KeyRecord, description = "The new epoch, committed"),
        (status = 400, body = ErrorBody, description = "Bad JSON or Content-Type, an unknown field, unknown or repeated node, threshold outside 2..=n, a bad approval, no approvals and no gateway operator key"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 403, body = ErrorBody, description = "A new member refused under its life-cycle policy (operator_not_approved)"),
        (status = 404, body = ErrorBody, description = "No key of this id"),
        (status = 409, body = ErrorBody, description = "A reshare of this key is running (conflict), or a new member refused for another reason (refused_by_node)"),
        (status = 413, body = ErrorBody, description = "The body is over the limit"),
        (status = 500, body = ErrorBody, description = "A fault of the coordinator"),
        (status = 502, body = ErrorBody, description = "A member misbehaved; the message names it"),
        (status = 503, body = ErrorBody, description = "Too few dealers or members answered in time"),
        (status = 504, body = ErrorBody, description = "No outcome before the deadline"),
    ))]
async fn reshare(
    State(state): State<Arc<ApiState>>,
    Path(key_id): Path<String>,
    body: Result<ApiJson<ReshareRequest>, ApiError>,
) -> Result<Json<KeyRecord>, ApiError> {
    // A path naming no key is 404 whatever the body.
    lookup(&state, &key_id)?;
    let ApiJson(body) = body?;
    let members = committee(&state.network, &body.nodes, body.threshold)?;
    let _guard = ResharingGuard::take(&state, &key_id)?;
    let meta = lookup(&state, &key_id)?;
    let (key, curve) = (meta.key_id, meta.curve);
    let committee = node_ids(&members)?;
    let threshold = body.threshold;
    let approvals = approvals(&body.approvals)?;
    let outcome = run_command(
        &state,
        SessionKind::Reshare,
        curve,
        |reply| Command::Reshare {
            key_id: key,
            committee,
            threshold,
            approvals,
            reply,
        },
        // Longer than the session can last (its deadline, then the test signature's, then
        // the certificate's deliveries), so the 409 guard is held until the engine is done.
        permafrost_engine::deadlines::RESHARE
            + permafrost_engine::deadlines::SIGNING
            + Duration::from_secs(60),
    )
    .await?;
    match outcome {
        AnyEvent::KeyReshared { excluded, .. } => {
            if !excluded.is_empty() {
                tracing::warn!(key = %key_id, excluded = %names(&state.network, &excluded), "dealers left out of the reshare");
            }
            // The engine recorded the new epoch before the certificate went out.
            Ok(Json(key_record(&state, &lookup(&state, &key_id)?)?))
        }
        _ => Err(ApiError::internal("unexpected reshare outcome")),
    }
}

/// Asks the engine for something it answers at once, with no session (a rotation policy).
/// An error of the core is mapped as a session's would be (`InvalidParameters` is 400).
async fn ask_engine<T>(
    state: &ApiState,
    make: impl FnOnce(oneshot::Sender<Result<T, ProtocolError>>) -> Command,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    let traced = Traced {
        request_id: crate::request_id::current(),
        command: make(reply),
    };
    state
        .commands
        .send(traced)
        .await
        .map_err(|_| ApiError::internal("the coordinator is stopping"))?;
    match answer.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(session_error(&state.network, &error)),
        Err(_) => Err(ApiError::internal(
            "the coordinator's loop dropped the request",
        )),
    }
}

#[utoipa::path(put, path = "/v1/keys/{key_id}/rotation", tag = "keys", security(("bearer" = [])),
    summary = "Set the key's scheduled share rotation: a refresh every `every_secs`, keeping its committee and threshold",
    params(("key_id" = String, Path, description = "The key's id")),
    request_body = RotationRequest,
    responses(
        (status = 200, body = KeyRecord, description = "The policy is recorded (replacing any earlier one): the key's record, with its `rotation`. Every member checks the approvals at every refresh; here only that they verify over this policy"),
        (status = 400, body = ErrorBody, description = "Bad JSON or Content-Type, an unknown field, `every_secs` under 60, more than 16 approvals, one of the wrong form or that does not verify over this policy, no approvals and no gateway operator key, or a malformed X-Request-Id"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 404, body = ErrorBody, description = "No key of this id"),
        (status = 413, body = ErrorBody, description = "The body is over the limit"),
        (status = 500, body = ErrorBody, description = "The metadata database failed, or the coordinator's loop stopped"),
    ))]
async fn set_rotation(
    State(state): State<Arc<ApiState>>,
    Path(key_id): Path<String>,
    body: Result<ApiJson<RotationRequest>, ApiError>,
) -> Result<Json<KeyRecord>, ApiError> {
    // A path naming no key is 404 whatever the body.
    let meta = lookup(&state, &key_id)?;
    let ApiJson(body) = body?;
    let approvals = approvals(&body.approvals)?;
    let (key, every_secs) = (meta.key_id, body.every_secs);
    let policy = ask_engine(&state, |reply| Command::SetRotation {
        key_id: key,
        every_secs,
        approvals,
        reply,
    })
    .await?;
    let meta = lookup(&state, &key_id)?;
    Ok(Json(record(&state, &meta, Some(&policy))))
}

#[utoipa::path(delete, path = "/v1/keys/{key_id}/rotation", tag = "keys", security(("bearer" = [])),
    summary = "Clear the key's scheduled share rotation",
    params(("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, body = KeyRecord, description = "The key has no rotation policy (also when it had none): its record, `rotation` null. A refresh already running goes on to its end"),
        (status = 400, body = ErrorBody, description = "A malformed X-Request-Id"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
        (status = 404, body = ErrorBody, description = "No key of this id"),
        (status = 500, body = ErrorBody, description = "The metadata database failed, or the coordinator's loop stopped"),
    ))]
async fn clear_rotation(
    State(state): State<Arc<ApiState>>,
    Path(key_id): Path<String>,
) -> Result<Json<KeyRecord>, ApiError> {
    let meta = lookup(&state, &key_id)?;
    let key = meta.key_id;
    ask_engine(&state, |reply| Command::ClearRotation {
        key_id: key,
        reply,
    })
    .await?;
    let meta = lookup(&state, &key_id)?;
    Ok(Json(record(&state, &meta, None)))
}

#[utoipa::path(get, path = "/metrics", tag = "status", security(("bearer" = [])),
    summary = "Prometheus metrics",
    responses(
        (status = 200, body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", description = "OpenMetrics text format: every metric of this process, the same registry as `metrics_listen`"),
        (status = 400, body = ErrorBody, description = "A malformed X-Request-Id"),
        (status = 401, body = ErrorBody, description = "No bearer token, or a wrong one"),
    ))]
async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    permafrost_runtime::metrics::response(&state.registry)
}
