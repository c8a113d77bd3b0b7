#!/usr/bin/env bash
# Fuzz vidinfer's untrusted-input parsers with cargo-fuzz (libFuzzer), each target for a
# bounded time, and keep whatever it finds as a regression input.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Targets (tests/fuzz/fuzz_targets): request, custom_attributes, predictions, media, track.
# Default: 60 s each, all targets. The corpus grows under $VIDINFER_CACHE/fuzz/<target>
# (seeded from tests/fuzz/seeds/<target>); a crash, timeout or out-of-memory input is
# copied to tests/fuzz/regressions/<target>/, which `cargo test` replays
# (tests/fuzz_regressions.rs) — commit it together with the fix.
#
# cargo-fuzz needs nightly compiler flags; the stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1. The sanitizer is off (-s none): the code under test is safe Rust
# plus FFmpeg, which is not built with the sanitizer anyway, and the build is half as
# long; libFuzzer's coverage guidance and crash detection are unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(request custom_attributes predictions media track)

tools="$VIDINFER_CACHE/tools"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "[fuzz] installing cargo-fuzz into $tools (once)" >&2
  cargo install --locked --quiet cargo-fuzz --version 0.13.2 --root "$tools"
fi
export PATH="$tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# The fuzz build has its own target directory: its flags differ from the main build's.
export CARGO_TARGET_DIR="$VIDINFER_CACHE/fuzz-target"
# The targets link LibTorch (through the library) but, unlike the worker binaries,
# carry no rpath to it.
export LD_LIBRARY_PATH="$VIDINFER_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

status=0
for t in "${targets[@]}"; do
  corpus="$VIDINFER_CACHE/fuzz/$t"
  artifacts="$VIDINFER_CACHE/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  echo "[fuzz] $t for ${secs}s" >&2
  set +e
  cargo fuzz run --fuzz-dir tests/fuzz -s none --release "$t" "$corpus" "tests/fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$VIDINFER_CACHE/fuzz/$t.log"
  rc=$?
  set -e
  grep -E "^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+.*DONE)" "$VIDINFER_CACHE/fuzz/$t.log" >&2 || true
  found=0
  for f in "$artifacts"/*; do
    [ -f "$f" ] || continue
    cp "$f" "tests/fuzz/regressions/$t/"
    echo "[fuzz] $t: kept $(basename "$f") in tests/fuzz/regressions/$t/" >&2
    rm -f "$f"
    found=1
  done
  if [ $rc -ne 0 ] || [ $found -ne 0 ]; then
    echo "[fuzz] $t found a problem (exit $rc); log: $VIDINFER_CACHE/fuzz/$t.log" >&2
    status=1
  fi
done
exit $status
