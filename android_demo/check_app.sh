#!/usr/bin/env bash
# Compile, link and check the Android demo app without the Android SDK, Gradle or Maven (any cwd).
#
#   android_demo/check_app.sh          exit 0: everything parsed, linked and compiled without a warning
#                                      exit 1: a check failed (the message names the file and line)
#                                      exit 3: toolchain missing (javac, aapt2, python3, or android.jar offline)
#
# Steps: every XML file of the app parsed; the resources compiled and the manifest linked by aapt2 against
# API 23's android.jar (R.java generated); the compile-only stubs of pytorch_android_lite and executorch-android,
# the core (against android.jar: only the Java API a phone has) and the app, once per Gradle flavor (src/main +
# src/lite, src/main + src/executorch), compiled by javac -source 8 -target 8 with -Xlint:all -Werror; then
# cross-checks (manifest activities <-> classes, runtime versions, src/main free of runtime imports, stubs not in Gradle).
# Needs: JDK 11+ (javac), aapt2 (Debian: apt-get install aapt), python3; android.jar comes from
# tools/fetch_android_jar.sh (cached). .ci/android_app.sh installs the packages in CI.
# Env: CLIPKIT_APP_BUILD (default android_demo/build/app-check), CLIPKIT_ANDROID_JAR, CLIPKIT_CACHE.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${CLIPKIT_APP_BUILD:-$HERE/build/app-check}"
START=$(date +%s.%N)

say() { echo "[check_app] $*"; }
die() { echo "[check_app] FAILED: $*" >&2; exit 1; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }

missing=()
for tool in python3 javac aapt2; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[check_app] toolchain missing: ${missing[*]} (Debian: apt-get install aapt default-jdk-headless python3)" >&2
  exit 3
fi
set +e
ANDROID_JAR="$("$HERE/tools/fetch_android_jar.sh")"
rc=$?
set -e
[ $rc -eq 0 ] || { echo "[check_app] no android.jar (exit $rc)" >&2; exit "$rc"; }
say "android.jar: $ANDROID_JAR"

case "$OUT" in /|"$HOME"|"$HERE"|"$HERE/"|"$(dirname "$HERE")") die "refusing to use $OUT as the build directory";; esac
rm -rf "$OUT"
mkdir -p "$OUT/res" "$OUT/gen" "$OUT/lib"
APP="$HERE/app/src/main"
FLAVORS=(executorch lite)   # app/build.gradle.kts productFlavors, each with its backend in app/src/<flavor>/java

# 1. XML well-formedness: every XML file of android_demo (manifest, resources; build outputs excluded)
t=$(date +%s.%N)
mapfile -t XML < <(find "$HERE" -name '*.xml' -not -path '*/build/*' | sort)
python3 "$HERE/tools/app_check.py" wellformed "${XML[@]}" || die "XML not well-formed"
say "1/5 XML parsed ($(elapsed "$t") s)"

# 2. aapt2: compile resources, link them with the manifest against android.jar, generate R.java
t=$(date +%s.%N)
FACTS="$(python3 "$HERE/tools/app_check.py" gradle-facts "$HERE")" || die "reading the Gradle files"
eval "$FACTS"   # NAMESPACE, MIN_SDK, TARGET_SDK, VERSION_CODE, VERSION_NAME, ... (values checked to be [A-Za-z0-9._+-])
mapfile -t RES < <(find "$APP/res" -type f | sort)
for f in "${RES[@]}"; do
  aapt2 compile -o "$OUT/res/" "$f" > "$OUT/aapt2.log" 2>&1 || { cat "$OUT/aapt2.log" >&2; die "aapt2 compile $f"; }
  [ ! -s "$OUT/aapt2.log" ] || { cat "$OUT/aapt2.log" >&2; die "aapt2 compile $f: warnings (treated as errors)"; }
done
python3 "$HERE/tools/app_check.py" manifest "$APP/AndroidManifest.xml" "$OUT/AndroidManifest.xml" "$NAMESPACE" \
  || die "manifest"
