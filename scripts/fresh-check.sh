#!/usr/bin/env bash
# The README's two commands on a machine that has never built vidinfer, simulated here:
# the committed HEAD is cloned into a temporary directory and `scripts/demo.sh`, then
# `scripts/test.sh`, run there with an empty cargo home (registry, git checkouts), an
# empty vidinfer cache (venv, torchvision ops, cargo-deny, target directory) and an
# empty pip cache. Every output line is stamped with the seconds since the start, and a
# step-by-step timing table closes the run.
#
# Run it before landing anything that touches set-up, dependencies or scripts: CI runs on
# a machine whose caches can hide a missing step.
#
#   scripts/fresh-check.sh [--keep] [--dir DIR] [--share-pip-cache] [--skip-demo]
#
#   --dir DIR          work here instead of a new temporary directory (must not exist)
#   --keep             keep the work directory afterwards (default: removed on success)
#   --share-pip-cache  reuse your pip download cache (~/.cache/pip). Safe: pip checks
#                      every wheel's hash and the venv is still built from scratch; it
#                      only skips re-downloading ~1 GB of PyTorch wheels.
#   --skip-demo        run only the test command
#
# What is shared, because it cannot be made fresh without root-level damage: the Rust
# toolchain (rustup's, as a fresh machine has it) and Debian's packages. The script
# prints which of setup.sh's Debian packages were already installed; on a really new
# machine setup.sh installs them (about a minute with apt).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep=0 dir="" share_pip=0 demo=1
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --dir) dir="$2"; shift ;;
    --share-pip-cache) share_pip=1 ;;
    --skip-demo) demo=0 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  echo "fresh-check: uncommitted changes are not checked (it clones HEAD); commit first." >&2
fi
if [ -z "$dir" ]; then
  dir="$(mktemp -d "${TMPDIR:-/tmp}/vidinfer-fresh.XXXXXX")"
elif [ -e "$dir" ]; then
  echo "fresh-check: $dir exists; give a new directory" >&2
  exit 2
else
  mkdir -p "$dir"
fi
dir="$(cd "$dir" && pwd)"
echo "[fresh] work directory: $dir" >&2

git clone -q "$root" "$dir/repo"
# A fresh machine: nothing of ours cached anywhere.
unset CARGO_TARGET_DIR VIDINFER_VENV VIDINFER_TORCH_LIB VIDINFER_TORCHVISION_DIR
export CARGO_HOME="$dir/cargo-home"
export VIDINFER_CACHE="$dir/cache"
if [ "$share_pip" = 1 ]; then
  echo "[fresh] sharing the pip download cache (wheels are hash-checked)" >&2
else
  export PIP_CACHE_DIR="$dir/pip-cache"
fi
# rustup's proxies (cargo, rustc) stay on PATH; only the cargo home is new.
if ! command -v cargo >/dev/null; then
  echo "fresh-check: cargo is not on PATH (install the Rust toolchain with rustup)" >&2
  exit 1
fi
installed=()
for p in libavcodec-dev libavformat-dev libswscale-dev clang libclang-dev ffmpeg python3-venv pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed+=("$p")
done
echo "[fresh] Debian packages already installed (shared with this machine): ${installed[*]:-none}" >&2

start=$SECONDS
steps="$dir/steps.txt"
: >"$steps"
# Stamp each line with the seconds since start; remember the step markers' times.
stamp() {
  local line
  while IFS= read -r line; do
    printf '[%5ds] %s\n' "$((SECONDS - start))" "$line"
    case "$line" in
      "[setup]"*|"[demo]"*|"[deny]"*|"tests:"*|"[fresh]"*) printf '%6d  %s\n' "$((SECONDS - start))" "$line" >>"$steps" ;;
    esac
  done
}
run_step() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "[fresh] $name: start" | stamp
  set +e
  (cd "$dir/repo" && "$@") 2>&1 | stamp
  local rc=${PIPESTATUS[0]}
  set -e
  echo "[fresh] $name: exit $rc after $((SECONDS - t0)) s" | stamp
  return "$rc"
}

status=0
if [ "$demo" = 1 ]; then
  run_step "demo (scripts/demo.sh)" scripts/demo.sh "$dir/out" || status=1
fi
if [ "$status" = 0 ]; then
  run_step "tests (scripts/test.sh)" scripts/test.sh || status=1
fi

echo
echo "Step by step (seconds since start):"
cat "$steps"
if [ "$status" = 0 ]; then
  echo "[fresh] both commands passed on a fresh cargo home and cache in $((SECONDS - start)) s"
  [ "$keep" = 1 ] || rm -rf "$dir"
else
  echo "[fresh] FAILED; everything is kept in $dir" >&2
fi
exit "$status"
