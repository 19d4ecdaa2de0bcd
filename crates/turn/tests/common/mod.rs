//! Shared test harness: a STUN/TURN test client, a fake `RelayPorts` that hands out
//! addresses from a range and records opens and closes, and helpers to drive the
//! sans-IO `Server` with synthetic time.
#![allow(dead_code)]

mod relays;
mod wire;

pub use switchboard_fuzz_capture::Capture;

pub use relays::*;
pub use wire::*;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_client::{ClientAuth, Learn};
use switchboard_stun::{attr_type, long_term_key_md5, Message, Method};
use switchboard_turn::{
    AllocId, FiveTuple, Quotas, Server, ServerConfig, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

pub const REALM: &str = "example.org";
pub const USER: &str = "alice";
pub const PASS: &str = "wonderland";
pub const SERVER_ADDR: &str = "192.0.2.200:3478";

pub fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("bad socket address {s}"))
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad IP address {s}"))
}

/// Default test configuration: realm `example.org`, users alice and bob.
pub fn config() -> ServerConfig {
    let mut cfg = ServerConfig::new(REALM);
    cfg.add_user(USER, PASS);
    cfg.add_user("bob", "builder");
    cfg
}

// ---------------------------------------------------------------------------
// Test client
// ---------------------------------------------------------------------------

/// One client 5-tuple with its long-term credentials and the last nonce it got.
#[derive(Clone, Debug)]
pub struct Client {
    pub tuple: FiveTuple,
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: Vec<u8>,
}

impl Client {
    pub fn new(transport: Transport, addr: &str) -> Self {
        Client {
            tuple: FiveTuple {
                transport,
                client: sa(addr),
                server: sa(SERVER_ADDR),
            },
            username: USER.to_string(),
            password: PASS.to_string(),
            realm: REALM.to_string(),
            nonce: Vec::new(),
        }
    }

    pub fn udp(addr: &str) -> Self {
        Self::new(Transport::Udp, addr)
    }

    pub fn tcp(addr: &str) -> Self {
        Self::new(Transport::Tcp, addr)
    }

    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.username = name.to_string();
        self.password = password.to_string();
        self
    }

    /// A TURN REST API user: password = base64(HMAC-SHA1(secret, username)).
    pub fn rest(mut self, username: &str, secret: &[u8]) -> Self {
        self.username = username.to_string();
        self.password = rest_password(secret, username);
        self
    }

    pub fn key(&self) -> [u8; 16] {
        long_term_key_md5(
            self.username.as_bytes(),
            self.realm.as_bytes(),
            self.password.as_bytes(),
        )
    }

    /// Take the nonce of a 401 or 438 the way the shared client does (the realm stays
    /// what the test set, so tests can send a wrong one).
    pub fn learn(&mut self, challenge: &Message) {
        let mut auth = ClientAuth::user(&self.username, &self.password);
        match auth.learn(challenge) {
            Learn::Retry(_) => self.nonce = auth.nonce().to_vec(),
            other => panic!("expected a 401/438 with REALM and NONCE, got {other:?}"),
        }
    }

    /// Add USERNAME, REALM, NONCE and MESSAGE-INTEGRITY.
    pub fn sign(&self, req: Req) -> Req {
        let key = self.key();
        self.credentials(req).mi(&key)
    }

    /// Add USERNAME, REALM and NONCE only.
    pub fn credentials(&self, req: Req) -> Req {
        req.attr(attr_type::USERNAME, self.username.as_bytes())
            .attr(attr_type::REALM, self.realm.as_bytes())
            .attr(attr_type::NONCE, &self.nonce)
    }
}

