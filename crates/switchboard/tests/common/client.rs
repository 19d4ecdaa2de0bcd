//! The test face of the shared TURN clients (`switchboard-client`): the same
//! requests, with a failed exchange (no answer, socket error) as a test failure. What
//! the server answered stays in the [`Response`] for the test to assert on.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;
pub use switchboard_client::{Body, Response};
use switchboard_client::{ClientAuth, Transact, UdpClient};
use switchboard_stun::Method;

/// What the UDP and TCP test clients share.
pub trait TurnRequests {
    fn client(&mut self) -> &mut dyn Transact;

    /// One request and its response, without the 401/438 round trip (None when no
    /// answer came).
    fn request_once(&mut self, method: Method, body: &Body) -> Option<Response> {
        self.client().request_once(method, body).ok()
    }

    /// Send a request, doing the 401/438 round trip when needed.
    fn request(&mut self, method: Method, body: &Body) -> Response {
        self.client()
            .request(method, body)
            .unwrap_or_else(|e| panic!("{method:?}: {e}"))
    }

    /// Allocate a UDP relay.
    fn allocate_udp(&mut self) -> Response {
        self.client().allocate_udp().expect("Allocate exchange")
    }

    fn create_permission(&mut self, peer: SocketAddr) -> Response {
        self.client()
            .create_permission(peer)
            .expect("CreatePermission exchange")
    }

    fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Response {
        self.client()
            .channel_bind(channel, peer)
            .expect("ChannelBind exchange")
    }

    fn refresh(&mut self, lifetime: u32) -> Response {
        self.client().refresh(lifetime).expect("Refresh exchange")
    }
}

/// The relayed address of a successful Allocate.
pub fn relayed(r: &Response) -> SocketAddr {
    r.relayed().first().copied().expect("XOR-RELAYED-ADDRESS")
}

/// A TURN client over UDP.
pub struct TurnClient(pub UdpClient);

impl Deref for TurnClient {
    type Target = UdpClient;
    fn deref(&self) -> &UdpClient {
        &self.0
    }
}

impl DerefMut for TurnClient {
    fn deref_mut(&mut self) -> &mut UdpClient {
        &mut self.0
    }
}

impl TurnRequests for TurnClient {
    fn client(&mut self) -> &mut dyn Transact {
        &mut self.0
    }
}

impl TurnClient {
    pub fn new(server: SocketAddr, user: &str, pass: &str) -> Self {
        TurnClient(UdpClient::connect(server, ClientAuth::user(user, pass)).expect("bind client"))
    }

    pub fn allocate(&mut self) -> Response {
        self.allocate_udp()
    }

    pub fn relayed(&self, r: &Response) -> SocketAddr {
        relayed(r)
    }

    pub fn send_channel(&self, channel: u16, payload: &[u8]) {
        self.0
            .send_channel(channel, payload)
            .expect("send channel data");
    }

    /// One datagram from the server (ChannelData or Data indication) within 1.5 s.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        self.0.recv(Duration::from_millis(1500)).ok()
    }
}
