//! The dashboard: a small browser UI over the public API, served as a
//! router a host can merge or nest like the API.
//!
//! Its three files are compiled into the binary (`include_str!`): no build
//! step, nothing loaded from another host. The page signs in with an API key
//! kept in the tab's `sessionStorage` and sends it only as an
//! `Authorization` header; every action is a call to the public API. Every
//! answer carries a Content-Security-Policy that allows scripts and styles
//! from this origin only (no inline script), and organization data is only
//! ever inserted as text.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// What every dashboard answer carries: scripts, styles and API calls from
/// this origin only, no inline script, no framing, no referrer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Where the dashboard is mounted and where it finds the API.
#[derive(Debug, Clone, Default)]
pub struct DashboardConfig {
    /// The path the dashboard router is nested under (`""` at the root, else
    /// e.g. `"/ops"`): its page links its files below it.
    pub mount_path: String,
    /// The path the API router is nested under (`""` when it is at the root).
    pub api_base: String,
}

/// The dashboard: `GET /` (the page), `GET /dashboard/app.js` and
/// `GET /dashboard/app.css`. Merge it beside [`crate::router`]
/// (`router(..).merge(dashboard_router(DashboardConfig::default()))`) or nest it.
pub fn dashboard_router(config: DashboardConfig) -> Router {
    let mount = config.mount_path.trim_end_matches('/');
    let index = INDEX
        .replace("{{ASSETS}}", &format!("{}/dashboard", attr(mount)))
        .replace("{{API_BASE}}", &attr(config.api_base.trim_end_matches('/')));
    Router::new()
        .route(
            "/",
            get(move || {
                let index = index.clone();
                async move { page(index, "text/html; charset=utf-8") }
            }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { page(SCRIPT.to_owned(), "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { page(STYLE.to_owned(), "text/css; charset=utf-8") }),
        )
}

/// Escapes a configured path for an HTML attribute.
fn attr(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn page(body: String, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_small_and_script_free_html() {
        let total = INDEX.len() + SCRIPT.len() + STYLE.len();
        assert!(total <= 150 * 1024, "assets are {total} bytes");
        // The page loads its script from a file: no inline script, no handler attributes.
        let scripts: Vec<&str> = INDEX
            .match_indices("<script")
            .map(|(i, _)| &INDEX[i..])
            .collect();
        assert_eq!(scripts.len(), 1);
        assert!(scripts[0].starts_with("<script src="));
        assert!(!INDEX.contains(" onclick=") && !INDEX.contains(" onload="));
        // Data goes in as text only.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
        assert!(
            !SCRIPT.contains("http://") || SCRIPT.matches("http://").count() == 1,
            "only the SVG namespace"
        );
    }
}
