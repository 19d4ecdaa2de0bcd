use super::*;

#[test]
fn sip_uri_with_user_port_params_and_headers_round_trips() {
    let text =
        "sip:alice@atlanta.example.com:5061;transport=tls;lr?subject=project%20x&priority=urgent";
    let uri = Uri::parse(text).unwrap();
    assert_eq!(uri.scheme, Scheme::Sip);
    assert_eq!(uri.user.as_deref(), Some("alice"));
    assert_eq!(uri.host, Host::Domain("atlanta.example.com".into()));
    assert_eq!(uri.port, Some(5061));
    assert_eq!(uri.params.get("transport"), Some("tls"));
    assert!(uri.params.has("LR"));
    assert!(uri.is_secure());
    assert_eq!(uri.headers.len(), 2);
    assert_eq!(uri.to_string(), text);
}

#[test]
fn ipv6_and_ipv4_hosts() {
    let uri = Uri::parse("sips:bob@[2001:db8::10]:5061;maddr=[2001:db8::1]").unwrap();
    assert_eq!(uri.host, Host::V6("2001:db8::10".parse().unwrap()));
    assert_eq!(uri.port, Some(5061));
    assert_eq!(
        uri.to_string(),
        "sips:bob@[2001:db8::10]:5061;maddr=[2001:db8::1]"
    );
    let uri = Uri::parse("sip:[::1]").unwrap();
    assert_eq!(uri.host, Host::V6(std::net::Ipv6Addr::LOCALHOST));
    assert_eq!(uri.port, None);
    let uri = Uri::parse("sip:127.0.0.1:5060").unwrap();
    assert_eq!(uri.host, Host::V4(Ipv4Addr::LOCALHOST));
    assert!(Uri::parse("sip:[2001:db8::10").is_err());
    assert!(Uri::parse("sip:[zz::1]").is_err());
    assert!(Uri::parse("sip:host:99999").is_err());
    assert!(Uri::parse("sip:host:").is_err());
    assert!(Uri::parse("sip:").is_err());
    assert!(Uri::parse("http://x").is_err());
    assert!(Uri::parse("sip:a b@host").is_err());
}

#[test]
fn escaped_user_is_kept_as_written_and_decodes() {
    let uri = Uri::parse("sip:sip%3Auser%40example.com@company.com;other-param=summit").unwrap();
    assert_eq!(uri.user.as_deref(), Some("sip%3Auser%40example.com"));
    assert_eq!(uri.user_unescaped().unwrap(), "sip:user@example.com");
    assert_eq!(
        uri.to_string(),
        "sip:sip%3Auser%40example.com@company.com;other-param=summit"
    );
    // A bad escape stays as written instead of failing.
    let uri = Uri::parse("sip:a%zz@h").unwrap();
    assert_eq!(uri.user_unescaped().unwrap(), "a%zz");
}

#[test]
fn password_is_parsed_but_never_written() {
    let uri = Uri::parse("sip:alice:secretword@atlanta.com;transport=tcp").unwrap();
    assert_eq!(uri.password.as_deref(), Some("secretword"));
    assert_eq!(uri.to_string(), "sip:alice@atlanta.com;transport=tcp");
}

#[test]
fn tel_uri_and_user_phone() {
    let uri = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
    assert_eq!(uri.scheme, Scheme::Tel);
    assert_eq!(uri.user.as_deref(), Some("+1-201-555-0123"));
    assert_eq!(uri.host, Host::None);
    assert_eq!(uri.params.get("phone-context"), Some("example.com"));
    assert_eq!(
        uri.to_string(),
        "tel:+1-201-555-0123;phone-context=example.com"
    );
    assert!(Uri::parse("tel:").is_err());
    assert!(Uri::parse("tel:abc@x").is_err());
    let uri = Uri::parse("sip:+12125551212@gateway.com;user=phone").unwrap();
    assert_eq!(uri.params.get("user"), Some("phone"));
}

#[test]
fn name_addr_forms() {
    let na = NameAddr::parse(r#""Bob \"B\" Smith" <sip:bob@biloxi.com>;tag=a6c85cf"#).unwrap();
    assert_eq!(na.display.as_deref(), Some(r#"Bob "B" Smith"#));
    assert_eq!(na.tag(), Some("a6c85cf"));
    assert_eq!(
        na.to_string(),
        r#""Bob \"B\" Smith" <sip:bob@biloxi.com>;tag=a6c85cf"#
    );
    let text = na.to_string();
    let back = NameAddr::parse(&text).unwrap();
    assert_eq!(back, na);

    let na = NameAddr::parse("Alice <sip:alice@atlanta.com;transport=tcp>;tag=1928301774").unwrap();
    assert_eq!(na.display.as_deref(), Some("Alice"));
    assert_eq!(na.uri.params.get("transport"), Some("tcp"));
    assert_eq!(na.tag(), Some("1928301774"));

    // addr-spec: the parameters belong to the header.
    let na = NameAddr::parse("sip:carol@chicago.com;tag=887s").unwrap();
    assert_eq!(na.tag(), Some("887s"));
    assert!(na.uri.params.0.is_empty());

    assert!(NameAddr::parse("\"unterminated <sip:a@b>").is_err());
    assert!(NameAddr::parse("<sip:a@b").is_err());
    assert!(NameAddr::parse("\"x\" sip:a@b").is_err());
}

#[test]
fn params_set_and_split_outside_quotes() {
    let mut p = Params::parse(";a=1;b").unwrap();
    p.set("b", Some("2".into()));
    p.set("c", None);
    assert_eq!(p.to_string(), ";a=1;b=2;c");
    let parts: Vec<_> = split_outside_quotes(r#"a="x;y";b"#, b';').collect();
    assert_eq!(parts, vec![r#"a="x;y""#, "b"]);
    assert!(Params::parse("a=1").is_err());
    assert!(Params::parse(";=1").is_err());
}
