#!/usr/bin/env bash
# Build the plain-Java core (org.clipkit.core) and run its JUnit4 tests. Works from any cwd.
# Needs: javac/java (JDK 8+; sources are compiled with --release 8 to stay Android-friendly),
#        JUnit 4 + Hamcrest jars (Debian: apt-get install junit4). Override with JUNIT_JAR / HAMCREST_JAR.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
for j in "$JUNIT_JAR" "$HAMCREST_JAR"; do
  [ -f "$j" ] || { echo "missing jar: $j (apt-get install junit4, or set JUNIT_JAR/HAMCREST_JAR)" >&2; exit 2; }
done
command -v javac >/dev/null || { echo "javac not found" >&2; exit 2; }
BUILD="$HERE/build"
rm -rf "$BUILD"
mkdir -p "$BUILD/main" "$BUILD/test"
javac -nowarn -Xlint:-options --release 8 -encoding UTF-8 -d "$BUILD/main" $(find "$HERE/src/main/java" -name '*.java' | sort)
cp -r "$HERE/src/main/resources/." "$BUILD/main/"
javac -nowarn -Xlint:-options --release 8 -encoding UTF-8 -cp "$BUILD/main:$JUNIT_JAR" -d "$BUILD/test" \
  $(find "$HERE/src/test/java" -name '*.java' | sort)
cp -r "$HERE/src/test/resources/." "$BUILD/test/"
CLASSES=$(cd "$HERE/src/test/java" && find . -name '*Test.java' | sed 's|^\./||; s|\.java$||; s|/|.|g' | sort)
exec java -Xss8m -cp "$BUILD/main:$BUILD/test:$JUNIT_JAR:$HAMCREST_JAR" org.junit.runner.JUnitCore $CLASSES
