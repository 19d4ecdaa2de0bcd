#!/usr/bin/env python3
"""Import cycles between the files of a crate: file A naming `crate::b` while file B
names `crate::a` (issue 10: the file tree must read as the module graph, so that a
reader can follow a layer down without coming back up). A module dir's mod.rs and its
children reach each other through `super`, which is how Rust nests modules, and is not
counted. Comments are ignored (doc links are not imports).

Prints one line per cycle and a closing `module cycles: N passed, M failed` line (one
check per crate); exits 1 when a cycle is found.
"""
import itertools
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def module_name(src, f):
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def crate_paths(text):
    """Every `crate::a::b` path named in code, `use crate::{a, b::c}` groups expanded."""
    code = re.sub(r"//[^\n]*", "", text)
    paths = []

    def expand(prefix, s):
        s = s.strip()
        if not s:
            return
        if s.startswith("{"):
            depth, cur = 0, ""
            for ch in s[1:-1]:
                depth += ch == "{"
                depth -= ch == "}"
                if ch == "," and depth == 0:
                    expand(prefix, cur)
                    cur = ""
                else:
                    cur += ch
            expand(prefix, cur)
        elif "::{" in s:
            head, rest = s.split("::{", 1)
            expand(prefix + head.split("::"), "{" + rest)
        else:
            paths.append(prefix + s.split(" as ")[0].split("::"))

    for group in re.findall(r"use\s+crate::(\{.*?\}|[^;{]*(?:\{.*?\})?);", code, flags=re.S):
        expand([], group)
    for p in re.findall(r"(?<![\w:])crate::((?:\w+::)*\w+)", code):
        paths.append(p.split("::"))
    return paths


def cycles(crate):
    src = crate / "src"
    mods = {module_name(src, f): f for f in src.rglob("*.rs")}
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        for p in crate_paths(f.read_text()):
            for k in range(len(p), 0, -1):
                target = "::".join(p[:k])
                if target in mods:
                    if target != m:
                        edges[m].add(target)
                    break
    found = []
    for a, b in itertools.combinations(sorted(mods), 2):
        nested = a == "crate" or b == "crate" or a.startswith(b + "::") or b.startswith(a + "::")
        if not nested and b in edges[a] and a in edges[b]:
            found.append((a, b))
    return found


def main():
    crates = sorted(p for p in (ROOT / "crates").iterdir() if (p / "src").is_dir())
    passed = failed = 0
    for crate in crates:
        found = cycles(crate)
        for a, b in found:
            print(f"cycle in crates/{crate.name}: {a} <-> {b}")
        if found:
            failed += 1
        else:
            passed += 1
    print(f"module cycles: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
