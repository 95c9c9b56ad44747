//! The NOC dashboard: the fleet overview at `/`, a page per site at `/sites/{site_id}`, its
//! printable monthly availability report at `/sites/{site_id}/availability?month=YYYY-MM` and the
//! fleet inventory (agent versions, machines) at `/fleet`, served by `oqs-collector`.
//!
//! The pages are a shell plus one script and one stylesheet shipped in this crate (no Node
//! toolchain, no CDN); the script reads only the collector's JSON API (`/api/...`) and draws the
//! charts as SVG. Must never embed data that did not come through that API, and never touch the
//! store.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

const PAGE: &str = include_str!("page.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

fn page(which: &str) -> Html<String> {
    Html(PAGE.replace("{{PAGE}}", which))
}

/// The dashboard's routes, to be merged into the collector's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { page("overview") }))
        .route("/sites/{site_id}", get(|| async { page("site") }))
        .route("/fleet", get(|| async { page("fleet") }))
        .route(
            "/sites/{site_id}/availability",
            get(|| async { page("availability") }),
        )
        .route(
            "/assets/app.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    APP_JS,
                )
                    .into_response()
            }),
        )
        .route(
            "/assets/app.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    APP_CSS,
                )
                    .into_response()
            }),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_name_their_role_and_load_the_shipped_assets() {
        let overview = super::page("overview").0;
        assert!(overview.contains("data-page=\"overview\""));
        assert!(overview.contains("/assets/app.js") && overview.contains("/assets/app.css"));
        assert!(super::page("site").0.contains("data-page=\"site\""));
        assert!(super::page("fleet").0.contains("data-page=\"fleet\""));
        assert!(super::page("availability")
            .0
            .contains("data-page=\"availability\""));
        // The script inserts API text as text: no innerHTML anywhere.
        assert!(!super::APP_JS.contains("innerHTML"));
        // The desks to call come from the API (contact.desks), with whether each is open now.
        assert!(super::APP_JS.contains("c.desks") && super::APP_JS.contains("open_now"));
    }
}
