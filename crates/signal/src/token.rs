//! Room tokens: JWTs signed with HS256 that admit one identity to a room with grants.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a session may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grants {
    /// May send `offer`.
    pub publish: bool,
    /// May send `answer` and `candidate`.
    pub subscribe: bool,
    /// May `kick`.
    pub admin: bool,
}

impl Grants {
    /// Open rooms and tokens without a `grants` claim.
    pub const DEFAULT: Grants = Grants {
        publish: true,
        subscribe: true,
        admin: false,
    };

    /// Parse grant names; unknown names are an error.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Grants, String> {
        let mut g = Grants {
            publish: false,
            subscribe: false,
            admin: false,
        };
        for n in names {
            match n.as_ref() {
                "publish" => g.publish = true,
                "subscribe" => g.subscribe = true,
                "admin" => g.admin = true,
                other => return Err(format!("unknown grant {other:?}")),
            }
        }
        Ok(g)
    }

    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.publish {
            v.push("publish");
        }
        if self.subscribe {
            v.push("subscribe");
        }
        if self.admin {
            v.push("admin");
        }
        v
    }
}

/// The claims of a room token.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The room, or `*` for any.
    pub room: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token is for another room")]
    WrongRoom,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// What an accepted token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub identity: Option<String>,
    /// The room the token names (`*`: any).
    pub room: String,
    pub grants: Grants,
}

/// Check `token` for `room` at `unix_now` against any of `secrets`.
pub fn verify(
    secrets: &[Vec<u8>],
    token: &str,
    room: &str,
    unix_now: u64,
) -> Result<Admission, TokenError> {
    verify_for(secrets, token, Some(room), unix_now)
}

/// Verify a token for whatever room it names: the holder is someone the operator
/// admitted somewhere (for services beside a room, such as relay credentials).
pub fn verify_holder(
    secrets: &[Vec<u8>],
    token: &str,
    unix_now: u64,
) -> Result<Admission, TokenError> {
    verify_for(secrets, token, None, unix_now)
}

fn verify_for(
    secrets: &[Vec<u8>],
    token: &str,
    room: Option<&str>,
    unix_now: u64,
) -> Result<Admission, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    // Expiry is checked below against the caller's clock (sans-IO, testable), with no leeway.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    // Claims the protocol does not define are ignored; jsonwebtoken would refuse any `aud`.
    validation.validate_aud = false;
    let mut last = TokenError::Invalid("no secret configured".into());
    for secret in secrets {
        match decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation) {
            Ok(data) => return admit(data.claims, room, unix_now),
            Err(e) => last = TokenError::Invalid(e.to_string()),
        }
    }
    Err(last)
}

fn admit(c: Claims, room: Option<&str>, unix_now: u64) -> Result<Admission, TokenError> {
    if c.exp <= unix_now {
        return Err(TokenError::Expired);
    }
    if c.nbf.is_some_and(|nbf| nbf > unix_now) {
        return Err(TokenError::NotYetValid);
    }
    if room.is_some_and(|r| c.room != "*" && c.room != r) {
        return Err(TokenError::WrongRoom);
    }
    let grants = match &c.grants {
        None => Grants::DEFAULT,
        Some(names) => Grants::from_names(names).map_err(TokenError::Invalid)?,
    };
    Ok(Admission {
        room: c.room,
        identity: c.sub,
        grants,
    })
}

/// Sign `claims` with HS256 under `secret`.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, TokenError> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))
}
