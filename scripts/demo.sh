#!/usr/bin/env bash
# The main job on the embedded default, end to end on this machine:
#   set up (cached) and build; start a local moto server (S3, SQS, SNS) on 127.0.0.1;
#   create a bucket, a job queue with a DLQ, success/error topics; upload the bundled
#   sample video; start the real SQS worker with the bundled fixture model; send one
#   request; wait for the SageMaker-style notification; download the detections JSON;
#   render an annotated GIF. Everything it starts, it stops.
#   scripts/demo.sh [OUT_DIR]      (default: ./out)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/out}"
"$root/scripts/setup.sh"
. "$root/scripts/env.sh"
cd "$root"
echo "[demo] building (first run: ~15 min on 2 cores; cached afterwards)" >&2
cargo build --release --workspace --locked -q
mkdir -p "$out"
bin="$CARGO_TARGET_DIR/release"
video="$root/tests/fixtures/sample/shapes.mp4"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
endpoint="http://127.0.0.1:$port"
python -m moto.server -H 127.0.0.1 -p "$port" >"$out/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.2
done
echo "[demo] moto server on $endpoint" >&2

python scripts/demo_client.py --endpoint "$endpoint" setup "$out/aws.json"
j() { python3 -c "import json,sys; print(json.load(open('$out/aws.json'))['$1'])"; }

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$endpoint" AWS_EC2_METADATA_DISABLED=true
"$bin/vidinfer-worker" sqs \
  --queue-url "$(j queue_url)" \
  --output-path "s3://$(j bucket)/results" \
  --success-topic "$(j success_topic)" --error-topic "$(j error_topic)" \
  --model "$root/tests/fixtures/model/model.pt" \
  --wait-time 2 --metrics-addr 127.0.0.1:0 \
  2>"$out/worker.log" &
worker=$!
pids+=($worker)
echo "[demo] worker started (log: $out/worker.log)" >&2

python scripts/demo_client.py --endpoint "$endpoint" submit "$out/aws.json" "$video" "$out/detections.json"
kill -TERM "$worker"
wait "$worker" && echo "[demo] worker drained and exited cleanly" >&2

"$bin/gifgen" --video "$video" --predictions "$out/detections.json" --score-threshold 0.9 --masks -o "$out/detections.gif"
echo "[demo] annotated GIF: $out/detections.gif" >&2

python3 - "$out/detections.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
print(f"{doc['schema']}: {len(doc['frames'])} sampled frames of a {doc['video']['width']}x{doc['video']['height']} {doc['video']['codec']} video, model {doc['model']['name']} on {doc['model']['device']}")
for f in doc["frames"][:3]:
    dets = ", ".join(f"{d['label']} {d['score']:.2f} at {[round(v) for v in d['box']]}" for d in f["detections"])
    print(f"  frame {f['index']:>4} ({f['pts_s']:.2f}s): {dets}")
print("  ...")
PY
echo "[demo] detections: $out/detections.json" >&2
