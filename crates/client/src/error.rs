//! Why a client operation failed.

use std::io;
use switchboard_stun::{ErrorCode, ParseError, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer after every retransmission (or within the read timeout on streams).
    #[error("no response after {0} transmissions")]
    Timeout(u32),
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("building the request: {0}")]
    Build(#[from] WriteError),
    #[error("response does not parse: {0}")]
    Parse(#[from] ParseError),
    /// The server answered, but not as the protocol says (wrong method, bad
    /// MESSAGE-INTEGRITY, missing attribute, not STUN on a STUN stream...).
    #[error("{0}")]
    Protocol(String),
    /// An error response to a request.
    #[error("error {code} {reason}")]
    Code { code: ErrorCode, reason: String },
    /// The server kept asking for a new nonce.
    #[error("server keeps asking for a new nonce ({0})")]
    AuthLoop(ErrorCode),
    /// The connection closed.
    #[error("connection closed")]
    Closed,
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] Box<tungstenite::Error>),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

impl ClientError {
    /// Short label for failure statistics ("timeout", "401", "io", ...).
    pub fn label(&self) -> String {
        match self {
            ClientError::Timeout(_) => "timeout".into(),
            ClientError::Code { code, .. } | ClientError::AuthLoop(code) => code.0.to_string(),
            ClientError::Io(_) => "io".into(),
            _ => "protocol".into(),
        }
    }

    /// The STUN error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Code { code, .. } | ClientError::AuthLoop(code) => Some(*code),
            _ => None,
        }
    }
}
