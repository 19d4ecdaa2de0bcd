//! Reliable provisional responses (100rel, RFC 3262): the numbers that make a 183 with
//! early media arrive for sure where a trunk requires it.
//!
//! The UAS numbers its reliable provisionals ([`RSeqCounter`]: `RSeq` starts anywhere
//! below 2^31 and goes up by one); the UAC accepts them in order and acknowledges each with
//! a PRACK carrying `RAck: <rseq> <cseq> <method>` ([`PrackTracker`]). Retransmissions of
//! the UAS's provisional until its PRACK arrives are the transaction user's job (timer
//! T1 doubling, like a 2xx).

/// `RSeq` numbering of one UAS transaction.
#[derive(Debug, Clone)]
pub struct RSeqCounter {
    next: u32,
}

impl RSeqCounter {
    /// Starting at `first` (random, 1..2^31, RFC 3262 §3).
    pub fn new(first: u32) -> RSeqCounter {
        RSeqCounter {
            next: first.clamp(1, 1 << 31),
        }
    }

    /// The `RSeq` of the next reliable provisional response.
    pub fn next_rseq(&mut self) -> u32 {
        let n = self.next;
        self.next = self.next.wrapping_add(1);
        n
    }
}

/// What the UAC does with a reliable provisional response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisional {
    /// New and in order: process it and send a PRACK with this `RAck` value.
    Prack(String),
    /// Already acknowledged (a retransmission): ignore it.
    Duplicate,
    /// Out of order (one is missing): ignore it, the UAS retransmits.
    OutOfOrder,
}

/// The UAC side of 100rel for one INVITE transaction.
#[derive(Debug, Clone, Default)]
pub struct PrackTracker {
    last: Option<u32>,
}

impl PrackTracker {
    pub fn new() -> PrackTracker {
        PrackTracker::default()
    }

    /// A provisional response with `RSeq: rseq` to the request with CSeq `cseq method`.
    pub fn on_provisional(&mut self, rseq: u32, cseq: u32, method: &str) -> Provisional {
        match self.last {
            Some(last) if rseq <= last => Provisional::Duplicate,
            Some(last) if rseq != last.wrapping_add(1) => Provisional::OutOfOrder,
            _ => {
                self.last = Some(rseq);
                Provisional::Prack(format!("{rseq} {cseq} {method}"))
            }
        }
    }
}
