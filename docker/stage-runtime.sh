#!/usr/bin/env bash
# Lay out what the runtime image carries, under DEST (the Dockerfile's runtime stage
# copies DEST/opt/vidinfer; docker/check-layout.sh runs the result on this machine):
#   opt/vidinfer/bin/{vidinfer-worker,gifgen}   rpath $ORIGIN/../site/torch/lib
#   opt/vidinfer/site/torch/lib/                LibTorch from the PyTorch wheel
#   opt/vidinfer/site/nvidia/                   CUDA runtime libraries from the wheel's deps
#   opt/vidinfer/lib/libtorchvision_ops.so      torchvision's ops without libtorch_python
# The site/ tree keeps the wheel's own relative layout, so the libraries' RPATHs
# ($ORIGIN/../../nvidia/...) resolve unchanged.
#   stage-runtime.sh DEST BIN_DIR SITE_PACKAGES [--link]
# --link hard-links instead of copying (fast local checks; same filesystem only).
set -euo pipefail
dest="$1"; bins="$2"; site="$3"; link="${4:-}"
cp_tree() { if [ "$link" = "--link" ]; then cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"; else cp -a "$1" "$2"; fi; }
root="$dest/opt/vidinfer"
mkdir -p "$root/bin" "$root/lib" "$root/site/torch"
cp_tree "$site/torch/lib" "$root/site/torch/lib"
[ -d "$site/nvidia" ] && cp_tree "$site/nvidia" "$root/site/nvidia"
[ -d "$site/torchvision.libs" ] && cp_tree "$site/torchvision.libs" "$root/site/torchvision.libs"
patchelf=$(command -v patchelf)
for b in vidinfer-worker gifgen; do
  cp "$bins/$b" "$root/bin/$b"
  "$patchelf" --set-rpath '$ORIGIN/../site/torch/lib' "$root/bin/$b"
done
cp "$site/torchvision/_C.so" "$root/lib/libtorchvision_ops.so"
"$patchelf" --remove-needed libtorch_python.so "$root/lib/libtorchvision_ops.so"
"$patchelf" --set-rpath '$ORIGIN/../site/torch/lib:$ORIGIN/../site/nvidia/cu13/lib:$ORIGIN/../site/torchvision.libs' \
  "$root/lib/libtorchvision_ops.so"
echo "staged the runtime layout in $root" >&2
