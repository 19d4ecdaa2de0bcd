//! Which room an inbound call joins: the registered account's own room, then the first
//! `--sip-route` whose CALLED is the Request-URI user (or `*`), then, with
//! `--sip-direct-rooms`, the room named by the Request-URI user itself
//! (`sip:demo@gateway` joins `demo`). Pure, so the rules are tested without a call.

use crate::config::sip::{valid_room, SipConfig};

/// The room for a call to `called` (the Request-URI user; None for `sip:gateway`), or
/// None: nobody is there (404).
pub fn room_for(cfg: &SipConfig, called: Option<&str>) -> Option<String> {
    if let Some(user) = called {
        if let Some(room) = cfg
            .accounts
            .iter()
            .find(|a| a.user == user)
            .and_then(|a| a.room.clone())
        {
            return Some(room);
        }
    }
    for rule in &cfg.routes {
        match (&rule.called, called) {
            (None, _) => return Some(rule.room.clone()),
            (Some(c), Some(user)) if c == user => return Some(rule.room.clone()),
            _ => {}
        }
    }
    match called {
        Some(user) if cfg.direct_rooms && valid_room(user) => Some(user.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sip::{AccountConfig, RouteRule};

    fn cfg(routes: &[(&str, &str)], direct: bool) -> SipConfig {
        SipConfig {
            listen: "127.0.0.1:5060".parse().unwrap(),
            tcp: false,
            tls_listen: None,
            ws: false,
            advertise: "127.0.0.1:5060".into(),
            media_ip: "127.0.0.1".parse().unwrap(),
            rtp_ports: 20000..=20009,
            accounts: vec![AccountConfig {
                user: "alice".into(),
                password: "pw".into(),
                host: "127.0.0.1".into(),
                registrar: "127.0.0.1:5070".parse().unwrap(),
                expires: 600,
                room: Some("alice-room".into()),
            }],
            routes: routes
                .iter()
                .map(|(c, r)| RouteRule {
                    called: (*c != "*").then(|| c.to_string()),
                    room: r.to_string(),
                })
                .collect(),
            direct_rooms: direct,
            auth: Vec::new(),
            trunk: None,
            rtp_timeout: std::time::Duration::from_secs(30),
            t1: std::time::Duration::from_millis(500),
            max_calls: 10,
        }
    }

    #[test]
    fn account_room_then_routes_then_direct() {
        let c = cfg(&[("+4930123", "sales"), ("support", "help")], true);
        assert_eq!(room_for(&c, Some("alice")).as_deref(), Some("alice-room"));
        assert_eq!(room_for(&c, Some("+4930123")).as_deref(), Some("sales"));
        assert_eq!(room_for(&c, Some("support")).as_deref(), Some("help"));
        assert_eq!(room_for(&c, Some("demo")).as_deref(), Some("demo"));
        // Not a room name (the hub's rule), and no user at all.
        assert_eq!(room_for(&c, Some("a/b")), None);
        assert_eq!(room_for(&c, None), None);
    }

    #[test]
    fn catch_all_and_no_direct_rooms() {
        let c = cfg(&[("support", "help"), ("*", "lobby")], false);
        assert_eq!(room_for(&c, Some("support")).as_deref(), Some("help"));
        assert_eq!(room_for(&c, Some("demo")).as_deref(), Some("lobby"));
        assert_eq!(room_for(&c, None).as_deref(), Some("lobby"));
        let strict = cfg(&[("support", "help")], false);
        assert_eq!(room_for(&strict, Some("demo")), None);
    }
}
