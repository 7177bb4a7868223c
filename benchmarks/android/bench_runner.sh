#!/usr/bin/env bash
# Run the C++ runner (benchmarks/runner, cross-compiled with the NDK) on a device over adb, for each
# .ptl of an artifact directory, with the input shapes from its manifest.json; pull the JSON reports and
# render them with the desktop report tool.
#
#   benchmarks/android/bench_runner.sh RUNNER_BINARY ARTIFACT_DIR [OUT_DIR] [threads...]
#
# Env: ITERS (50), WARMUP (5), LOADS (3), ENGINE (qnnpack), ADB (adb), PYTHON (python),
# DEVICE_DIR (/data/local/tmp/clipkit). Each run is a fresh process (cold load).
# Not run in CI: needs adb and a device (untested here: the development machine has neither).
set -euo pipefail
BIN=${1:?usage: bench_runner.sh RUNNER_BINARY ARTIFACT_DIR [OUT_DIR] [threads...]}
ART=${2:?usage: bench_runner.sh RUNNER_BINARY ARTIFACT_DIR [OUT_DIR] [threads...]}
OUT=${3:-bench-android-runner}
shift $(( $# >= 3 ? 3 : 2 ))
THREADS=("${@:-2}")
ADB=${ADB:-adb}; PYTHON=${PYTHON:-python}
ITERS=${ITERS:-50}; WARMUP=${WARMUP:-5}; LOADS=${LOADS:-3}; ENGINE=${ENGINE:-qnnpack}
DEV=${DEVICE_DIR:-/data/local/tmp/clipkit}

[ -f "$BIN" ] || { echo "error: runner binary $BIN does not exist (build benchmarks/runner)" >&2; exit 2; }
# Nothing reaches the device unverified: the kit's one reader checks the manifest, every file's size and
# sha256 (plain names inside ART, no symlink leaving it), the embedded metadata, and that it is an android
# (qnnpack) conversion. One error line and exit 2 otherwise.
"$PYTHON" -m deploy.verify --quiet --target android "$ART" || exit 2
command -v "$ADB" >/dev/null || { echo "error: adb not found (install Android platform-tools)" >&2; exit 2; }
[ "$("$ADB" get-state 2>/dev/null)" = device ] || { echo "error: no device attached (adb devices)" >&2; exit 2; }
mkdir -p "$OUT"
trap 'rm -f "$OUT/.plan"' EXIT
"$ADB" shell mkdir -p "$DEV"
"$ADB" push "$BIN" "$DEV/clip-kit-runner" >/dev/null
"$ADB" shell chmod 755 "$DEV/clip-kit-runner"

# role file --input args, from the manifest (shape:dtype of each lite file's inputs)
"$PYTHON" - "$ART/manifest.json" > "$OUT/.plan" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for f in m["files"]:
    if f["format"] == "lite":
        args = " ".join("--input %s:%s" % (",".join(map(str, i["shape"])), "int64" if i["dtype"] == "int64" else "float")
                        for i in f["inputs"])
        print(f["role"], f["file"], args)
PY
while read -r role file args; do
  "$ADB" push "$ART/$file" "$DEV/$file" >/dev/null
  for t in "${THREADS[@]}"; do
    # shellcheck disable=SC2086
    "$ADB" shell "$DEV/clip-kit-runner" "$DEV/$file" $args --iters "$ITERS" --warmup "$WARMUP" \
      --loads "$LOADS" --threads "$t" --engine "$ENGINE" --role "$role" > "$OUT/bench-$role-${t}t.json"
    echo "$role ${t}t -> $OUT/bench-$role-${t}t.json"
  done
done < "$OUT/.plan"
rm -f "$OUT/.plan"
"$PYTHON" -m deploy bench --from-json "$OUT"/bench-*.json --markdown "$OUT/report.md"
