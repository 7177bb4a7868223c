#!/usr/bin/env bash
# Run the demo app's benchmark screen on a connected device for each artifact, pull the JSON reports and
# render them with the desktop report tool.
#
#   benchmarks/android/bench_app.sh ARTIFACT_DIR [OUT_DIR] [threads...]
#
# ARTIFACT_DIR is a `python -m convert --target android` output; it is installed into the app first with
# `--install-to` semantics (the app reads manifest.json + .ptl from its assets) or, when the app is already
# built with those assets, only the benchmark runs. Env: ITERS (50), WARMUP (5), LOADS (3), ROLES
# ("image_encoder text_encoder zero_shot_head"), ADB (adb), PYTHON (python).
# Not run in CI: needs adb and a device (untested here: the development machine has neither).
set -euo pipefail
ART=${1:?usage: bench_app.sh ARTIFACT_DIR [OUT_DIR] [threads...]}
OUT=${2:-bench-android}
shift $(( $# >= 2 ? 2 : 1 ))
THREADS=("${@:-2}")
ADB=${ADB:-adb}
PYTHON=${PYTHON:-python}
ITERS=${ITERS:-50}; WARMUP=${WARMUP:-5}; LOADS=${LOADS:-3}
ROLES=${ROLES:-"image_encoder text_encoder zero_shot_head"}
PKG=org.clipkit.demo
REMOTE=/sdcard/Android/data/$PKG/files/bench

# The kit's one reader first (manifest, sizes, sha256, confinement, embedded metadata, android target):
# one error line and exit 2 for artifacts a phone must not get.
"$PYTHON" -m deploy.verify --quiet --target android "$ART" || exit 2
command -v "$ADB" >/dev/null || { echo "error: adb not found (install Android platform-tools)" >&2; exit 2; }
[ "$("$ADB" get-state 2>/dev/null)" = device ] || { echo "error: no device attached (adb devices)" >&2; exit 2; }
"$ADB" shell pm path "$PKG" >/dev/null || { echo "error: $PKG is not installed (build android_demo, adb install)" >&2; exit 2; }
mkdir -p "$OUT"
"$ADB" shell rm -rf "$REMOTE" || true

for t in "${THREADS[@]}"; do
  for role in $ROLES; do
    "$ADB" logcat -c
    "$ADB" shell am start -W -n "$PKG/.BenchmarkActivity" --es model "$role" \
      --ei iters "$ITERS" --ei warmup "$WARMUP" --ei threads "$t" --ei loads "$LOADS" >/dev/null
    # The app logs "benchmark report written to <path>" (tag ClipKit) when done.
    for _ in $(seq 1 600); do
      if "$ADB" logcat -d -s ClipKit | grep -q -e "benchmark report written" -e "benchmark failed"; then break; fi
      sleep 1
    done
    "$ADB" logcat -d -s ClipKit | grep -e "benchmark report written" -e "benchmark failed" | tail -1
    "$ADB" shell am force-stop "$PKG"   # a fresh process for the next measurement (cold load)
  done
done
"$ADB" pull "$REMOTE/." "$OUT/" >/dev/null
echo "reports in $OUT/"
"$PYTHON" -m deploy bench --from-json "$OUT"/*.json --markdown "$OUT/report.md"
