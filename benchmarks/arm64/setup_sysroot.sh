#!/usr/bin/env bash
# Build (once, cached) an arm64 Debian bookworm sysroot with CPython 3.11 and two sets of aarch64 wheels, to
# run artifacts on arm64 code under qemu user-mode emulation:
#   site/      torch 2.1.0 (requirements-arm64.txt): the phone's .ptl runtime (pytorch_android_lite:2.1.0)
#   site-pte/  executorch 1.3.1 + torch 2.12.1 (requirements-arm64-pte.txt): the .pte runtime
#
#     bash benchmarks/arm64/setup_sysroot.sh          # prints the cache directory on its last line
#     qemu-aarch64-static -L CACHE/sysroot -cpu cortex-a53 CACHE/sysroot/usr/bin/python3.11 ...
#       (PYTHONPATH=CACHE/site or CACHE/site-pte; benchmarks/arm64/parity.py builds that command line)
#
# Cache: ${CLIPKIT_CACHE:-$HOME/.cache/clip-mobile-kit}/arm64. The marker file `.complete` holds a hash
# of this script and both requirement files and is written last: an interrupted or outdated set-up is
# rebuilt from scratch, never trusted.
#
# The host's apt is left untouched: the arm64 packages are fetched with a private configuration (own
# state, cache, source list and an empty dpkg status file, APT::Architecture=arm64) and unpacked with
# `dpkg-deb -x`, nothing is installed. The archive addresses are read at run time from the host's own apt
# sources, so this file names no mirror.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CLIPKIT_CACHE:-$HOME/.cache/clip-mobile-kit}/arm64"
PYTHON="${PYTHON:-python3}"
SUITE=bookworm   # CPython 3.11, the version of the aarch64 wheels below
# python3.11 brings libc6, libgcc-s1, libssl3, libffi8, zlib1g ... through its dependencies;
# libstdc++6 is torch's. apt resolves the rest against the empty status file.
PACKAGES=(python3.11-minimal libpython3.11-stdlib libstdc++6 libgcc-s1)

KEY="$(cat "$0" "$HERE/requirements-arm64.txt" "$HERE/requirements-arm64-pte.txt" | sha256sum | cut -c1-16)"
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"   # two set-ups at once (parallel jobs) take turns; the second finds the cache complete
flock 9
if [ -f "$CACHE/.complete" ] && [ "$(cat "$CACHE/.complete")" = "$KEY" ]; then
  echo "arm64 sysroot: cached" >&2
  echo "$CACHE"
  exit 0
fi

start=$SECONDS
echo "arm64 sysroot: building in $CACHE" >&2
rm -rf "$CACHE"
mkdir -p "$CACHE"
APT="$CACHE/apt"
mkdir -p "$APT/state/lists/partial" "$APT/cache/archives/partial" "$APT/sourceparts" "$APT/prefparts"
: > "$APT/status"

# --- the host's archive addresses -> a private arm64 source list (suite names mapped to $SUITE) ---
sources_from_host() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      function flush(   i, j, nu, ns, u, s, sb) {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^[ \t]*no/ && uris != "") {
          nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
          sb = (signed != "") ? " signed-by=" signed : ""
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) {
            if (u[i] == "" || s[j] == "") continue
            sub(/^[^-]+/, suite, s[j])          # bookworm-updates stays, trixie-security -> bookworm-security
            print "deb [arch=arm64" sb "] " u[i] " " s[j] " main"
          }
        }
        types = uris = suites = signed = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val) }
      key == "types:" { types = val } key == "uris:" { uris = val } key == "suites:" { suites = val }
      key == "signed-by:" { signed = val } key == "enabled:" { enabled = val }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      $1 == "deb" {
        opts = ""; i = 2
        if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
        signed = ""
        if (match(opts, /signed-by=[^] ]+/)) signed = " " substr(opts, RSTART, RLENGTH)
        s = $(i + 1); sub(/^[^-]+/, suite, s)
        print "deb [arch=arm64" signed "] " $i " " s " main"
      }' "$f"
  done
}
sources_from_host | grep -v -e '-backports ' -e ' file:' -e ' cdrom:' | sort -u > "$APT/sources.list"
# Only archives that carry Debian's own suites are of use (a vendor repository has no bookworm arm64 main).
if ! grep -q " $SUITE main$" "$APT/sources.list"; then
  echo "error: no Debian archive found in the host's apt sources (/etc/apt/sources.list.d/*.sources," \
       "/etc/apt/sources.list) to fetch $SUITE arm64 packages from" >&2
  exit 1
