//! Connections the gateway opens: a request for a TCP or TLS next hop (a trunk or
//! registrar with `;transport=tcp|tls`, a `sips:` target) goes on a connection to it,
//! opened when none is open and reused for what follows (RFC 3261 §18.1.1: responses
//! and the far end's in-dialog requests come back on it). The agent gets a sender at
//! once and writes into it; the bytes wait in the channel until the connection is up.
//! A connection that cannot be made is reported `Closed` without `Connected`, and the
//! agent fails the transactions that were waiting for it (§18.4, the UA's
//! transport-error path). Once up, it is `stream::connection`, like an accepted one.
//!
//! TLS is rustls with the webpki roots plus `--sip-tls-ca` (private CAs), the next hop's
//! name (or IP address) verified. Bounds: a connect takes at most [`CONNECT_WAIT`], a
//! TLS handshake at most [`HANDSHAKE_WAIT`], and the connections count in the same
//! `ConnLimits` as accepted ones.

use super::stream::{connection, next_conn_id, ConnId, ConnKey, ConnLimits, StreamEvent};
use crate::error::ConfigError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_sip::transaction::Transport;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_rustls::rustls::pki_types::ServerName;

/// How long a TCP connect may take.
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long a TLS handshake may take after the connect.
pub const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// The TLS client configuration: webpki roots, plus every certificate of `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|e| {
            ConfigError::new("sip-tls-ca", format!("cannot read {}: {e}", path.display()))
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert
                .map_err(|e| ConfigError::new("sip-tls-ca", format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| ConfigError::new("sip-tls-ca", format!("{}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::new(
                "sip-tls-ca",
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("sip-tls-ca", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Opens connections for the agent.
pub struct Dialer {
    pub tls: tokio_rustls::TlsConnector,
    pub events: UnboundedSender<StreamEvent>,
    pub limits: Arc<ConnLimits>,
}

impl Dialer {
    /// Start a connection to `key` (TCP or TLS; `tls_name` is the name the certificate
    /// must carry, else the address). Returns its id and the sender to write on now.
    pub fn open(
        &self,
        key: ConnKey,
        tls_name: Option<&str>,
    ) -> (ConnId, UnboundedSender<Arc<[u8]>>) {
        let id = next_conn_id();
        let (tx, out) = unbounded_channel();
        let events = self.events.clone();
        let limits = self.limits.clone();
        let tls = (key.0 == Transport::Tls).then(|| {
            let name = tls_name
                .and_then(|n| ServerName::try_from(n.to_string()).ok())
                .unwrap_or_else(|| ServerName::IpAddress(key.1.ip().into()));
            (self.tls.clone(), name)
        });
        tokio::spawn(async move {
            let failed = |why: String| {
                tracing::info!(peer = %key.1, transport = key.0.as_str(), "SIP connection failed: {why}");
                let _ = events.send(StreamEvent::Closed(key, id));
            };
            let Some(slot) = limits.take(key.1.ip()) else {
                return failed("too many connections".into());
            };
            let tcp = match tokio::time::timeout(CONNECT_WAIT, TcpStream::connect(key.1)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => return failed(e.to_string()),
                Err(_) => return failed(format!("no connect in {CONNECT_WAIT:?}")),
            };
            let _ = tcp.set_nodelay(true);
            match tls {
                None => {
                    let _ = events.send(StreamEvent::Connected(id));
                    connection(tcp, key, id, events, out, slot).await;
                }
                Some((connector, name)) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_WAIT, connector.connect(name, tcp)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let _ = events.send(StreamEvent::Connected(id));
                            connection(stream, key, id, events, out, slot).await;
                        }
                        Ok(Err(e)) => failed(format!("TLS: {e}")),
                        Err(_) => failed(format!("no TLS handshake in {HANDSHAKE_WAIT:?}")),
                    }
                }
            }
        });
        (id, tx)
    }
}

#[cfg(test)]
mod tests {
    use super::client_config;

    #[test]
    fn extra_cas_are_read_or_refused_clearly() {
        assert!(client_config(None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        assert!(client_config(Some(&good)).is_ok());
    }
}
