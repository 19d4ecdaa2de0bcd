//! Server transactions (§17.2): a request creates one (or is a retransmission absorbed by
//! one), ACK and CANCEL find the INVITE they belong to, and the TU's responses move the
//! server INVITE (Proceeding/Completed/Confirmed/Accepted) and non-INVITE
//! (Trying/Proceeding/Completed) transactions on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::build::{response_to, rfc3261_branch, server_key, stamp_via};
use super::{Kind, Resend, State, TransactionLayer, Transport, Tx, TxError, TxEvent, TxId};
use crate::message::{Message, Method};

impl TransactionLayer {
    /// Sends the TU's response on server transaction `tx` (to where the request came from).
    /// `response` is usually built with [`super::response_to`] plus a To tag. A 2xx to an
    /// INVITE may be sent again in the Accepted state (the TU retransmits its 2xx until the
    /// ACK, §13.3.1.4).
    pub fn respond(
        &mut self,
        now: Instant,
        tx: TxId,
        response: Message<'static>,
    ) -> Result<(), TxError> {
        let now = self.clock(now);
        let Message::Response(resp) = &response else {
            return Err(TxError::NotAResponse);
        };
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return Err(TxError::NotAResponse);
        }
        let timer_64t1 = self.timeout_64t1();
        let t1 = self.config.t1;
        let id = tx;
        let tx = self.txs.get_mut(&id).ok_or(TxError::UnknownTransaction)?;
        let reliable = tx.transport.is_reliable();
        let final_ = status >= 200;
        match (tx.kind, tx.state) {
            (Kind::InviteServer, State::Proceeding) => {
                tx.trying_at = None;
                if (200..=299).contains(&status) {
                    // Timer L (RFC 6026).
                    tx.state = State::Accepted;
                    tx.deadline = Some(now + timer_64t1);
                } else if final_ {
                    tx.state = State::Completed;
                    // Timers G and H.
                    tx.retransmit = (!reliable).then_some((now + t1, t1));
                    tx.deadline = Some(now + timer_64t1);
                }
            }
            (Kind::InviteServer, State::Accepted) if (200..=299).contains(&status) => {}
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                if final_ {
                    tx.state = State::Completed;
                    // Timer J.
                    let wait = if reliable { Duration::ZERO } else { timer_64t1 };
                    tx.deadline = Some(now + wait);
                } else {
                    tx.state = State::Proceeding;
                }
            }
            _ => return Err(TxError::WrongState),
        }
        let mut bytes = Vec::new();
        response.to_bytes(&mut bytes);
        let bytes: Arc<[u8]> = bytes.into();
        tx.reply = Some(bytes.clone());
        let (dest, transport) = (tx.peer, tx.transport);
        let ends_now = tx.kind == Kind::NonInviteServer && final_ && reliable;
        self.transmit(Some(id), dest, transport, bytes);
        if ends_now {
            self.terminate(id);
        }
        self.reschedule(id);
        Ok(())
    }

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        request: Message<'_>,
        source: SocketAddr,
        transport: Transport,
    ) {
        let Message::Request(req) = &request else {
            return;
        };
        let is_ack = req.method == Method::Ack;
        let headers = &req.headers;
        let valid = headers.call_id().is_ok()
            && headers.from().is_ok()
            && headers.to().is_ok()
            && headers.cseq().is_ok_and(|c| c.method == req.method);
        let via = headers.top_via();
        let key = match (&via, valid) {
            (Ok(via), true) => rfc3261_branch(via).map(|b| server_key(via, b, &req.method)),
            _ => None,
        };
        let Some(key) = key else {
            if is_ack {
                self.counters.stray += 1;
            } else {
                self.counters.bad_requests += 1;
                self.answer_stateless(&request, 400, "Bad Request", source, transport);
            }
            return;
        };
        if let Some(&id) = self.keys.get(&key) {
            self.on_retransmitted_request(now, id, is_ack, request, source, transport);
            return;
        }
        match req.method {
            // No INVITE transaction: the ACK of a 2xx, the dialog layer's.
            Method::Ack => self.ack_up(request, source, transport),
            Method::Cancel => self.on_cancel(now, key, request, source, transport),
            _ => {
                if self.at_limit() {
                    self.counters.refused += 1;
                    self.answer_stateless(&request, 503, "Service Unavailable", source, transport);
                    return;
                }
                let invite = req.method == Method::Invite;
                let mut request = request.into_owned();
                stamp_via(&mut request, source);
                let tx = Tx {
                    kind: if invite {
                        Kind::InviteServer
                    } else {
                        Kind::NonInviteServer
                    },
                    state: if invite {
                        State::Proceeding
                    } else {
                        State::Trying
                    },
                    key,
                    created: now,
                    peer: source,
                    transport,
                    request: request.clone(),
                    request_bytes: Arc::from(&[][..]),
                    reply: None,
                    retransmit: None,
                    // Timer C for an INVITE the TU never answers; 64·T1 for a
                    // non-INVITE (the client gave up by then: Timer F).
                    deadline: Some(
                        now + if invite {
                            self.config.timer_c
                        } else {
                            self.timeout_64t1()
                        },
                    ),
                    trying_at: invite.then_some(now + self.config.trying_delay),
                    wake: None,
                };
                let id = self.insert(tx);
                self.event(TxEvent::Request {
                    tx: id,
                    request,
                    source,
                    transport,
                });
            }
        }
    }

    /// An ACK for a 2xx goes up to the TU (the dialog layer), its Via stamped.
    fn ack_up(&mut self, request: Message<'_>, source: SocketAddr, transport: Transport) {
        let mut request = request.into_owned();
        stamp_via(&mut request, source);
        self.event(TxEvent::Ack {
            request,
            source,
            transport,
        });
    }

    fn on_retransmitted_request(
        &mut self,
        now: Instant,
        id: TxId,
        is_ack: bool,
        request: Message<'_>,
        source: SocketAddr,
        transport: Transport,
    ) {
        let t4 = self.config.t4;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        let reliable = tx.transport.is_reliable();
        match (tx.kind, tx.state, is_ack) {
            (Kind::InviteServer, State::Completed, true) => {
                tx.state = State::Confirmed;
                // Timer I.
                let wait = if reliable { Duration::ZERO } else { t4 };
                self.end_after(id, now, wait);
            }
            // An ACK for the 2xx reusing the INVITE's branch: the dialog layer's.
            (Kind::InviteServer, State::Accepted, true) => self.ack_up(request, source, transport),
            (Kind::InviteServer, State::Proceeding, false) if tx.reply.is_none() => {
                // The INVITE came again before the TU answered: the 100 Trying now.
                self.send_trying(id);
            }
            (Kind::InviteServer, State::Proceeding | State::Completed, false)
            | (Kind::NonInviteServer, State::Proceeding | State::Completed, false) => {
                self.resend(id, Resend::Reply)
            }
            // Trying (non-INVITE, no answer yet), Confirmed, Accepted, a stray ACK:
            // absorbed.
            _ => {}
        }
        self.reschedule(id);
    }

    /// §9.2: a CANCEL is answered by the layer on its own server transaction.
    fn on_cancel(
        &mut self,
        now: Instant,
        key: super::Key,
        cancel: Message<'_>,
        source: SocketAddr,
        transport: Transport,
    ) {
        if self.at_limit() {
            self.counters.refused += 1;
            self.answer_stateless(&cancel, 503, "Service Unavailable", source, transport);
            return;
        }
        let invite_key = (key.0.clone(), key.1.clone(), Method::Invite.to_string());
        let invite = self.keys.get(&invite_key).copied().filter(|id| {
            self.txs
                .get(id)
                .is_some_and(|t| t.kind == Kind::InviteServer)
        });
        let (status, reason) = match invite {
            Some(_) => (200, "OK"),
            None => (481, "Call/Transaction Does Not Exist"),
        };
        let mut cancel = cancel.into_owned();
        stamp_via(&mut cancel, source);
        let tx = Tx {
            kind: Kind::NonInviteServer,
            state: State::Trying,
            key,
            created: now,
            peer: source,
            transport,
            request: cancel.clone(),
            request_bytes: Arc::from(&[][..]),
            reply: None,
            retransmit: None,
            deadline: None,
            trying_at: None,
            wake: None,
        };
        let id = self.insert(tx);
        let mut answer = response_to(&cancel, status, reason);
        add_to_tag(&mut answer);
        let _ = self.respond(now, id, answer);
        if let Some(invite) = invite {
            let pending = self
                .txs
                .get(&invite)
                .is_some_and(|t| t.state == State::Proceeding);
            if pending {
                self.event(TxEvent::Cancelled { invite, cancel });
            }
        }
    }

    /// Sends `100 Trying` for a server INVITE the TU has not answered yet.
    pub(super) fn send_trying(&mut self, id: TxId) {
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        tx.trying_at = None;
        if tx.state != State::Proceeding || tx.reply.is_some() {
            return;
        }
        let mut bytes = Vec::new();
        response_to(&tx.request, 100, "Trying").to_bytes(&mut bytes);
        let bytes: Arc<[u8]> = bytes.into();
        tx.reply = Some(bytes.clone());
        let (dest, transport) = (tx.peer, tx.transport);
        self.transmit(Some(id), dest, transport, bytes);
    }

    /// A response outside any transaction (400, 503).
    fn answer_stateless(
        &mut self,
        request: &Message<'_>,
        status: u16,
        reason: &str,
        dest: SocketAddr,
        transport: Transport,
    ) {
        let mut answer = response_to(request, status, reason);
        add_to_tag(&mut answer);
        let mut bytes = Vec::new();
        answer.to_bytes(&mut bytes);
        self.transmit(None, dest, transport, bytes.into());
    }
}

/// A final response the layer makes itself carries a To tag (§8.2.6.2); any fixed tag
/// will do since it creates no dialog.
pub(super) fn add_to_tag(response: &mut Message<'static>) {
    let headers = response.headers_mut();
    let Some(to) = headers.get("To") else {
        return;
    };
    let tagged = crate::uri::NameAddr::parse(to).is_ok_and(|n| n.tag().is_some());
    if !tagged {
        let value = format!("{to};tag=sbtx");
        headers.set("To", value);
    }
}
