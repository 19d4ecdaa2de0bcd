//! The record format of the stateful targets: the input is a sequence of records
//! `[op: u8][who: u8][len: u16 big-endian][body: len bytes]`. A record whose body runs
//! past the end of the input takes what is left. `op` says what happens (modulo the
//! target's number of operations), `who` picks a client, connection or address.

/// One record.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub op: u8,
    pub who: u8,
    pub body: &'a [u8],
}

/// Iterates over the records of a fuzz input.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Records { rest: data }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let [op, who, hi, lo, rest @ ..] = self.rest else {
            return None;
        };
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(rest.len());
        let (body, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Record {
            op: *op,
            who: *who,
            body,
        })
    }
}

/// Encode one record (for seed corpora and regression tests).
pub fn record(op: u8, who: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len().min(u16::MAX as usize);
    let mut v = Vec::with_capacity(4 + len);
    v.extend_from_slice(&[op, who, (len >> 8) as u8, len as u8]);
    v.extend_from_slice(&body[..len]);
    v
}

/// A big-endian u16 from the first two bytes of `b` (zero-padded).
pub fn u16_of(b: &[u8]) -> u16 {
    u16::from_be_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    ])
}
