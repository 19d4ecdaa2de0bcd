use super::*;

const GET: DigestRequest<'static> = DigestRequest {
    method: "GET",
    uri: "/dir/index.html",
    body: b"",
};

#[test]
fn rfc2617_md5_qop_auth_vector() {
    let challenge = Challenge::parse(
        r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
    )
    .unwrap();
    assert_eq!(challenge.algorithm, Algorithm::Md5);
    assert_eq!(challenge.qop, vec![Qop::Auth, Qop::AuthInt]);
    let creds = challenge.respond("Mufasa", "Circle Of Life", &GET, "0a4f113b", 1);
    assert_eq!(creds.response, "6629fae49393a05397450978507c4ef1");
    assert_eq!(creds.qop, Some(Qop::Auth));
    let value = creds.to_header_value();
    assert!(value.contains("nc=00000001"), "{value}");
    assert_eq!(Credentials::parse(&value).unwrap(), creds);
}

#[test]
fn rfc7616_sha256_vector() {
    let challenge = Challenge::parse(
        r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
    )
    .unwrap();
    assert_eq!(challenge.algorithm, Algorithm::Sha256);
    let creds = challenge.respond(
        "Mufasa",
        "Circle of Life",
        &GET,
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    );
    assert_eq!(
        creds.response,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    // The same exchange with MD5 (RFC 7616 §3.9.1 gives both).
    let md5 = Challenge {
        algorithm: Algorithm::Md5,
        ..challenge
    };
    let creds = md5.respond(
        "Mufasa",
        "Circle of Life",
        &GET,
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    );
    assert_eq!(creds.response, "8ca523f5e9506fed4657c9700eebdbec");
}

#[test]
fn kamailio_challenge_parses_and_round_trips() {
    let text = r#"Digest realm="127.0.0.1", nonce="Z1Nf4WdTXtX7lG0b1wC9aQ2fYxTzJ6Rk", qop="auth""#;
    let c = Challenge::parse(text).unwrap();
    assert_eq!(c.realm, "127.0.0.1");
    assert_eq!(Challenge::parse(&c.to_header_value()).unwrap(), c);
    assert_eq!(
        Challenge::parse("Basic realm=\"x\"").unwrap_err(),
        DigestError::NotDigest
    );
    assert_eq!(
        Challenge::parse("Digest realm=\"x\"").unwrap_err(),
        DigestError::Missing("nonce")
    );
    assert_eq!(
        Challenge::parse("Digest realm=\"x\", nonce=\"y\", algorithm=SHA-512-256").unwrap_err(),
        DigestError::UnsupportedAlgorithm
    );
    assert_eq!(
        Challenge::parse("Digest realm=\"x, nonce=\"y\"").unwrap_err(),
        DigestError::Syntax
    );
}

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const REGISTER: DigestRequest<'static> = DigestRequest {
    method: "REGISTER",
    uri: "sip:127.0.0.1",
    body: b"",
};

fn issuer(algorithm: Algorithm) -> NonceIssuer {
    NonceIssuer::new(KEY, "switchboard", algorithm, 300)
}

#[test]
fn server_challenge_client_response_server_verify() {
    for algorithm in [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
    ] {
        let server = issuer(algorithm);
        let challenge = server.challenge(1_000_000, "a1b2c3d4e5f60718", false);
        // Over the wire and back.
        let challenge = Challenge::parse(&challenge.to_header_value()).unwrap();
        let creds = challenge.respond("alice", "alicepw", &REGISTER, "0badc0de", 1);
        let creds = Credentials::parse(&creds.to_header_value()).unwrap();
        server
            .verify(
                &creds,
                "REGISTER",
                b"",
                Secret::Password("alicepw"),
                1_000_010,
            )
            .unwrap();
        let stored = ha1(algorithm, "alice", "switchboard", "alicepw");
        server
            .verify(&creds, "REGISTER", b"", Secret::Ha1(&stored), 1_000_010)
            .unwrap();
        // Another method (the response covers it) fails.
        assert_eq!(
            server.verify(
                &creds,
                "INVITE",
                b"",
                Secret::Password("alicepw"),
                1_000_010
            ),
            Err(DigestError::WrongResponse)
        );
    }
}

