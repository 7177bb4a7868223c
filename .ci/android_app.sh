#!/usr/bin/env bash
# CI stage: the Android demo app compiled, linked and checked without an Android SDK download.
# Installs the host packages it needs when missing (aapt2 from Debian's current release, a JDK, JUnit 4 for
# the core's tests), then runs android_demo/check_app.sh, which fetches API 23's android.jar once from
# Debian's older release (private apt configuration, cached under ${CLIPKIT_CACHE:-~/.cache/clip-mobile-kit}).
# Exit status: check_app.sh's (0 ok, 1 a check failed, 3 toolchain or android.jar unavailable).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v aapt2 >/dev/null || need+=(aapt)
command -v javac >/dev/null || need+=(default-jdk-headless)
[ -f /usr/share/java/junit4.jar ] || need+=(junit4)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

exec android_demo/check_app.sh
