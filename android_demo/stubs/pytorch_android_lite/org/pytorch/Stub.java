// Not part of pytorch_android_lite: the one helper of the compile-only stubs in this directory
// (package-private, so app code cannot reach it).
package org.pytorch;

final class Stub {
  private Stub() {}

  static UnsupportedOperationException fail() {
    return new UnsupportedOperationException(
        "compile-only stub of pytorch_android_lite (android_demo/stubs): link the real AAR with Gradle");
  }
}