#[test]
fn wrong_password_is_rejected() {
    let server = issuer(Algorithm::Md5);
    let challenge = server.challenge(500, "00", false);
    let creds = challenge.respond("alice", "guess", &REGISTER, "c", 1);
    assert_eq!(
        server.verify(&creds, "REGISTER", b"", Secret::Password("alicepw"), 501),
        Err(DigestError::WrongResponse)
    );
}

#[test]
fn expired_nonce_is_stale_and_forged_nonce_is_refused() {
    let server = issuer(Algorithm::Sha256);
    let challenge = server.challenge(1000, "5a17", false);
    let creds = challenge.respond("alice", "alicepw", &REGISTER, "c", 1);
    assert_eq!(
        server.verify(
            &creds,
            "REGISTER",
            b"",
            Secret::Password("alicepw"),
            1000 + 301
        ),
        Err(DigestError::Stale)
    );
    // A stale verdict only for a right answer: a wrong password on an old nonce is wrong.
    assert_eq!(
        server.verify(&creds, "REGISTER", b"", Secret::Password("x"), 1000 + 301),
        Err(DigestError::WrongResponse)
    );
    // The nonce's time cannot be moved forward without the key.
    let mut forged = creds.clone();
    forged
        .nonce
        .replace_range(..16, &format!("{:016x}", 1_000_000u64));
    assert_eq!(
        server.verify(
            &forged,
            "REGISTER",
            b"",
            Secret::Password("alicepw"),
            1_000_001
        ),
        Err(DigestError::BadNonce)
    );
    // Nor is a nonce from another key or realm accepted.
    let other = NonceIssuer::new(b"another key", "switchboard", Algorithm::Sha256, 300);
    assert_eq!(
        other.verify(&creds, "REGISTER", b"", Secret::Password("alicepw"), 1001),
        Err(DigestError::BadNonce)
    );
    let mut short = creds.clone();
    short.nonce = "abc".into();
    assert_eq!(
        server.verify(&short, "REGISTER", b"", Secret::Password("alicepw"), 1001),
        Err(DigestError::BadNonce)
    );
    // A downgrade to RFC 2069 (no qop) is refused.
    let mut no_qop = creds;
    no_qop.qop = None;
    assert_eq!(
        server.verify(&no_qop, "REGISTER", b"", Secret::Password("alicepw"), 1001),
        Err(DigestError::UnsupportedQop)
    );
    let challenge = server.challenge(2000, "ff", true);
    assert!(challenge.to_header_value().ends_with("stale=true"));
}

#[test]
fn auth_int_covers_the_body() {
    let server = issuer(Algorithm::Md5);
    let mut challenge = server.challenge(10, "01", false);
    challenge.qop = vec![Qop::AuthInt];
    let req = DigestRequest {
        method: "INVITE",
        uri: "sip:bob@b",
        body: b"v=0\r\n",
    };
    let creds = challenge.respond("alice", "pw", &req, "c", 7);
    assert_eq!(creds.qop, Some(Qop::AuthInt));
    server
        .verify(&creds, "INVITE", b"v=0\r\n", Secret::Password("pw"), 11)
        .unwrap();
    assert_eq!(
        server.verify(&creds, "INVITE", b"v=1\r\n", Secret::Password("pw"), 11),
        Err(DigestError::WrongResponse)
    );
}

#[test]
fn baresip_credentials_parse() {
    let v = r#"Digest username="bob", realm="127.0.0.1", nonce="Z1Nf4WdTXtX7lG0b1wC9aQ2fYxTzJ6Rk", uri="sip:alice@127.0.0.1", response="1a9e6c4f7b2d3e8a0c5f1b9d7e3a6c2f", algorithm=MD5, cnonce="3f8a2c1e", qop=auth, nc=00000001"#;
    let c = Credentials::parse(v).unwrap();
    assert_eq!(
        (c.username.as_str(), c.nc, c.qop),
        ("bob", Some(1), Some(Qop::Auth))
    );
    assert_eq!(Credentials::parse(&c.to_header_value()).unwrap(), c);
    assert!(Credentials::parse("Digest username=\"bob\", qop=auth").is_err());
    assert!(Credentials::parse(&v.replace("nc=00000001", "nc=1")).is_err());
}
