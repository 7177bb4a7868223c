#!/usr/bin/env bash
# CI stage: arm64 parity. The android artifacts run on arm64 code under qemu user-mode emulation
# (cortex-a53, cortex-a76, max) and are compared with the same files on x86 (benchmarks/arm64/README.md):
# the .ptl files in torch 2.1.0's lite interpreter (the runtime of pytorch_android_lite:2.1.0), the .pte
# files in ExecuTorch 1.3.1's runtime (needs the kit's executorch extra in .venv, as .ci/run installs it).
#
#     bash .ci/arm64.sh                       # tests/test_arm64.py -m arm64 (the tiny model, .ptl and .pte;
#                                             #   ~2-3 min warm for .ptl, +4-10 min for .pte, README.md)
#     bash .ci/arm64.sh -m arm64_vitb32       # the opt-in ViT-B-32 check instead (extra pytest arguments)
#     bash .ci/arm64.sh -m arm64_mobileclip   # the opt-in MobileCLIP2-S0 check (cortex-a53, ~9 min)
#
# Expects .venv (the kit) and .venv21 (torch 2.1.0 x86; or CLIPKIT_RUNTIME21_PYTHON), as .ci/run makes them.
# The arm64 sysroot and wheels are cached in ${CLIPKIT_CACHE:-$HOME/.cache/clip-mobile-kit}/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# qemu-user-static is called directly (qemu-aarch64-static -L SYSROOT): binfmt_misc may be unavailable.
if ! command -v qemu-aarch64-static >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi

PY=.venv/bin/python
[ -x "$PY" ] || { echo "error: .venv is missing (.ci/run makes it)" >&2; exit 1; }
export CLIPKIT_RUNTIME21_PYTHON="${CLIPKIT_RUNTIME21_PYTHON:-$PWD/.venv21/bin/python}"
[ -x "$CLIPKIT_RUNTIME21_PYTHON" ] || { echo "error: no torch 2.1.0 Python at $CLIPKIT_RUNTIME21_PYTHON" >&2; exit 1; }

PYTHON="$PY" bash benchmarks/arm64/setup_sysroot.sh >/dev/null
echo "arm64 set-up: $((SECONDS - start)) s"

# A missing set-up fails instead of skipping from here on.
export CLIPKIT_ARM64=1
if [ $# -eq 0 ]; then set -- -m arm64; fi
"$PY" -m pytest -q -p no:warnings tests/test_arm64.py "$@"
echo "arm64 stage: $((SECONDS - start)) s"
