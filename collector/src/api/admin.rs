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
    /// The site has a token that can still enroll a terminal (not expired, uses left).
    token_active: bool,
    /// When the token stops working (null: never, or no token).
    token_expires_at: Option<String>,
    /// Terminals the token may still enroll (null: any number, or no token).
    token_uses_left: Option<u32>,
    terminals_enrolled: usize,
}

#[derive(Serialize)]
pub struct Token {
    site_id: String,
    /// The only time the token is shown in clear.
    token: String,
    /// When it stops working (null: never).
    expires_at: Option<String>,
    /// Terminals it may enroll (null: any number).
    max_uses: Option<u32>,
    /// The terminal whose secret was removed so that this token re-enrolls it.
    replaced_terminal: Option<String>,
}

/// `POST /api/admin/enrollments/{site}` parameters.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnrollQuery {
    /// Hours the token works (0: until revoked); default `enrollment.token_ttl_hours`.
    expires_in_hours: Option<u64>,
    /// Terminals it may enroll (0: any number); default `enrollment.token_max_uses`.
    max_uses: Option<u32>,
    /// A terminal to re-enroll (a replaced PC): its secret is removed and its stream closed.
    replace: Option<String>,
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
            .map(|(site_id, token, terminals_enrolled)| {
                let now = crate::clock::now_ms();
                SiteEnrollment {
                    site_id,
                    token_active: token.as_ref().is_some_and(|t| {
                        (t.expires_ms == 0 || now < t.expires_ms) && t.uses_left != Some(0)
                    }),
                    token_expires_at: token.as_ref().and_then(|t| super::when(t.expires_ms)),
                    token_uses_left: token.and_then(|t| t.uses_left),
                    terminals_enrolled,
                }
            })
            .collect(),
    })
}

/// `POST /api/admin/enrollments/{site}`: a new enrollment token for the site (replacing any
/// earlier one). The answer is the only place the token ever appears in clear.
pub(super) async fn enroll(
    State(s): State<ApiState>,
    SitePath(site_id): SitePath,
    super::error::Query(q): super::error::Query<EnrollQuery>,
) -> Result<Json<Token>, ApiError> {
    let replace = q
        .replace
        .as_deref()
        .map(|t| {
            oqs_proto::ident::TerminalId::parse(t)
                .map_err(|e| ApiError::bad_request(format!("replace: {e}")))
        })
        .transpose()?;
    let options = crate::enrollment::TokenOptions {
        expires_in_hours: q.expires_in_hours,
        max_uses: q.max_uses,
        replace: replace.as_ref().map(|t| t.to_string()),
    };
    let (token, rec) = s
        .enrollment
        .create_token(site_id.as_str(), &options)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(t) = &replace {
        // The old machine's stream ends now; its secret no longer works.
        let revoked = crate::enrollment::AuthFailure::Revoked;
        s.presence.close_terminal(
            &crate::store::TerminalKey::new(site_id.as_str(), t.as_str()),
            &tonic::Status::unauthenticated(revoked.message()),
        );
    }
    Ok(Json(Token {
        site_id: site_id.to_string(),
        token,
        expires_at: super::when(rec.expires_ms),
        max_uses: rec.uses_left,
        replaced_terminal: replace.map(|t| t.to_string()),
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
