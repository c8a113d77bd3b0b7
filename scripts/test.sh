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
# The binaries first: some tests run them (worker processes, the Docker layout check).
cargo build --release --workspace --locked
cargo test --release --workspace --locked "$@"
