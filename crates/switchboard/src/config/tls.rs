//! `[tls]`: the certificate both TURN over TLS and HTTPS use.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
#[group(id = "tls")]
pub struct TlsSettings {
    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CERT")]
    pub cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_PKEY")]
    pub pkey: Option<PathBuf>,

    /// Generate a self-signed certificate at start for HTTPS and TURN over TLS (when
    /// --cert/--pkey are not given); its SHA-256 fingerprint is logged.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_TLS_SELF_SIGNED", num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub tls_self_signed: bool,
}

impl TlsSettings {
    pub fn source(&self) -> crate::tls::Source<'_> {
        crate::tls::Source {
            cert: self.cert.as_deref(),
            pkey: self.pkey.as_deref(),
            self_signed: self.tls_self_signed,
        }
    }
}
