#!/usr/bin/env python3
"""Checks the declared minimum Rust version (`rust-version` in Cargo.toml).

No second Rust toolchain can be installed where CI runs, so the declared
version is checked in the two ways that need none:
- every dependency in Cargo.lock declares a `rust-version` no newer than ours
  (cargo itself refuses to build such a dependency on an older toolchain);
- clippy's `incompatible_msrv` lint (on by default, run by .ci/run with
  `-D warnings`) rejects standard-library items newer than ours.
Language features are bounded by the edition (2024, Rust 1.85) and by
let-chains (1.88), the newest syntax the code may use.
"""
import json
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split("."))[:3]


metadata = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = set(metadata["workspace_members"])
declared = {
    p["rust_version"] for p in metadata["packages"] if p["id"] in members
}
if len(declared) != 1 or None in declared:
    sys.exit(f"workspace members disagree on rust-version: {sorted(map(str, declared))}")
ours = declared.pop()
# Only the packages the resolved graph really builds (not every platform's).
used = {node["id"] for node in metadata["resolve"]["nodes"]}
too_new = sorted(
    (p["name"], p["version"], p["rust_version"])
    for p in metadata["packages"]
    if p["id"] in used
    and p["id"] not in members
    and p.get("rust_version")
    and version(p["rust_version"]) > version(ours)
)
if too_new:
    for name, ver, rv in too_new:
        print(f"{name} {ver} needs Rust {rv}, newer than rust-version {ours}", file=sys.stderr)
    sys.exit(1)
print(f"rust-version {ours}: every dependency declares {ours} or older")
