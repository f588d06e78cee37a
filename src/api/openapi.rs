//! The OpenAPI 3.1 document served at `GET /openapi.json` (no key). Every route is registered
//! through `utoipa_axum`'s `routes!`, which adds the handler to the router and its
//! `#[utoipa::path]` annotation to the document in the same call, so a route cannot be
//! served without being documented (`tests/openapi_contract.rs` also refuses a plain
//! `.route(` in `src/api`, and runs schemathesis against the live server).
//!
//! The annotations next to each handler give the route's own answers (its body, its 400s,
//! 403s, 404s, 409s); [`finish`] adds what every route shares, from the middleware and the
//! extractors: the auth schemes and their 401, the rate limits' 429, a body's 400 and 413,
//! a bad path's 400, and 500.

use std::borrow::Cow;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use bytes::Bytes;
use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Header, InfoBuilder, OpenApi, Ref, RefOr, SecurityRequirement, Tag,
};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::error::{ApiError, ErrorCode};
use super::AppState;

/// The router every API module builds: routes and their documentation together.
pub type ApiRouter = OpenApiRouter<AppState>;

/// The serialized document, handed to [`openapi_json`] as a request extension.
#[derive(Clone)]
pub struct OpenApiJson(pub Bytes);

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", body = FreeObject)),
)]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.0)
}

/// Any JSON object: a body whose fields are free (a gateway's own payload, echoed
/// Evolution fields, a sink's own settings).
pub struct FreeObject;

impl PartialSchema for FreeObject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A JSON object whose fields are free."))
            .into()
    }
}

impl ToSchema for FreeObject {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("FreeObject")
    }
}

/// The error envelope every route answers errors with.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"status": 404, "code": 2006, "message": "instance `x` not found"}, "success": false}))]
pub struct ErrorEnvelope {
    /// What went wrong.
    pub error: ErrorDetail,
    /// Always false.
    pub success: bool,
}

/// The error itself.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub status: u16,
    /// The stable code clients switch on.
    #[schema(schema_with = error_code_schema)]
    pub code: u16,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// Every error code, with the status it comes with, as the document lists them.
fn error_code_schema() -> Schema {
    let codes: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|code| {
            let status = ApiError::new(*code, "").status;
            format!("{} ({} {:?})", *code as u16, status.as_u16(), code)
        })
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| *c as u16)))
        .description(Some(format!("Stable error code: {}.", codes.join(", "))))
        .build()
        .into()
}

/// The description of each auth scheme, and what a key may reach.
const KEY_NOTE: &str = "The global key (`AUTHENTICATION_API_KEY`) reaches every route; an \
instance's token (`hash.apikey` from `POST /instance/create`) reaches only that instance's \
routes and subscriptions (403 elsewhere). Keys are compared in constant time.";

/// The ways a key is accepted, in the order the server looks for one.
fn security_schemes() -> Vec<(&'static str, SecurityScheme, &'static str)> {
    let header = |name: &str| SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(name)));
    let query = |name: &str| SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new(name)));
    vec![
        (
            "apikey",
            header("apikey"),
            "The `apikey` header (Evolution's).",
        ),
        ("x_api_key", header("X-API-KEY"), "The `X-API-KEY` header."),
        (
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            "`Authorization: Bearer KEY` (what Prometheus sends to `/metrics`).",
        ),
        ("query_apikey", query("apikey"), "`?apikey=KEY`."),
        ("query_api_key", query("api-key"), "`?api-key=KEY`."),
        (
            "query_token",
            query("token"),
            "`?token=KEY` (for gateways that can only be given a URL).",
        ),
    ]
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .into()
}

fn retry_after(response: RefOr<Response>) -> RefOr<Response> {
    match response {
        RefOr::T(mut r) => {
            let mut header = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
            header.description = Some("Seconds to wait before retrying".into());
            r.headers.insert("Retry-After".into(), RefOr::T(header));
            RefOr::T(r)
        }
        other => other,
    }
}

/// The operations of a path item, whichever methods it has.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Adds to `op` the answers every route of its kind shares, unless its annotation already
/// describes that status.
fn shared_answers(path: &str, op: &mut Operation) {
    let add = |op: &mut Operation, status: &str, response: RefOr<Response>| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert(response);
    };
    // `routes!` adds an annotation's tags once more.
    if let Some(tags) = &mut op.tags {
        tags.dedup();
    }
    // `security(())` in an annotation marks a route open (probes, this document, Meta's
    // signed webhook); every other route takes a key, in any of the accepted places.
    let open = op
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
    if open {
        op.security = Some(Vec::new());
    } else {
        op.security = Some(
            security_schemes()
                .into_iter()
                .map(|(name, _, _)| SecurityRequirement::new(name, Vec::<String>::new()))
                .collect(),
        );
        add(
            op,
            "401",
            error_response(
                "No key (2004), or one that matches neither the global key nor an instance token",
            ),
        );
    }
    let has_path_params = op.parameters.as_ref().is_some_and(|ps| {
        ps.iter().any(|p| match p {
            RefOr::T(p) => p.parameter_in == ParameterIn::Path,
            RefOr::Ref(_) => false,
        })
    });
    if has_path_params {
        add(
            op,
            "400",
            error_response("A path segment that is not valid UTF-8 once decoded (2001)"),
        );
    }
    if op.request_body.is_some() {
        add(
            op,
            "400",
            error_response("Not JSON (2002), or a field breaks a rule (2001)"),
        );
        add(
            op,
            "413",
            error_response("The body exceeds `ingest.max_body_bytes` (2008)"),
        );
    }
    if path != "/health" && path != "/ready" {
        add(
            op,
            "429",
            retry_after(error_response(
                "Over the key's per-minute limit, or too many wrong keys from this address (2009); see Retry-After",
            )),
        );
    }
    if path != "/health" {
        add(
            op,
            "500",
            error_response("A bug or a failed disk (2011); the server log has the details"),
        );
    }
}

/// Completes the document the routers collected: title, auth schemes, the error envelope,
/// and the answers routes share.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title("Switchyard")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Durable, ordered delivery of WhatsApp gateway events, Evolution-API compatible. \
             Every error is `{\"error\":{\"status\",\"code\",\"message\"},\"success\":false}` \
             (the Linq routes use Linq's own codes in the same shape).",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, mut scheme, note) in security_schemes() {
        let description = format!("{note} {KEY_NOTE}");
        match &mut scheme {
            SecurityScheme::ApiKey(ApiKey::Header(v) | ApiKey::Query(v)) => {
                v.description = Some(description)
            }
            SecurityScheme::Http(h) => h.description = Some(description),
            _ => {}
        }
        components
            .security_schemes
            .insert(name.to_string(), RefOr::T(scheme));
    }
    components
        .schemas
        .insert(ErrorEnvelope::name().into(), ErrorEnvelope::schema());
    components
        .schemas
        .insert(ErrorDetail::name().into(), ErrorDetail::schema());
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in operations(item) {
            shared_answers(path, op);
        }
    }
    let mut tags: Vec<String> = doc
        .paths
        .paths
        .values_mut()
        .flat_map(|item| {
            operations(item)
                .flat_map(|op| op.tags.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .collect();
    tags.sort();
    tags.dedup();
    doc.tags = Some(tags.into_iter().map(Tag::new).collect());
    doc
}
