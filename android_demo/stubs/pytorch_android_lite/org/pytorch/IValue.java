// COMPILE-ONLY STUB of org.pytorch:pytorch_android_lite:2.1.0 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from PyTorch's Java sources:
//   pytorch/pytorch  android/pytorch_android/src/main/java/org/pytorch/IValue.java
// (read from the stored v1.13 tree, mirror Creativity-Spot/pytorch@bee00bab5ab2aa51437b8615d06ae609c21b0fb4,
// and compared with the stored pytorch/pytorch copies: the members the app calls are identical in all of them).
// Only public members are reproduced; package-private JNI plumbing (NativePeer, HybridData, jniCode) is left out.
package org.pytorch;

import java.util.Map;

/** Java representation of a TorchScript value (tagged union); toX() of the wrong type throws upstream. */
public class IValue {
  private IValue() {
    throw Stub.fail();
  }

  public boolean isNull() { throw Stub.fail(); }
  public boolean isTensor() { throw Stub.fail(); }
  public boolean isBool() { throw Stub.fail(); }
  public boolean isLong() { throw Stub.fail(); }
  public boolean isDouble() { throw Stub.fail(); }
  public boolean isString() { throw Stub.fail(); }
  public boolean isTuple() { throw Stub.fail(); }
  public boolean isBoolList() { throw Stub.fail(); }
  public boolean isLongList() { throw Stub.fail(); }
  public boolean isDoubleList() { throw Stub.fail(); }
  public boolean isTensorList() { throw Stub.fail(); }
  public boolean isList() { throw Stub.fail(); }
  public boolean isDictStringKey() { throw Stub.fail(); }
  public boolean isDictLongKey() { throw Stub.fail(); }

  public static IValue optionalNull() { throw Stub.fail(); }
  public static IValue from(Tensor tensor) { throw Stub.fail(); }
  public static IValue from(boolean value) { throw Stub.fail(); }
  public static IValue from(long value) { throw Stub.fail(); }
  public static IValue from(double value) { throw Stub.fail(); }
  public static IValue from(String value) { throw Stub.fail(); }
  public static IValue listFrom(boolean... list) { throw Stub.fail(); }
  public static IValue listFrom(long... list) { throw Stub.fail(); }
  public static IValue listFrom(double... list) { throw Stub.fail(); }
  public static IValue listFrom(Tensor... list) { throw Stub.fail(); }
  public static IValue listFrom(IValue... array) { throw Stub.fail(); }
  public static IValue tupleFrom(IValue... array) { throw Stub.fail(); }
  public static IValue dictStringKeyFrom(Map<String, IValue> map) { throw Stub.fail(); }
  public static IValue dictLongKeyFrom(Map<Long, IValue> map) { throw Stub.fail(); }

  public Tensor toTensor() { throw Stub.fail(); }
  public boolean toBool() { throw Stub.fail(); }
  public long toLong() { throw Stub.fail(); }
  public double toDouble() { throw Stub.fail(); }
  public String toStr() { throw Stub.fail(); }
  public boolean[] toBoolList() { throw Stub.fail(); }
  public long[] toLongList() { throw Stub.fail(); }
  public double[] toDoubleList() { throw Stub.fail(); }
  public Tensor[] toTensorList() { throw Stub.fail(); }
  public IValue[] toList() { throw Stub.fail(); }
  public IValue[] toTuple() { throw Stub.fail(); }
  public Map<String, IValue> toDictStringKey() { throw Stub.fail(); }
  public Map<Long, IValue> toDictLongKey() { throw Stub.fail(); }
}
