//! Session timers (RFC 4028): a call whose refresher stops refreshing is ended, so a far
//! end that vanished without a BYE does not leave a call (and its media ports) behind.
//!
//! The side that refreshes sends a re-INVITE or UPDATE every half interval; the other side
//! ends the call (BYE) when no refresh came for the interval less min(32 s, interval/3).
//! A UAS answering a request with `Session-Expires` below its minimum answers 422 with
//! `Min-SE` ([`negotiate`]).

use std::time::{Duration, Instant};

use crate::message::{Message, ParseError};

/// What the timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// We are the refresher: send a re-INVITE or UPDATE now.
    Refresh,
    /// The peer should have refreshed and did not: end the call (BYE).
    Expire,
}

/// The session timer of one dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// The negotiated `Session-Expires`.
    pub interval: Duration,
    /// Whether we refresh (else the peer does and we watch).
    pub we_refresh: bool,
    last_refresh: Instant,
    fired: bool,
}

/// Outcome of [`negotiate`], for a UAS about to answer a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiation {
    /// The request asks for no session timer.
    None,
    /// Answer 422 with `Min-SE: <value>` (the request's interval is below our minimum).
    TooSmall(u32),
    /// Put `Session-Expires: <header>` (and `Require: timer` if the peer supports it) in
    /// the 2xx; `we_refresh` says who refreshes.
    Accept { header: String, we_refresh: bool },
}

/// A UAS's decision on a request's `Session-Expires`/`Min-SE` (RFC 4028 §9): refuse
/// intervals below `our_min_se` (seconds, at least 90 per the RFC), take the request's
/// refresher or, when it named none, let the UAC refresh if it supports timers, else us.
pub fn negotiate(request: &Message<'_>, our_min_se: u32) -> Result<Negotiation, ParseError> {
    let h = request.headers();
    let Some(se) = h.session_expires()? else {
        return Ok(Negotiation::None);
    };
    let min = our_min_se.max(h.min_se()?.unwrap_or(0));
    if se.delta < min {
        return Ok(Negotiation::TooSmall(min));
    }
    let uac_supports = h.has_token("Supported", "timer") || h.has_token("Require", "timer");
    let refresher = match se.refresher {
        Some(r) if r.eq_ignore_ascii_case("uas") => "uas",
        Some(_) => "uac",
        None if uac_supports => "uac",
        None => "uas",
    };
    Ok(Negotiation::Accept {
        header: format!("{};refresher={refresher}", se.delta),
        we_refresh: refresher == "uas",
    })
}

impl SessionTimer {
    /// The timer a 2xx sets up, read by the side that sent the request (`we_are_uac`) or
    /// answered it. None when the 2xx has no `Session-Expires` (no session timer).
    pub fn from_response(
        response: &Message<'_>,
        we_are_uac: bool,
        now: Instant,
    ) -> Result<Option<SessionTimer>, ParseError> {
        let Some(se) = response.headers().session_expires()? else {
            return Ok(None);
        };
        let uac_refreshes = !se.refresher.is_some_and(|r| r.eq_ignore_ascii_case("uas"));
        Ok(Some(SessionTimer::new(
            Duration::from_secs(u64::from(se.delta.max(1))),
            uac_refreshes == we_are_uac,
            now,
        )))
    }

    pub fn new(interval: Duration, we_refresh: bool, now: Instant) -> SessionTimer {
        SessionTimer {
            interval,
            we_refresh,
            last_refresh: now,
            fired: false,
        }
    }

    /// A refresh went through (ours answered 2xx, or the peer's arrived).
    pub fn refreshed(&mut self, now: Instant) {
        self.last_refresh = now;
        self.fired = false;
    }

    /// When [`SessionTimer::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Instant {
        if self.we_refresh {
            self.last_refresh + self.interval / 2
        } else {
            let margin = Duration::from_secs(32).min(self.interval / 3);
            self.last_refresh + self.interval.saturating_sub(margin)
        }
    }

    /// [`SessionTimer::poll_timeout`] while an action is still to come; `None` once it
    /// fired (until [`SessionTimer::refreshed`]), so that a driver does not wake for it.
    pub fn next_action_at(&self) -> Option<Instant> {
        (!self.fired).then(|| self.poll_timeout())
    }

    /// The action due at `now`, once per interval (until [`SessionTimer::refreshed`]).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if self.fired || now < self.poll_timeout() {
            return None;
        }
        self.fired = true;
        Some(if self.we_refresh {
            TimerAction::Refresh
        } else {
            TimerAction::Expire
        })
    }
}
