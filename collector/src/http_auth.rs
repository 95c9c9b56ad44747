//! Who may read the dashboard, the JSON API and `/metrics`: bearer tokens (or the same token as a
//! basic-auth password, so a browser can log in), checked against SHA-256 hashes from the config,
//! plus the security headers every answer carries.
//!
//! Open when no token is configured (the default, on loopback). `/healthz` is always open.
//! `/metrics` takes its own tokens when `metrics_token_sha256` is set (Prometheus sends a bearer
//! token). A token listed in `reveal_token_sha256` also sees full customer IDs. While open, only
//! requests addressed by IP, `localhost` or `allowed_hosts` are answered (DNS rebinding); a change
//! (POST, DELETE) from another site's page is refused (cross-site requests). Failed credentials
//! are counted and limited per source. Must never log a token or keep one in memory longer than
//! the request.

use crate::config::HttpAuth;
use crate::failure_limit::{fingerprint, FailureLimit};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::net::SocketAddr;
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

/// Whether `hash` is one of `list`, comparing every entry in constant time.
pub fn hash_listed(list: &[String], hash: &str) -> bool {
    list.iter().fold(false, |found, h| {
        found
            | aws_lc_rs::constant_time::verify_slices_are_equal(h.as_bytes(), hash.as_bytes())
                .is_ok()
    })
}

/// What the guard needs: the tokens, where failures are counted, and the metrics they go to.
#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<HttpAuth>,
    pub failures: FailureLimit,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Guard {
    pub fn new(auth: HttpAuth, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            failures: FailureLimit::new(auth.max_failures_per_minute),
            auth: Arc::new(auth),
            metrics,
        }
    }
}

fn refuse(status: StatusCode, error: &str) -> Response {
    with_security_headers(
        (status, axum::Json(serde_json::json!({ "error": error }))).into_response(),
    )
}

/// The `Host` header's host, without the port.
fn host_of(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
}

/// While the HTTP side is open, only requests addressed to this machine by address (or
/// `localhost`, or a configured name) are answered: a page on another site that rebinds its own
/// name to the collector's address sends its own name as `Host`.
fn host_allowed(auth: &HttpAuth, headers: &HeaderMap, authority: Option<&str>) -> bool {
    // HTTP/1.1 sends Host; HTTP/2 sends :authority (the request URI's).
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority)
    else {
        return true; // HTTP/1.0 without Host: no name to check.
    };
    let host = host_of(host.trim());
    host.parse::<std::net::IpAddr>().is_ok()
        || host.eq_ignore_ascii_case("localhost")
        || auth
            .allowed_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host))
}

/// A request that changes something (POST, DELETE) must come from the dashboard itself or from a
/// client that is not a browser: a browser sends `Origin` (and `Sec-Fetch-Site`) with it, and a
/// form or script on another site would send its own.
///
/// `Sec-Fetch-Site` (every current browser sends it) decides alone when present: it is what the
/// browser itself saw, while `Host` may be rewritten by a reverse proxy in front of the collector.
/// Only without it is `Origin` compared with `Host` (older browsers).
fn same_origin_or_no_browser(headers: &HeaderMap, authority: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority);
    let origin_authority = origin
        .split_once("://")
        .map(|(_, a)| a.trim_end_matches('/'));
    matches!((origin_authority, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h.trim()))
}

/// The middleware: refuses foreign hosts and cross-site changes, authorises, counts and limits
/// failed credentials, and adds the security headers.
pub async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let auth = &g.auth;
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        // Always open: nothing to read there but "ok".
        req.extensions_mut().insert(Viewer::default());
        return with_security_headers(next.run(req).await);
    }
    let is_metrics = path == "/metrics";
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if auth.token_sha256.is_empty() && !host_allowed(auth, req.headers(), authority.as_deref()) {
        tracing::info!(path, "HTTP request refused: foreign Host while open");
        return refuse(
            StatusCode::FORBIDDEN,
            "this collector answers its open HTTP side only by address or localhost: add the name to http_auth.allowed_hosts, or configure http_auth tokens",
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !same_origin_or_no_browser(req.headers(), authority.as_deref())
    {
        tracing::info!(path, "HTTP request refused: a change from another site");
        return refuse(
            StatusCode::FORBIDDEN,
            "a change must come from this dashboard (Origin / Sec-Fetch-Site name another site)",
        );
    }
    let now = crate::clock::now_ms();
    // The presented credential, hashed once (never kept in clear).
    let hash = presented(req.headers()).map(|t| token_hash(&t));
    let fp = hash.as_deref().map(fingerprint).unwrap_or(0);
    if hash.is_some() && g.failures.is_limited(peer, fp, now) {
        g.metrics.auth_failure(HTTP_RATE_LIMITED);
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed credentials from this address: wait a minute",
        );
    }
    let listed = |list: &[String]| hash.as_deref().is_some_and(|h| hash_listed(list, h));
    let verdict: Result<Viewer, Response> = if path.starts_with("/api/admin") {
        if !auth.admin_token_sha256.is_empty() {
            listed(&auth.admin_token_sha256)
                .then(Viewer::default)
                .ok_or_else(|| unauthorized(false))
        } else if auth.token_sha256.is_empty() && auth.reveal_token_sha256.is_empty() {
            Ok(Viewer::default())
        } else {
            Err(refuse(
                StatusCode::FORBIDDEN,
                "admin needs http_auth.admin_token_sha256 once the HTTP side has tokens",
            ))
        }
    } else {
        let hashes = if is_metrics && !auth.metrics_token_sha256.is_empty() {
            &auth.metrics_token_sha256
        } else {
            &auth.token_sha256
        };
        let reveal = listed(&auth.reveal_token_sha256);
        if reveal || listed(hashes) {
            Ok(Viewer { reveal })
        } else if hashes.is_empty() {
            // Open for reading (no tokens for this path); only a reveal token sees full IDs. A
            // wrong one still counts: the masked answer would otherwise be a free oracle.
            if hash.is_some() && !auth.reveal_token_sha256.is_empty() {
                g.metrics.auth_failure(HTTP_CREDENTIALS);
                g.failures.record(peer, fp, now);
            }
            Ok(Viewer::default())
        } else {
            // Pages get the browser's login prompt; API clients get a plain 401.
            Err(unauthorized(!is_metrics && !path.starts_with("/api/")))
        }
    };
    match verdict {
        Ok(viewer) => {
            if hash.is_some() && (viewer.reveal || !auth.token_sha256.is_empty()) {
                g.failures.succeeded(peer, fp, now);
            }
            req.extensions_mut().insert(viewer);
            with_security_headers(next.run(req).await)
        }
        Err(refusal) => {
            tracing::info!(path, "HTTP request refused: no valid credentials");
            // Only a presented, wrong credential counts (a browser's first request carries none).
            if hash.is_some() && refusal.status() == StatusCode::UNAUTHORIZED {
                g.metrics.auth_failure(HTTP_CREDENTIALS);
                g.failures.record(peer, fp, now);
            }
            with_security_headers(refusal)
        }
    }
}

/// `oqs_auth_failures_total` reasons of the HTTP side.
pub const HTTP_CREDENTIALS: &str = "http_credentials";
pub const HTTP_RATE_LIMITED: &str = "http_rate_limited";

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