pub fn rest_password(secret: &[u8], username: &str) -> String {
    switchboard_turn::rest::password(secret, username.as_bytes())
        .as_str()
        .to_owned()
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// A server, its fake relays and a synthetic clock.
pub struct H {
    pub server: Server,
    pub relays: FakeRelays,
    pub quotas: Arc<Quotas>,
    pub t0: Instant,
    pub now: Instant,
    pub unix0: u64,
    pub capture: Capture,
}

impl H {
    pub fn new(cfg: ServerConfig) -> Self {
        Self::with_relays(cfg, FakeRelays::new())
    }

    pub fn with_relays(cfg: ServerConfig, relays: FakeRelays) -> Self {
        let t0 = Instant::now();
        let unix0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let quotas = Arc::new(Quotas::default());
        H {
            server: Server::new(Arc::new(cfg), quotas.clone(), t0, unix0),
            relays,
            quotas,
            t0,
            now: t0,
            unix0,
            capture: Capture::open("turn"),
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.capture
            .line(format_args!("advance {}", d.as_millis()), &[]);
    }

    pub fn advance_secs(&mut self, s: u64) {
        self.advance(Duration::from_secs(s));
    }

    /// Run the timer at the current time.
    pub fn tick(&mut self) {
        self.server.handle_timeout(self.now, &mut self.relays);
    }

    /// Hand raw client bytes to the server.
    pub fn send(&mut self, tuple: FiveTuple, data: &[u8]) -> Out {
        let mut out = vec![0u8; 2048];
        let transport = format!("{:?}", tuple.transport).to_lowercase();
        self.capture
            .line(format_args!("client {transport} {}", tuple.client), data);
        let o: Out = self
            .server
            .handle_client(self.now, tuple, data, &mut out, &mut self.relays)
            .into();
        self.capture_out(&o);
        o
    }

    fn capture_out(&mut self, o: &Out) {
        if let Out::Client { data, .. } = o {
            self.capture.line(format_args!("answer"), data);
        }
    }

    pub fn request(&mut self, tuple: FiveTuple, req: &Req) -> Out {
        self.send(tuple, &req.build())
    }

    /// A datagram from `peer` arriving on a relay of `alloc`.
    pub fn peer_sends(&mut self, alloc: AllocId, peer: SocketAddr, payload: &[u8]) -> Out {
        let mut buf = vec![0xEEu8; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        self.capture
            .line(format_args!("peer {} {peer}", alloc.0), payload);
        self.server
            .handle_peer(self.now, alloc, peer, &mut buf, payload.len())
            .into()
    }

    /// Get a nonce the way a client does: an unauthenticated Allocate answered by 401.
    pub fn get_nonce(&mut self, c: &mut Client) {
        let out = self.request(c.tuple, &Req::new(Method::ALLOCATE).udp_transport());
        c.learn(&out.err(401));
    }

    /// Sign `req` with `c`'s credentials and send it; on 438 take the new nonce and retry
    /// once (what a real client does).
    pub fn signed(&mut self, c: &mut Client, req: Req) -> Out {
        if c.nonce.is_empty() {
            self.get_nonce(c);
        }
        let (method, tid, fp) = (req.method, req.tid, req.fingerprint);
        let attrs = req.attrs.clone();
        let out = self.request(c.tuple, &c.sign(req));
        if out.code() == Some(438) {
            c.learn(&out.msg());
            let mut again = Req::new(method).tid(tid);
            again.attrs = attrs;
            again.fingerprint = fp;
            return self.request(c.tuple, &c.sign(again));
        }
        out
    }

    pub fn allocate(&mut self, c: &mut Client) -> Out {
        self.signed(c, Req::new(Method::ALLOCATE).udp_transport())
    }

    /// Allocate and assert success; returns the relayed addresses.
    pub fn allocate_ok(&mut self, c: &mut Client) -> Vec<SocketAddr> {
        let out = self.allocate(c);
        relayed_addresses(&out.ok(c))
    }

    /// Allocate with a long lifetime and assert success; returns the first relay.
    pub fn allocate_long(&mut self, c: &mut Client, secs: u32) -> SocketAddr {
        let out = self.signed(c, Req::new(Method::ALLOCATE).udp_transport().lifetime(secs));
        relayed_addresses(&out.ok(c))[0]
    }

    /// Dual-stack allocation (ADDITIONAL-ADDRESS-FAMILY IPv6); returns (v4, v6) relays.
    pub fn allocate_dual(&mut self, c: &mut Client) -> (SocketAddr, SocketAddr) {
        let out = self.signed(
            c,
            Req::new(Method::ALLOCATE)
                .udp_transport()
                .attr(attr_type::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]),
        );
        let r = relayed_addresses(&out.ok(c));
        assert_eq!(r.len(), 2, "dual allocation has two relays");
        (r[0], r[1])
    }

    pub fn alloc_id(&self, c: &Client) -> AllocId {
        self.server
            .allocation_for(&c.tuple)
            .expect("client has an allocation")
    }

    pub fn permit(&mut self, c: &mut Client, peers: &[SocketAddr]) -> Out {
        let mut req = Req::new(Method::CREATE_PERMISSION);
        for p in peers {
            req = req.peer(*p);
        }
        self.signed(c, req)
    }

    pub fn permit_ok(&mut self, c: &mut Client, peers: &[SocketAddr]) {
        let out = self.permit(c, peers);
        out.ok(c);
    }

    pub fn bind(&mut self, c: &mut Client, number: u16, peer: SocketAddr) -> Out {
        self.signed(c, Req::new(Method::CHANNEL_BIND).channel(number).peer(peer))
    }

    pub fn bind_ok(&mut self, c: &mut Client, number: u16, peer: SocketAddr) {
        let out = self.bind(c, number, peer);
        out.ok(c);
    }

    pub fn refresh(&mut self, c: &mut Client, lifetime: Option<u32>) -> Out {
        let mut req = Req::new(Method::REFRESH);
        if let Some(l) = lifetime {
            req = req.lifetime(l);
        }
        self.signed(c, req)
    }

    /// A Send indication from `c` to `peer`.
    pub fn send_ind(&mut self, c: &Client, peer: SocketAddr, payload: &[u8]) -> Out {
        let req = Req::indication(Method::SEND)
            .peer(peer)
            .attr(attr_type::DATA, payload);
        self.request(c.tuple, &req)
    }

    /// A ChannelData message from `c` (padded to 4 bytes over streams).
    pub fn chan_data(&mut self, c: &Client, number: u16, payload: &[u8]) -> Out {
        self.send(
            c.tuple,
            &channel_data(number, payload, c.tuple.transport != Transport::Udp),
        )
    }
}

pub fn channel_data(number: u16, payload: &[u8], pad: bool) -> Vec<u8> {
    let mut v = number.to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    if pad {
        while v.len() % 4 != 0 {
            v.push(0);
        }
    }
    v
}