# aapt2 warns that the jar's resources.arsc is compressed (it is only read here): that line is filtered; any
# other output is a warning about the app and fails the check, like javac's -Werror.
set +e
aapt2 link -o "$OUT/resources.apk" -I "$ANDROID_JAR" --manifest "$OUT/AndroidManifest.xml" --java "$OUT/gen" \
  --min-sdk-version "$MIN_SDK" --target-sdk-version "$TARGET_SDK" --version-code "$VERSION_CODE" \
  --version-name "$VERSION_NAME" "$OUT"/res/*.flat > "$OUT/aapt2.log" 2>&1
rc=$?
set -e
grep -v "resources.arsc in APK .* is compressed" "$OUT/aapt2.log" | sed "s|$OUT/AndroidManifest.xml|$APP/AndroidManifest.xml|" \
  > "$OUT/aapt2-app.log" || true
cat "$OUT/aapt2-app.log" >&2
[ $rc -eq 0 ] || die "aapt2 link (manifest/resources against API 23 android.jar)"
[ ! -s "$OUT/aapt2-app.log" ] || die "aapt2 link: warnings (treated as errors)"
[ -f "$OUT/gen/${NAMESPACE//.//}/R.java" ] || die "aapt2 link wrote no R.java for $NAMESPACE"
say "2/5 aapt2 compile + link: ${#RES[@]} resource files, manifest, R.java ($(elapsed "$t") s)"

# 3. javac: stubs (pytorch_android_lite + executorch-android APIs, java.lang.invoke for lambdas) and the plain-Java core, against
#    API 23's android.jar as the boot class path: the core may use only the Java API an Android phone has.
# -J flags: C1 only and the serial GC start javac ~35% faster for a compile this small (measured here).
JAVAC=(javac -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC -source 8 -target 8 -encoding UTF-8 -Xlint:all -Werror
       -Xmaxerrs 50 -Xmaxwarns 50)
t=$(date +%s.%N)
mapfile -t LIB < <(find "$HERE/stubs" "$HERE/core/src/main/java" -name '*.java' | sort)
"${JAVAC[@]}" -bootclasspath "$ANDROID_JAR" -d "$OUT/lib" "${LIB[@]}" || die "javac stubs + core"
say "3/5 javac stubs + core: ${#LIB[@]} files ($(elapsed "$t") s)"

# 4. javac: the app of each flavor (src/main + src/<flavor>), against android.jar + stubs + core + the generated R.
#    Both stub sets are on the class path of both flavors; cross-check 5 keeps runtime imports out of src/main.
t=$(date +%s.%N)
n=0
for flavor in "${FLAVORS[@]}"; do
  [ -d "$HERE/app/src/$flavor/java" ] || die "no app/src/$flavor/java (flavor in app/build.gradle.kts)"
  mapfile -t SRC < <(find "$APP/java" "$HERE/app/src/$flavor/java" "$OUT/gen" -name '*.java' | sort)
  mkdir -p "$OUT/app-$flavor"
  "${JAVAC[@]}" -bootclasspath "$ANDROID_JAR:$OUT/lib" -d "$OUT/app-$flavor" "${SRC[@]}" || die "javac app ($flavor flavor)"
  n=$((n + ${#SRC[@]}))
done
say "4/5 javac app: ${FLAVORS[*]} flavors, $n files ($(elapsed "$t") s)"

# 5. cross-checks
t=$(date +%s.%N)
for flavor in "${FLAVORS[@]}"; do
  python3 "$HERE/tools/app_check.py" crosscheck "$HERE" "$OUT/app-$flavor" || die "cross-checks ($flavor flavor)"
done
say "5/5 cross-checks ($(elapsed "$t") s)"

say "OK: app XML parsed, resources linked and Java compiled against API 23 (minSdk $MIN_SDK, targetSdk $TARGET_SDK) in $(elapsed "$START") s"
