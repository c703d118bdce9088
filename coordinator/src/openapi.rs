//! The OpenAPI 3.1 document of the HTTP API, derived from the handlers' annotations in
//! [`crate::http`] and the types of `permafrost_api`. It is served, without a token, at
//! `GET /v1/openapi.json`, and kept in `docs/openapi.json` (the test below fails when the two
//! differ; `PERMAFROST_UPDATE_OPENAPI=1` rewrites the file).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use permafrost_api::{codes, ErrorBody};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::http;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Permafrost coordinator API",
        description = "Threshold signatures (FROST) from a network of signer nodes: create keys \
            (DKG), sign, reshare, refresh on a schedule. JSON over HTTP; binary values are hex. \
            Every route but `/v1/ready` and `/v1/openapi.json` needs `Authorization: Bearer <token>`. \
            Every error has the body `ErrorBody`; each error status lists the codes it carries. \
            The prose contract is docs/API.md.",
    ),
    paths(
        http::health,
        http::ready,
        http::create_key,
        http::list_keys,
        http::get_key,
        http::sign,
        http::derive,
        http::reshare,
        http::set_rotation,
        http::clear_rotation,
        http::metrics,
        serve,
    ),
    modifiers(&BearerToken, &ErrorCodesByStatus),
    tags(
        (name = "keys", description = "Keys: create (DKG), read, sign, reshare, scheduled rotation"),
        (name = "status", description = "Health, readiness, metrics and this document"),
    ),
)]
struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served and as kept in `docs/openapi.json`: pretty-printed, one newline at
/// the end.
pub fn json() -> Result<String, serde_json::Error> {
    document().to_pretty_json().map(|text| text + "\n")
}

/// The name of the bearer token's security scheme, as the handlers' `security(...)` name it.
const BEARER: &str = "bearer";

/// Adds the bearer token scheme the handlers' `security(("bearer" = []))` refer to.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Components::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "One of the coordinator's `tokens` (coordinator.toml); a missing or \
                             wrong token is 401 before anything else is looked at.",
                        ))
                        .build(),
                ),
            );
    }
}

/// Narrows every error answer to the codes of its status: an answer with status S whose body
/// is an `ErrorBody` refers to the schema `ErrorS` instead, an `ErrorBody` whose `error.code`
/// is one of the codes [`codes::STATUSES`] gives S.
struct ErrorCodesByStatus;

impl Modify for ErrorCodesByStatus {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for (code, status) in codes::STATUSES {
            by_status.entry(status).or_default().push(code);
        }
        let error_body = Ref::from_schema_name(<ErrorBody as utoipa::ToSchema>::name());
        let mut used = BTreeMap::new();
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let (Ok(status), RefOr::T(response)) = (status.parse::<u16>(), response) else {
                        continue;
                    };
                    let Some(codes) = by_status.get(&status) else {
                        continue;
                    };
                    for content in response.content.values_mut() {
                        if content.schema == Some(RefOr::Ref(error_body.clone())) {
                            let name = format!("Error{status}");
                            content.schema = Some(RefOr::Ref(Ref::from_schema_name(&name)));
                            used.insert(name, (status, codes));
                        }
                    }
                }
            }
        }
        let components = doc.components.get_or_insert_with(Components::default);
        for (name, (status, codes)) in used {
            let code = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().copied()));
            let narrowed = AllOfBuilder::new()
                .item(error_body.clone())
                .item(
                    ObjectBuilder::new()
                        .property("error", ObjectBuilder::new().property("code", code)),
                )
                .description(Some(format!(
                    "An `ErrorBody` whose code is one of status {status}'s: {}.",
                    codes.join(", ")
                )));
            components
                .schemas
                .insert(name, RefOr::T(Schema::AllOf(narrowed.build())));
        }
    }
}

