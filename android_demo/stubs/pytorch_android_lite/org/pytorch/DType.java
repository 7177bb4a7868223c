// COMPILE-ONLY STUB of org.pytorch:pytorch_android_lite:2.1.0 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from PyTorch's Java sources:
//   pytorch/pytorch  android/pytorch_android/src/main/java/org/pytorch/DType.java
// (read from the stored v1.13 tree, mirror Creativity-Spot/pytorch@bee00bab5ab2aa51437b8615d06ae609c21b0fb4,
// and compared with the stored pytorch/pytorch copies: the members the app calls are identical in all of them).
// Only public members are reproduced; package-private JNI plumbing (NativePeer, HybridData, jniCode) is left out.
package org.pytorch;

/** Codes representing tensor data types. */
public enum DType {
  UINT8,
  INT8,
  INT32,
  FLOAT32,
  INT64,
  FLOAT64,
}
