//! The public vocabulary of the transaction layer: transports, ids, configuration, what
//! goes out ([`Transmit`]), what the TU hears ([`TxEvent`]), refusals ([`TxError`]) and the
//! metrics [`Counters`]. Kept apart from the state machines so that a driver or the dialog
//! layer can read them without the machinery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::message::{Limits, Message};

/// A transport a message came over or goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    /// Reliable transports: no retransmission, zero-length wait timers (§17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// As written in a Via (`SIP/2.0/UDP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
}

/// One transaction, client or server, unique for the life of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// Timer values and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Longest retransmit interval of non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (default 5 s).
    pub t4: Duration,
    /// After this long without a TU answer a server INVITE transaction sends `100 Trying`
    /// (default 200 ms, §17.2.1).
    pub trying_delay: Duration,
    /// Bound on a transaction waiting in Proceeding (default 180 s, like a proxy's Timer C,
    /// §16.6): a client INVITE that got a provisional response but no final one times out,
    /// and a server INVITE the TU never answered is answered `408` by the layer.
    pub timer_c: Duration,
    /// Live transactions (client and server) at most; default 10 000.
    pub max_transactions: usize,
    /// Transmits and events waiting to be polled, each queue at most; default 4096.
    pub max_queued: usize,
    /// Parser limits for [`super::TransactionLayer::handle_datagram`].
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(200),
            timer_c: Duration::from_secs(180),
            max_transactions: 10_000,
            max_queued: 4096,
            limits: Limits::default(),
        }
    }
}

/// Bytes to send. The bytes of a transaction are serialized once and shared by its
/// retransmissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The transaction that sends them (`None` for stateless answers): report a failure to
    /// send with [`super::TransactionLayer::transport_error`].
    pub tx: Option<TxId>,
    pub dest: SocketAddr,
    pub transport: Transport,
    pub bytes: Arc<[u8]>,
}

/// What the transaction user has to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A new request (not ACK, not CANCEL) on a new server transaction: answer it with
    /// [`super::TransactionLayer::respond`].
    Request {
        tx: TxId,
        request: Message<'static>,
        source: SocketAddr,
        transport: Transport,
    },
    /// An ACK that belongs to no INVITE server transaction, i.e. an ACK for a 2xx: the
    /// dialog layer's (§13.3.1.4).
    Ack {
        request: Message<'static>,
        source: SocketAddr,
        transport: Transport,
    },
    /// A response of a client transaction (provisional, final, and in the Accepted state
    /// every further 2xx: retransmissions and forks of the INVITE's answer).
    Response {
        tx: TxId,
        response: Message<'static>,
    },
    /// The peer cancelled the INVITE of server transaction `invite` (the CANCEL itself is
    /// already answered 200): answer the INVITE `487 Request Terminated`.
    Cancelled {
        invite: TxId,
        cancel: Message<'static>,
    },
    /// The transaction timed out and is gone. For a client transaction this is the TU's
    /// `408 Request Timeout` (§8.1.3.1); for a server INVITE, no ACK came (timer H); for a
    /// server non-INVITE, the TU never answered within 64·T1.
    Timeout { tx: TxId },
    /// The driver reported that the transaction's bytes could not be sent; it is gone
    /// (§17.1.4, §17.2.4: treat as a 503 for a client transaction).
    TransportError { tx: TxId },
}

/// Why a call into the layer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("not a request")]
    NotARequest,
    #[error("not a response with a status in 100..=699")]
    NotAResponse,
    #[error("ACK is not sent in a transaction (ACK for 2xx: send_stateless)")]
    AckNotATransaction,
    #[error("request without a usable top Via branch (z9hG4bK…)")]
    NoBranch,
    #[error("request without a CSeq matching its method")]
    BadCSeq,
    #[error("a transaction with this branch and method exists")]
    Duplicate,
    #[error("transaction limit reached")]
    Limit,
    #[error("no such transaction")]
    UnknownTransaction,
    #[error("not possible in the transaction's state")]
    WrongState,
    #[error("a CANCEL waits for a provisional response (RFC 3261 §9.1)")]
    CancelBeforeProvisional,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub live_client_invite: usize,
    pub live_client_non_invite: usize,
    pub live_server_invite: usize,
    pub live_server_non_invite: usize,
    /// Requests, responses and ACKs sent again (by a timer or for a retransmitted message).
    pub retransmissions: u64,
    /// [`TxEvent::Timeout`]s.
    pub timeouts: u64,
    /// New server transactions refused with 503 at the limit.
    pub refused: u64,
    /// Requests answered 400 (unparseable, missing headers, RFC 2543 branch).
    pub bad_requests: u64,
    /// Responses and messages matching no transaction and dropped.
    pub stray: u64,
    /// Transmits or events dropped because a queue was full.
    pub dropped: u64,
    pub transport_errors: u64,
}

impl Counters {
    pub fn live(&self) -> usize {
        self.live_client_invite
            + self.live_client_non_invite
            + self.live_server_invite
            + self.live_server_non_invite
    }
}