/// `GET /v1/openapi.json`: this document. No token: it describes the API and holds no secret.
/// Built once, then served from memory.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "status",
    summary = "This OpenAPI document (no token)",
    responses(
        (status = 200, body = Object, description = "The OpenAPI 3.1 document of this API"),
        (status = 400, body = ErrorBody, description = "A malformed X-Request-Id"),
        (status = 500, body = ErrorBody, description = "The document could not be serialized"),
    ))]
pub(crate) async fn serve() -> Response {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    match JSON.get_or_init(|| json().map_err(|e| e.to_string())) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody::new(
                codes::INTERNAL,
                format!("cannot serialize the document: {e}"),
            )),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const UPDATE: &str = "PERMAFROST_UPDATE_OPENAPI";

    fn committed_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
    }

    /// `docs/openapi.json` is the document the coordinator serves; with
    /// `PERMAFROST_UPDATE_OPENAPI=1` this test writes it instead.
    #[test]
    fn docs_openapi_json_is_the_generated_document() {
        let generated = json().unwrap();
        let path = committed_path();
        if std::env::var(UPDATE).is_ok_and(|v| v == "1") {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
            panic!(
                "{} is not the document the coordinator serves (first difference at line {}). \
                 If the API changed on purpose, regenerate it:\n  \
                 {UPDATE}=1 cargo test -p permafrost-coordinator --lib openapi\n\
                 and commit the file.",
                path.display(),
                line + 1
            );
        }
    }

    /// Every route is there, with the methods the router serves; the token is asked for on
    /// every operation but the two public ones.
    #[test]
    fn every_route_is_documented_with_its_security() {
        let doc: serde_json::Value = serde_json::from_str(&json().unwrap()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut operations: Vec<(String, String, bool)> = Vec::new();
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                let secured = operation["security"] == serde_json::json!([{ BEARER: [] }]);
                operations.push((method.clone(), path.clone(), secured));
            }
        }
        operations.sort();
        let expected = [
            ("delete", "/v1/keys/{key_id}/rotation", true),
            ("get", "/metrics", true),
            ("get", "/v1/health", true),
            ("get", "/v1/keys", true),
            ("get", "/v1/keys/{key_id}", true),
            ("get", "/v1/keys/{key_id}/derive", true),
            ("get", "/v1/openapi.json", false),
            ("get", "/v1/ready", false),
            ("post", "/v1/keys", true),
            ("post", "/v1/keys/{key_id}/reshare", true),
            ("post", "/v1/keys/{key_id}/sign", true),
            ("put", "/v1/keys/{key_id}/rotation", true),
        ]
        .map(|(m, p, s)| (m.to_owned(), p.to_owned(), s));
        assert_eq!(operations, expected);
        for (method, path, secured) in &operations {
            let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
            assert_eq!(
                responses.contains_key("401"),
                *secured,
                "{method} {path}: 401 if and only if a token is asked for"
            );
        }
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER],
            serde_json::json!({
                "type": "http",
                "scheme": "bearer",
                "description": doc["components"]["securitySchemes"][BEARER]["description"],
            })
        );
    }

    /// Every error answer refers to the schema of its status, whose codes are those
    /// `permafrost_api::codes` answers with that status.
    #[test]
    fn error_answers_carry_the_codes_of_their_status() {
        let doc: serde_json::Value = serde_json::from_str(&json().unwrap()).unwrap();
        let mut seen = 0;
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let status: u16 = status.parse().unwrap();
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    if status < 400 || *schema == "#/components/schemas/Ready" {
                        continue;
                    }
                    assert_eq!(*schema, format!("#/components/schemas/Error{status}"));
                    let listed = &doc["components"]["schemas"][format!("Error{status}")]["allOf"]
                        [1]["properties"]["error"]["properties"]["code"]["enum"];
                    let expected: Vec<&str> = codes::STATUSES
                        .iter()
                        .filter(|(_, s)| *s == status)
                        .map(|(c, _)| *c)
                        .collect();
                    assert_eq!(*listed, serde_json::json!(expected), "status {status}");
                    seen += 1;
                }
            }
        }
        assert!(seen > 30, "only {seen} error answers");
    }
}
