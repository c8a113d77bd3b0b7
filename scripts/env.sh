# Sourced by vidinfer's scripts: the environment the build, the tests and the demo need.
# Safe to source many times; it only reads what scripts/setup.sh made.
VIDINFER_CACHE="${VIDINFER_CACHE:-$HOME/.cache/vidinfer}"
VIDINFER_VENV="${VIDINFER_VENV:-$VIDINFER_CACHE/venv}"
export VIDINFER_CACHE VIDINFER_VENV
# tch builds against the libtorch inside the venv's PyTorch wheel.
export LIBTORCH_USE_PYTORCH=1
export PATH="$VIDINFER_VENV/bin:$PATH"
# Build outputs live outside the checkout so a fresh clone (CI) reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$VIDINFER_CACHE/target}"
if [ -d "$VIDINFER_VENV" ]; then
  _vi_site="$("$VIDINFER_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)"
  if [ -n "$_vi_site" ]; then
    export VIDINFER_TORCH_LIB="$_vi_site/torch/lib"
    export VIDINFER_TORCHVISION_DIR="$_vi_site/torchvision"
  fi
  unset _vi_site
fi
