// COMPILE-ONLY STUB of org.pytorch:executorch-android:1.3.1 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from ExecuTorch's Java sources:
//   pytorch/executorch  extension/android/executorch_android/src/main/java/org/pytorch/executorch/Tensor.java
// (ExecuTorch's Tensor is the pytorch_android Tensor moved to this package). Only the array factories and
// accessors the app uses are reproduced, not the Buffer variants.
package org.pytorch.executorch;

/** Representation of an ExecuTorch Tensor; fromBlob copies the array into a direct buffer of numel(shape). */
public abstract class Tensor {
  private Tensor() {
    throw Stub.fail();
  }

  public static Tensor fromBlob(byte[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(int[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(float[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(long[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(double[] data, long[] shape) { throw Stub.fail(); }

  public long numel() { throw Stub.fail(); }
  public long[] shape() { throw Stub.fail(); }

  public float[] getDataAsFloatArray() { throw Stub.fail(); }
  public long[] getDataAsLongArray() { throw Stub.fail(); }
  public int[] getDataAsIntArray() { throw Stub.fail(); }
}
