//! The character rules both readers (SDP and Jingle) apply to the strings they keep, so
//! that whatever one side accepts the other can carry and read back unchanged (the
//! property and fuzz tests check exactly that). SDP values a browser writes are ASCII.

/// One SDP word: non-empty printable ASCII without spaces.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Words separated by single spaces (an `a=ssrc` value such as `msid:<stream> <track>`).
pub fn is_words(s: &str) -> bool {
    s.split(' ').all(is_token)
}
