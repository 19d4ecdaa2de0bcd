//! The DTLS certificate of our side and the SDP `a=fingerprint` (RFC 8122) both sides check.
//!
//! Our certificate is self-signed and made per leg (ECDSA P-256: a key pair costs well under
//! a millisecond); trust comes from the fingerprint carried in the signalled SDP, not from a
//! chain, so the peer's certificate may be any self-signed one (baresip's is RSA).

use super::DtlsError;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509Ref, X509};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long our certificate is valid (a call is far shorter; peers check fingerprints only).
const VALIDITY_DAYS: u32 = 30;

/// A self-signed certificate and its private key.
#[derive(Clone)]
pub struct DtlsCertificate {
    pub(super) x509: X509,
    pub(super) key: PKey<Private>,
}

impl fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsCertificate").finish_non_exhaustive()
    }
}

impl DtlsCertificate {
    /// A fresh ECDSA P-256 certificate (what our side presents).
    pub fn new_ecdsa() -> Result<DtlsCertificate, DtlsError> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        Self::self_signed(key)
    }

    /// A fresh RSA certificate of `bits` (what baresip and older phones present; here for
    /// peers in tests and for interop with peers that only take RSA).
    pub fn new_rsa(bits: u32) -> Result<DtlsCertificate, DtlsError> {
        let key = PKey::from_rsa(Rsa::generate(bits)?)?;
        Self::self_signed(key)
    }

    fn self_signed(key: PKey<Private>) -> Result<DtlsCertificate, DtlsError> {
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "switchboard")?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        // A day back: a peer with a slightly late clock still sees it valid.
        let yesterday = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(86_400);
        let not_before = Asn1Time::from_unix(yesterday.try_into().unwrap_or(0))?;
        b.set_not_before(&not_before)?;
        let not_after = Asn1Time::days_from_now(VALIDITY_DAYS)?;
        b.set_not_after(&not_after)?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(DtlsCertificate {
            x509: b.build(),
            key,
        })
    }

    /// The certificate's fingerprint for the SDP (`a=fingerprint:sha-256 …`).
    pub fn fingerprint(&self) -> Result<Fingerprint, DtlsError> {
        Fingerprint::of(&self.x509, FingerprintAlgorithm::Sha256)
    }
}

/// The hash of an `a=fingerprint` (RFC 8122 §5; sha-256 is what everyone sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintAlgorithm {
    /// `sha-1` (old endpoints).
    Sha1,
    /// `sha-256`.
    Sha256,
    /// `sha-384`.
    Sha384,
    /// `sha-512`.
    Sha512,
}

impl FingerprintAlgorithm {
    fn digest(self) -> MessageDigest {
        match self {
            FingerprintAlgorithm::Sha1 => MessageDigest::sha1(),
            FingerprintAlgorithm::Sha256 => MessageDigest::sha256(),
            FingerprintAlgorithm::Sha384 => MessageDigest::sha384(),
            FingerprintAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }

    fn sdp_name(self) -> &'static str {
        match self {
            FingerprintAlgorithm::Sha1 => "sha-1",
            FingerprintAlgorithm::Sha256 => "sha-256",
            FingerprintAlgorithm::Sha384 => "sha-384",
            FingerprintAlgorithm::Sha512 => "sha-512",
        }
    }
}

/// A certificate fingerprint as signalled in SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The hash function.
    pub algorithm: FingerprintAlgorithm,
    /// The digest of the DER certificate.
    pub bytes: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of `cert` with `algorithm`.
    pub fn of(cert: &X509Ref, algorithm: FingerprintAlgorithm) -> Result<Fingerprint, DtlsError> {
        Ok(Fingerprint {
            algorithm,
            bytes: cert.digest(algorithm.digest())?.to_vec(),
        })
    }

    /// Parses the value of `a=fingerprint:` (`SHA-256 C0:96:…`, case-insensitive); `None`
    /// for an unknown hash or malformed hex.
    pub fn parse(value: &str) -> Option<Fingerprint> {
        let (name, hex) = value.trim().split_once(' ')?;
        let algorithm = match name.to_ascii_lowercase().as_str() {
            "sha-1" => FingerprintAlgorithm::Sha1,
            "sha-256" => FingerprintAlgorithm::Sha256,
            "sha-384" => FingerprintAlgorithm::Sha384,
            "sha-512" => FingerprintAlgorithm::Sha512,
            _ => return None,
        };
        let bytes = hex
            .trim()
            .split(':')
            .map(|b| {
                if b.len() == 2 {
                    u8::from_str_radix(b, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u8>>>()?;
        if bytes.len() != algorithm.digest().size() {
            return None;
        }
        Some(Fingerprint { algorithm, bytes })
    }
}

impl fmt::Display for Fingerprint {
    /// The `a=fingerprint:` value: `sha-256 C0:96:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm.sdp_name())?;
        for (i, b) in self.bytes.iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ':' };
            write!(f, "{sep}{b:02X}")?;
        }
        Ok(())
    }
}
