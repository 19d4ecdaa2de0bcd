//! Passes a browser's SDP (stdin) through Jingle and back (stdout): SDP -> Jingle -> XML
//! text -> Jingle -> SDP, as the description of `initiator` (an offer in a
//! session-initiate) or `responder` (an answer in a session-accept). With `--xml` it
//! prints the Jingle XML instead. Used by tests/browser/interop.mjs to hand Chromium the
//! SDP that came through Jingle.

use std::io::Read;
use std::process::ExitCode;

use switchboard_xmpp::xmpp_parsers::jingle::Action;
use switchboard_xmpp::*;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let side = match args.first().map(String::as_str) {
        Some("initiator") => Side::Initiator,
        Some("responder") => Side::Responder,
        _ => {
            eprintln!("usage: via_jingle initiator|responder [--xml] < sdp");
            return ExitCode::from(2);
        }
    };
    let mut sdp = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut sdp) {
        eprintln!("reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let params = JingleParams {
        action: match side {
            Side::Initiator => Action::SessionInitiate,
            Side::Responder => Action::SessionAccept,
        },
        sid: "interop".into(),
        side,
        initiator: None,
        responder: None,
    };
    let result = parse_sdp(&sdp)
        .and_then(|s| sdp_to_jingle(&s, &params))
        .map(|j| jingle_to_xml(&j))
        .and_then(|xml| {
            if args.iter().any(|a| a == "--xml") {
                return Ok(xml);
            }
            parse_jingle_xml(&xml)
                .and_then(|j| jingle_to_sdp(&j, side))
                .map(|s| write_sdp(&s))
        });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
