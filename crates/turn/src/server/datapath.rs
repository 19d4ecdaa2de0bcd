//! The relayed data path: Send indications and ChannelData from clients, datagrams
//! from peers framed in place as ChannelData or Data indications. No allocation and
//! no lock per packet.

use super::{AllocId, FiveTuple, Server, Transmit, Transport};
use crate::respond;
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_stun::{
    attr_type, encode_address, message_type, xor_addr, ChannelData, Class, Message, Method,
    TransactionId, MAGIC_COOKIE,
};

/// Bytes a driver must leave free before a peer datagram so the core can prepend a
/// ChannelData header or a Data indication in place.
pub const PEER_HEADROOM: usize = 48;
/// Bytes a driver must leave free after a peer datagram (padding).
pub const PEER_TAILROOM: usize = 4;

impl Server {
    pub(super) fn send_indication<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'a>,
    ) -> Transmit<'a> {
        let mut unknown = [0u16; 8];
        if respond::find_unknown(msg, false, &mut unknown) > 0 {
            return Transmit::None;
        }
        let (Some(peer), Some(data)) = (
            msg.xor_address(attr_type::XOR_PEER_ADDRESS),
            msg.get(attr_type::DATA),
        ) else {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        };
        self.send_to_peer(now, tuple, peer, data)
    }

    #[inline]
    pub(super) fn channel_data<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        data: &'a [u8],
    ) -> Transmit<'a> {
        let Some(cd) = ChannelData::parse(data) else {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        };
        let Some(id) = self.by_tuple.get(&tuple).copied() else {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        };
        let peer = match self
            .allocation(id)
            .and_then(|a| a.channel_peer(cd.channel, now))
        {
            Some(p) => p,
            None => {
                self.stats.dropped_no_permission += 1;
                return Transmit::None;
            }
        };
        self.relay_out(now, id, peer, cd.payload)
    }

    pub(super) fn send_to_peer<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        peer: SocketAddr,
        data: &'a [u8],
    ) -> Transmit<'a> {
        let Some(id) = self.by_tuple.get(&tuple).copied() else {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        };
        self.relay_out(now, id, peer, data)
    }

    #[inline]
    pub(super) fn relay_out<'a>(
        &mut self,
        now: Instant,
        id: AllocId,
        peer: SocketAddr,
        data: &'a [u8],
    ) -> Transmit<'a> {
        let (max_bps, ports) = (self.cfg.max_bps, (self.cfg.min_port, self.cfg.max_port));
        let Some(a) = self.slots.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return Transmit::None;
        };
        // Permissions are per IP, but the own-relay exemption is per address: `permits`
        // keeps such a permission to relay-range ports.
        let live = a.expires > now && !a.tcp && a.permits(&peer, now, ports);
        let (Some(relay), true) = (a.relay_for(&peer), live) else {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        };
        if !a.charge(data.len(), max_bps, now) {
            self.stats.dropped_bandwidth += 1;
            return Transmit::None;
        }
        self.stats.client_to_peer_packets += 1;
        self.stats.client_to_peer_bytes += data.len() as u64;
        Transmit::Peer {
            alloc: id,
            relay,
            peer,
            data,
        }
    }

    /// Handle a datagram that arrived on relay address `relay` of allocation `alloc`
    /// from `peer`. The payload is `buf[PEER_HEADROOM..PEER_HEADROOM + len]`; `buf`
    /// must have `PEER_TAILROOM` more bytes after it. The ChannelData header or Data
    /// indication is written in place in front of the payload.
    #[inline]
    pub fn handle_peer<'a>(
        &mut self,
        now: Instant,
        alloc: AllocId,
        peer: SocketAddr,
        buf: &'a mut [u8],
        len: usize,
    ) -> Transmit<'a> {
        let (max_bps, ports) = (self.cfg.max_bps, (self.cfg.min_port, self.cfg.max_port));
        let Some(a) = self
            .slots
            .get_mut(alloc.0 as usize)
            .and_then(Option::as_mut)
        else {
            return Transmit::None;
        };
        if a.expires <= now || !a.permits(&peer, now, ports) {
            self.stats.dropped_no_permission += 1;
            return Transmit::None;
        }
        if !a.charge(len, max_bps, now) {
            self.stats.dropped_bandwidth += 1;
            return Transmit::None;
        }
        let tuple = a.tuple;
        let stream = tuple.transport != Transport::Udp;
        let padded = (len + 3) & !3;
        if buf.len() < PEER_HEADROOM + padded || len > u16::MAX as usize - 64 {
            self.stats.dropped_malformed += 1;
            return Transmit::None;
        }
        self.stats.peer_to_client_packets += 1;
        self.stats.peer_to_client_bytes += len as u64;
        if let Some(channel) = a.channel_for_peer(&peer, now) {
            let start = PEER_HEADROOM - 4;
            let mut header = [0u8; 4];
            ChannelData::write_header(channel, len as u16, &mut header);
            buf[start..PEER_HEADROOM].copy_from_slice(&header);
            // Over streams ChannelData is padded to a multiple of 4 (RFC 8656 §12.5).
            let end = if stream {
                buf[PEER_HEADROOM + len..PEER_HEADROOM + padded].fill(0);
                PEER_HEADROOM + padded
            } else {
                PEER_HEADROOM + len
            };
            return Transmit::Client {
                to: tuple,
                from: tuple.server,
                data: &buf[start..end],
            };
        }
        // Data indication: header, XOR-PEER-ADDRESS, DATA header, payload, padding.
        let alen = if peer.is_ipv4() { 8 } else { 20 };
        let start = PEER_HEADROOM - (20 + 4 + alen + 4);
        self.tid_counter = self.tid_counter.wrapping_add(1);
        let mut tid = [0u8; 12];
        tid[4..].copy_from_slice(&self.tid_counter.to_be_bytes());
        let tid = TransactionId(tid);
        let body_len = (4 + alen + 4 + padded) as u16;
        let h = &mut buf[start..];
        h[0..2].copy_from_slice(&message_type(Method::DATA, Class::Indication).to_be_bytes());
        h[2..4].copy_from_slice(&body_len.to_be_bytes());
        h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        h[8..20].copy_from_slice(&tid.0);
        h[20..22].copy_from_slice(&attr_type::XOR_PEER_ADDRESS.to_be_bytes());
        h[22..24].copy_from_slice(&(alen as u16).to_be_bytes());
        encode_address(&xor_addr(peer, &tid), &mut h[24..24 + alen]);
        h[24 + alen..26 + alen].copy_from_slice(&attr_type::DATA.to_be_bytes());
        h[26 + alen..28 + alen].copy_from_slice(&(len as u16).to_be_bytes());
        buf[PEER_HEADROOM + len..PEER_HEADROOM + padded].fill(0);
        Transmit::Client {
            to: tuple,
            from: tuple.server,
            data: &buf[start..PEER_HEADROOM + padded],
        }
    }
}
