//! The NOC dashboard: pages served at `/` by `oqs-collector`.
//!
//! It reads only the collector's JSON query API (`/api/...`), from the browser, so it works the
//! same against any collector and never touches the store. Must never embed data that did not come
//! through that API, and never need a Node toolchain: the page and its script ship in this crate.
//!
//! This first page is the fleet list; the full overview and per-site drill-down grow here.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

const OVERVIEW: &str = include_str!("overview.html");

/// The dashboard's routes, to be merged into the collector's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(|| async { Html(OVERVIEW) }))
}
