//! Client transactions (§17.1): sending a request, CANCEL of a pending INVITE, and what a
//! response does to a client INVITE (Calling/Proceeding/Completed/Accepted) or non-INVITE
//! (Trying/Proceeding/Completed) transaction.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::build::{ack_for, cancel_for, client_key, rfc3261_branch};
use super::{Kind, Resend, State, TransactionLayer, Transport, Tx, TxError, TxEvent, TxId};
use crate::message::{Message, Method};

impl TransactionLayer {
    /// Starts a client transaction for `request` (any method but ACK) toward `dest`. The
    /// request must carry its top Via with a fresh `z9hG4bK` branch and a CSeq of its
    /// method; it is serialized once here.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Message<'static>,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<TxId, TxError> {
        let now = self.clock(now);
        let Message::Request(req) = &request else {
            return Err(TxError::NotARequest);
        };
        let kind = match req.method {
            Method::Ack => return Err(TxError::AckNotATransaction),
            Method::Invite => Kind::InviteClient,
            _ => Kind::NonInviteClient,
        };
        let via = req.headers.top_via().map_err(|_| TxError::NoBranch)?;
        let branch = rfc3261_branch(&via).ok_or(TxError::NoBranch)?;
        let cseq = req.headers.cseq().map_err(|_| TxError::BadCSeq)?;
        if cseq.method != req.method {
            return Err(TxError::BadCSeq);
        }
        let key = client_key(branch, &req.method);
        if self.keys.contains_key(&key) {
            return Err(TxError::Duplicate);
        }
        if self.at_limit() {
            return Err(TxError::Limit);
        }
        let mut bytes = Vec::new();
        request.to_bytes(&mut bytes);
        let t1 = self.config.t1;
        let tx = Tx {
            kind,
            state: if kind == Kind::InviteClient {
                State::Calling
            } else {
                State::Trying
            },
            key,
            created: now,
            peer: dest,
            transport,
            request,
            request_bytes: bytes.into(),
            reply: None,
            // Timers A / E.
            retransmit: (!transport.is_reliable()).then_some((now + t1, t1)),
            // Timers B / F.
            deadline: Some(now + self.timeout_64t1()),
            trying_at: None,
            wake: None,
        };
        let id = self.insert(tx);
        if let Some(tx) = self.txs.get(&id) {
            let bytes = tx.request_bytes.clone();
            self.transmit(Some(id), dest, transport, bytes);
        }
        Ok(id)
    }

    /// Cancels the INVITE of client transaction `invite` (§9.1): builds the CANCEL and
    /// sends it on its own client transaction, whose id is returned. Only once the INVITE
    /// got a provisional response (`CancelBeforeProvisional` before: call again on the
    /// first 1xx) and before its final one (`WrongState`).
    pub fn cancel(&mut self, now: Instant, invite: TxId) -> Result<TxId, TxError> {
        let tx = self.txs.get(&invite).ok_or(TxError::UnknownTransaction)?;
        match (tx.kind, tx.state) {
            (Kind::InviteClient, State::Proceeding) => {}
            (Kind::InviteClient, State::Calling) => return Err(TxError::CancelBeforeProvisional),
            _ => return Err(TxError::WrongState),
        }
        let cancel = cancel_for(&tx.request).ok_or(TxError::BadCSeq)?;
        let (dest, transport) = (tx.peer, tx.transport);
        self.send_request(now, cancel, dest, transport)
    }

    pub(super) fn on_response(&mut self, now: Instant, response: Message<'_>) {
        let Message::Response(resp) = &response else {
            return;
        };
        let status = resp.status;
        let key = match (resp.headers.top_via(), resp.headers.cseq()) {
            (Ok(via), Ok(cseq)) => via.branch().map(|b| client_key(b, &cseq.method)),
            _ => None,
        };
        let Some(id) = key.and_then(|k| self.keys.get(&k).copied()) else {
            self.counters.stray += 1;
            return;
        };
        let timer_64t1 = self.timeout_64t1();
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        let reliable = tx.transport.is_reliable();
        match (tx.kind, tx.state, status) {
            (Kind::InviteClient, State::Calling | State::Proceeding, 100..=199) => {
                if tx.state == State::Calling {
                    tx.state = State::Proceeding;
                    tx.retransmit = None;
                    // Timer B no longer runs; Timer C bounds the wait for a final answer.
                    tx.deadline = Some(tx.created + self.config.timer_c);
                }
                self.pass_up(id, response);
            }
            (Kind::InviteClient, State::Calling | State::Proceeding, 200..=299) => {
                tx.state = State::Accepted;
                tx.retransmit = None;
                // Timer M (RFC 6026): absorbs forks and retransmissions of the 2xx.
                tx.deadline = Some(now + timer_64t1);
                self.pass_up(id, response);
            }
            (Kind::InviteClient, State::Calling | State::Proceeding, _) => {
                tx.state = State::Completed;
                tx.reply = ack_for(&tx.request, &response).map(|ack| {
                    let mut bytes = Vec::new();
                    ack.to_bytes(&mut bytes);
                    bytes.into()
                });
                let (dest, transport) = (tx.peer, tx.transport);
                if let Some(ack) = tx.reply.clone() {
                    self.transmit(Some(id), dest, transport, ack);
                }
                self.pass_up(id, response);
                // Timer D over UDP: 64×T1, the RFC's "at least 32 s" at the default T1
                // (§17.1.1.2); a LAN's shorter T1 shortens it like every other timer.
                let wait = if reliable {
                    Duration::ZERO
                } else {
                    self.timeout_64t1()
                };
                self.end_after(id, now, wait);
            }
            (Kind::InviteClient, State::Completed, 300..) => self.resend(id, Resend::Reply),
            (Kind::InviteClient, State::Accepted, 200..=299) => self.pass_up(id, response),
            (Kind::NonInviteClient, State::Trying | State::Proceeding, 100..=199) => {
                tx.state = State::Proceeding;
                self.pass_up(id, response);
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding, _) => {
                tx.state = State::Completed;
                self.pass_up(id, response);
                // Timer K.
                let wait = if reliable {
                    Duration::ZERO
                } else {
                    self.config.t4
                };
                self.end_after(id, now, wait);
            }
            // Retransmissions in Completed, anything but 2xx in Accepted, a response to a
            // server transaction's key: absorbed.
            _ => {}
        }
        self.reschedule(id);
    }

    fn pass_up(&mut self, tx: TxId, response: Message<'_>) {
        self.event(TxEvent::Response {
            tx,
            response: response.into_owned(),
        });
    }
}
