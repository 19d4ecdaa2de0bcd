use super::*;
use switchboard_stun::TransactionId;

const UFRAG: &str = "gw01";
const PWD: &str = "0123456789abcdef012345";
const PEER_UFRAG: &str = "eryolq7";

fn check(username: &str, pwd: &str, use_candidate: bool, tid: u8) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = MessageWriter::new(
        &mut buf,
        Method::BINDING,
        Class::Request,
        TransactionId([tid; 12]),
    )
    .unwrap();
    w.attr(attr_type::USERNAME, username.as_bytes()).unwrap();
    w.u32(attr_type::PRIORITY, 2_113_929_471).unwrap();
    w.attr(attr_type::ICE_CONTROLLING, &[1, 2, 3, 4, 5, 6, 7, 8])
        .unwrap();
    if use_candidate {
        w.attr(attr_type::USE_CANDIDATE, &[]).unwrap();
    }
    w.message_integrity(pwd.as_bytes()).unwrap();
    w.fingerprint().unwrap();
    let len = w.finish();
    buf[..len].to_vec()
}

fn ice() -> IceLite {
    IceLite::new(UFRAG, PWD, Some(PEER_UFRAG))
}

#[test]
fn a_valid_check_gets_a_signed_success_with_the_mapped_address() {
    let mut ice = ice();
    let from: SocketAddr = "192.0.2.7:47176".parse().unwrap();
    let req = check("gw01:eryolq7", PWD, false, 9);
    let StunOutcome::Answered {
        response,
        nominated,
    } = ice.handle_stun(from, &req, Instant::now())
    else {
        panic!("not answered");
    };
    assert!(!nominated);
    let resp = Message::parse(&response).unwrap();
    assert_eq!(resp.class, Class::Success);
    assert_eq!(resp.method, Method::BINDING);
    assert_eq!(resp.tid, TransactionId([9; 12]));
    assert!(resp.verify_integrity(PWD.as_bytes()));
    assert!(!resp.verify_integrity(b"another password"));
    assert!(resp.verify_fingerprint());
    assert_eq!(resp.xor_address(attr_type::XOR_MAPPED_ADDRESS), Some(from));
    // Not nominated yet: the latest valid source is where media goes.
    assert_eq!(ice.remote(), Some(from));
    assert!(!ice.is_nominated());
    assert!(ice.last_valid_check().is_some());
}

#[test]
fn use_candidate_pins_the_media_address() {
    let mut ice = ice();
    let a: SocketAddr = "192.0.2.7:1000".parse().unwrap();
    let b: SocketAddr = "198.51.100.3:2000".parse().unwrap();
    let now = Instant::now();
    let out = ice.handle_stun(a, &check("gw01:eryolq7", PWD, true, 1), now);
    assert!(matches!(
        out,
        StunOutcome::Answered {
            nominated: true,
            ..
        }
    ));
    assert_eq!(ice.remote(), Some(a));
    // A later check from another address (not nominated) is answered but moves nothing.
    let out = ice.handle_stun(b, &check("gw01:eryolq7", PWD, false, 2), now);
    assert!(matches!(
        out,
        StunOutcome::Answered {
            nominated: false,
            ..
        }
    ));
    assert_eq!(ice.remote(), Some(a));
    // Nominating b moves media there.
    ice.handle_stun(b, &check("gw01:eryolq7", PWD, true, 3), now);
    assert_eq!(ice.remote(), Some(b));
}

#[test]
fn a_wrong_password_gets_401_and_selects_nothing() {
    let mut ice = ice();
    let from: SocketAddr = "192.0.2.7:47176".parse().unwrap();
    let out = ice.handle_stun(
        from,
        &check("gw01:eryolq7", "wrong password 0123456", true, 4),
        Instant::now(),
    );
    let StunOutcome::Unauthorized(resp) = out else {
        panic!("expected 401, got {out:?}");
    };
    let resp = Message::parse(&resp).unwrap();
    assert_eq!(resp.class, Class::Error);
    let code = resp.get(attr_type::ERROR_CODE).unwrap();
    assert_eq!(u16::from(code[2]) * 100 + u16::from(code[3]), 401);
    assert_eq!(ice.remote(), None);
}

#[test]
fn unknown_users_and_non_requests_are_dropped() {
    let mut ice = ice();
    let from: SocketAddr = "192.0.2.7:47176".parse().unwrap();
    let now = Instant::now();
    for username in ["other:eryolq7", "gw01:someoneelse", "gw01", "eryolq7:gw01"] {
        let out = ice.handle_stun(from, &check(username, PWD, true, 5), now);
        assert_eq!(out, StunOutcome::Ignored, "{username}");
    }
    assert_eq!(
        ice.handle_stun(from, b"\x00\x01garbage", now),
        StunOutcome::Ignored
    );
    // A success response (not a request) is not answered.
    let mut resp = check("gw01:eryolq7", PWD, false, 6);
    resp[1] = 0x01;
    resp[0] = 0x01;
    assert_eq!(ice.handle_stun(from, &resp, now), StunOutcome::Ignored);
    assert_eq!(ice.remote(), None);
    // Without a known peer ufrag, any second half is accepted.
    let mut open = IceLite::new(UFRAG, PWD, None);
    let out = open.handle_stun(from, &check("gw01:whoever", PWD, false, 7), now);
    assert!(matches!(out, StunOutcome::Answered { .. }));
}
