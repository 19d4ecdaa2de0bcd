//! Test support (feature `lab`): two Debian prosody servers in a private network
//! namespace, `a.test` on 127.0.0.1 and `b.test` on 127.0.0.2, with s2s (dialback)
//! between them and a component `sb.<name>.test` on each. This crate's prosody test and
//! the server's federation tests share it. Every failure to set the lab up panics with a
//! message starting "harness:", so that it reads as a harness failure, not a verdict.
//! The prosody config is one template shared with the Chromium and Python labs, so the
//! three labs run the same servers.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The components' shared secret in the lab.
pub const SECRET: &str = "trapezoid-secret";

/// The prosody config of every federation lab (tests/browser/trapezoid-lab.mjs and
/// tests/federation/jingle-peer-lab.sh render it too), placeholders `@NAME@`.
pub const PROSODY_TEMPLATE: &str = include_str!("../../../tests/federation/prosody.cfg.lua.in");

/// [`PROSODY_TEMPLATE`] with each `@NAME@` of `values` filled in; a placeholder left over
/// is an error naming it.
pub fn render_config(values: &[(&str, &str)]) -> Result<String, String> {
    let mut text = PROSODY_TEMPLATE.to_string();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    match leftover_placeholder(&text) {
        Some(left) => Err(format!("prosody template: no value for {left}")),
        None => Ok(text),
    }
}

/// The first `@NAME@` (upper-case letters between at-signs) in `text`.
fn leftover_placeholder(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let after = &rest[at + 1..];
        let name_len = after
            .find(|c: char| !c.is_ascii_uppercase())
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('@') {
            return Some(&rest[at..at + name_len + 2]);
        }
        rest = after;
    }
    None
}

/// How long prosody may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One prosody server; killed when dropped.
pub struct Prosody {
    child: Child,
    /// Its debug log.
    pub log: PathBuf,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prosody {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Whether prosody is installed (`prosody --version` is no probe: it waits on a terminal).
pub fn prosody_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("prosody").is_file()))
}

/// Move the calling thread into a new network namespace with loopback up (root only);
/// processes it starts from now on live there.
pub fn private_netns() {
    // SAFETY: unshare(2) on this thread only changes its network namespace; the
    // processes and sockets made afterwards belong to it.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "harness: unshare(CLONE_NEWNET) needs root: {}",
        std::io::Error::last_os_error()
    );
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(up.is_ok_and(|s| s.success()), "harness: ip link set lo up");
}

/// The two servers of the trapezoid, `a.test` and `b.test`, listening (c2s 5222, s2s
/// 5269, components 5347) in the current network namespace.
pub struct Pair {
    pub a: Prosody,
    pub b: Prosody,
    _dir: tempfile::TempDir,
}

impl Pair {
    pub fn start() -> Pair {
        assert!(
            prosody_installed(),
            "harness: prosody is not installed (apt-get install prosody)"
        );
        let dir = tempfile::tempdir().expect("harness: temp dir");
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "127.0.0.1 a.test sb.a.test\n127.0.0.2 b.test sb.b.test\n",
        )
        .expect("harness: hosts");
        let mut a = start(dir.path(), "a", "127.0.0.1", &hosts);
        let mut b = start(dir.path(), "b", "127.0.0.2", &hosts);
        wait_for_port("127.0.0.1:5347", &mut a);
        wait_for_port("127.0.0.2:5347", &mut b);
        Pair { a, b, _dir: dir }
    }
}

fn start(dir: &Path, name: &str, ip: &str, hosts: &Path) -> Prosody {
    let home = dir.join(name);
    std::fs::create_dir_all(home.join("data")).expect("harness: temp dir");
    let log = home.join("prosody.log");
    let config = render_config(&[
        ("HOME", &home.display().to_string()),
        ("LOG", &log.display().to_string()),
        ("IP", ip),
        ("DOMAIN", &format!("{name}.test")),
        ("HOSTS", &hosts.display().to_string()),
        ("SECRET", SECRET),
    ])
    .unwrap_or_else(|e| panic!("harness: {e}"));
    let path = home.join("prosody.cfg.lua");
    std::fs::write(&path, config).expect("harness: write prosody config");
    let out = std::fs::File::create(home.join("stdout.log")).expect("harness: log file");
    let mut command = Command::new("prosody");
    // SAFETY: prctl in the forked child before exec only sets its parent-death signal,
    // so a killed test leaves no prosody behind.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command
        .arg("--config")
        .arg(&path)
        .arg("-F")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("harness: log file"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("harness: prosody does not start: {e}"));
    Prosody { child, log }
}

fn wait_for_port(addr: &str, prosody: &mut Prosody) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = prosody.child.try_wait() {
            panic!(
                "harness: prosody for {addr} exited ({status}): {}",
                prosody.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "harness: prosody did not listen on {addr} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The s2s connection prosody `p` completed (dialback) towards another server, if any.
pub fn s2s_completed(p: &Prosody) -> Option<String> {
    p.log_text()
        .lines()
        .find(|l| l.contains("s2sout") && l.contains("complete"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_renders_with_every_value_and_refuses_a_missing_one() {
        let values = [
            ("HOME", "/tmp/h"),
            ("LOG", "/tmp/h/prosody.log"),
            ("IP", "127.0.0.2"),
            ("DOMAIN", "b.test"),
            ("HOSTS", "/tmp/hosts"),
            ("SECRET", "s3"),
        ];
        let text = render_config(&values).unwrap();
        assert!(text.contains("interfaces = { \"127.0.0.2\" }"), "{text}");
        assert!(text.contains("VirtualHost \"b.test\""), "{text}");
        assert!(text.contains("Component \"sb.b.test\""), "{text}");
        assert!(text.contains("component_secret = \"s3\""), "{text}");
        assert_eq!(leftover_placeholder(&text), None);
        let err = render_config(&values[1..]).unwrap_err();
        assert!(err.contains("@HOME@"), "{err}");
    }

    #[test]
    fn a_lone_at_sign_is_no_placeholder() {
        assert_eq!(leftover_placeholder("carol@b.test @x@ @@ a@B"), None);
        assert_eq!(leftover_placeholder("a@b @IP@"), Some("@IP@"));
    }
}
