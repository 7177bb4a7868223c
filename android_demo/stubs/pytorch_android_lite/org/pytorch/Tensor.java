// COMPILE-ONLY STUB of org.pytorch:pytorch_android_lite:2.1.0 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from PyTorch's Java sources:
//   pytorch/pytorch  android/pytorch_android/src/main/java/org/pytorch/Tensor.java
// (read from the stored v1.13 tree, mirror Creativity-Spot/pytorch@bee00bab5ab2aa51437b8615d06ae609c21b0fb4,
// and compared with the stored pytorch/pytorch copies: the members the app calls are identical in all of them).
// Only public members are reproduced; package-private JNI plumbing (NativePeer, HybridData, jniCode) is left out.
package org.pytorch;

import java.nio.ByteBuffer;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.nio.LongBuffer;

/**
 * Representation of a Tensor. Upstream: arrays passed to fromBlob are copied into a direct buffer of
 * numel(shape) elements (IllegalArgumentException when data length != numel(shape)); buffers must be
 * direct and in native byte order and are used without copying.
 */
public abstract class Tensor {
  private Tensor() {
    throw Stub.fail();
  }

  public static ByteBuffer allocateByteBuffer(int numElements) { throw Stub.fail(); }
  public static IntBuffer allocateIntBuffer(int numElements) { throw Stub.fail(); }
  public static FloatBuffer allocateFloatBuffer(int numElements) { throw Stub.fail(); }
  public static LongBuffer allocateLongBuffer(int numElements) { throw Stub.fail(); }
  public static DoubleBuffer allocateDoubleBuffer(int numElements) { throw Stub.fail(); }

  public static Tensor fromBlobUnsigned(byte[] data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlobUnsigned(byte[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(byte[] data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(byte[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(int[] data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(int[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(float[] data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(float[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(long[] data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(long[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(double[] data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(double[] data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlobUnsigned(ByteBuffer data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlobUnsigned(ByteBuffer data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(ByteBuffer data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(ByteBuffer data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(IntBuffer data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(IntBuffer data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(FloatBuffer data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(FloatBuffer data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(LongBuffer data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(LongBuffer data, long[] shape) { throw Stub.fail(); }
  public static Tensor fromBlob(DoubleBuffer data, long[] shape, MemoryFormat memoryFormat) { throw Stub.fail(); }
  public static Tensor fromBlob(DoubleBuffer data, long[] shape) { throw Stub.fail(); }

  public long numel() { throw Stub.fail(); }
  public static long numel(long[] shape) { throw Stub.fail(); }
  public long[] shape() { throw Stub.fail(); }
  public MemoryFormat memoryFormat() { throw Stub.fail(); }
  public abstract DType dtype();

  public byte[] getDataAsByteArray() { throw Stub.fail(); }
  public byte[] getDataAsUnsignedByteArray() { throw Stub.fail(); }
  public int[] getDataAsIntArray() { throw Stub.fail(); }
  public float[] getDataAsFloatArray() { throw Stub.fail(); }
  public long[] getDataAsLongArray() { throw Stub.fail(); }
  public double[] getDataAsDoubleArray() { throw Stub.fail(); }
}
