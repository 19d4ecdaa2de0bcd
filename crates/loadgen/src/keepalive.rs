//! Non-blocking keepalive for one allocation during a relay run: Refresh before the
//! lifetime runs out, CreatePermission every 240 s, ChannelBind every 540 s. One
//! transaction in flight at a time, retransmitted with exponential backoff; driven
//! by the relay receiver thread, which also owns the allocation's receive side.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use switchboard_client::{random_tid, ClientAuth, Reply, Request};
use switchboard_stun::{Message, TransactionId};

const SEC: u64 = 1_000_000_000;
/// Permissions last 300 s (RFC 8656 §9); refresh with margin.
pub const PERMISSION_REFRESH: u64 = 240 * SEC;
/// Channel bindings last 600 s (RFC 8656 §12); refresh with margin.
pub const CHANNEL_REFRESH: u64 = 540 * SEC;
/// The blocking client's retransmission schedule, kept by this non-blocking one too.
const RTO: u64 = switchboard_client::INITIAL_RTO.as_nanos() as u64;
use switchboard_client::{MAX_AUTH_RETRIES, MAX_TRIES};
/// After a failed keepalive, try that item again this much later.
const RETRY_AFTER: u64 = 5 * SEC;

#[derive(Default, Debug)]
pub struct KeepaliveStats {
    pub ok: u64,
    pub failed: u64,
    /// Requests repeated after a 401/438 (new nonce).
    pub auth_retries: u64,
    pub failures: BTreeMap<String, u64>,
}

impl KeepaliveStats {
    fn fail(&mut self, what: &str, label: &str) {
        self.failed += 1;
        *self.failures.entry(format!("{what}:{label}")).or_default() += 1;
    }
}

struct Pending {
    req: Request,
    tid: TransactionId,
    deadline: u64,
    rto: u64,
    tries: u32,
    auth_retries: u32,
}

pub struct Keepalive {
    pub auth: ClientAuth,
    peer: SocketAddr,
    channel: Option<u16>,
    lifetime: u32,
    next_refresh: u64,
    next_perm: u64,
    next_chan: u64,
    pending: Option<Pending>,
}

fn what(req: &Request) -> &'static str {
    match req {
        Request::Allocate { .. } => "allocate",
        Request::Refresh { .. } => "refresh",
        Request::CreatePermission { .. } => "permission",
        Request::ChannelBind { .. } => "channel-bind",
    }
}

impl Keepalive {
    /// `now` is when the allocation, permission and channel were (re)established.
    pub fn new(
        auth: ClientAuth,
        peer: SocketAddr,
        channel: Option<u16>,
        lifetime: u32,
        now: u64,
    ) -> Self {
        Keepalive {
            auth,
            peer,
            channel,
            lifetime,
            next_refresh: now + lifetime as u64 * SEC / 2,
            next_perm: now + PERMISSION_REFRESH,
            next_chan: if channel.is_some() {
                now + CHANNEL_REFRESH
            } else {
                u64::MAX
            },
            pending: None,
        }
    }

    fn transmit(&self, sock: &UdpSocket, req: &Request, tid: TransactionId, buf: &mut [u8]) {
        if let Ok(n) = self.auth.build(req, tid, buf) {
            // Loss is handled by retransmission; a send error is treated the same way.
            let _ = sock.send(&buf[..n]);
        }
    }

    fn start(
        &mut self,
        sock: &UdpSocket,
        req: Request,
        now: u64,
        buf: &mut [u8],
        auth_retries: u32,
    ) {
        let tid = random_tid();
        self.transmit(sock, &req, tid, buf);
        self.pending = Some(Pending {
            req,
            tid,
            deadline: now + RTO,
            rto: RTO,
            tries: 1,
            auth_retries,
        });
    }

    /// Push back the schedule of `req`'s item to `at`.
    fn reschedule(&mut self, req: &Request, at: u64) {
        match req {
            Request::Refresh { .. } | Request::Allocate { .. } => self.next_refresh = at,
            Request::CreatePermission { .. } => self.next_perm = at,
            Request::ChannelBind { .. } => self.next_chan = at,
        }
    }

    /// Send what is due (a new keepalive or a retransmission).
    pub fn poll(&mut self, sock: &UdpSocket, now: u64, buf: &mut [u8], st: &mut KeepaliveStats) {
        if let Some(p) = self.pending.as_mut() {
            if now < p.deadline {
                return;
            }
            if p.tries >= MAX_TRIES {
                let req = p.req;
                self.pending = None;
                st.fail(what(&req), "timeout");
                self.reschedule(&req, now + RETRY_AFTER);
                return;
            }
            p.tries += 1;
            p.rto *= 2;
            p.deadline = now + p.rto;
            let (req, tid) = (p.req, p.tid);
            self.transmit(sock, &req, tid, buf);
            return;
        }
        let req = if now >= self.next_refresh {
            Request::Refresh {
                lifetime: self.lifetime,
            }
        } else if now >= self.next_perm {
            Request::CreatePermission { peer: self.peer }
        } else if now >= self.next_chan {
            match self.channel {
                Some(channel) => Request::ChannelBind {
                    channel,
                    peer: self.peer,
                },
                None => return,
            }
        } else {
            return;
        };
        self.start(sock, req, now, buf, 0);
    }

