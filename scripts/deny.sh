#!/usr/bin/env bash
# Dependency hygiene (cargo-deny, policy in deny.toml): licenses on the allow-list,
# crates only from crates.io, no wildcard versions — checked offline against
# Cargo.lock — and RustSec advisories when its database (on GitHub) is reachable.
# Run by scripts/test.sh; cargo-deny is built once into $VIDINFER_CACHE/tools.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. "$root/scripts/env.sh"
tools="$VIDINFER_CACHE/tools"
if [ ! -x "$tools/bin/cargo-deny" ]; then
  echo "[deny] installing cargo-deny into $tools (once, a few minutes)" >&2
  cargo install --locked --quiet cargo-deny --version 0.20.2 --root "$tools"
fi
export PATH="$tools/bin:$PATH"
# `cargo deny --offline` reads every crate in Cargo.lock from cargo's cache, including
# ones that only other platforms build (windows-sys, wasm-bindgen, ...), which a Linux
# build never downloads. `cargo fetch` without --target downloads them all (a no-op
# once they are cached), so the check passes on a machine that never built the project.
cargo fetch --locked --quiet
cargo deny --offline --log-level error check licenses bans sources
echo "[deny] licenses, bans, sources: ok" >&2
if timeout 20 git ls-remote https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
  echo "[deny] advisories: ok" >&2
else
  echo "[deny] advisories: skipped (the RustSec database on GitHub is unreachable from here)" >&2
fi
