//! TLS for TURN over TLS and HTTPS: the certificate and key from --cert/--pkey, or one
//! generated at start with --tls-self-signed. Takes plain values, not the settings, so
//! that TLS is a leaf under the configuration rather than part of a cycle with it.

use crate::error::ConfigError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;

/// A certificate chain and its key.
pub struct TlsMaterial {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate, `AB:CD:…`.
    pub fingerprint: String,
    pub self_signed: bool,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint.clone(),
            self_signed: self.self_signed,
        }
    }
}

fn fingerprint(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Where the certificate comes from: `--cert`/`--pkey`, `--tls-self-signed`.
pub struct Source<'a> {
    pub cert: Option<&'a std::path::Path>,
    pub pkey: Option<&'a std::path::Path>,
    pub self_signed: bool,
}

/// The material from --cert/--pkey; else `generated` (kept across reloads) or, with
/// --tls-self-signed, a new self-signed certificate for `names`; else None.
pub fn material(
    source: &Source<'_>,
    generated: Option<&TlsMaterial>,
    names: &[IpAddr],
) -> Result<Option<TlsMaterial>, ConfigError> {
    match (source.cert, source.pkey) {
        (Some(_), None) => return Err(ConfigError::new("pkey", "--cert needs --pkey")),
        (None, Some(_)) => return Err(ConfigError::new("cert", "--pkey needs --cert")),
        (Some(c), Some(k)) => return from_files(c, k).map(Some),
        (None, None) => {}
    }
    if !source.self_signed {
        return Ok(None);
    }
    if let Some(g) = generated {
        return Ok(Some(g.clone()));
    }
    let mut sans = vec!["localhost".to_string()];
    sans.extend(names.iter().map(|ip| ip.to_string()));
    let ck = rcgen::generate_simple_self_signed(sans)
        .map_err(|e| ConfigError::new("tls-self-signed", e.to_string()))?;
    let der = ck.cert.der().clone();
    Ok(Some(TlsMaterial {
        fingerprint: fingerprint(&der),
        certs: vec![der],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der())),
        self_signed: true,
    }))
}

fn from_files(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsMaterial, ConfigError> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| ConfigError::new("cert", format!("cannot read {}: {e}", cert.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new("cert", format!("{}: {e}", cert.display())))?;
    let Some(leaf) = certs.first() else {
        return Err(ConfigError::new(
            "cert",
            format!("{}: no PEM certificate found", cert.display()),
        ));
    };
    let fingerprint = fingerprint(leaf);
    let key_pem = std::fs::read(key)
        .map_err(|e| ConfigError::new("pkey", format!("cannot read {}: {e}", key.display())))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ConfigError::new("pkey", format!("{}: {e}", key.display())))?
        .ok_or_else(|| {
            ConfigError::new(
                "pkey",
                format!("{}: no PEM private key found", key.display()),
            )
        })?;
    Ok(TlsMaterial {
        certs,
        key,
        fingerprint,
        self_signed: false,
    })
}

/// A rustls server config offering `alpn`.
pub fn server_config(
    m: &TlsMaterial,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(m.certs.clone(), m.key.clone_key())
        .map_err(|e| ConfigError::new("pkey", format!("certificate and key do not fit: {e}")))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// TURN over TLS: RFC 7443 ALPN "stun.turn" (clients without ALPN are accepted too).
pub fn turn_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    server_config(m, &[b"stun.turn"])
}

/// HTTPS (HTTP/1.1, which WebSocket upgrades need); with `turn` (--turn-on-http-port)
/// it offers "stun.turn" first, so a client offering it gets TURN (see demux.rs).
pub fn https_config(m: &TlsMaterial, turn: bool) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    match turn {
        true => server_config(m, &[b"stun.turn", b"http/1.1"]),
        false => server_config(m, &[b"http/1.1"]),
    }
}
