//! Loading the TLS certificate and key for TURN over TLS.

use crate::plan::ConfigError;
use crate::settings::Settings;
use std::sync::Arc;

/// The rustls server config from --cert/--pkey, or None when neither is set.
pub fn load(s: &Settings) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    let (cert, key) = match (&s.cert, &s.pkey) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(ConfigError::new("pkey", "--cert needs --pkey")),
        (None, Some(_)) => return Err(ConfigError::new("cert", "--pkey needs --cert")),
        (Some(c), Some(k)) => (c, k),
    };
    let cert_pem = std::fs::read(cert)
        .map_err(|e| ConfigError::new("cert", format!("cannot read {}: {e}", cert.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new("cert", format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            "cert",
            format!("{}: no PEM certificate found", cert.display()),
        ));
    }
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError::new("pkey", format!("certificate and key do not fit: {e}")))?;
    // RFC 7443: TURN over TLS may negotiate ALPN "stun.turn"; accept clients without ALPN too.
    cfg.alpn_protocols = vec![b"stun.turn".to_vec()];
    Ok(Some(Arc::new(cfg)))
}
