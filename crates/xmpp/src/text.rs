//! The character rules both readers (SDP and Jingle) apply to the strings they keep, so
//! that whatever one side accepts the other can carry and read back unchanged (the
//! property and fuzz tests check exactly that). SDP values a browser writes are short
//! ASCII.

/// Longest string kept. rxml (under minidom) refuses an XML token over 8 KiB, and a
/// value written as XML may grow fivefold (`'` is `&#39;`), so values stay well below.
pub const MAX_VALUE: usize = 1024;

/// One SDP word: non-empty printable ASCII without spaces, at most [`MAX_VALUE`] bytes.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Words separated by single spaces (an `a=ssrc` value such as `msid:<stream> <track>`).
pub fn is_words(s: &str) -> bool {
    s.len() <= MAX_VALUE && s.split(' ').all(is_token)
}
