//! Who may read the dashboard, the JSON API and `/metrics`: bearer tokens (or the same token as a
//! basic-auth password, so a browser can log in), checked against SHA-256 hashes from the config,
//! plus the security headers every answer carries.
//!
//! Open when no token is configured (the default, on loopback). `/healthz` is always open.
//! `/metrics` takes its own tokens when `metrics_token_sha256` is set (Prometheus sends a bearer
//! token). A token listed in `reveal_token_sha256` also sees full customer IDs. Must never log a
//! token or keep one in memory longer than the request.

use crate::config::HttpAuth;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::sync::Arc;

/// What the viewer may see, attached to each authorised request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Viewer {
    /// Full customer IDs instead of masked ones.
    pub reveal: bool,
}

/// SHA-256 of a token, lowercase hex (what the config stores).
pub fn token_hash(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The token a request presents: `Authorization: Bearer T`, or `Basic` with T as the password.
fn presented(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(t) = v.strip_prefix("Bearer ") {
        return Some(t.trim().to_owned());
    }
    let b = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.split_once(':').map(|(_, pass)| pass.to_owned())
}

fn unauthorized(basic: bool) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({
            "error": "credentials required: Authorization: Bearer <token> (or basic auth with the token as password)"
        })),
    )
        .into_response();
    if basic {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"OQS Fleet Monitor\", charset=\"UTF-8\""),
        );
    }
    r
}

/// The middleware: authorises, counts failures, and adds the security headers.
pub async fn guard(State(auth): State<Arc<HttpAuth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_metrics = path == "/metrics";
    let open = path == "/healthz";
    if path.starts_with("/api/admin") {
        let ok = if !auth.admin_token_sha256.is_empty() {
            presented(req.headers())
                .is_some_and(|t| auth.admin_token_sha256.contains(&token_hash(&t)))
        } else {
            auth.token_sha256.is_empty() && auth.reveal_token_sha256.is_empty()
        };
        if !ok {
            tracing::info!(path = %req.uri().path(), "admin request refused");
            return with_security_headers(if auth.admin_token_sha256.is_empty() {
                (
                    StatusCode::FORBIDDEN,
                    axum::Json(serde_json::json!({
                        "error": "admin needs http_auth.admin_token_sha256 once the HTTP side has tokens"
                    })),
                )
                    .into_response()
            } else {
                unauthorized(false)
            });
        }
        req.extensions_mut().insert(Viewer::default());
        return with_security_headers(next.run(req).await);
    }
    let viewer = if open {
        Some(Viewer::default())
    } else {
        let hashes = if is_metrics && !auth.metrics_token_sha256.is_empty() {
            &auth.metrics_token_sha256
        } else {
            &auth.token_sha256
        };
        if hashes.is_empty() && auth.reveal_token_sha256.is_empty() {
            // Open (no tokens configured): readable, but nobody is authorised to see full IDs.
            Some(Viewer::default())
        } else if hashes.is_empty()
            && !presented(req.headers())
                .is_some_and(|t| auth.reveal_token_sha256.contains(&token_hash(&t)))
        {
            Some(Viewer::default())
        } else {
            presented(req.headers()).and_then(|t| {
                let h = token_hash(&t);
                let reveal = auth.reveal_token_sha256.contains(&h);
                (hashes.contains(&h) || reveal).then_some(Viewer { reveal })
            })
        }
    };
    let Some(viewer) = viewer else {
        tracing::info!(path = %req.uri().path(), "HTTP request refused: no valid credentials");
        // Pages get the browser's login prompt; API clients get a plain 401.
        return with_security_headers(unauthorized(!is_metrics && !path.starts_with("/api/")));
    };
    req.extensions_mut().insert(viewer);
    with_security_headers(next.run(req).await)
}

fn with_security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_bearer_and_basic_and_hashed_as_documented() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("s3cret"));
        // "noc:s3cret"
        h.insert(
            header::AUTHORIZATION,
            "Basic bm9jOnMzY3JldA==".parse().unwrap(),
        );
        assert_eq!(presented(&h).as_deref(), Some("s3cret"));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(presented(&h), None);
        // printf %s s3cret | sha256sum
        assert_eq!(
            token_hash("s3cret"),
            "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
        );
    }
}
