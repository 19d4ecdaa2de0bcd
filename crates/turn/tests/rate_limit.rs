//! The per-source limit on 401/438 responses over UDP (reflection/amplification guard).

mod common;

use common::*;
use std::time::Duration;
use switchboard_stun::Method;
use switchboard_turn::ServerConfig;

fn limited_config() -> ServerConfig {
    let mut cfg = config();
    cfg.unauth_rate = 20;
    cfg.unauth_burst = 40;
    cfg
}

fn unauth(h: &mut H, c: &Client) -> Out {
    h.request(c.tuple, &Req::new(Method::ALLOCATE).udp_transport())
}

/// Send `n` unauthenticated requests; count the 401 answers.
fn answered(h: &mut H, c: &Client, n: usize) -> usize {
    (0..n)
        .map(|_| unauth(h, c))
        .filter(|o| {
            if o.is_none() {
                return false;
            }
            o.err(401);
            true
        })
        .count()
}

#[test]
fn udp_401s_stop_after_the_burst() {
    let mut h = H::new(limited_config());
    let c = Client::udp("203.0.113.7:40001");
    assert_eq!(answered(&mut h, &c, 100), 40);
    assert_eq!(h.server.stats.unauth_rate_limited, 60);
    // Another port of the same IP shares the budget.
    let same_ip = Client::udp("203.0.113.7:40999");
    assert!(unauth(&mut h, &same_ip).is_none());
    assert_eq!(h.server.stats.unauth_rate_limited, 61);
}

#[test]
fn other_sources_are_still_answered() {
    let mut h = H::new(limited_config());
    let mut d = Client::udp("192.0.2.99:5000");
    h.get_nonce(&mut d);
    let c = Client::udp("203.0.113.7:40001");
    answered(&mut h, &c, 100);
    // Buckets are a hashed table: an unlucky IP may share a slot, so ask from several
    // sources and require all but at most one to be answered.
    let others = [
        "198.51.100.10:1",
        "198.51.100.11:1",
        "198.51.100.12:1",
        "[2001:db8::5]:1",
        "192.0.2.77:1",
        "192.0.2.78:1",
    ];
    let ok = others
        .iter()
        .filter(|a| !unauth(&mut h, &Client::udp(a)).is_none())
        .count();
    assert!(
        ok >= others.len() - 1,
        "only {ok} of {} answered",
        others.len()
    );
    // Authenticated traffic is never limited: a nonce obtained earlier still works.
    answered(&mut h, &d, 100);
    let out = h.request(d.tuple, &d.sign(Req::new(Method::ALLOCATE).udp_transport()));
    out.ok(&d);
}

#[test]
fn tokens_refill_over_time() {
    let mut h = H::new(limited_config());
    let c = Client::udp("203.0.113.7:40001");
    assert_eq!(answered(&mut h, &c, 60), 40);
    h.advance(Duration::from_millis(500)); // 20/s: 10 tokens
    assert_eq!(answered(&mut h, &c, 30), 10);
    h.advance(Duration::from_secs(10)); // capped at the burst
    assert_eq!(answered(&mut h, &c, 60), 40);
}

#[test]
fn tcp_401s_are_not_limited() {
    let mut h = H::new(limited_config());
    let c = Client::tcp("203.0.113.7:40001");
    assert_eq!(answered(&mut h, &c, 200), 200);
    assert_eq!(h.server.stats.unauth_rate_limited, 0);
}

#[test]
fn wrong_password_401s_count_against_the_limit_too() {
    let mut cfg = limited_config();
    cfg.unauth_burst = 3;
    let mut h = H::new(cfg);
    let mut c = Client::udp("203.0.113.7:40001").user(USER, "wrong");
    h.get_nonce(&mut c); // uses one token
    let req = c.sign(Req::new(Method::ALLOCATE).udp_transport());
    let outs: Vec<Out> = (0..4).map(|_| h.request(c.tuple, &req)).collect();
    assert_eq!(outs.iter().filter(|o| o.code() == Some(401)).count(), 2);
    assert!(outs[2].is_none() && outs[3].is_none());
    assert_eq!(h.server.stats.auth_failures, 4);
}

#[test]
fn zero_rate_disables_the_limit() {
    let mut cfg = config();
    cfg.unauth_rate = 0;
    let mut h = H::new(cfg);
    let c = Client::udp("203.0.113.7:40001");
    assert_eq!(answered(&mut h, &c, 500), 500);
}
