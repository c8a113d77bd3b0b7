#!/usr/bin/env bash
# Run vidinfer's benchmarks (all, or the ones named: decode model). They print numbers
# and ratios against a reference measured in the same run; they never fail on speed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(decode model)
for b in "${benches[@]}"; do
  cargo bench --locked --bench "$b"
done
