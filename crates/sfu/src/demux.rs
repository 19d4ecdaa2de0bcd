//! Which participant a datagram belongs to, without a scan: a STUN Binding request by
//! the local ufrag in its USERNAME (`local:remote`, RFC 8445 §7.2.2), everything else
//! (DTLS, SRTP, consent checks' replies) by the source address learned from the STUN
//! requests accepted for that participant. Addresses are per transport: a TCP
//! connection's remote address may equal some UDP source.

use std::net::SocketAddr;

use crate::output::Transport;
use crate::participant::{Pid, MAX_ADDRS};
use crate::sfu::Sfu;

impl Sfu {
    pub(crate) fn learn_addr(&mut self, pid: Pid, transport: Transport, source: SocketAddr) {
        let source = (transport, source);
        match self.by_addr.get(&source) {
            Some(&owner) if owner == pid => return,
            Some(&owner) => {
                // The address moved to another participant (a NAT reused the port).
                if let Some(p) = self.parts[owner].as_mut() {
                    p.addrs.retain(|a| *a != source);
                }
            }
            None => {}
        }
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        if p.addrs.len() >= MAX_ADDRS {
            let old = p.addrs.remove(0);
            self.by_addr.remove(&old);
        }
        p.addrs.push(source);
        self.by_addr.insert(source, pid);
    }

    pub(crate) fn local_addr(&self, transport: Transport, destination: SocketAddr) -> SocketAddr {
        let c = match transport {
            Transport::Udp => &self.cfg.candidates,
            Transport::Tcp => &self.cfg.tcp_candidates,
        };
        if c.contains(&destination) {
            return destination;
        }
        c.iter()
            .find(|a| a.port() == destination.port() && a.is_ipv4() == destination.is_ipv4())
            .or_else(|| c.first())
            .copied()
            .unwrap_or(destination)
    }
}
