//! Which room an inbound call joins: the registered account's own room, then the first
//! `--sip-route` whose CALLED is the Request-URI user (or `*`), then, with
//! `--sip-direct-rooms`, the room named by the Request-URI user itself
//! (`sip:demo@gateway` joins `demo`). A route to `@pin` asks the caller for a PIN
//! (`--sip-pin`). Pure, so the rules are tested without a call.

use crate::config::sip::{valid_room, SipConfig, PIN_ROOM};

/// Where an inbound call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dispatch {
    Room(String),
    /// Answer, then ask for a PIN.
    Pin,
}

fn rule_target(room: &str) -> Dispatch {
    if room == PIN_ROOM {
        Dispatch::Pin
    } else {
        Dispatch::Room(room.to_string())
    }
}

/// Where a call to `called` (the Request-URI user; None for `sip:gateway`) goes, or
/// None: nobody is there (404).
pub fn room_for(cfg: &SipConfig, called: Option<&str>) -> Option<Dispatch> {
    if let Some(user) = called {
        if let Some(room) = cfg
            .accounts
            .iter()
            .find(|a| a.user == user)
            .and_then(|a| a.room.clone())
        {
            return Some(Dispatch::Room(room));
        }
    }
    for rule in &cfg.routes {
        match (&rule.called, called) {
            (None, _) => return Some(rule_target(&rule.room)),
            (Some(c), Some(user)) if c == user => return Some(rule_target(&rule.room)),
            _ => {}
        }
    }
    match called {
        Some(user) if cfg.direct_rooms && valid_room(user) => {
            Some(Dispatch::Room(user.to_string()))
        }
        _ => None,
    }
}

/// The room a PIN opens.
pub fn room_of_pin<'a>(pins: &'a [(String, String)], pin: &str) -> Option<&'a str> {
    pins.iter()
        .find(|(p, _)| p == pin)
        .map(|(_, room)| room.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sip::{AccountConfig, RouteRule};

    fn room(r: &str) -> Option<Dispatch> {
        Some(Dispatch::Room(r.to_string()))
    }

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
                transport: switchboard_sip::transaction::Transport::Udp,
                expires: 600,
                room: Some("alice-room".into()),
                srtp: Default::default(),
            }],
            routes: routes
                .iter()
                .map(|(c, r)| RouteRule {
                    called: (*c != "*").then(|| c.to_string()),
                    room: r.to_string(),
                })
                .collect(),
            pins: Vec::new(),
            direct_rooms: direct,
            auth: Vec::new(),
            trunk: None,
            rtp_timeout: std::time::Duration::from_secs(30),
            room_media_local: true,
            t1: std::time::Duration::from_millis(500),
            rate_limit: 200,
            max_calls: 10,
            tls_ca: None,
            federation: Vec::new(),
        }
    }

    #[test]
    fn account_room_then_routes_then_direct() {
        let c = cfg(&[("+4930123", "sales"), ("support", "help")], true);
        assert_eq!(room_for(&c, Some("alice")), room("alice-room"));
        assert_eq!(room_for(&c, Some("+4930123")), room("sales"));
        assert_eq!(room_for(&c, Some("support")), room("help"));
        assert_eq!(room_for(&c, Some("demo")), room("demo"));
        // Not a room name (the hub's rule), and no user at all.
        assert_eq!(room_for(&c, Some("a/b")), None);
        assert_eq!(room_for(&c, None), None);
    }

    #[test]
    fn catch_all_and_no_direct_rooms() {
        let c = cfg(&[("support", "help"), ("*", "lobby")], false);
        assert_eq!(room_for(&c, Some("support")), room("help"));
        assert_eq!(room_for(&c, Some("demo")), room("lobby"));
        assert_eq!(room_for(&c, None), room("lobby"));
        let strict = cfg(&[("support", "help")], false);
        assert_eq!(room_for(&strict, Some("demo")), None);
    }

    #[test]
    fn pin_routes_ask_and_pins_open_rooms() {
        let c = cfg(&[("+4930100", "@pin")], true);
        assert_eq!(room_for(&c, Some("+4930100")), Some(Dispatch::Pin));
        let pins = vec![("1234".to_string(), "board".to_string())];
        assert_eq!(room_of_pin(&pins, "1234"), Some("board"));
        assert_eq!(room_of_pin(&pins, "123"), None);
    }
}
