#!/usr/bin/env python3
"""Run the workspace's test binaries in lanes: `cargo test` runs one binary after another,
and the #[ignore]d tests (coturn, SIPp, baresip, kamailio, prosody, the namespace labs)
spend most of their time waiting on timers and peers: a full pass keeps 2 cores about 30 %
busy. Here each lane takes the next binary; the binaries of the package with the most of
them (crates/switchboard's end-to-end tests, the slow ones) go first. Tests choose free
ports and fresh lab names, so binaries may overlap like the tests inside one binary do.

    scripts/test-lanes.py [--lanes N] [-- ARGS FOR EVERY TEST BINARY]
    scripts/test-lanes.py --lanes 2 -- --ignored

Builds with `cargo test --workspace --locked --no-run`, then runs every unit and
integration test binary (not doc tests) with the working directory and CARGO_MANIFEST_DIR
cargo would give it. Prints each binary's output as one block when it ends (with cargo's
`Running` header, so the output reads like cargo's), and a last line naming the binaries
that failed. Exits 1 when any failed, 2 when the build failed.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def test_binaries():
    """(package name, package dir, source path, executable), in cargo's build order."""
    cmd = ["cargo", "test", "--workspace", "--locked", "--no-run", "--message-format=json-render-diagnostics"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(f"test-lanes: `{' '.join(cmd)}` failed (exit {proc.returncode})", flush=True)
        sys.exit(2)
    out = []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("profile", {}).get("test"):
            continue
        exe = msg.get("executable")
        if not exe:
            continue
        pkg_dir = os.path.dirname(msg["manifest_path"])
        # "path+file:///…/crates/sip#switchboard-sip@0.1.0", or "…/crates/sfu#0.1.0" when
        # the package is named like its directory.
        fragment = msg["package_id"].split("#")[-1]
        name = fragment.split("@")[0] if "@" in fragment else os.path.basename(pkg_dir)
        src = os.path.relpath(msg["target"]["src_path"], pkg_dir)
        out.append((name, pkg_dir, src, exe))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=2, help="test binaries run at once (default 2)")
    parser.add_argument("args", nargs="*", help="passed to every test binary (after --)")
    opts = parser.parse_args()
    if opts.lanes < 1:
        parser.error("--lanes must be at least 1")

    binaries = test_binaries()
    per_package = Counter(name for name, _, _, _ in binaries)
    # The package with the most binaries first (stable: cargo's order within it).
    binaries.sort(key=lambda b: (-per_package[b[0]], b[0]))
    lock = threading.Lock()
    failed = []

    def run_binary(binary):
        name, pkg_dir, src, exe = binary
        env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir, CARGO_PKG_NAME=name)
        t0 = time.monotonic()
        proc = subprocess.run([exe, *opts.args], cwd=pkg_dir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        took = time.monotonic() - t0
        with lock:
            print(f"     Running {src} ({os.path.relpath(exe)}) [{name}, {took:.1f} s]", flush=True)
            sys.stdout.write(proc.stdout)
            sys.stdout.flush()
            if proc.returncode != 0:
                failed.append(f"{name} {src} (exit {proc.returncode})")

    # Each lane takes the next binary in the list as it becomes free.
    with ThreadPoolExecutor(max_workers=opts.lanes) as pool:
        list(pool.map(run_binary, binaries))
    if failed:
        print(f"test-lanes: {len(failed)} binaries failed: {'; '.join(failed)}", flush=True)
        sys.exit(1)
    print(f"test-lanes: {len(binaries)} binaries of {len(per_package)} packages ran, none failed", flush=True)

if __name__ == "__main__":
    main()
