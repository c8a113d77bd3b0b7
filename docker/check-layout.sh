#!/usr/bin/env bash
# Check the Dockerfile's runtime-stage assumptions without a Docker engine: stage the
# same layout (docker/stage-runtime.sh) into a temp dir from this machine's build and
# venv, then with a clean environment (no LD_LIBRARY_PATH, no venv on PATH):
#   - ldd finds every library of the binaries and of the torchvision ops;
#   - --help runs;
#   - a CPU inference on the fixture model and sample video runs, loading the ops from
#     the staged lib/ directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/env.sh"
site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
PATH="$VIDINFER_VENV/bin:$PATH" "$root/docker/stage-runtime.sh" "$stage" "$CARGO_TARGET_DIR/release" "$site" --link
opt="$stage/opt/vidinfer"
clean=(env -i PATH=/usr/bin:/bin HOME=/nonexistent)
fail=0
for f in "$opt/bin/vidinfer-worker" "$opt/bin/gifgen" "$opt/lib/libtorchvision_ops.so"; do
  if "${clean[@]}" ldd "$f" | grep -q "not found"; then
    echo "missing libraries for $f:" >&2
    "${clean[@]}" ldd "$f" | grep "not found" >&2
    fail=1
  fi
  if "${clean[@]}" ldd "$f" | grep -q "$VIDINFER_VENV"; then
    echo "$f resolves a library from the build venv: the layout is not self-contained" >&2
    "${clean[@]}" ldd "$f" | grep "$VIDINFER_VENV" >&2
    fail=1
  fi
done
[ "$fail" = 0 ] || exit 1
"${clean[@]}" "$opt/bin/vidinfer-worker" --help >/dev/null
"${clean[@]}" "$opt/bin/gifgen" --help >/dev/null
log="$stage/run.log"
"${clean[@]}" VIDINFER_LOG=info "$opt/bin/vidinfer-worker" run --device cpu \
  --model "$root/tests/fixtures/model/model.pt" --frame-interval 50 \
  "$root/tests/fixtures/sample/shapes.mp4" -o "$stage/out.json" 2>"$log"
grep -q "torchvision ops loaded from $opt/bin/../lib/libtorchvision_ops.so" "$log" || {
  echo "the ops were not loaded from the staged layout:" >&2; cat "$log" >&2; exit 1; }
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['schema']=='vidinfer/v2' and len(d['frames'])==3 and all(f['detections'] for f in d['frames']), d" "$stage/out.json"
echo "runtime layout OK: libraries resolve, --help runs, CPU inference ran from $opt"
