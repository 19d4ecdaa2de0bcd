//! The agent's stream connections: messages for TCP, TLS and WebSocket peers go on the
//! peer's connection, or (TCP, TLS) on one the agent opens through `connect.rs`; a
//! request that waited for a connection that could not be made fails at once (RFC 3261
//! §18.4). A connection the agent opened is kept while a call or a registration uses it
//! (responses and the far end's requests come back on it) and closed when nothing does
//! and no transaction waits, or 64×T1 after (the longest a transaction lasts).

use super::{Conn, State};
use crate::sip::stream::{ConnKey, StreamEvent};
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_sip::transaction::{Transmit, Transport};
use switchboard_sip::ua::RegState;

/// Most TLS next-hop names kept before those no longer in use are dropped.
const MAX_TLS_NAMES: usize = 256;

impl State {
    /// What a stream connection says.
    pub(super) fn on_stream(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Opened(key, id, tx) => {
                self.conns.insert(
                    key,
                    Conn {
                        id,
                        tx,
                        ours: false,
                    },
                );
            }
            StreamEvent::Connected(id) => {
                self.connecting.remove(&id);
            }
            StreamEvent::Message(key, bytes) => self.receive(&bytes, key),
            StreamEvent::Closed(key, id) => {
                if self.conns.get(&key).is_some_and(|c| c.id == id) {
                    self.conns.remove(&key);
                    self.unused.remove(&key);
                }
                // Never connected: what waited for it fails now (RFC 3261 §18.4).
                let now = Instant::now();
                for tx in self.connecting.remove(&id).unwrap_or_default() {
                    self.ua.transport_error(now, tx);
                }
            }
        }
    }

    /// The name `dest`'s TLS certificate must carry, for connections we open to it.
    /// Dialled targets add entries for as long as the server runs: past
    /// [`MAX_TLS_NAMES`] the map keeps only the next hops still in use (an open
    /// connection, a call's, or a registrar's).
    pub(super) fn remember_tls_name(&mut self, dest: SocketAddr, name: String) {
        if self.tls_names.len() >= MAX_TLS_NAMES && !self.tls_names.contains_key(&dest) {
            let registrars: Vec<SocketAddr> =
                self.cfg.accounts.iter().map(|a| a.registrar).collect();
            let conns = &self.conns;
            let calls: Vec<SocketAddr> = self
                .calls
                .values()
                .filter_map(|c| c.conn.map(|(_, d)| d))
                .collect();
            self.tls_names.retain(|d, _| {
                conns.contains_key(&(Transport::Tls, *d))
                    || registrars.contains(d)
                    || calls.contains(d)
            });
        }
        self.tls_names.insert(dest, name);
    }

    /// A message for a stream transport: on the peer's connection, or on one we open
    /// (TCP, TLS); a WebSocket peer that is gone cannot be reached.
    pub(super) fn send_stream(&mut self, t: Transmit) {
        let key = (t.transport, t.dest);
        if !self.conns.contains_key(&key) && matches!(t.transport, Transport::Tcp | Transport::Tls)
        {
            let name = self.tls_names.get(&t.dest).map(String::as_str);
            let (id, tx) = self.dialer.open(key, name);
            self.conns.insert(key, Conn { id, tx, ours: true });
            self.connecting.insert(id, Vec::new());
        }
        let sent = match self.conns.get(&key) {
            Some(conn) if conn.tx.send(t.bytes.clone()).is_ok() => {
                if let (Some(waiting), Some(tx)) = (self.connecting.get_mut(&conn.id), t.tx) {
                    waiting.push(tx);
                }
                true
            }
            _ => false,
        };
        if !sent {
            // The peer's connection is gone: its transaction fails now
            // (RFC 3261 §17.1.4) instead of waiting for a timeout.
            tracing::debug!(dest = %t.dest, transport = t.transport.as_str(), "SIP: no connection to send on");
            if let Some(tx) = t.tx {
                self.ua.transport_error(Instant::now(), tx);
            }
        }
    }

    /// Whether a call or a registration still uses the connection `key`.
    fn in_use(&self, key: ConnKey) -> bool {
        self.calls.values().any(|c| c.conn == Some(key))
            || self.federation.uses(key)
            || self.reg_conns.iter().any(|(reg, k)| {
                *k == key
                    && self.regs.get(reg).is_some_and(|(_, s)| {
                        matches!(s, RegState::Registering | RegState::Registered { .. })
                    })
            })
    }

    /// A call or registration stopped using `key`: if it was ours and nothing else
    /// uses it, it closes once no transaction waits on it.
    pub(super) fn maybe_unused(&mut self, key: ConnKey) {
        if self.conns.get(&key).is_some_and(|c| c.ours) && !self.in_use(key) {
            self.unused.entry(key).or_insert_with(Instant::now);
        }
    }

    /// Close unused connections of ours: once the UA has no transaction left (the last
    /// BYE or REGISTER answered), or after 64×T1 (the longest a transaction waits).
    pub(super) fn close_unused(&mut self) {
        if self.unused.is_empty() {
            return;
        }
        let idle = self.ua.counters().tx.live() == 0;
        let linger = self.cfg.t1 * 64;
        let keys: Vec<ConnKey> = self.unused.keys().copied().collect();
        for key in keys {
            if self.in_use(key) {
                self.unused.remove(&key);
            } else if idle || self.unused.get(&key).is_some_and(|t| t.elapsed() >= linger) {
                self.unused.remove(&key);
                // Dropping the sender ends the connection after what was queued on it.
                if let Some(c) = self.conns.remove(&key) {
                    self.connecting.remove(&c.id);
                    tracing::debug!(peer = %key.1, transport = key.0.as_str(), "SIP connection closed: unused");
                }
            }
        }
    }
}
