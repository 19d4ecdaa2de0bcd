//! Calls in a room that sees other calls, hermetic (calls out to far ends of our own SIP
//! stack, as in `stream.rs`). Real users do this: a call fails or ends and the
//! next one is placed in the same room, or two phones are in one meeting. What a user
//! would check:
//!
//! - the member hears the second call of a room from that call's own peer, though the
//!   SFU carries it on the m-line the first call's track had (a free one is reused);
//! - with two calls at once the member hears each from its own peer, and each phone
//!   hears the member and the other phone, never itself.
//!
//! A call that failed in the member's room before the next one is in
//! `stream.rs`'s TLS test.

use crate::common;
use crate::sip_far_end;

use common::sip::heard_from;
use sip_far_end::{
    dial, far_end_hangs_up, far_end_says_bye, gateway, member, talk, talk_all, FarEnd,
};

/// Calls follow one another in one room (a user redials after a call ended): the
/// member hears the second call from its own peer, and what it heard of the first stays
/// the first's, though the SFU gives the second call's track the first's m-line.
#[test]
fn a_second_call_in_the_same_room_is_heard() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "again");
    let mut first = FarEnd::new(None);
    let to = format!("sip:bob@127.0.0.1:{};transport=tcp", first.port());
    assert_eq!(dial(&server, "again", &to).0, 201);
    let peer1 = talk(&mut b, &mut first);
    let mid1 = b
        .tracks()
        .into_iter()
        .find(|t| t.1 == peer1)
        .expect("track")
        .0;
    let heard1 = heard_from(&b, &peer1).len();
    far_end_hangs_up(&server, &mut b, &mut first, &peer1);

    let mut second = FarEnd::new(None);
    let to = format!("sip:bob@127.0.0.1:{};transport=tcp", second.port());
    assert_eq!(dial(&server, "again", &to).0, 201);
    // Another tone: what B heard of the first call must not count as the second's.
    let peer2 = talk_all(&mut b, &mut [&mut second], &[660.0]).remove(0);
    assert_ne!(peer1, peer2);
    let mid2 = b
        .tracks()
        .into_iter()
        .find(|t| t.1 == peer2)
        .expect("track")
        .0;
    eprintln!("m-lines: first call {mid1}, second {mid2}");
    // The first call's audio was neither lost nor given to the second.
    let kept = heard_from(&b, &peer1).len();
    assert!(kept >= heard1, "first call: {heard1} packets, {kept} now");
    assert!(
        kept <= heard1 + 10,
        "first call: {heard1} packets, {kept} now"
    );
    far_end_hangs_up(&server, &mut b, &mut second, &peer2);
    assert_eq!(
        server.metric("switchboard_sip_calls_total{outcome=\"ended\"}"),
        2
    );
}

/// Two calls at once in one room: the member hears each from its own peer, and each far
/// end hears the member and the other call, not itself.
#[test]
fn two_calls_at_once_in_one_room_hear_each_other() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "both");
    let mut one = FarEnd::new(None);
    let mut two = FarEnd::new(None);
    for far in [&one, &two] {
        let to = format!("sip:bob@127.0.0.1:{};transport=tcp", far.port());
        assert_eq!(dial(&server, "both", &to).0, 201);
    }
    let peers = talk_all(&mut b, &mut [&mut one, &mut two], &[440.0, 660.0]);
    far_end_says_bye(&mut b, &mut one, &peers[0]);
    far_end_hangs_up(&server, &mut b, &mut two, &peers[1]);
}
