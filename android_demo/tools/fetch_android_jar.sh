#!/usr/bin/env bash
# Prints the path of an API 23 android.jar (classes + resources.arsc: enough for javac and aapt2 link),
# fetching it once from Debian's archive and caching it under
#   ${CLIPKIT_CACHE:-$HOME/.cache/clip-mobile-kit}/android/android-23/
# so later runs are fast and need no network.
#
# Source: the libandroid-23-java package of Debian 11 "bullseye" (Android 6.0.1 r72 framework; the current
# release no longer carries it). It is fetched with a PRIVATE apt configuration (own state, cache, source
# list and an empty dpkg status) so the machine's apt setup is never changed, from the host's own Debian
# archive: the URI is read from /etc/apt at run time and only the suite name is swapped (no mirror host name
# is written in the repository). apt checks the .deb against the signed Release file; the script also pins
# the version and the .deb's sha256 below.
#
# Env: CLIPKIT_ANDROID_JAR=/path/android.jar skips all this (e.g. a real SDK's platforms/android-NN);
#      CLIPKIT_ANDROID_SUITE (default bullseye). Exit 3 when the jar cannot be obtained (offline, no cache).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ -n "${CLIPKIT_ANDROID_JAR:-}" ]; then
  [ -f "$CLIPKIT_ANDROID_JAR" ] || { echo "error: CLIPKIT_ANDROID_JAR=$CLIPKIT_ANDROID_JAR does not exist" >&2; exit 3; }
  echo "$CLIPKIT_ANDROID_JAR"
  exit 0
fi

PKG=libandroid-23-java
VERSION=6.0.1+r72-6
DEB_SHA256=8af1b6df556971dda0a6da3536ea526a838e0c363afcdd454213d8bce94793e3
JAR_IN_DEB=usr/share/java/com.android.android-23.jar
SUITE="${CLIPKIT_ANDROID_SUITE:-bullseye}"
CACHE="${CLIPKIT_CACHE:-$HOME/.cache/clip-mobile-kit}/android"
DEST="$CACHE/android-23"
JAR="$DEST/android.jar"
DEB="$CACHE/debs/${PKG}_${VERSION}_all.deb"

if [ -f "$JAR" ] && [ -f "$DEST/STAMP" ]; then echo "$JAR"; exit 0; fi

mkdir -p "$DEST" "$CACHE/debs"
exec 9>"$CACHE/.lock"
flock 9   # a concurrent run (CI stage + pytest) waits instead of fetching twice
if [ -f "$JAR" ] && [ -f "$DEST/STAMP" ]; then echo "$JAR"; exit 0; fi

for tool in dpkg-deb sha256sum python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (needed to fetch android.jar)" >&2; exit 3; }
done

deb_ok() { [ -f "$DEB" ] && [ "$(sha256sum "$DEB" | cut -d' ' -f1)" = "$DEB_SHA256" ]; }

if ! deb_ok; then
  command -v apt-get >/dev/null || { echo "error: apt-get not found: set CLIPKIT_ANDROID_JAR" >&2; exit 3; }
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/clipkit-apt.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  mkdir -p "$TMP/state/lists/partial" "$TMP/cache/archives/partial" "$TMP/parts" "$TMP/dl"
  : > "$TMP/state/status"
  python3 "$HERE/app_check.py" apt-source "$SUITE" > "$TMP/sources.list" || exit 3
  APT=(-o "Dir::State=$TMP/state" -o "Dir::State::status=$TMP/state/status" -o "Dir::Cache=$TMP/cache"
       -o "Dir::Etc::SourceList=$TMP/sources.list" -o "Dir::Etc::SourceParts=$TMP/parts"
       -o "Dir::Etc::Preferences=$TMP/parts/none" -o "Dir::Etc::PreferencesParts=$TMP/parts"
       -o "Debug::NoLocking=1" -o "Acquire::Languages=none")
  # as root apt downloads as the _apt user, which cannot write into our private directories
  [ "$(id -u)" = 0 ] && APT+=(-o "APT::Sandbox::User=root")
  echo "fetching $PKG $VERSION from Debian $SUITE (private apt configuration, $(sed 's/\[[^]]*\] //' "$TMP/sources.list"))" >&2
  if ! apt-get "${APT[@]}" -qq update >&2; then
    echo "error: apt-get update of $SUITE failed (offline?): run once with network, or set CLIPKIT_ANDROID_JAR" >&2
    exit 3
  fi
  (cd "$TMP/dl" && apt-get "${APT[@]}" -qq download "$PKG=$VERSION" >&2) || {
    echo "error: cannot download $PKG=$VERSION from $SUITE" >&2; exit 3; }
  mv "$TMP/dl/${PKG}_${VERSION}_all.deb" "$DEB.tmp"
  mv "$DEB.tmp" "$DEB"
  deb_ok || { echo "error: $DEB: sha256 is not the pinned $DEB_SHA256" >&2; rm -f "$DEB"; exit 1; }
fi

X="$(mktemp -d "${TMPDIR:-/tmp}/clipkit-deb.XXXXXX")"
dpkg-deb -x "$DEB" "$X"
[ -f "$X/$JAR_IN_DEB" ] || { echo "error: $DEB has no $JAR_IN_DEB" >&2; rm -rf "$X"; exit 1; }
cp "$X/$JAR_IN_DEB" "$JAR.tmp"
rm -rf "$X"
mv "$JAR.tmp" "$JAR"
printf 'package=%s\nversion=%s\nsuite=%s\ndeb_sha256=%s\njar_sha256=%s\n' "$PKG" "$VERSION" "$SUITE" "$DEB_SHA256" \
  "$(sha256sum "$JAR" | cut -d' ' -f1)" > "$DEST/STAMP"
echo "$JAR"
