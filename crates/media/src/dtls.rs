//! DTLS-SRTP (RFC 5763/5764), sans-IO: one DTLS 1.2 handshake, as server or client, whose
//! exported keys become the two [`SrtpContext`]s of a phone leg.
//!
//! Why OpenSSL (the `openssl` crate over Debian's libssl): the peer that matters here,
//! baresip, presents an RSA certificate, and the pure-Rust DTLS in str0m (`dimpl` 0.9)
//! accepts only ECDSA peers (it answers RSA with handshake_failure). Evaluated: `dimpl`
//! (ECDSA-only peers), `webrtc-dtls` (large async stack tied to tokio, its own UDP conn
//! abstraction, not sans-IO), str0m's `openssl` feature (needs str0m-openssl, not in the
//! registry we reach). OpenSSL accepts RSA and ECDSA peers, does use_srtp and RFC 5705
//! exporters, and its DTLS runs over any `Read + Write`, which here is an in-memory
//! datagram queue (module `io`); the `unsafe` of the memory BIO stays inside the crate's safe API.
//!
//! Sans-IO shape: [`Dtls::handle_datagram`] / [`Dtls::handle_timeout`] feed it,
//! [`Dtls::poll_datagram`] / [`Dtls::poll_timeout`] drain it. The retransmission timer
//! itself lives in OpenSSL (RFC 6347 §4.2.4: 1 s doubling, read from the system clock);
//! while a handshake is in progress [`Dtls::poll_timeout`] asks to be woken every
//! [`HANDSHAKE_TICK`], and each wake lets OpenSSL resend a flight whose timer ran out.
//!
//! Trust: certificates are self-signed on both sides; the peer's is accepted during the
//! handshake and checked against the SDP `a=fingerprint` when it completes; a mismatch
//! fails the leg before any key is used.

mod cert;
mod io;

pub use cert::{DtlsCertificate, Fingerprint, FingerprintAlgorithm};

use crate::srtp::{SrtpContext, SrtpError, SrtpProfile, MASTER_KEY_LEN, MASTER_SALT_LEN};
use io::DatagramIo;
use openssl::error::ErrorStack;
use openssl::srtp::SrtpProfileId;
use openssl::ssl::{
    ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode,
};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How often a handshake in progress is stepped so OpenSSL can retransmit.
pub const HANDSHAKE_TICK: Duration = Duration::from_millis(100);
/// Path MTU assumed for handshake flights (certificates are fragmented to fit).
const MTU: u32 = 1200;
/// RFC 5764 §4.2 exporter label.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";
/// The protection profiles offered / accepted, in order of preference.
const SRTP_PROFILES: &str = "SRTP_AES128_CM_SHA1_80:SRTP_AES128_CM_SHA1_32";

/// Why the DTLS side of a leg failed.
#[derive(Debug, Error)]
pub enum DtlsError {
    /// OpenSSL refused a setting or an operation.
    #[error("OpenSSL: {0}")]
    Openssl(#[from] ErrorStack),
    /// The handshake failed (alert, bad message, no common profile or cipher…).
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    /// The peer's certificate does not match the SDP `a=fingerprint`.
    #[error("the peer's DTLS certificate does not match its SDP fingerprint")]
    FingerprintMismatch,
    /// The peer presented no certificate.
    #[error("the peer presented no DTLS certificate")]
    NoPeerCertificate,
    /// The handshake did not negotiate a supported SRTP protection profile.
    #[error("no SRTP protection profile negotiated (use_srtp)")]
    NoSrtpProfile,
    /// The exported keys did not make SRTP contexts.
    #[error(transparent)]
    Srtp(#[from] SrtpError),
    /// The peer closed the association (close_notify) or it failed earlier.
    #[error("DTLS association closed")]
    Closed,
}

/// Which side of the handshake we are: `a=setup:passive` is the server, `active` the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// Waits for the ClientHello.
    Server,
    /// Sends the ClientHello.
    Client,
}

/// The SRTP contexts made from the handshake: `outbound` protects what we send, `inbound`
/// unprotects what the peer sends.
#[derive(Debug)]
pub struct SrtpPair {
    /// The negotiated protection profile.
    pub profile: SrtpProfile,
    /// Our key: protect RTP/RTCP we send.
    pub outbound: SrtpContext,
    /// The peer's key: unprotect RTP/RTCP we receive.
    pub inbound: SrtpContext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Failed,
}

/// One DTLS-SRTP association.
pub struct Dtls {
    stream: SslStream<DatagramIo>,
    role: DtlsRole,
    remote_fingerprint: Fingerprint,
    state: State,
    next_tick: Instant,
    srtp: Option<SrtpPair>,
}

impl std::fmt::Debug for Dtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dtls")
            .field("role", &self.role)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Dtls {
    /// An association presenting `cert`, expecting the peer's certificate to match
    /// `remote_fingerprint`. A client queues its ClientHello at once.
    pub fn new(
        role: DtlsRole,
        cert: &DtlsCertificate,
        remote_fingerprint: Fingerprint,
        now: Instant,
    ) -> Result<Dtls, DtlsError> {
        let mut ctx = SslContextBuilder::new(SslMethod::dtls())?;
        ctx.set_tlsext_use_srtp(SRTP_PROFILES)?;
        ctx.set_certificate(&cert.x509)?;
        ctx.set_private_key(&cert.key)?;
        ctx.check_private_key()?;
        // Self-signed on both sides: accept any certificate here, the fingerprint decides
        // once the handshake is done. PEER on a server asks the client for its certificate.
        ctx.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            |_, _| true,
        );
        // Phones' self-signed RSA keys may be 1024 bits or SHA-1 signed; the fingerprint,
        // not the key size, is the trust anchor.
        ctx.set_security_level(1);
        ctx.set_options(SslOptions::NO_QUERY_MTU);
        let ctx = ctx.build();
        let mut ssl = Ssl::new(&ctx)?;
        ssl.set_mtu(MTU)?;
        match role {
            DtlsRole::Server => ssl.set_accept_state(),
            DtlsRole::Client => ssl.set_connect_state(),
        }
        let stream = SslStream::new(ssl, DatagramIo::default())?;
        let mut dtls = Dtls {
            stream,
            role,
            remote_fingerprint,
            state: State::Handshaking,
            next_tick: now + HANDSHAKE_TICK,
            srtp: None,
        };
        if role == DtlsRole::Client {
            dtls.step()?;
        }
        Ok(dtls)
    }

