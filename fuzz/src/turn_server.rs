//! The sans-IO TURN server (`switchboard_turn::Server`) fed datagrams, stream bytes,
//! peer packets, RFC 6062 events and time, from several clients that already hold
//! allocations, permissions and channels, so that the fuzzer works on the
//! authenticated paths (Refresh, CreatePermission, ChannelBind, Send, ChannelData,
//! Connect, ConnectionBind) and not only on the 401 in front of them.
//!
//! Setup (every run): alice over UDP with an allocation, a permission for peers 0 and
//! 1 and channel 0x4000 to peer 0; bob, a TURN REST user, the same over UDP; carol
//! over TCP with an RFC 6062 (TCP) allocation and a permission for peer 0; mallory over
//! UDP with no credentials.
//!
//! Records (see [`crate::records`]), `op % 9`:
//! - 0 raw: `body` from client `who` as is (a datagram; for carol, stream bytes that
//!   go through the stream framer first);
//! - 1 signed: `body` read as a STUN request (type, transaction id, attributes;
//!   leniently), re-signed with client `who`'s USERNAME, REALM, NONCE and
//!   MESSAGE-INTEGRITY (`who & 0x80`: plus FINGERPRINT) and sent. Mallory signs with a
//!   wrong key. A captured request is therefore a useful seed as it is;
//! - 2 peer: `body` as a datagram from peer `who % 5` to the relay of client
//!   `(who >> 4) % 3`;
//! - 3 time: advance `u16(body) % 4000` seconds, run the timers, drain deferred answers;
//! - 4 RFC 6062 event, by `who % 4`: the driver's connect result (ok / failed) for the
//!   latest Connect, a peer connecting to carol's TCP relay, or a peer connection closing;
//! - 5 carol's control connection closes (and a new one takes its place);
//! - 6 reload with other settings (peer 1 denied, a bandwidth limit, quotas), by `who`;
//! - 7 client `who` sends ChannelData on channel `0x4000 + (who >> 4) % 4`, or a Send
//!   indication to peer `(who >> 4) % 5` when `who & 8`, with `body` as payload;
//! - 8 a new RFC 6062 data connection from carol's IP sends a signed ConnectionBind for
//!   the latest connection id (plus the attributes in `body`).
//!
//! Checks, on every output: a response goes back to the 5-tuple it answers; a response
//! parses as STUN; a packet relayed to a peer leaves from the relay address of the
//! sender's own allocation, to a peer that allocation has a permission for and the
//! filter allows; a packet relayed from a peer goes to the owner of the allocation it
//! arrived on, only with a permission for that peer, and says which peer it came from.
//! At the end, once every connection closed and all lifetimes ran out: no allocation,
//! relay socket, quota or peer connection is left (nothing leaks).

