#!/usr/bin/env bash
# The main job on the embedded default: set everything up (cached), build, and run the
# bundled sample video (tests/fixtures/sample/shapes.mp4) through the engine with the
# bundled fixture model, printing a summary and writing the detections JSON.
#   scripts/demo.sh [OUT_DIR]      (default: ./out)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/out}"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
cd "$root"
echo "[demo] building (first run: ~10 min on 2 cores; cached afterwards)" >&2
cargo build --release --workspace --locked -q
mkdir -p "$out"
worker="$CARGO_TARGET_DIR/release/vidinfer-worker"
"$worker" run \
  --model "$root/tests/fixtures/model/model.pt" \
  --frame-interval 5 --min-score 0.5 --masks \
  --output "$out/detections.json" \
  "$root/tests/fixtures/sample/shapes.mp4"
echo "[demo] detections: $out/detections.json" >&2
python3 - "$out/detections.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
print(f"{doc['schema']}: {len(doc['frames'])} sampled frames of a {doc['video']['width']}x{doc['video']['height']} {doc['video']['codec']} video")
for f in doc["frames"][:3]:
    dets = ", ".join(f"{d['label']} {d['score']:.2f} at {[round(v) for v in d['box']]}" for d in f["detections"])
    print(f"  frame {f['index']:>4} ({f['pts_s']:.2f}s): {dets}")
print("  ...")
PY
