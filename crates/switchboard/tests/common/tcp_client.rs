//! The test face of the shared TURN client over TCP or TLS (`switchboard-client`):
//! RFC 6062 and shared-port tests, with failed exchanges as test failures.

use super::client::{Response, TurnRequests};
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::time::Duration;
use switchboard_client::{ClientAuth, Stream, StreamClient, Transact};
use switchboard_stun::Method;

pub struct TcpTurn(pub StreamClient);

impl Deref for TcpTurn {
    type Target = StreamClient;
    fn deref(&self) -> &StreamClient {
        &self.0
    }
}

impl DerefMut for TcpTurn {
    fn deref_mut(&mut self) -> &mut StreamClient {
        &mut self.0
    }
}

impl TurnRequests for TcpTurn {
    fn client(&mut self) -> &mut dyn Transact {
        &mut self.0
    }
}

impl TcpTurn {
    pub fn connect(server: SocketAddr, user: &str, pass: &str) -> Self {
        Self::with_auth(server, ClientAuth::user(user, pass))
    }

    /// A new connection reusing credentials (and the realm and nonce) learnt elsewhere.
    pub fn with_auth(server: SocketAddr, auth: ClientAuth) -> Self {
        TcpTurn(StreamClient::connect(server, auth).expect("connect to the TURN server over TCP"))
    }

    /// A client on an established stream (say, TLS).
    pub fn over(stream: Stream, auth: ClientAuth) -> Self {
        TcpTurn(StreamClient::over(stream, auth).expect("set up the stream"))
    }

    /// The next STUN message or ChannelData frame (None on timeout or close).
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        self.0.read_frame().ok()
    }

    pub fn send_channel(&mut self, channel: u16, payload: &[u8]) {
        self.0
            .send_channel(channel, payload)
            .expect("send channel data");
    }

    pub fn allocate_tcp(&mut self) -> Response {
        self.0.allocate_tcp().expect("Allocate exchange")
    }

    pub fn connect_peer(&mut self, peer: SocketAddr) -> Response {
        self.0.connect_peer(peer).expect("Connect exchange")
    }

    pub fn connection_bind(&mut self, conn_id: u32) -> Response {
        self.0
            .connection_bind(conn_id)
            .expect("ConnectionBind exchange")
    }

    /// An indication of `method` within `timeout` (kept ones first).
    pub fn indication(&mut self, method: Method, timeout: Duration) -> Option<Vec<u8>> {
        self.0.indication(method, timeout).ok()
    }

    /// After a successful ConnectionBind: the raw stream to the peer, and any bytes
    /// of it already read.
    pub fn into_pipe(self) -> (TcpStream, Vec<u8>) {
        self.0
            .into_pipe()
            .expect("the tests pipe over plain TCP only")
    }
}

pub fn connection_id(r: &Response) -> u32 {
    r.connection_id().expect("CONNECTION-ID")
}
