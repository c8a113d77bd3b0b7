#!/usr/bin/env bash
# Run vidinfer's benchmarks (all, or the ones named: decode model pipeline track gifgen fleet). They print
# numbers and ratios against a reference measured in the same run; they never fail on
# speed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"

# The old pipeline's reference (benches/reference/old_pipeline.py) needs OpenCV; only
# the benchmarks do, so it is installed here rather than by setup.sh.
req="$root/benches/reference/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$VIDINFER_VENV/.vidinfer-bench-requirements.sha256"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  printf '[bench] installing %s into %s\n' "$req" "$VIDINFER_VENV" >&2
  "$VIDINFER_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

# benches/pipeline.rs runs the release vidinfer-worker binary (peak memory of a process).
cargo build --release --workspace --locked

benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(decode model pipeline track gifgen fleet)
for b in "${benches[@]}"; do
  cargo bench --locked --bench "$b"
done
