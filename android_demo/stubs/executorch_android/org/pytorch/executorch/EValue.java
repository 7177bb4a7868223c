// COMPILE-ONLY STUB of org.pytorch:executorch-android:1.3.1 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from ExecuTorch's Java sources:
//   pytorch/executorch  extension/android/executorch_android/src/main/java/org/pytorch/executorch/EValue.java
// (read from the stored copy at commit 292b5718545ad98439da8c97fb0e891ac75dec23). Only public members are
// reproduced; toX() of the wrong type throws IllegalStateException upstream.
package org.pytorch.executorch;

/** Java representation of an ExecuTorch value (tagged union). */
public class EValue {
  private EValue() {
    throw Stub.fail();
  }

  public boolean isNone() { throw Stub.fail(); }
  public boolean isTensor() { throw Stub.fail(); }
  public boolean isBool() { throw Stub.fail(); }
  public boolean isInt() { throw Stub.fail(); }
  public boolean isDouble() { throw Stub.fail(); }
  public boolean isString() { throw Stub.fail(); }

  public static EValue optionalNone() { throw Stub.fail(); }
  public static EValue from(Tensor tensor) { throw Stub.fail(); }
  public static EValue from(boolean value) { throw Stub.fail(); }
  public static EValue from(long value) { throw Stub.fail(); }
  public static EValue from(double value) { throw Stub.fail(); }
  public static EValue from(String value) { throw Stub.fail(); }

  public Tensor toTensor() { throw Stub.fail(); }
  public boolean toBool() { throw Stub.fail(); }
  public long toInt() { throw Stub.fail(); }
  public double toDouble() { throw Stub.fail(); }
  public String toStr() { throw Stub.fail(); }
}
