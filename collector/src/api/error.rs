//! The API's one error type and the extractors that produce it: every refusal is a JSON body
//! `{"error": "..."}` with a status, whether a handler refused or an extractor did (a bad query
//! string, a bad JSON body, a site id that is not one).
//!
//! Must never put a secret or a full customer ID in a message: messages go to the caller as is.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oqs_proto::ident::SiteId;
use serde::de::DeserializeOwned;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong (a parameter, the body): the message names what.
    #[error("{0}")]
    BadRequest(String),
    /// No terminal of the site ever stored a report: the one answer for a site the collector
    /// does not know, whatever the endpoint.
    #[error("site {0} has never reported")]
    UnknownSite(SiteId),
    /// What the request names does not exist (a history point, a window).
    #[error("{0}")]
    NotFound(String),
    /// A command for a site none of whose agents is connected.
    #[error("no agent of site {0} is connected now; it gets nothing until it reconnects")]
    NotConnected(SiteId),
    /// The collector failed (the store, a task): not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownSite(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotConnected(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %e, "API request failed");
        }
        (
            self.status(),
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// A query string, refused as [`ApiError::BadRequest`].
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(q) =
            axum::extract::Query::from_request_parts(parts, state).await?;
        Ok(Query(q))
    }
}

/// A JSON body, refused as [`ApiError::BadRequest`].
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(b) = Json::from_request(req, state).await?;
        Ok(JsonBody(b))
    }
}

/// The `{site_id}` of a path, parsed: a malformed id is refused before any handler runs.
pub struct SitePath(pub SiteId);

impl<S: Send + Sync> FromRequestParts<S> for SitePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        site_id(&raw).map(SitePath)
    }
}

/// A `limit` parameter: `default` when absent, refused unless 1..=`max`.
pub fn page_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(format!("limit must be 1..={max}")));
    }
    Ok(limit)
}

/// A site id from a request, refused as [`ApiError::BadRequest`].
pub fn site_id(raw: &str) -> Result<SiteId, ApiError> {
    SiteId::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}
