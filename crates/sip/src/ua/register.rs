//! Registrations at registrars (RFC 3261 §10): REGISTER with digest authentication (the
//! algorithm the challenge names: MD5 or SHA-256), `423 Interval Too Brief` answered with
//! the registrar's Min-Expires, refreshes at min(granted/2, granted − 30 s) of what the
//! registrar granted (our Contact's `expires`, else the Expires header), retries after
//! failures with a backoff of 5 s doubling to 300 s, and de-registration (`Expires: 0`).
//!
//! A registration keeps its Call-ID and From tag for its whole life and counts CSeq up, as
//! §10.2 asks, so that the registrar sees one binding refreshed rather than new ones.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::build::{new_tag, reason_of, status_of};
use super::{Owner, RegId, UaEvent, UserAgent};
use crate::digest::{Challenge, DigestRequest};
use crate::message::{Contact, Message, Method};
use crate::transaction::{Transport, TxId};
use crate::uri::Uri;

const FIRST_RETRY: Duration = Duration::from_secs(5);
const LAST_RETRY: Duration = Duration::from_secs(300);

/// A registration at a registrar.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The address of record, e.g. `sip:alice@example.com`.
    pub aor: String,
    /// Digest credentials.
    pub username: String,
    pub password: String,
    /// Where REGISTER goes (resolved by the binary).
    pub registrar: SocketAddr,
    pub transport: Transport,
    /// Asked for (default 600).
    pub expires: u32,
    /// The user part of our Contact.
    pub contact_user: String,
}

/// Without the password.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("aor", &self.aor)
            .field("username", &self.username)
            .field("registrar", &self.registrar)
            .field("transport", &self.transport)
            .field("expires", &self.expires)
            .field("contact_user", &self.contact_user)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// An account over UDP asking for 600 s, with the username as the Contact's user.
    pub fn new(aor: &str, username: &str, password: &str, registrar: SocketAddr) -> Account {
        Account {
            aor: aor.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            registrar,
            transport: Transport::Udp,
            expires: 600,
            contact_user: username.to_owned(),
        }
    }
}

/// Where a registration is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    Registering,
    /// Registered for `expires` seconds (as granted).
    Registered {
        expires: u32,
    },
    /// Refused or unanswered; tried again after `retry_in`.
    Failed {
        status: Option<u16>,
        reason: String,
        retry_in: Duration,
    },
    /// De-registered (or gave up de-registering); the registration is forgotten.
    Unregistered,
}

#[derive(Debug)]
pub(super) struct Registration {
    account: Account,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// Asked for (raised by a 423).
    expires: u32,
    /// The REGISTER in flight.
    tx: Option<TxId>,
    /// The request in flight carries credentials (a second challenge is a refusal).
    auth_tried: bool,
    /// Refresh or retry.
    next_at: Option<Instant>,
    backoff: Duration,
    unregistering: bool,
}

impl Registration {
    pub fn next_wake(&self) -> Option<Instant> {
        self.next_at
    }
}

/// When to refresh a registration granted for `granted` seconds.
fn refresh_after(granted: u32) -> Duration {
    Duration::from_secs(u64::from(
        (granted / 2).min(granted.saturating_sub(30)).max(1),
    ))
}

impl UserAgent {
    /// Starts registering `account` (now, then refreshed; retried after failures).
    pub fn register(&mut self, now: Instant, account: Account) -> RegId {
        let now = self.clock(now);
        let id = RegId(self.next_id());
        let reg = Registration {
            expires: account.expires,
            account,
            call_id: format!("{}@switchboard", switchboard_util::random_hex(12)),
            from_tag: new_tag(),
            cseq: 0,
            tx: None,
            auth_tried: false,
            next_at: None,
            backoff: FIRST_RETRY,
            unregistering: false,
        };
        self.regs.insert(id, reg);
        self.emit_reg(id, super::RegState::Registering);
        self.send_register(now, id, None);
        id
    }

    /// De-registers (`Expires: 0`, answering a challenge); [`RegState::Unregistered`]
    /// follows and the registration is forgotten.
    pub fn unregister(&mut self, now: Instant, reg: RegId) {
        let now = self.clock(now);
        let Some(r) = self.regs.get_mut(&reg) else {
            return;
        };
        r.unregistering = true;
        r.auth_tried = false;
        r.next_at = None;
        self.send_register(now, reg, None);
    }

    fn emit_reg(&mut self, reg: RegId, state: RegState) {
        self.events.push_back(UaEvent::Registration { reg, state });
    }

