//! Passes a browser's SDP (stdin) through Jingle and back (stdout): SDP -> Jingle -> XML
//! text -> Jingle -> SDP, as the description of `initiator` (an offer in a
//! session-initiate) or `responder` (an answer in a session-accept). With `--xml` it
//! prints the Jingle XML instead. `trickle` reads a JSON array of trickled candidates
//! (`{"mid", "candidate", "ufrag"}`) and writes the array that came back through a
//! transport-info. Used by the browser suite's tests/browser/jingle.test.mjs (run.sh
//! builds it) to hand Chromium what came through Jingle.

use std::io::Read;
use std::process::ExitCode;

use switchboard_xmpp::xmpp_parsers::jingle::Action;
use switchboard_xmpp::*;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let side = match args.first().map(String::as_str) {
        Some("trickle") => return trickle(),
        Some("initiator") => Side::Initiator,
        Some("responder") => Side::Responder,
        _ => {
            eprintln!(
                "usage: via_jingle initiator|responder [--xml] < sdp, or via_jingle trickle < json"
            );
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

fn trickle() -> ExitCode {
    let input: Result<serde_json::Value, String> =
        serde_json::from_reader(std::io::stdin()).map_err(|e| e.to_string());
    let list = match input {
        Ok(serde_json::Value::Array(list)) => list,
        Ok(_) => return fail("expected a JSON array"),
        Err(e) => return fail(&e),
    };
    let text =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
    let candidates: Vec<TrickleCandidate> = list
        .iter()
        .map(|c| TrickleCandidate {
            mid: text(c, "mid").unwrap_or_default(),
            candidate: text(c, "candidate").unwrap_or_default(),
            ufrag: text(c, "ufrag"),
        })
        .collect();
    let back = candidates_to_transport_info("interop", &candidates)
        .map(|j| jingle_to_xml(&j))
        .and_then(|xml| parse_jingle_xml(&xml))
        .and_then(|j| transport_info_to_candidates(&j));
    match back {
        Ok(list) => {
            let out: Vec<serde_json::Value> = list
                .into_iter()
                .map(|c| serde_json::json!({"mid": c.mid, "candidate": c.candidate, "ufrag": c.ufrag}))
                .collect();
            println!("{}", serde_json::Value::Array(out));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(why: &str) -> ExitCode {
    eprintln!("{why}");
    ExitCode::FAILURE
}
