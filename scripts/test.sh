#!/usr/bin/env bash
# Run every vidinfer test: sets up what is missing (scripts/setup.sh, cached), then the
# whole workspace's test suite against real FFmpeg, LibTorch and a local moto server.
# Tests build in release mode so they share one build with the demo and benchmarks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
cargo fmt --all -- --check
"$root/scripts/deny.sh"
# The binaries first: some tests run them (worker processes, the Docker layout check).
cargo build --release --workspace --locked
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one result line per binary,
# the last of which is often the empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1); if ($i == "ignored;") g += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, g }' "$log"
exit "$status"