    /// Sends a REGISTER (with `auth`: header name and value).
    fn send_register(&mut self, now: Instant, reg: RegId, auth: Option<(&'static str, String)>) {
        let Some(r) = self.regs.get(&reg) else {
            return;
        };
        let transport = r.account.transport;
        let via = self.via(transport);
        let contact = self.contact(&r.account.contact_user, transport);
        let user_agent = self.cfg.user_agent.clone();
        let Some(r) = self.regs.get_mut(&reg) else {
            return;
        };
        let request_uri = Uri::parse(&r.account.aor).ok().map(|mut u| {
            u.user = None;
            u.password = None;
            u.params.0.clear();
            u.headers.clear();
            u.into_owned()
        });
        let Some(request_uri) = request_uri else {
            self.regs.remove(&reg);
            self.emit_reg(
                reg,
                RegState::Failed {
                    status: None,
                    reason: "bad address of record".to_owned(),
                    retry_in: Duration::ZERO,
                },
            );
            self.emit_reg(reg, RegState::Unregistered);
            return;
        };
        r.cseq = r.cseq.wrapping_add(1) % (1 << 31);
        let expires = if r.unregistering { 0 } else { r.expires };
        let mut m = Message::request(Method::Register, request_uri);
        let h = m.headers_mut();
        h.push("Via", via);
        h.push("Max-Forwards", "70");
        h.push("From", format!("<{}>;tag={}", r.account.aor, r.from_tag));
        h.push("To", format!("<{}>", r.account.aor));
        h.push("Call-ID", r.call_id.clone());
        h.push("CSeq", format!("{} REGISTER", r.cseq));
        h.push("Contact", contact.to_string());
        h.push("Expires", expires.to_string());
        h.push("User-Agent", user_agent);
        r.auth_tried = auth.is_some();
        if let Some((name, value)) = auth {
            h.push(name, value);
        }
        let (dest, transport) = (r.account.registrar, r.account.transport);
        match self.tx.send_request(now, m.into_owned(), dest, transport) {
            Ok(tx) => {
                if let Some(r) = self.regs.get_mut(&reg) {
                    r.tx = Some(tx);
                }
                self.owners.insert(tx, Owner::Register(reg));
            }
            Err(e) => self.registration_failed(now, reg, None, &e.to_string()),
        }
    }

    pub(super) fn on_register_response(
        &mut self,
        now: Instant,
        reg: RegId,
        tx: TxId,
        response: &Message<'_>,
    ) {
        let status = status_of(response);
        let Some(r) = self.regs.get_mut(&reg) else {
            return;
        };
        if status < 200 || r.tx != Some(tx) {
            return;
        }
        r.tx = None;
        match status {
            401 | 407 if !r.auth_tried => {
                let (challenge, answer) = if status == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                let challenge = response
                    .headers()
                    .get_all(challenge)
                    .find_map(|v| Challenge::parse(v).ok());
                let Some(challenge) = challenge else {
                    self.registration_failed(now, reg, Some(status), "unusable challenge");
                    return;
                };
                let uri = match Uri::parse(&r.account.aor) {
                    Ok(mut u) => {
                        u.user = None;
                        u.password = None;
                        u.params.0.clear();
                        u.headers.clear();
                        u.to_string()
                    }
                    Err(_) => return,
                };
                let creds = challenge.respond(
                    &r.account.username,
                    &r.account.password,
                    &DigestRequest {
                        method: "REGISTER",
                        uri: &uri,
                        body: &[],
                    },
                    &switchboard_util::random_hex(8),
                    1,
                );
                self.send_register(now, reg, Some((answer, creds.to_header_value())));
            }
            423 if !r.unregistering => {
                match response
                    .headers()
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(min) if min > r.expires => {
                        r.expires = min;
                        self.send_register(now, reg, None);
                    }
                    _ => self.registration_failed(now, reg, Some(423), &reason_of(response)),
                }
            }
            200..=299 if r.unregistering => {
                self.regs.remove(&reg);
                self.emit_reg(reg, RegState::Unregistered);
            }
            200..=299 => {
                let Some(transport) = self.regs.get(&reg).map(|r| r.account.transport) else {
                    return;
                };
                let ours = self.sent_by(transport);
                let Some(r) = self.regs.get_mut(&reg) else {
                    return;
                };
                let h = response.headers();
                let from_contact = h.contacts().ok().and_then(|cs| {
                    cs.iter().find_map(|c| match c {
                        Contact::Addr(a)
                            if a.uri.user.as_deref() == Some(r.account.contact_user.as_str())
                                && host_port(&a.uri) == ours =>
                        {
                            c.expires()
                        }
                        _ => None,
                    })
                });
                let granted = from_contact
                    .or(h.expires().ok().flatten())
                    .unwrap_or(r.expires);
                if granted == 0 {
                    self.registration_failed(now, reg, Some(status), "binding not kept");
                    return;
                }
                r.backoff = FIRST_RETRY;
                r.next_at = Some(now + refresh_after(granted));
                self.emit_reg(reg, RegState::Registered { expires: granted });
            }
            _ => self.registration_failed(now, reg, Some(status), &reason_of(response)),
        }
    }

    pub(super) fn on_register_failed(&mut self, now: Instant, reg: RegId, tx: TxId, why: &str) {
        if self.regs.get(&reg).is_some_and(|r| r.tx == Some(tx)) {
            self.registration_failed(now, reg, None, why);
        }
    }

    fn registration_failed(&mut self, now: Instant, reg: RegId, status: Option<u16>, why: &str) {
        let Some(r) = self.regs.get_mut(&reg) else {
            return;
        };
        r.tx = None;
        r.auth_tried = false;
        if r.unregistering {
            self.regs.remove(&reg);
            self.emit_reg(reg, RegState::Unregistered);
            return;
        }
        let retry_in = r.backoff;
        r.backoff = r.backoff.saturating_mul(2).min(LAST_RETRY);
        r.next_at = Some(now + retry_in);
        self.emit_reg(
            reg,
            RegState::Failed {
                status,
                reason: why.to_owned(),
                retry_in,
            },
        );
    }

    /// A refresh or retry is due.
    pub(super) fn reg_timer(&mut self, now: Instant, reg: RegId) {
        let Some(r) = self.regs.get_mut(&reg) else {
            return;
        };
        r.next_at = None;
        if r.tx.is_some() {
            return;
        }
        self.send_register(now, reg, None);
    }
}

/// `host[:port]` of a URI as we write our sent-by.
fn host_port(uri: &Uri<'_>) -> String {
    match uri.port {
        Some(p) => format!("{}:{p}", uri.host),
        None => uri.host.to_string(),
    }
}
