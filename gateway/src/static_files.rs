//! The built web app, served from the gateway's own origin: files as they
//! are, any other path answered with `index.html` (the app routes in the
//! browser), compressed, with cache headers that let fingerprinted assets be
//! kept for a year and make the page itself be revalidated, and security
//! headers on every response: a Content-Security-Policy that lets the page load
//! only its own scripts, styles and calls (the built app has no inline script
//! or style), never be framed, and never run plugins or change its base URL;
//! no MIME sniffing; no referrer sent to other sites.

use std::convert::Infallible;
use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, header};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};

pub type WebService = BoxCloneSyncService<Request, Response, Infallible>;

/// The page's Content-Security-Policy. `img-src` takes `data:` for the small
/// images the build inlines.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The security headers of every web response.
fn secure(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
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
}

pub fn service(web_dir: &Path) -> WebService {
    let files = ServeDir::new(web_dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(web_dir.join("index.html")));
    let files = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(files);
    BoxCloneSyncService::new(tower::service_fn(move |request: Request| {
        let immutable = request.uri().path().starts_with("/assets/");
        let files = files.clone();
        async move {
            let response = files
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            let mut response = response.map(Body::new);
            let cache = if immutable {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            secure(response.headers_mut());
            Ok::<_, Infallible>(response)
        }
    }))
}
