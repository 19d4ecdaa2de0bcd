//! Long-term credentials (RFC 8489 §9.2), stateless nonces, TURN REST API credentials and
//! MESSAGE-INTEGRITY-SHA256.

mod common;

use common::*;
use switchboard_stun::{attr_type, long_term_key_sha256, Class, Method};

fn allocate_req() -> Req {
    Req::new(Method::ALLOCATE).udp_transport()
}

#[test]
fn request_without_integrity_is_401_with_realm_nonce_and_no_reason_phrase() {
    let mut h = H::new(config());
    let c = Client::udp("203.0.113.7:40001");
    let out = h.request(c.tuple, &allocate_req().fingerprint());
    let m = out.err(401);
    assert_eq!(m.method, Method::ALLOCATE);
    assert_eq!(m.get(attr_type::ERROR_CODE).map(<[u8]>::len), Some(4));
    assert_eq!(error_reason(&m), "");
    assert_eq!(m.get(attr_type::REALM), Some(REALM.as_bytes()));
    let nonce = m.get(attr_type::NONCE).expect("NONCE");
    assert!(!nonce.is_empty() && nonce.len() <= 128);
    assert!(!m.has_message_integrity() && !m.has_message_integrity_sha256());
    assert!(m.verify_fingerprint());
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.stats.auth_failures, 0);
}

fn signed_without(h: &mut H, c: &mut Client, skip: u16) -> Out {
    h.get_nonce(c);
    let mut req = allocate_req();
    if skip != attr_type::USERNAME {
        req = req.attr(attr_type::USERNAME, c.username.as_bytes());
    }
    if skip != attr_type::REALM {
        req = req.attr(attr_type::REALM, c.realm.as_bytes());
    }
    if skip != attr_type::NONCE {
        req = req.attr(attr_type::NONCE, &c.nonce);
    }
    h.request(c.tuple, &req.mi(&c.key()))
}

#[test]
fn integrity_without_nonce_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    signed_without(&mut h, &mut c, attr_type::NONCE).err(400);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn integrity_without_realm_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    signed_without(&mut h, &mut c, attr_type::REALM).err(400);
}

#[test]
fn integrity_without_username_is_400() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    signed_without(&mut h, &mut c, attr_type::USERNAME).err(400);
}

#[test]
fn wrong_password_is_401() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001").user(USER, "not-the-password");
    let m_out = h.allocate(&mut c);
    let m = m_out.err(401);
    assert!(!m.has_message_integrity());
    assert!(m.has(attr_type::NONCE));
    assert_eq!(h.server.stats.auth_failures, 1);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.relays.opened.is_empty());
}

#[test]
fn unknown_user_is_401() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001").user("mallory", "x");
    h.allocate(&mut c).err(401);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn wrong_realm_is_401() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    c.realm = "other.example".into();
    let out = h.allocate(&mut c);
    let m = out.err(401);
    assert_eq!(m.get(attr_type::REALM), Some(REALM.as_bytes()));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn nonce_from_another_ip_is_438_and_new_nonce_works() {
    let mut h = H::new(config());
    let mut a = Client::udp("203.0.113.7:40001");
    h.get_nonce(&mut a);
    let mut b = Client::udp("203.0.113.99:40001");
    b.nonce = a.nonce.clone();
    let out = h.request(b.tuple, &b.sign(allocate_req()));
    let m = out.err(438);
    assert_eq!(error_reason(&m), "");
    let fresh = m
        .get(attr_type::NONCE)
        .expect("438 carries a new NONCE")
        .to_vec();
    assert_ne!(fresh, a.nonce);
    assert_eq!(m.get(attr_type::REALM), Some(REALM.as_bytes()));
    b.nonce = fresh;
    h.request(b.tuple, &b.sign(allocate_req())).ok(&b);
}

