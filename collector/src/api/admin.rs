//! `/api/admin/enrollments`: enrollment tokens per site, and revocation of a site's terminals.
//!
//! Must never show a token again after the answer that created it, nor any terminal secret.

use super::error::{ApiError, SitePath};
use super::ApiState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub struct Enrollments {
    /// Whether agents must enroll (`enrollment.required`).
    required: bool,
    sites: Vec<SiteEnrollment>,
}

#[derive(Serialize)]
struct SiteEnrollment {
    site_id: String,
    token_active: bool,
    terminals_enrolled: usize,
}

#[derive(Serialize)]
pub struct Token {
    site_id: String,
    /// The only time the token is shown in clear.
    token: String,
}

#[derive(Serialize)]
pub struct Revoked {
    site_id: String,
    revoked_terminals: usize,
    closed_streams: usize,
}

/// `GET /api/admin/enrollments`: sites with an enrollment token or enrolled terminals.
pub(super) async fn enrollments(State(s): State<ApiState>) -> Json<Enrollments> {
    Json(Enrollments {
        required: s.enrollment.required(),
        sites: s
            .enrollment
            .list()
            .into_iter()
            .map(
                |(site_id, token_active, terminals_enrolled)| SiteEnrollment {
                    site_id,
                    token_active,
                    terminals_enrolled,
                },
            )
            .collect(),
    })
}

/// `POST /api/admin/enrollments/{site}`: a new enrollment token for the site (replacing any
/// earlier one). The answer is the only place the token ever appears in clear.
pub(super) async fn enroll(
    State(s): State<ApiState>,
    SitePath(site_id): SitePath,
) -> Result<Json<Token>, ApiError> {
    let token = s
        .enrollment
        .create_token(site_id.as_str())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(Token {
        site_id: site_id.to_string(),
        token,
    }))
}

/// `DELETE /api/admin/enrollments/{site}`: revokes the site's token and every terminal secret;
/// the site's open streams are ended at once (UNAUTHENTICATED), and any later message refused.
pub(super) async fn revoke(
    State(s): State<ApiState>,
    SitePath(site_id): SitePath,
) -> Result<Json<Revoked>, ApiError> {
    let n = s
        .enrollment
        .revoke(site_id.as_str())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let revoked = crate::enrollment::AuthFailure::Revoked;
    let closed = s.presence.close_site(
        site_id.as_str(),
        &tonic::Status::unauthenticated(revoked.message()),
    );
    for _ in 0..closed {
        s.metrics.auth_failure(revoked.label());
    }
    Ok(Json(Revoked {
        site_id: site_id.to_string(),
        revoked_terminals: n,
        closed_streams: closed,
    }))
}
