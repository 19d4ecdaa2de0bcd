//! The network test behind the app's `/network` page.
//!
//! A browser can see its NAT's *mapping* on its own: one RTCPeerConnection with several
//! STUN servers (this server's RFC 5780 addresses) gathers one server-reflexive address
//! per distinct mapping. It cannot test *filtering*, which needs packets arriving from an
//! address it never sent to (RFC 5780 section 4.4). So the page posts its public address
//! and its own ICE credentials, and the server sends ICE connectivity checks (STUN Binding
//! requests authenticated with those credentials, RFC 8445 section 7.2) there from
//! another port and from another address; the browser's ICE agent answers the ones its NAT
//! lets in. Only addresses on the requester's own IP are probed, and a handful of small
//! packets per request, so this cannot be aimed at anyone else.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method, TransactionId};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

/// What the network test uses; built from the STUN/TURN listeners.
#[derive(Clone, Debug, Default)]
pub struct NetTestConfig {
    /// STUN URIs for the mapping test: the primary address first, then the same IP on
    /// the other port, then the other IP (RFC 5780). One entry when the server has one
    /// address (then only "behind a NAT or not" can be told).
    pub stun_urls: Vec<String>,
    /// Where the "other port" checks come from: the primary STUN IP (any free port).
    pub same_ip: Option<IpAddr>,
    /// Where the "other address" checks come from: the second listening IP.
    pub other_ip: Option<IpAddr>,
}

/// State of the network-test routes.
pub struct NetTest {
    cfg: NetTestConfig,
    /// Probes under way at once, server-wide.
    running: Semaphore,
}

impl NetTest {
    pub fn new(cfg: NetTestConfig) -> Arc<Self> {
        Arc::new(NetTest {
            cfg,
            running: Semaphore::new(MAX_CONCURRENT),
        })
    }
}

const MAX_CONCURRENT: usize = 16;
/// Sends of each check (RFC 5389 style retransmission, shortened: the browser is awake).
const SENDS_MS: [u64; 5] = [0, 100, 300, 700, 1200];
/// How long after the first send an answer still counts.
const WAIT: Duration = Duration::from_millis(2000);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetTestInfo {
    stun_urls: Vec<String>,
    filtering_test: bool,
}

/// `GET /api/network-test`: the STUN servers for the mapping test.
pub async fn info(State(t): State<Arc<NetTest>>) -> Json<NetTestInfo> {
    Json(NetTestInfo {
        stun_urls: t.cfg.stun_urls.clone(),
        filtering_test: t.cfg.same_ip.is_some(),
    })
}

#[derive(Deserialize)]
pub struct FilteringRequest {
    /// The page's local ICE username fragment and password (from its offer's SDP).
    ufrag: String,
    pwd: String,
    /// Its candidate addresses (`ip:port`), server-reflexive first.
    candidates: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FilteringResult {
    /// The requester's IP as this server sees it.
    client_ip: Option<IpAddr>,
    /// The candidate probed (the first on the requester's IP), or None.
    target: Option<SocketAddr>,
    /// Answered the check from the primary IP, another port; None: not tried.
    from_other_port: Option<bool>,
    /// Answered the check from the other IP; None: not tried (one-address server).
    from_other_address: Option<bool>,
}

/// `POST /api/network-test/filtering`.
pub async fn filtering(
    State(t): State<Arc<NetTest>>,
    req: Request,
) -> Result<Json<FilteringResult>, (StatusCode, String)> {
    let client_ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| canonical(c.0.ip()));
    let body = axum::body::to_bytes(req.into_body(), 8192)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "body over 8 KiB".to_string()))?;
    let body: FilteringRequest = serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad request body: {e}")))?;
    if !valid_ice_chars(&body.ufrag, 4, 256) || !valid_ice_chars(&body.pwd, 22, 256) {
        return Err((
            StatusCode::BAD_REQUEST,
            "ufrag and pwd must be ICE characters (RFC 8839)".into(),
        ));
    }
    let target = client_ip.and_then(|ip| {
        body.candidates
            .iter()
            .filter_map(|c| c.parse::<SocketAddr>().ok())
            .find(|a| canonical(a.ip()) == ip && a.port() != 0)
    });
    let mut result = FilteringResult {
        client_ip,
        target,
        from_other_port: None,
        from_other_address: None,
    };
    let Some(target) = target else {
        return Ok(Json(result));
    };
    let Ok(_permit) = t.running.try_acquire() else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "too many network tests at once; try again".into(),
        ));
    };
    let check = |ip: Option<IpAddr>| {
        let (ufrag, pwd) = (body.ufrag.clone(), body.pwd.clone());
        async move {
            match ip {
                Some(ip) => Some(answered(ip, target, &ufrag, &pwd).await),
                None => None,
            }
        }
    };
    let (port, address) = tokio::join!(check(t.cfg.same_ip), check(t.cfg.other_ip));
    result.from_other_port = port;
    result.from_other_address = address;
    Ok(Json(result))
}

