//! The web app and SDK, embedded in the binary from `crates/http/web/` (debug builds read
//! the folder from disk, so edits show without a rebuild).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Web;

/// Cross-origin and sniffing protections for everything the app serves.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

fn file(path: &str) -> Response {
    let Some(f) = Web::get(path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    // mime_guess takes `.ts` for an MPEG transport stream.
    let mime = if path.ends_with(".d.ts") {
        "application/typescript; charset=utf-8".to_string()
    } else {
        f.metadata.mimetype().to_string()
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            // Invite links carry room names; do not leak them to other sites.
            (header::REFERRER_POLICY, "no-referrer".to_string()),
            (header::CONTENT_SECURITY_POLICY, CSP.to_string()),
        ],
        f.data.into_owned(),
    )
        .into_response()
}

/// `GET /` : the lobby.
pub async fn lobby() -> Response {
    file("index.html")
}

/// `GET /r/{room}`: the room page (the room comes from the URL in the page).
pub async fn room(Path(_room): Path<String>) -> Response {
    file("room.html")
}

/// `GET /network`: the network test (NAT mapping and filtering, candidates, verdict).
pub async fn network() -> Response {
    file("network.html")
}

/// `GET /app/{*path}`
pub async fn app(Path(path): Path<String>) -> Response {
    file(&format!("app/{path}"))
}

/// `GET /sdk/{*path}`
pub async fn sdk(Path(path): Path<String>) -> Response {
    file(&format!("sdk/{path}"))
}
