// Not part of executorch-android: the one helper of the compile-only stubs in this directory
// (package-private, so app code cannot reach it).
package org.pytorch.executorch;

final class Stub {
  private Stub() {}

  static UnsupportedOperationException fail() {
    return new UnsupportedOperationException(
        "compile-only stub of executorch-android (android_demo/stubs): link the real AAR with Gradle");
  }
}
