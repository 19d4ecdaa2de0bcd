//! Bad input on the command line or in the config file: a clear message naming the
//! option and exit code 2, never a panic.

use std::process::Command;

fn serve(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .args(args)
        .args(["--metrics-listen", "off", "-p", "0"])
        .env("SWITCHBOARD_SFU_PORT", "0")
        .output()
        .expect("run switchboard");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn invalid_option_values_exit_2_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["--min-port", "abc"], "--min-port"),
        (&["--listening-ip", "300.1.1.1"], "--listening-ip"),
        (&["--user", "nocolon"], "--user"),
        (&["--user", ":empty"], "--user"),
        (&["--denied-peer-ip", "1.2.3"], "--denied-peer-ip"),
        (
            &["--allowed-peer-ip", "10.0.0.9-10.0.0.1"],
            "--allowed-peer-ip",
        ),
        (
            &["--min-port", "60000", "--max-port", "50000"],
            "--min-port",
        ),
        (&["--min-port", "80"], "--min-port"),
        (&["--threads", "0"], "--threads"),
        (&["--cert", "/nonexistent.pem"], "--pkey"),
        (
            &["--cert", "/nonexistent.pem", "--pkey", "/nonexistent.key"],
            "--cert",
        ),
        (&["--external-ip", "nonsense"], "--external-ip"),
        (&["--listening-ip", "0.0.0.0"], "--relay-ip"),
        (
            &["--relay-ip", "127.0.0.1", "--relay-ip", "127.0.0.2"],
            "--relay-ip",
        ),
        (&["--metrics-listen", "nowhere"], "--metrics-listen"),
        (&["--realm", ""], "--realm"),
        (&["--log", "info,[[["], "--log"),
        (&["--max-allocate-lifetime", "0"], "--max-allocate-lifetime"),
        (&["--room-capacity", "0"], "--room-capacity"),
        (&["--room-token-secret", "short"], "--room-token-secret"),
        (&["--signal-max-message", "10"], "--signal-max-message"),
        (&["--signal-grace", "99999"], "--signal-grace"),
        (&["--allowed-origin", "evil.test/path"], "--allowed-origin"),
        (&["--http-listen", "8080"], "--http-listen"),
        (&["--ice-host", "bad host/x"], "--ice-host"),
        (&["--turn-on-http-port"], "--turn-on-http-port"),
        (
            &[
                "--turn-on-http-port",
                "--tls-self-signed",
                "--http-listen",
                "off",
            ],
            "--turn-on-http-port",
        ),
        (&["--turn-on-http-port", "maybe"], "--turn-on-http-port"),
    ];
    for (args, option) in cases {
        let (code, text) = serve(args);
        assert_eq!(code, 2, "{args:?} should exit 2, said:\n{text}");
        assert!(
            text.contains(option),
            "{args:?}: message should name {option}:\n{text}"
        );
        assert!(!text.contains("panicked"), "{args:?} panicked:\n{text}");
    }
}

#[test]
fn invalid_config_file_exits_2_naming_the_key_or_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "listening-port = \"not a number\"\n").expect("write");
    let (code, text) = serve(&["--config", f.to_str().expect("path")]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("bad.toml") && text.contains("line 1"),
        "{text}"
    );
    std::fs::write(&f, "no-such-option = 1\n").expect("write");
    let (code, text) = serve(&["--config", f.to_str().expect("path")]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no-such-option"), "{text}");
    let (code, text) = serve(&["--config", "/nonexistent/switchboard.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot read"), "{text}");
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "-p", &port, "--metrics-listen", "off"])
        .env("SWITCHBOARD_SFU_PORT", "0")
        .output()
        .expect("run");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot listen on UDP 127.0.0.1:{port}")),
        "{text}"
    );
}

#[test]
fn turn_credentials_verify_against_the_server() {
    // A quote and a backslash in the user name: the output must still be JSON.
    let user = "ca\"rol\\";
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "turn-credentials",
            "--secret",
            "s",
            "--user",
            user,
            "--ttl",
            "60",
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&text).expect("output is JSON");
    let username = json["username"].as_str().expect("username");
    let credential = json["credential"].as_str().expect("credential");
    assert_eq!(json["ttl"], 60);
    let (expiry, ident) = username.split_once(':').expect("expiry:identity");
    assert_eq!(ident, user);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expiry: u64 = expiry.parse().expect("number");
    assert!((now + 55..=now + 65).contains(&expiry));
    // What the server's REST check expects for this username.
    let expected = switchboard_turn::rest::password(b"s", username.as_bytes());
    assert_eq!(credential, expected.as_str());
}

#[test]
fn token_refuses_bad_input_with_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--secret", "short", "--room", "r"], "--secret"),
        (
            &["--secret", "0123456789abcdef", "--room", "bad room"],
            "--room",
        ),
        (
            &[
                "--secret",
                "0123456789abcdef",
                "--room",
                "r",
                "--grant",
                "root",
            ],
            "--grant",
        ),
        (
            &["--secret", "0123456789abcdef", "--room", "r", "--ttl", "0"],
            "--ttl",
        ),
    ];
    for (args, option) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("token")
            .args(*args)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.contains(option),
            "{args:?} should name {option}: {text}"
        );
    }
}

/// Every option `serve --help` lists has a row in docs/config.md (the brief: docs for
/// every user-facing knob), so a new option cannot land undocumented.
#[test]
fn every_serve_option_is_documented_in_config_md() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--help"])
        .output()
        .expect("run switchboard");
    let help = String::from_utf8_lossy(&out.stdout);
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
            .expect("read docs/config.md");
    let options: Vec<&str> = help
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
        })
        // A wrapped description line may start with an option named in the text
        // ("--relay-ip).", "--cert/--pkey"): only bare names are option headers.
        .filter(|o| {
            o[2..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .filter(|o| *o != "--help")
        .collect();
    assert!(
        options.len() > 30,
        "too few options parsed from --help: {options:?}"
    );
    let missing: Vec<&&str> = options
        .iter()
        .filter(|o| !docs.contains(&format!("`{o}")))
        .collect();
    assert!(missing.is_empty(), "not in docs/config.md: {missing:?}");
}