    /// Handle a STUN response that arrived on this allocation's socket.
    /// Returns false when it does not belong to the transaction in flight.
    pub fn on_response(
        &mut self,
        msg: &Message,
        sock: &UdpSocket,
        now: u64,
        buf: &mut [u8],
        st: &mut KeepaliveStats,
    ) -> bool {
        let Some(p) = self.pending.as_ref() else {
            return false;
        };
        if p.tid != msg.tid {
            return false;
        }
        let (req, auth_retries) = (p.req, p.auth_retries);
        self.pending = None;
        match self.auth.classify(msg, &req) {
            Reply::Success(info) => {
                st.ok += 1;
                let next = match req {
                    Request::Refresh { .. } | Request::Allocate { .. } => {
                        if let Some(l) = info.lifetime.filter(|&l| l > 0) {
                            self.lifetime = l;
                        }
                        self.lifetime as u64 * SEC / 2
                    }
                    Request::CreatePermission { .. } => PERMISSION_REFRESH,
                    Request::ChannelBind { .. } => CHANNEL_REFRESH,
                };
                self.reschedule(&req, now + next);
            }
            Reply::Retry(_) if auth_retries < MAX_AUTH_RETRIES => {
                st.auth_retries += 1;
                self.start(sock, req, now, buf, auth_retries + 1);
            }
            Reply::Retry(code) | Reply::Error(code, _) => {
                st.fail(what(&req), &code.to_string());
                self.reschedule(&req, now + RETRY_AFTER);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_client::Credentials;
    use switchboard_stun::{attr_type, Class, MessageWriter, Method};

    fn reply(tid: TransactionId, method: Method, key: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 256];
        let mut w = MessageWriter::new(&mut b, method, Class::Success, tid).unwrap();
        w.u32(attr_type::LIFETIME, 20).unwrap();
        w.message_integrity(key).unwrap();
        let n = w.finish();
        b.truncate(n);
        b
    }

    #[test]
    fn schedules_refresh_permission_and_channel() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut auth = ClientAuth::new(Credentials::new("u", "p"));
        let mut b = vec![0u8; 256];
        let mut w =
            MessageWriter::new(&mut b, Method::ALLOCATE, Class::Error, random_tid()).unwrap();
        w.error_code(401, "Unauthorized").unwrap();
        w.attr(attr_type::REALM, b"r").unwrap();
        w.attr(attr_type::NONCE, b"n").unwrap();
        let n = w.finish();
        let req = Request::Allocate { lifetime: None };
        assert_eq!(
            auth.classify(&Message::parse(&b[..n]).unwrap(), &req),
            Reply::Retry(401)
        );
        let key = *auth.key().unwrap();

        let mut k = Keepalive::new(auth, peer, Some(0x4000), 10, 0);
        let (mut buf, mut st, mut rb) = ([0u8; 512], KeepaliveStats::default(), [0u8; 512]);
        k.poll(&client, SEC, &mut buf, &mut st);
        assert!(k.pending.is_none(), "nothing due before lifetime/2");
        let mut expect = |k: &mut Keepalive, now: u64, method: Method, st: &mut KeepaliveStats| {
            k.poll(&client, now, &mut buf, st);
            let n = server.recv(&mut rb).unwrap();
            let m = Message::parse(&rb[..n]).unwrap();
            assert_eq!(m.method, method);
            assert!(m.verify_integrity(&key));
            let r = reply(m.tid, method, &key);
            let rm = Message::parse(&r).unwrap();
            let mut scratch = [0u8; 512];
            assert!(k.on_response(&rm, &client, now, &mut scratch, st));
            assert!(
                !k.on_response(&rm, &client, now, &mut scratch, st),
                "only once"
            );
        };
        expect(&mut k, 5 * SEC, Method::REFRESH, &mut st);
        // LIFETIME 20 in the reply: next refresh 10 s later.
        assert_eq!(k.next_refresh, 15 * SEC);
        expect(&mut k, 15 * SEC, Method::REFRESH, &mut st);
        k.next_refresh = u64::MAX;
        expect(
            &mut k,
            PERMISSION_REFRESH,
            Method::CREATE_PERMISSION,
            &mut st,
        );
        // At 540 s the second permission refresh (480 s) is due first, then the channel.
        expect(&mut k, CHANNEL_REFRESH, Method::CREATE_PERMISSION, &mut st);
        expect(&mut k, CHANNEL_REFRESH, Method::CHANNEL_BIND, &mut st);
        assert_eq!((st.ok, st.failed), (5, 0));

        // Unanswered: retransmitted, then given up and rescheduled.
        let t0 = CHANNEL_REFRESH + PERMISSION_REFRESH;
        k.poll(&client, t0, &mut buf, &mut st);
        let mut t = t0;
        for _ in 0..MAX_TRIES {
            server.recv(&mut rb).unwrap();
            t += 20 * SEC;
            k.poll(&client, t, &mut buf, &mut st);
        }
        assert_eq!(st.failed, 1);
        assert!(k.pending.is_none());
        assert_eq!(st.failures.get("permission:timeout"), Some(&1));
    }
}
