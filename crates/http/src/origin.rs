//! The Origin check for signaling: browsers say which page opened a WebSocket or sent a
//! request; by default only pages served by this host may use its signaling.

use axum::extract::{Request, State};
use axum::http::header::{self, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Which `Origin`s may use signaling.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// Extra allowed origins (`scheme://host[:port]`, lower case, no trailing slash).
    pub allowed: Vec<String>,
    /// `*`: any origin.
    pub any: bool,
}

impl OriginPolicy {
    /// From `--allowed-origin` values; `*` allows any.
    pub fn new(values: &[String]) -> OriginPolicy {
        let any = values.iter().any(|v| v == "*");
        let allowed = values
            .iter()
            .filter(|v| *v != "*")
            .map(|v| v.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        OriginPolicy { allowed, any }
    }

    /// Requests without `Origin` (non-browser clients) pass; a browser's must name this
    /// host (the `Host` header) or an allowed origin.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
            return headers.get(ORIGIN).is_none();
        };
        if self.any {
            return true;
        }
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            return true;
        }
        let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let (scheme, authority) = match origin.split_once("://") {
            Some(x) => x,
            None => return false,
        };
        let default_port = match scheme {
            "http" => ":80",
            "https" => ":443",
            _ => return false,
        };
        authority == host
            || authority == host.trim_end_matches(default_port)
            || format!("{authority}{default_port}") == host
    }
}

/// CORS for pages on other allowed origins (`--allowed-origin`): they may fetch the ICE
/// configuration and use the EventSource fallback, whose POSTs need a preflight. Requests
/// from origins that are not allowed get no CORS headers, so browsers keep their answers
/// from the page.
pub async fn cors(State(policy): State<Arc<OriginPolicy>>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(ORIGIN).cloned();
    let allowed = origin.is_some() && policy.allows(req.headers());
    if req.method() == Method::OPTIONS {
        if !allowed {
            return StatusCode::FORBIDDEN.into_response();
        }
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        allow(h, origin);
        return resp;
    }
    let mut resp = next.run(req).await;
    if allowed {
        allow(resp.headers_mut(), origin);
    }
    resp
}

fn allow(h: &mut HeaderMap, origin: Option<HeaderValue>) {
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_host_passes_other_hosts_do_not() {
        let p = OriginPolicy::new(&[]);
        assert!(p.allows(&headers(None, "127.0.0.1:8080")));
        assert!(p.allows(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")));
        assert!(p.allows(&headers(Some("https://Example.org"), "example.org")));
        assert!(p.allows(&headers(Some("https://example.org"), "example.org:443")));
        assert!(!p.allows(&headers(Some("http://evil.test"), "127.0.0.1:8080")));
        assert!(!p.allows(&headers(Some("http://127.0.0.1:8081"), "127.0.0.1:8080")));
        assert!(!p.allows(&headers(Some("null"), "127.0.0.1:8080")));
    }

    #[test]
    fn listed_and_wildcard_origins_pass() {
        let p = OriginPolicy::new(&["https://app.example.org/".into()]);
        assert!(p.allows(&headers(Some("https://app.example.org"), "sig.example.org")));
        assert!(!p.allows(&headers(
            Some("https://other.example.org"),
            "sig.example.org"
        )));
        let any = OriginPolicy::new(&["*".into()]);
        assert!(any.allows(&headers(Some("http://evil.test"), "127.0.0.1:8080")));
    }
}