    /// Our role in the handshake.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// The handshake completed and the peer's fingerprint matched.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// A DTLS record datagram from the peer (first byte 20..=63, RFC 7983).
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) -> Result<(), DtlsError> {
        if self.state == State::Failed {
            return Err(DtlsError::Closed);
        }
        self.stream.get_mut().push_incoming(datagram);
        self.next_tick = now + HANDSHAKE_TICK;
        self.step()
    }

    /// When [`Dtls::handle_timeout`] is next due: during the handshake only.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == State::Handshaking).then_some(self.next_tick)
    }

    /// Time passed: lets OpenSSL retransmit a flight whose timer ran out.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.state != State::Handshaking || now < self.next_tick {
            return Ok(());
        }
        self.next_tick = now + HANDSHAKE_TICK;
        self.step()
    }

    /// The next datagram to send to the peer.
    pub fn poll_datagram(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().outbox.pop_front()
    }

    /// The SRTP contexts, once, after the handshake completed.
    pub fn take_srtp(&mut self) -> Option<SrtpPair> {
        self.srtp.take()
    }

    /// Runs OpenSSL on what is queued: the handshake, or after it records that still
    /// matter (a retransmitted last flight of the peer, an alert).
    fn step(&mut self) -> Result<(), DtlsError> {
        let result = match self.state {
            State::Handshaking => self.step_handshake(),
            State::Connected => self.step_connected(),
            State::Failed => Err(DtlsError::Closed),
        };
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step_handshake(&mut self) -> Result<(), DtlsError> {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.srtp = Some(self.finish_handshake()?);
                self.state = State::Connected;
                // Records that came with the last flight (rare) are for the connected state.
                self.step_connected()
            }
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(()),
            Err(e) => Err(DtlsError::Handshake(e.to_string())),
        }
    }

    fn step_connected(&mut self) -> Result<(), DtlsError> {
        // No application data is carried; reading processes alerts and lets OpenSSL answer a
        // peer that resends its last flight because ours was lost.
        let mut scratch = [0u8; 2048];
        loop {
            match self.stream.ssl_read(&mut scratch) {
                Ok(_) => continue,
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Err(DtlsError::Closed),
                Err(e) => return Err(DtlsError::Handshake(e.to_string())),
            }
        }
    }

    /// Checks the peer's certificate against the SDP and derives the SRTP keys.
    fn finish_handshake(&self) -> Result<SrtpPair, DtlsError> {
        let ssl = self.stream.ssl();
        let peer = ssl.peer_certificate().ok_or(DtlsError::NoPeerCertificate)?;
        let seen = Fingerprint::of(&peer, self.remote_fingerprint.algorithm)?;
        if seen != self.remote_fingerprint {
            return Err(DtlsError::FingerprintMismatch);
        }
        let profile = match ssl.selected_srtp_profile().map(|p| p.id()) {
            Some(SrtpProfileId::SRTP_AES128_CM_SHA1_80) => SrtpProfile::AesCm128HmacSha1_80,
            Some(SrtpProfileId::SRTP_AES128_CM_SHA1_32) => SrtpProfile::AesCm128HmacSha1_32,
            _ => return Err(DtlsError::NoSrtpProfile),
        };
        // RFC 5764 §4.2: client key, server key, client salt, server salt.
        let mut material = [0u8; 2 * (MASTER_KEY_LEN + MASTER_SALT_LEN)];
        ssl.export_keying_material(&mut material, EXPORTER_LABEL, None)?;
        let (keys, salts) = material.split_at(2 * MASTER_KEY_LEN);
        let (client_key, server_key) = keys.split_at(MASTER_KEY_LEN);
        let (client_salt, server_salt) = salts.split_at(MASTER_SALT_LEN);
        let client = [client_key, client_salt].concat();
        let server = [server_key, server_salt].concat();
        let (ours, theirs) = match self.role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        };
        Ok(SrtpPair {
            profile,
            outbound: SrtpContext::new(profile, &ours)?,
            inbound: SrtpContext::new(profile, &theirs)?,
        })
    }
}

/// What a datagram on a DTLS-SRTP port is (RFC 7983 §7, by its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    /// 0..=3: STUN (ICE checks).
    Stun,
    /// 20..=63: DTLS.
    Dtls,
    /// 128..=191: RTP or RTCP (SRTP/SRTCP).
    Rtp,
    /// Anything else (ZRTP, TURN channels, noise): dropped.
    Other,
}

/// Classifies a datagram by its first byte (RFC 7983).
pub fn demux(datagram: &[u8]) -> Demux {
    match datagram.first() {
        Some(0..=3) => Demux::Stun,
        Some(20..=63) => Demux::Dtls,
        Some(128..=191) => Demux::Rtp,
        _ => Demux::Other,
    }
}

#[cfg(test)]
mod tests;
