//! Reads counters from a Prometheus text endpoint (Switchboard's `/metrics`) so the window's
//! forwarded packets can be cross-checked against what the subscribers received.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The body of `GET url` (`http://host:port/path`).
fn get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("the metrics URL must start with http://: {url}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end"))?;
    if head.split(' ').nth(1) != Some("200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// Sum of every sample of metric `name` (all label sets) in a Prometheus text body.
pub fn sum_metric(body: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue; // a longer name with this prefix
        }
        let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *found.get_or_insert(0.0) += v;
    }
    found
}

/// The named counters at `url`, in order (None for a missing one).
pub fn counters(url: &str, names: &[&str]) -> Result<Vec<Option<f64>>> {
    let body = get(url).context("scraping metrics")?;
    Ok(names.iter().map(|n| sum_metric(&body, n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_skips_longer_names() {
        let body = "# HELP x\nsfu_fwd_total 10\nsfu_fwd_total_other 99\nsfu_fwd_total{worker=\"1\"} 5\nsfu_drop 1\n";
        assert_eq!(sum_metric(body, "sfu_fwd_total"), Some(15.0));
        assert_eq!(sum_metric(body, "sfu_drop"), Some(1.0));
        assert_eq!(sum_metric(body, "nope"), None);
    }
}
