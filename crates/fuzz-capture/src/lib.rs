//! Test-only: with `SWITCHBOARD_FUZZ_CAPTURE=DIR` set, the sans-IO test harnesses
//! (TURN, signaling, NAT probe) log every input they hand a core, and what came back,
//! to a file in DIR, one per harness instance; `fuzz/corpus.py` turns the logs into the
//! fuzzers' seed corpora, so the fuzzers start from the traffic the tests produce.
//! Without the variable nothing is written.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// One harness's log (a no-op when capturing is off).
pub struct Capture(Option<std::fs::File>);

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Capture {
    /// A new log named after `kind` (`turn`, `signal`, `natprobe`).
    pub fn open(kind: &str) -> Capture {
        let Some(dir) = std::env::var_os("SWITCHBOARD_FUZZ_CAPTURE") else {
            return Capture(None);
        };
        let _ = std::fs::create_dir_all(&dir);
        let name = format!(
            "{kind}-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Capture(std::fs::File::create(std::path::Path::new(&dir).join(name)).ok())
    }

    /// One line: `what`, then `data` in hex.
    pub fn line(&mut self, what: std::fmt::Arguments, data: &[u8]) {
        let Some(f) = self.0.as_mut() else { return };
        let mut s = what.to_string();
        s.push(' ');
        for b in data {
            let _ = write!(s, "{b:02x}");
        }
        s.push('\n');
        let _ = f.write_all(s.as_bytes());
    }
}