use crate::records::{u16_of, Records};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_stun::{
    attr_type, long_term_key_md5, next_stream_frame, split_message_type, ChannelData, Class,
    Message, MessageWriter, Method, TransactionId,
};
use switchboard_turn::{
    AllocId, FiveTuple, IpRange, PeerFilter, Quotas, RelayOpenError, RelayPorts, Server,
    ServerConfig, Transmit, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

const REALM: &str = "example.org";
const SECRET: &[u8] = b"rest-secret";
const SERVER: &str = "192.0.2.200:3478";
const RELAY_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const RELAY_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
const PEERS: [&str; 5] = [
    "1.1.1.1:53",
    "8.8.8.8:4000",
    "[2606:4700::1111]:8443",
    "127.0.0.1:9",
    "198.51.100.1:50001",
];

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

/// Relay sockets as a driver would keep them, with every double close caught.
#[derive(Default)]
struct Relays {
    next_port: u16,
    open: HashSet<SocketAddr>,
    reserved: Vec<([u8; 8], SocketAddr, Instant)>,
    connects: Vec<u32>,
    peer_conns: HashSet<u32>,
    bound: HashSet<u32>,
}

impl Relays {
    /// Even ports from 50000 on (the odd one after each stays free for EVEN-PORT's R bit).
    fn addr(&mut self, v6: bool) -> SocketAddr {
        let port = 50000 + (self.next_port % 10000);
        self.next_port = self.next_port.wrapping_add(2);
        SocketAddr::new(if v6 { RELAY_V6 } else { RELAY_V4 }, port)
    }
}

impl RelayPorts for Relays {
    fn open(&mut self, _: AllocId, v6: bool, _even: bool) -> Result<SocketAddr, RelayOpenError> {
        for _ in 0..8 {
            let a = self.addr(v6);
            if self.open.insert(a) {
                return Ok(a);
            }
        }
        Err(RelayOpenError::Exhausted)
    }
    fn close(&mut self, _: AllocId, relay: SocketAddr) {
        assert!(
            self.open.remove(&relay),
            "relay {relay} closed twice or never opened"
        );
    }
    fn open_reserving(
        &mut self,
        alloc: AllocId,
        v6: bool,
        now: Instant,
    ) -> Result<(SocketAddr, [u8; 8]), RelayOpenError> {
        let even = self.open(alloc, v6, true)?;
        let next = SocketAddr::new(even.ip(), even.port() + 1);
        let mut token = [0x5b, 0x0a, 0, 0, 0, 0, 0, 0];
        token[6..].copy_from_slice(&next.port().to_be_bytes());
        self.reserved.push((
            token,
            next,
            now + switchboard_turn::server::RESERVATION_LIFETIME,
        ));
        Ok((even, token))
    }
    fn claim(&mut self, _: AllocId, token: &[u8], now: Instant) -> Option<SocketAddr> {
        let i = self
            .reserved
            .iter()
            .position(|(t, _, exp)| t == token && *exp > now)?;
        let (_, addr, _) = self.reserved.remove(i);
        self.open.insert(addr).then_some(addr)
    }
    fn open_tcp(&mut self, alloc: AllocId, v6: bool) -> Result<SocketAddr, RelayOpenError> {
        self.open(alloc, v6, false)
    }
    fn tcp_connect(
        &mut self,
        _: AllocId,
        id: u32,
        _: SocketAddr,
        _: SocketAddr,
    ) -> Result<(), RelayOpenError> {
        assert!(self.peer_conns.insert(id), "connection id {id} used twice");
        self.connects.push(id);
        Ok(())
    }
    fn tcp_bind(&mut self, id: u32, _: FiveTuple) -> bool {
        self.peer_conns.contains(&id) && self.bound.insert(id)
    }
    fn tcp_close(&mut self, id: u32) {
        self.peer_conns.remove(&id);
        self.bound.remove(&id);
    }
}

struct Client {
    tuple: FiveTuple,
    username: String,
    key: [u8; 16],
    nonce: Vec<u8>,
    /// Stream clients: bytes received and not yet framed.
    stream: Option<Vec<u8>>,
}

struct Harness {
    server: Server,
    relays: Relays,
    quotas: Arc<Quotas>,
    base: ServerConfig,
    now: Instant,
    clients: Vec<Client>,
    data_conns: Vec<FiveTuple>,
    next_port: u16,
    tid: u64,
    out: Vec<u8>,
}

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;

fn tuple(transport: Transport, client: &str) -> FiveTuple {
    FiveTuple {
        transport,
        client: sa(client),
        server: sa(SERVER),
    }
}

impl Harness {
    fn new() -> Harness {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1_700_000_000, |d| d.as_secs());
        // Built once: key derivation for the users is the costly part of a run's setup.
        static BASE: OnceLock<ServerConfig> = OnceLock::new();
        let cfg = BASE
            .get_or_init(|| {
                let mut cfg = ServerConfig::new(REALM);
                cfg.add_user("alice", "wonderland");
                cfg.add_user("carol", "singer");
                cfg.secrets = vec![SECRET.to_vec()];
                cfg.relay_ips = vec![RELAY_V4, RELAY_V6];
                cfg.nonce_key = [7; 32];
                cfg
            })
            .clone();
        let now = Instant::now();
        let quotas = Arc::new(Quotas::default());
        let server = Server::new(Arc::new(cfg.clone()), quotas.clone(), now, unix);
        let bob = format!("{}:bob", unix + 86400);
        let bob_pass = switchboard_turn::rest::password(SECRET, bob.as_bytes())
            .as_str()
            .to_owned();
        let client = |t: FiveTuple, user: &str, pass: &str, stream: bool| Client {
            tuple: t,
            username: user.to_string(),
            key: long_term_key_md5(user.as_bytes(), REALM.as_bytes(), pass.as_bytes()),
            nonce: Vec::new(),
            stream: stream.then(Vec::new),
        };
        let clients = vec![
            client(
                tuple(Transport::Udp, "192.0.2.10:40000"),
                "alice",
                "wonderland",
                false,
            ),
            client(
                tuple(Transport::Udp, "192.0.2.11:40001"),
                &bob,
                &bob_pass,
                false,
            ),
            client(
                tuple(Transport::Tcp, "192.0.2.12:40002"),
                "carol",
                "singer",
                true,
            ),
            client(
                tuple(Transport::Udp, "203.0.113.66:5555"),
                "alice",
                "guessed",
                false,
            ),
        ];
        let mut h = Harness {
            server,
            relays: Relays::default(),
            quotas,
            base: cfg,
            now,
            clients,
            data_conns: Vec::new(),
            next_port: 41000,
            tid: 0,
            out: vec![0u8; 2048],
        };
        for c in [ALICE, BOB] {
            h.setup(c, 17, &[0, 1], Some(0));
        }
        h.setup(CAROL, 6, &[0], None);
        h
    }

    /// Allocate (transport `proto`), permit `peers`, bind channel 0x4000 to `channel`.
    fn setup(&mut self, c: usize, proto: u8, peers: &[usize], channel: Option<usize>) {
        let ok = |h: &mut Harness, attrs: Vec<(u16, Vec<u8>)>, method: Method| {
            let r = h.signed(c, method, &attrs, false);
            assert_eq!(r, Some(Class::Success), "setup: {method:?} for client {c}");
        };
        ok(
            self,
            vec![(attr_type::REQUESTED_TRANSPORT, vec![proto, 0, 0, 0])],
            Method::ALLOCATE,
        );
        let mut perm = Vec::new();
        for &p in peers {
            perm.push((attr_type::XOR_PEER_ADDRESS, xor_peer(sa(PEERS[p]))));
        }
        ok(self, perm, Method::CREATE_PERMISSION);
        if let Some(p) = channel {
            ok(
                self,
                vec![
                    (attr_type::CHANNEL_NUMBER, vec![0x40, 0, 0, 0]),
                    (attr_type::XOR_PEER_ADDRESS, xor_peer(sa(PEERS[p]))),
                ],
                Method::CHANNEL_BIND,
            );
        }
    }

    fn next_tid(&mut self) -> TransactionId {
        self.tid += 1;
        let mut t = [0u8; 12];
        t[4..].copy_from_slice(&self.tid.to_be_bytes());
        TransactionId(t)
    }

    /// Send a request signed with client `c`'s credentials (getting a nonce first, and
    /// once more on 438). Returns the class of the answer.
    fn signed(
        &mut self,
        c: usize,
        method: Method,
        attrs: &[(u16, Vec<u8>)],
        fp: bool,
    ) -> Option<Class> {
        let tid = self.next_tid();
        self.signed_with(
            c,
            self.clients[c].tuple,
            method,
            Class::Request,
            tid,
            attrs,
            fp,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn signed_with(
        &mut self,
        c: usize,
        from: FiveTuple,
        method: Method,
        class: Class,
        tid: TransactionId,
        attrs: &[(u16, Vec<u8>)],
        fp: bool,
    ) -> Option<Class> {
        let mut answer = None;
        for _ in 0..3 {
            let had_nonce = !self.clients[c].nonce.is_empty();
            let mut buf = vec![0u8; 4096];
            let n = {
                let cl = &self.clients[c];
                let Ok(mut w) = MessageWriter::new(&mut buf, method, class, tid) else {
                    return None;
                };
                for (t, v) in attrs {
                    if w.message_len() + v.len() + 128 > 4000 || w.attr(*t, v).is_err() {
                        break;
                    }
                }
                let sealed = w
                    .attr(attr_type::USERNAME, cl.username.as_bytes())
                    .and_then(|w| w.attr(attr_type::REALM, REALM.as_bytes()))
                    .and_then(|w| w.attr(attr_type::NONCE, &cl.nonce))
                    .and_then(|w| w.message_integrity(&cl.key));
                if sealed.is_err() || (fp && w.fingerprint().is_err()) {
                    return None;
                }
                w.finish()
            };
            answer = self.deliver(from, &buf[..n]);
            // A fresh or stale nonce: take the one offered and sign again.
            match answer {
                Some((Class::Error, 438)) => continue,
                Some((Class::Error, 401)) if !had_nonce => continue,
                _ => break,
            }
        }
        answer.map(|(class, _)| class)
    }

    /// Hand one message (datagram or framed) from `from` to the server and check the
    /// answer. Returns the answer's class and error code, and learns its nonce.
    fn deliver(&mut self, from: FiveTuple, data: &[u8]) -> Option<(Class, u16)> {
        let now = self.now;
        let t = self
            .server
            .handle_client(now, from, data, &mut self.out, &mut self.relays);
        let answer = match t {
            Transmit::None => None,
            Transmit::Client { to, data, .. } => {
                assert_eq!(to, from, "an answer goes to another 5-tuple");
                let m = Message::parse(data).expect("the server's answer parses as STUN");
                let code = m
                    .get(attr_type::ERROR_CODE)
                    .and_then(switchboard_stun::decode_error_code)
                    .map_or(0, |(c, _)| c);
                if let Some(nonce) = m.get(attr_type::NONCE) {
                    for cl in self
                        .clients
                        .iter_mut()
                        .filter(|cl| cl.tuple.client.ip() == from.client.ip())
                    {
                        cl.nonce = nonce.to_vec();
                    }
                }
                Some((m.class, code))
            }
            Transmit::Peer {
                alloc, relay, peer, ..
            } => {
                let a = self
                    .server
                    .allocation(alloc)
                    .expect("relayed on a live allocation");
                assert_eq!(a.tuple, from, "relayed on someone else's allocation");
                assert!(
                    a.relay_v4 == Some(relay) || a.relay_v6 == Some(relay),
                    "relayed from a foreign address"
                );
                let cfg = self.server.config();
                assert!(
                    a.permits(&peer, now, (cfg.min_port, cfg.max_port)),
                    "relayed to {peer} without a permission"
                );
                assert!(
                    cfg.peer_allowed(peer),
                    "relayed to {peer}, which the filter denies"
                );
                None
            }
        };
        answer
    }

    /// Bytes arriving on a stream client's connection: framed, each frame delivered.
    fn stream_bytes(&mut self, c: usize, bytes: &[u8]) {
        let tuple = self.clients[c].tuple;
        let Some(buf) = self.clients[c].stream.as_mut() else {
            return;
        };
        buf.extend_from_slice(bytes);
        let mut buf = std::mem::take(buf);
        let mut at = 0;
        loop {
            match next_stream_frame(&buf[at..]) {
                Ok(Some(f)) => {
                    let n = f.len();
                    let frame = f.to_vec();
                    self.deliver(tuple, &frame);
                    at += n;
                }
                Ok(None) => break,
                Err(_) => {
                    // Not TURN: the driver closes the connection.
                    self.close_stream(c);
                    return;
                }
            }
        }
        buf.drain(..at);
        self.clients[c].stream = Some(buf);
    }

    fn close_stream(&mut self, c: usize) {
        let old = self.clients[c].tuple;
        self.server.client_closed(&old, &mut self.relays);
        assert!(self.server.allocation_for(&old).is_none());
        self.next_port = self.next_port.wrapping_add(1).max(41000);
        self.clients[c].tuple.client.set_port(self.next_port);
        self.clients[c].stream = Some(Vec::new());
    }

    fn peer_packet(&mut self, c: usize, p: usize, payload: &[u8]) {
        let tuple = self.clients[c].tuple;
        let peer = sa(PEERS[p]);
        // A stale id is what a driver holds for a packet that raced a free.
        let alloc = self
            .server
            .allocation_for(&tuple)
            .unwrap_or(AllocId(c as u32));
        let len = payload.len().min(1500);
        let mut buf = vec![0xEE; PEER_HEADROOM + len + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + len].copy_from_slice(&payload[..len]);
        let now = self.now;
        let ports = (self.server.config().min_port, self.server.config().max_port);
        let owner = self
            .server
            .allocation(alloc)
            .map(|a| (a.tuple, a.permits(&peer, now, ports)));
        match self.server.handle_peer(now, alloc, peer, &mut buf, len) {
            Transmit::None => {}
            Transmit::Peer { .. } => panic!("a peer packet relayed to a peer"),
            Transmit::Client { to, data, .. } => {
                let (owner, permitted) = owner.expect("relayed from a freed allocation");
                assert_eq!(to, owner, "a peer packet went to another client");
                assert!(
                    permitted,
                    "a peer packet from {peer} passed without a permission"
                );
                if let Some(cd) = ChannelData::parse(data) {
                    assert_eq!(cd.payload, &payload[..len]);
                } else {
                    let m = Message::parse(data).expect("a Data indication");
                    assert_eq!((m.method, m.class), (Method::DATA, Class::Indication));
                    assert_eq!(m.xor_address(attr_type::XOR_PEER_ADDRESS), Some(peer));
                    assert_eq!(m.get(attr_type::DATA), Some(&payload[..len]));
                }
            }
        }
    }

    fn timers(&mut self) {
        self.server.handle_timeout(self.now, &mut self.relays);
        while let Some(t) = self.server.next_deferred(&mut self.out) {
            if let Transmit::Client { data, .. } = t {
                Message::parse(data).expect("a deferred answer parses");
            }
        }
        let now = self.now;
        self.relays.reserved.retain(|r| r.2 > now);
    }

    fn tcp_event(&mut self, who: u8, body: &[u8]) {
        let carol = self.clients[CAROL].tuple;
        match who % 4 {
            0 | 1 => {
                let Some(&id) = self.relays.connects.last() else {
                    return;
                };
                let now = self.now;
                if let Transmit::Client { to, data, .. } = self.server.tcp_connect_result(
                    now,
                    id,
                    who & 3 == 0,
                    &mut self.out,
                    &mut self.relays,
                ) {
                    assert_eq!(to, carol, "a Connect answer to another client");
                    Message::parse(data).expect("a Connect answer parses");
                }
            }
            2 => {
                let Some(alloc) = self.server.allocation_for(&carol) else {
                    return;
                };
                let peer = sa(PEERS[usize::from(body.first().copied().unwrap_or(0)) % PEERS.len()]);
                let now = self.now;
                if let Some((id, t)) =
                    self.server
                        .tcp_peer_connected(now, alloc, peer, &mut self.out)
                {
                    assert!(
                        self.relays.peer_conns.insert(id),
                        "connection id {id} used twice"
                    );
                    self.relays.connects.push(id);
                    if let Transmit::Client { to, .. } = t {
                        assert_eq!(to, carol, "a ConnectionAttempt to another client");
                    }
                }
            }
            _ => {
                let Some(id) = self.relays.connects.pop() else {
                    return;
                };
                self.relays.tcp_close(id);
                self.server.tcp_closed(id);
                let _ = self.server.tcp_relayed(self.now, id, true, body.len());
            }
        }
    }

    fn reload(&mut self, who: u8) {
        let mut cfg = self.base.clone();
        if who & 1 != 0 {
            let denied: Vec<IpRange> = ["8.8.8.8"].iter().filter_map(|s| s.parse().ok()).collect();
            cfg.peer_filter = PeerFilter::new(Vec::new(), denied);
        }
        if who & 2 != 0 {
            cfg.max_bps = 2000;
        }
        if who & 4 != 0 {
            cfg.user_quota = 1;
            cfg.total_quota = 2;
        }
        if who & 8 != 0 {
            cfg.nonce_key = [9; 32];
        }
        self.server.set_config(Arc::new(cfg));
    }

    fn step(&mut self, op: u8, who: u8, body: &[u8]) {
        let c = usize::from(who) % self.clients.len();
        match op % 9 {
            0 => {
                if self.clients[c].stream.is_some() {
                    self.stream_bytes(c, body);
                } else {
                    self.deliver(self.clients[c].tuple, body);
                }
            }
            1 => {
                let (method, class, tid, attrs) = lenient_request(body);
                let tid = tid.unwrap_or_else(|| self.next_tid());
                self.signed_with(
                    c,
                    self.clients[c].tuple,
                    method,
                    class,
                    tid,
                    &attrs,
                    who & 0x80 != 0,
                );
            }
            2 => {
                let owner = usize::from(who >> 4) % 3;
                self.peer_packet(owner, usize::from(who) % PEERS.len(), body);
            }
            3 => {
                self.now += Duration::from_secs(u64::from(u16_of(body) % 4000));
                self.timers();
            }
            4 => self.tcp_event(who, body),
            5 => self.close_stream(CAROL),
            6 => self.reload(who),
            7 => {
                let t = self.clients[c].tuple;
                let len = body.len().min(1200);
                let msg = if who & 8 != 0 {
                    let tid = self.next_tid();
                    let peer = sa(PEERS[usize::from(who >> 4) % PEERS.len()]);
                    let mut buf = vec![0u8; 1400];
                    let Ok(mut w) =
                        MessageWriter::new(&mut buf, Method::SEND, Class::Indication, tid)
                    else {
                        return;
                    };
                    if w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)
                        .and_then(|w| w.attr(attr_type::DATA, &body[..len]))
                        .is_err()
                    {
                        return;
                    }
                    let n = w.finish();
                    buf.truncate(n);
                    buf
                } else {
                    let mut m = vec![0x40, (who >> 4) % 4, (len >> 8) as u8, len as u8];
                    m.extend_from_slice(&body[..len]);
                    if t.transport != Transport::Udp {
                        m.resize(4 + len.div_ceil(4) * 4, 0);
                    }
                    m
                };
                if self.clients[c].stream.is_some() {
                    self.stream_bytes(c, &msg);
                } else {
                    self.deliver(t, &msg);
                }
            }
            _ => {
                let Some(&id) = self.relays.connects.last() else {
                    return;
                };
                self.next_port = self.next_port.wrapping_add(1).max(41000);
                let mut data = self.clients[CAROL].tuple;
                data.client.set_port(self.next_port);
                self.data_conns.push(data);
                let (_, _, _, mut attrs) = lenient_request(body);
                attrs.insert(0, (attr_type::CONNECTION_ID, id.to_be_bytes().to_vec()));
                let tid = self.next_tid();
                self.signed_with(
                    CAROL,
                    data,
                    Method::CONNECTION_BIND,
                    Class::Request,
                    tid,
                    &attrs,
                    who & 1 != 0,
                );
            }
        }
        assert_eq!(
            self.server.stats.allocations as usize,
            self.server.allocation_count()
        );
    }

    /// Every connection closes and every lifetime runs out: nothing may be left.
    fn finish(mut self) {
        for d in std::mem::take(&mut self.data_conns) {
            self.server.client_closed(&d, &mut self.relays);
        }
        let carol = self.clients[CAROL].tuple;
        self.server.client_closed(&carol, &mut self.relays);
        for id in std::mem::take(&mut self.relays.connects) {
            self.server.tcp_closed(id);
        }
        self.now += Duration::from_secs(3 * 3600);
        self.timers();
        assert_eq!(
            self.server.allocation_count(),
            0,
            "allocations outlive their lifetime"
        );
        assert_eq!(self.server.stats.allocations, 0);
        assert!(
            self.relays.open.is_empty(),
            "relay sockets left open: {:?}",
            self.relays.open
        );
        assert_eq!(self.quotas.total(), 0, "quota held by no allocation");
        assert_eq!(
            self.server.tcp_connection_count(),
            0,
            "peer connections outlive their allocation"
        );
    }
}

/// Attribute types and values, in order.
type Attrs = Vec<(u16, Vec<u8>)>;

/// The method, class, transaction id and attributes of `body` read as a STUN request,
/// as far as it goes; the credentials and seals in it are dropped (they are added anew).
fn lenient_request(body: &[u8]) -> (Method, Class, Option<TransactionId>, Attrs) {
    let (method, class) = split_message_type(u16_of(body) & 0x3FFF);
    let tid = body
        .get(8..20)
        .and_then(|t| t.try_into().ok())
        .map(TransactionId);
    let mut attrs = Vec::new();
    let mut rest = body.get(20..).unwrap_or_default();
    while let [t0, t1, l0, l1, tail @ ..] = rest {
        let typ = u16::from_be_bytes([*t0, *t1]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let value = &tail[..len];
        rest = &tail[(len.div_ceil(4) * 4).min(tail.len())..];
        if !matches!(
            typ,
            attr_type::USERNAME
                | attr_type::REALM
                | attr_type::NONCE
                | attr_type::MESSAGE_INTEGRITY
                | attr_type::MESSAGE_INTEGRITY_SHA256
                | attr_type::FINGERPRINT
        ) {
            attrs.push((typ, value.to_vec()));
        }
    }
    (method, class, tid, attrs)
}

/// XOR-PEER-ADDRESS value for an IPv4 `peer` (IPv4 is XORed with the magic cookie
/// only, so the value does not depend on the transaction id).
fn xor_peer(peer: SocketAddr) -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let tid = TransactionId([0; 12]);
    let Ok(mut w) = MessageWriter::new(&mut buf, Method::BINDING, Class::Request, tid) else {
        return Vec::new();
    };
    if w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer).is_err() {
        return Vec::new();
    }
    let n = w.finish();
    let m = Message::parse(&buf[..n]).ok();
    m.and_then(|m| m.get(attr_type::XOR_PEER_ADDRESS))
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    for r in Records::new(data).take(256) {
        h.step(r.op, r.who, r.body);
    }
    h.finish();
}
