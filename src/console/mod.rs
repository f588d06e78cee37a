//! The operator's console at `/ui`: static HTML, ES modules and CSS compiled into the binary
//! (no build step, nothing fetched from elsewhere), served without a key. Every data call the
//! pages make goes to the JSON API with the key the operator signed in with, so the console
//! can do exactly what that key can, no more.
//!
//! The assets are sent with a strict Content-Security-Policy (scripts and styles only from
//! this origin, no inline script, no framing), so a value the API returns that the page
//! mistakenly rendered as markup still could not run.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// One compiled-in file: its name under `/ui/`, content type, bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($(($name:literal, $type:expr)),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console. A new page is a new module here and in `app.js`.
const ASSETS: &[Asset] = assets![
    ("index.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", JS),
    ("api.js", JS),
    ("dom.js", JS),
    ("instances.js", JS),
    ("subscriptions.js", JS),
    ("editor.js", JS),
    ("dead-letters.js", JS),
    ("deliveries.js", JS),
    ("tail.js", JS),
    ("openapi.js", JS),
];

/// The policy every console response carries: only this origin's scripts, styles, images
/// and connections (`fetch`, and `/ws`, which `'self'` covers in CSP 3); no inline script,
/// no plugins, no framing, no form posts elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The total size of the compiled-in assets, in bytes (what the console adds to the binary,
/// besides its few routes).
pub fn assets_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such console file",
        )
            .into_response();
    };
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change with the binary: revalidate rather than run an old page against a
    // new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The console's routes: `/ui` (redirects to `/ui/`), `/ui/` (the page) and `/ui/{file}`.
/// Generic over the state so the console depends on nothing of the API's.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { serve("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_small_and_the_page_has_no_inline_script() {
        // The budget: the console adds under 2 MiB to the binary.
        assert!(assets_bytes() < 2 * 1024 * 1024, "{} bytes", assets_bytes());
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert_eq!(ASSETS[0].name, "index.html");
        // The CSP forbids inline script: the page must load all of its code from files.
        for (i, _) in index.match_indices("<script") {
            let tag = &index[i..i + index[i..].find('>').unwrap()];
            assert!(tag.contains("src="), "inline script in index.html: {tag}");
        }
        // Nor inline handlers (` onclick=`...).
        for (i, _) in index.match_indices(" on") {
            let name: String = index[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let after = &index[i + 1 + name.len()..];
            assert!(
                !after.starts_with('='),
                "inline handler `{name}` in index.html"
            );
        }
    }
}
