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
use crate::failure_limit::FailureLimit;
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
fn host_allowed(auth: &HttpAuth, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true; // HTTP/1.0 or HTTP/2 without :authority: no name to check.
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
fn same_origin_or_no_browser(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
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
    let is_metrics = path == "/metrics";
    let open = path == "/healthz";
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if auth.token_sha256.is_empty() && !open && !host_allowed(auth, req.headers()) {
        tracing::info!(path, "HTTP request refused: foreign Host while open");
        return refuse(
            StatusCode::FORBIDDEN,
            "this collector answers its open HTTP side only by address or localhost: add the name to http_auth.allowed_hosts, or configure http_auth tokens",
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !same_origin_or_no_browser(req.headers())
    {
        tracing::info!(path, "HTTP request refused: a change from another site");
        return refuse(
            StatusCode::FORBIDDEN,
            "a change must come from this dashboard (Origin / Sec-Fetch-Site name another site)",
        );
    }
    let now = crate::clock::now_ms();
    let presents = presented(req.headers()).is_some();
    if presents && g.failures.is_limited(peer, now) {
        g.metrics.auth_failure(HTTP_RATE_LIMITED);
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed credentials from this address: wait a minute",
        );
    }
    let failed = |g: &Guard| {
        g.metrics.auth_failure(HTTP_CREDENTIALS);
        g.failures.record(peer, now);
    };
    if path.starts_with("/api/admin") {
        let ok = if !auth.admin_token_sha256.is_empty() {
            presented(req.headers())
                .is_some_and(|t| hash_listed(&auth.admin_token_sha256, &token_hash(&t)))
        } else {
            auth.token_sha256.is_empty() && auth.reveal_token_sha256.is_empty()
        };
        if !ok {
            tracing::info!(path, "admin request refused");
            if auth.admin_token_sha256.is_empty() {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "admin needs http_auth.admin_token_sha256 once the HTTP side has tokens",
                );
            }
            if presents {
                failed(&g);
            }
            return with_security_headers(unauthorized(false));
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
                .is_some_and(|t| hash_listed(&auth.reveal_token_sha256, &token_hash(&t)))
        {
            Some(Viewer::default())
        } else {
            presented(req.headers()).and_then(|t| {
                let h = token_hash(&t);
                let reveal = hash_listed(&auth.reveal_token_sha256, &h);
                (hash_listed(hashes, &h) || reveal).then_some(Viewer { reveal })
            })
        }
    };
    let Some(viewer) = viewer else {
        tracing::info!(path, "HTTP request refused: no valid credentials");
        // Only a presented, wrong credential counts (a browser's first request carries none).
        if presents {
            failed(&g);
        }
        // Pages get the browser's login prompt; API clients get a plain 401.
        return with_security_headers(unauthorized(!is_metrics && !path.starts_with("/api/")));
    };
    req.extensions_mut().insert(viewer);
    with_security_headers(next.run(req).await)
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
