//! Cross-check against libsrtp (through Debian's python3-pylibsrtp, which python3-aiortc
//! depends on and scripts/test-all.sh installs): ours protects, libsrtp unprotects, and the
//! other way round, RTP (across a sequence wrap) and RTCP, both suites. Ignored in the
//! hermetic run; the CI's `cargo test -- --ignored` run executes it.

use super::*;
use std::io::Write;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"
import sys
from pylibsrtp import Policy, Session
mode, profile, key = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
profile = {"80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80, "32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32}[profile]
inbound = mode == "unprotect"
policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
session = Session(policy=policy)
for line in sys.stdin:
    kind, data = line.split()
    data = bytes.fromhex(data)
    if inbound:
        out = session.unprotect(data) if kind == "rtp" else session.unprotect_rtcp(data)
    else:
        out = session.protect(data) if kind == "rtp" else session.protect_rtcp(data)
    print(out.hex())
"#;

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs libsrtp over `packets` (kind, bytes); returns its outputs in order.
fn libsrtp(mode: &str, profile: &str, key: &[u8], packets: &[(&str, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT, mode, profile, &to_hex(key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with pylibsrtp (apt-get install python3-pylibsrtp)");
    let mut input = String::new();
    for (kind, bytes) in packets {
        input += &format!("{kind} {}\n", to_hex(bytes));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pylibsrtp {mode} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(hex)
        .collect()
}

/// Plain packets: RTP from seq 65500 across the wrap, with an RR every 20 packets.
fn plain_packets() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for k in 0..80u32 {
        let seq = (65500 + k) as u16;
        let mut buf = [0u8; 200];
        let payload: Vec<u8> = (0..160).map(|i| (i as u32 * 7 + k) as u8).collect();
        let len = rtp_packet(&mut buf, seq, 0xA1B2_C3D4, &payload);
        out.push(("rtp", buf[..len].to_vec()));
        if k % 20 == 0 {
            let len = crate::rtp::write_receiver_report(
                &mut buf,
                0xA1B2_C3D4,
                &[crate::rtp::ReportBlock {
                    ssrc: 77,
                    highest_sequence: k,
                    ..Default::default()
                }],
            )
            .unwrap();
            out.push(("rtcp", buf[..len].to_vec()));
        }
    }
    out
}

fn profiles() -> [(SrtpProfile, &'static str); 2] {
    [
        (SrtpProfile::AesCm128HmacSha1_80, "80"),
        (SrtpProfile::AesCm128HmacSha1_32, "32"),
    ]
}

#[test]
#[ignore = "needs /usr/bin/python3 with pylibsrtp (python3-pylibsrtp); CI runs it with --ignored"]
fn libsrtp_unprotects_ours() {
    let key: Vec<u8> = (0..30u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    for (profile, name) in profiles() {
        let mut ours = SrtpContext::new(profile, &key).unwrap();
        let plain = plain_packets();
        let protected: Vec<(&str, Vec<u8>)> = plain
            .iter()
            .map(|(kind, p)| {
                let mut buf = [0u8; 300];
                buf[..p.len()].copy_from_slice(p);
                let n = if *kind == "rtp" {
                    ours.protect_rtp(&mut buf, p.len())
                } else {
                    ours.protect_rtcp(&mut buf, p.len())
                }
                .unwrap();
                (*kind, buf[..n].to_vec())
            })
            .collect();
        let back = libsrtp("unprotect", name, &key, &protected);
        assert_eq!(back.len(), plain.len(), "{name}");
        for (i, ((_, p), b)) in plain.iter().zip(&back).enumerate() {
            assert_eq!(p, b, "{name}: packet {i}");
        }
    }
}

#[test]
#[ignore = "needs /usr/bin/python3 with pylibsrtp (python3-pylibsrtp); CI runs it with --ignored"]
fn we_unprotect_libsrtp() {
    let key: Vec<u8> = (0..30u8)
        .map(|i| i.wrapping_mul(91).wrapping_add(3))
        .collect();
    for (profile, name) in profiles() {
        let plain = plain_packets();
        let protected = libsrtp("protect", name, &key, &plain);
        assert_eq!(protected.len(), plain.len(), "{name}");
        let mut ours = SrtpContext::new(profile, &key).unwrap();
        for (i, ((kind, p), mut s)) in plain.iter().zip(protected).enumerate() {
            let n = if *kind == "rtp" {
                ours.unprotect_rtp(&mut s)
            } else {
                ours.unprotect_rtcp(&mut s)
            }
            .unwrap_or_else(|e| panic!("{name}: packet {i} ({kind}): {e}"));
            assert_eq!(&s[..n], &p[..], "{name}: packet {i}");
        }
    }
}