/// IPv4-mapped IPv6 as IPv4, so a dual-stack listener compares like a v4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// RFC 8839 ice-char: ALPHA / DIGIT / "+" / "/".
fn valid_ice_chars(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Did the browser at `target` answer a check sent from a fresh socket on `from`?
/// False on any local error too (the test then says "not answered", the safe verdict).
async fn answered(from: IpAddr, target: SocketAddr, ufrag: &str, pwd: &str) -> bool {
    let Ok(sock) = UdpSocket::bind(SocketAddr::new(from, 0)).await else {
        tracing::warn!(%from, "network test: cannot bind a probe socket");
        return false;
    };
    let tid = TransactionId(rand::random());
    let mut req = [0u8; 256];
    let Ok(n) = ice_check(&mut req, tid, ufrag, pwd) else {
        return false;
    };
    let start = tokio::time::Instant::now();
    let mut buf = [0u8; 1500];
    let mut sends = SENDS_MS.iter().peekable();
    loop {
        let next_send = sends
            .peek()
            .map(|ms| start + Duration::from_millis(**ms))
            .unwrap_or(start + WAIT);
        tokio::select! {
            _ = tokio::time::sleep_until(next_send) => {
                if sends.next().is_none() {
                    return false;
                }
                let _ = sock.send_to(&req[..n], target).await;
            }
            got = sock.recv_from(&mut buf) => {
                if let Ok((len, src)) = got {
                    if src == target && is_answer(&buf[..len], &tid, pwd) {
                        return true;
                    }
                }
            }
        }
    }
}

/// An ICE connectivity check to a peer whose credentials are `ufrag`/`pwd`: USERNAME
/// `ufrag:probe`, PRIORITY, ICE-CONTROLLED (the browser offered, so it controls; no role
/// conflict), MESSAGE-INTEGRITY with its password, FINGERPRINT.
pub fn ice_check(
    out: &mut [u8],
    tid: TransactionId,
    ufrag: &str,
    pwd: &str,
) -> Result<usize, switchboard_stun::WriteError> {
    let mut w = MessageWriter::new(out, Method::BINDING, Class::Request, tid)?;
    w.attr(attr_type::USERNAME, format!("{ufrag}:sbnettest").as_bytes())?;
    // Peer-reflexive type preference (110), as RFC 8445 5.1.2 asks of checks.
    w.u32(attr_type::PRIORITY, (110 << 24) | (65535 << 8) | 255)?;
    w.attr(attr_type::ICE_CONTROLLED, &rand::random::<[u8; 8]>())?;
    w.message_integrity(pwd.as_bytes())?;
    w.fingerprint()?;
    Ok(w.finish())
}

/// A Binding success response to `tid`, signed with the browser's password.
pub fn is_answer(buf: &[u8], tid: &TransactionId, pwd: &str) -> bool {
    let Ok(m) = Message::parse(buf) else {
        return false;
    };
    m.method == Method::BINDING
        && m.class == Class::Success
        && m.tid == *tid
        && m.verify_integrity(pwd.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_is_a_signed_binding_request_for_the_ufrag() {
        let tid = TransactionId([7; 12]);
        let mut buf = [0u8; 256];
        let n = ice_check(&mut buf, tid, "abcd", "0123456789abcdefghijkl").unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.method, Method::BINDING);
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.get(attr_type::USERNAME), Some(&b"abcd:sbnettest"[..]));
        assert!(m.has(attr_type::ICE_CONTROLLED) && m.has(attr_type::PRIORITY));
        assert!(m.verify_integrity(b"0123456789abcdefghijkl"));
        assert!(!m.verify_integrity(b"another-password-xxxxx"));
        assert!(m.verify_fingerprint());
    }

    #[test]
    fn only_a_signed_success_for_our_transaction_is_an_answer() {
        let pwd = "0123456789abcdefghijkl";
        let tid = TransactionId([1; 12]);
        let answer = |tid, class, key: &str| {
            let mut buf = [0u8; 128];
            let mut w = MessageWriter::new(&mut buf, Method::BINDING, class, tid).unwrap();
            w.xor_address(
                attr_type::XOR_MAPPED_ADDRESS,
                &"203.0.113.1:1".parse().unwrap(),
            )
            .unwrap();
            w.message_integrity(key.as_bytes()).unwrap();
            let n = w.finish();
            buf[..n].to_vec()
        };
        assert!(is_answer(&answer(tid, Class::Success, pwd), &tid, pwd));
        assert!(!is_answer(
            &answer(TransactionId([2; 12]), Class::Success, pwd),
            &tid,
            pwd
        ));
        assert!(!is_answer(&answer(tid, Class::Error, pwd), &tid, pwd));
        assert!(!is_answer(
            &answer(tid, Class::Success, "wrong-password-xxxxxxx"),
            &tid,
            pwd
        ));
        assert!(!is_answer(b"not stun at all", &tid, pwd));
    }

    #[test]
    fn ice_credentials_are_checked() {
        assert!(valid_ice_chars("a+/Z", 4, 256));
        assert!(!valid_ice_chars("abc", 4, 256));
        assert!(!valid_ice_chars("ab:c", 4, 256));
        assert!(!valid_ice_chars(&"x".repeat(257), 4, 256));
    }
}