#[test]
fn tampered_nonce_is_438() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.get_nonce(&mut c);
    let last = c.nonce.len() - 1;
    c.nonce[last] = if c.nonce[last] == b'A' { b'B' } else { b'A' };
    h.request(c.tuple, &c.sign(allocate_req())).err(438);
    c.nonce = b"not-a-nonce-at-all".to_vec();
    h.request(c.tuple, &c.sign(allocate_req())).err(438);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn nonce_older_than_lifetime_is_438() {
    let mut cfg = config();
    cfg.nonce_lifetime = std::time::Duration::from_secs(600);
    let mut h = H::new(cfg);
    let mut c = Client::udp("203.0.113.7:40001");
    h.get_nonce(&mut c);
    h.advance_secs(599);
    // Still valid just before the lifetime ends.
    h.request(c.tuple, &c.sign(Req::new(Method::REFRESH)))
        .err_signed(437, &c);
    h.advance_secs(2);
    let out = h.request(c.tuple, &c.sign(allocate_req()));
    out.err(438);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn rest_api_credentials_authenticate() {
    let mut cfg = config();
    cfg.secrets = vec![b"north-secret".to_vec()];
    let mut h = H::new(cfg);
    let name = format!("{}:carol", h.unix0 + 3600);
    let mut c = Client::udp("203.0.113.7:40001").rest(&name, b"north-secret");
    let relays = h.allocate_ok(&mut c);
    assert_eq!(relays.len(), 1);
    let a = h.server.allocation(h.alloc_id(&c)).unwrap();
    assert_eq!(&*a.username, name.as_bytes());
    assert_eq!(&*a.identity, b"carol");
}

#[test]
fn rest_api_quota_counts_the_identity_after_the_colon() {
    let mut cfg = config();
    cfg.secrets = vec![b"north-secret".to_vec()];
    cfg.user_quota = 1;
    let mut h = H::new(cfg);
    let exp = h.unix0 + 3600;
    let mut c1 = Client::udp("203.0.113.7:40001").rest(&format!("{exp}:carol"), b"north-secret");
    h.allocate_ok(&mut c1);
    // Same identity with a different expiry (a different USERNAME) from another 5-tuple.
    let mut c2 =
        Client::udp("203.0.113.7:40002").rest(&format!("{}:carol", exp + 60), b"north-secret");
    h.allocate(&mut c2).err_signed(486, &c2);
    assert_eq!(h.server.stats.quota_rejections, 1);
    let mut c3 = Client::udp("203.0.113.7:40003").rest(&format!("{exp}:dave"), b"north-secret");
    h.allocate_ok(&mut c3);
}

#[test]
fn rest_api_expired_timestamp_is_401() {
    let mut cfg = config();
    cfg.secrets = vec![b"north-secret".to_vec()];
    let mut h = H::new(cfg);
    let name = format!("{}:carol", h.unix0 - 10);
    let mut c = Client::udp("203.0.113.7:40001").rest(&name, b"north-secret");
    h.allocate(&mut c).err(401);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn rest_api_credentials_expire_while_time_passes() {
    let mut cfg = config();
    cfg.secrets = vec![b"north-secret".to_vec()];
    let mut h = H::new(cfg);
    let name = format!("{}:carol", h.unix0 + 100);
    let mut c = Client::udp("203.0.113.7:40001").rest(&name, b"north-secret");
    h.allocate_ok(&mut c);
    h.advance_secs(200);
    h.refresh(&mut c, Some(600)).err(401);
}

#[test]
fn rest_api_credentials_with_wrong_realm_are_401() {
    // The REST key is derived from the REALM the client sends, so the realm itself must
    // be checked against ours.
    let mut cfg = config();
    cfg.secrets = vec![b"north-secret".to_vec()];
    let mut h = H::new(cfg);
    let name = format!("{}:carol", h.unix0 + 3600);
    let mut c = Client::udp("203.0.113.7:40001").rest(&name, b"north-secret");
    c.realm = "evil.example".into();
    let out = h.allocate(&mut c);
    let m = out.err(401);
    assert_eq!(m.get(attr_type::REALM), Some(REALM.as_bytes()));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn rest_api_second_secret_still_verifies() {
    let mut cfg = config();
    cfg.secrets = vec![b"new-secret".to_vec(), b"old-secret".to_vec()];
    let mut h = H::new(cfg);
    let exp = h.unix0 + 3600;
    let mut old = Client::udp("203.0.113.7:40001").rest(&format!("{exp}:carol"), b"old-secret");
    h.allocate_ok(&mut old);
    let mut new = Client::udp("203.0.113.7:40002").rest(&format!("{exp}:carol"), b"new-secret");
    h.allocate_ok(&mut new);
    let mut wrong = Client::udp("203.0.113.7:40003").rest(&format!("{exp}:carol"), b"nope");
    h.allocate(&mut wrong).err(401);
}

#[test]
fn static_user_and_rest_secret_work_in_one_config() {
    let mut cfg = config();
    cfg.secrets = vec![b"north-secret".to_vec()];
    let mut h = H::new(cfg);
    let mut alice = Client::udp("203.0.113.7:40001");
    h.allocate_ok(&mut alice);
    let name = format!("{}:carol", h.unix0 + 3600);
    let mut carol = Client::udp("203.0.113.7:40002").rest(&name, b"north-secret");
    h.allocate_ok(&mut carol);
    assert_eq!(h.server.allocation_count(), 2);
}

#[test]
fn message_integrity_sha256_with_password_algorithm_sha256() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.get_nonce(&mut c);
    let key = long_term_key_sha256(USER.as_bytes(), REALM.as_bytes(), PASS.as_bytes());
    let req = c
        .credentials(allocate_req())
        .attr(attr_type::PASSWORD_ALGORITHM, &[0, 2, 0, 0])
        .mi256(&key)
        .fingerprint();
    let out = h.request(c.tuple, &req);
    let m = out.msg();
    assert_eq!(m.class, Class::Success, "got {:?}", error_code(&m));
    assert!(m.has_message_integrity_sha256());
    assert!(!m.has_message_integrity());
    assert!(m.verify_integrity_sha256(&key));
    assert!(!m.verify_integrity_sha256(&c.key()));
    assert!(m.verify_fingerprint());
    assert_eq!(relayed_addresses(&m).len(), 1);
}

#[test]
fn message_integrity_sha256_without_password_algorithm_uses_md5_key() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.get_nonce(&mut c);
    let req = c.credentials(allocate_req()).mi256(&c.key());
    let out = h.request(c.tuple, &req);
    let m = out.msg();
    assert_eq!(m.class, Class::Success, "got {:?}", error_code(&m));
    assert!(m.has_message_integrity_sha256());
    assert!(m.verify_integrity_sha256(&c.key()));

    // Later requests on the allocation may use either integrity attribute.
    let perm = Req::new(Method::CREATE_PERMISSION).peer(sa("8.8.8.8:53"));
    let out = h.request(c.tuple, &c.credentials(perm).mi256(&c.key()));
    assert!(out.msg().verify_integrity_sha256(&c.key()));
    assert_eq!(out.msg().class, Class::Success);
}

#[test]
fn message_integrity_sha256_with_wrong_key_is_401() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    h.get_nonce(&mut c);
    let key = long_term_key_sha256(USER.as_bytes(), REALM.as_bytes(), b"bad");
    let req = c
        .credentials(allocate_req())
        .attr(attr_type::PASSWORD_ALGORITHM, &[0, 2, 0, 0])
        .mi256(&key);
    h.request(c.tuple, &req).err(401);
}

#[test]
fn responses_to_authenticated_requests_verify_with_the_same_key() {
    let mut h = H::new(config());
    let mut c = Client::udp("203.0.113.7:40001");
    // An error after authentication (no allocation yet) is signed too.
    let out = h.signed(&mut c, Req::new(Method::REFRESH).fingerprint());
    let m = out.err_signed(437, &c);
    assert!(m.verify_fingerprint());
    let out = h.signed(&mut c, allocate_req().fingerprint());
    let m = out.ok(&c);
    assert!(m.verify_fingerprint());
    let other = Client::udp("203.0.113.7:40001").user("bob", "builder");
    assert!(!m.verify_integrity(&other.key()));
    let out = h.permit(&mut c, &[sa("8.8.8.8:53")]);
    out.ok(&c);
    let out = h.bind(&mut c, 0x4000, sa("8.8.8.8:53"));
    out.ok(&c);
    let out = h.refresh(&mut c, Some(700));
    let m = out.ok(&c);
    assert_eq!(m.u32(attr_type::LIFETIME), Some(700));
}