fi

apt_private() {
  apt-get -q \
    -o Dir::State="$APT/state" -o Dir::State::status="$APT/status" \
    -o Dir::Cache="$APT/cache" \
    -o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts="$APT/sourceparts" \
    -o Dir::Etc::PreferencesParts="$APT/prefparts" -o Dir::Etc::Preferences="$APT/preferences" \
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
    -o APT::Sandbox::User=root -o Debug::NoLocking=1 \
    -o APT::Install-Recommends=false -o APT::Get::Assume-Yes=true "$@"
}
apt_private update >"$APT/update.log" 2>&1 || { cat "$APT/update.log" >&2; exit 1; }
apt_private install --download-only "${PACKAGES[@]}" >"$APT/install.log" 2>&1 \
  || { cat "$APT/install.log" >&2; exit 1; }

# --- unpack into a merged-/usr sysroot (bookworm's layout; /lib/ld-linux-aarch64.so.1 must resolve) ---
ROOT="$CACHE/sysroot"
mkdir -p "$ROOT/usr/lib" "$ROOT/usr/bin" "$ROOT/usr/sbin"
ln -s usr/lib "$ROOT/lib"; ln -s usr/bin "$ROOT/bin"; ln -s usr/sbin "$ROOT/sbin"
n=0
for deb in "$APT"/cache/archives/*_arm64.deb "$APT"/cache/archives/*_all.deb; do
  [ -f "$deb" ] || continue
  # through tar so that the merged-/usr symlinks above are kept (dpkg-deb -x would replace them)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$ROOT" --keep-directory-symlink
  n=$((n + 1))
done
[ -x "$ROOT/usr/bin/python3.11" ] || { echo "error: python3.11 missing from the sysroot" >&2; exit 1; }
echo "arm64 sysroot: $n packages unpacked ($(du -sh "$ROOT" | cut -f1))" >&2

# --- the aarch64 wheel sets (no dependency resolution: see the requirement files) ---
# Wheels may need at most the sysroot's glibc: pip is given every manylinux tag up to that version, so a
# wheel built for a newer glibc is never picked (torch 2.12.1 needs 2.28, bookworm has 2.36).
GLIBC_MINOR="$(grep -aoE 'release version 2\.[0-9]+' "$ROOT/usr/lib/aarch64-linux-gnu/libc.so.6" | head -1 | cut -d. -f2)"
[ -n "$GLIBC_MINOR" ] || { echo "error: cannot read the glibc version of $ROOT" >&2; exit 1; }
PIPFLAGS=(--platform manylinux2014_aarch64 --only-binary=:all: --python-version 3.11
          --implementation cp --abi cp311 --no-deps --disable-pip-version-check -q)
for minor in $(seq 17 "$GLIBC_MINOR"); do PIPFLAGS+=(--platform "manylinux_2_${minor}_aarch64"); done
install_wheels() {   # requirement file, target directory
  { "$PYTHON" -m pip download "${PIPFLAGS[@]}" -d "$CACHE/wheels" -r "$1" &&
    "$PYTHON" -m pip install "${PIPFLAGS[@]}" --no-index --target "$2" --root-user-action=ignore \
      -r "$1" --find-links "$CACHE/wheels"; } >>"$CACHE/pip.log" 2>&1 \
    || { tail -30 "$CACHE/pip.log" >&2; exit 1; }
  echo "arm64 sysroot: $(basename "$2") $(du -sh "$2" | cut -f1) ($(du -sh "$CACHE/wheels" | cut -f1) of wheels)" >&2
  rm -rf "$CACHE/wheels"   # the unpacked trees are what is used
}
install_wheels "$HERE/requirements-arm64.txt" "$CACHE/site"
install_wheels "$HERE/requirements-arm64-pte.txt" "$CACHE/site-pte"
rm -rf "$APT/cache/archives"
echo "arm64 sysroot: glibc 2.$GLIBC_MINOR; set-up took $((SECONDS - start)) s" >&2

echo "$KEY" > "$CACHE/.complete"
echo "$CACHE"
