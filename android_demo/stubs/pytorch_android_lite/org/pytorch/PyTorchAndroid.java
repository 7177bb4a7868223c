// COMPILE-ONLY STUB of org.pytorch:pytorch_android_lite:2.1.0 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from PyTorch's Java sources:
//   pytorch/pytorch  android/pytorch_android/src/main/java/org/pytorch/PyTorchAndroid.java
// (read from the stored v1.13 tree, mirror Creativity-Spot/pytorch@bee00bab5ab2aa51437b8615d06ae609c21b0fb4,
// and compared with the stored pytorch/pytorch copies: the members the app calls are identical in all of them).
// Only public members are reproduced; package-private JNI plumbing (NativePeer, HybridData, jniCode) is left out.
package org.pytorch;

import android.content.res.AssetManager;

// In the lite AAR this class loads libpytorch_jni_lite.so (pytorch/pytorch PR #58646, 2021: "Build lite
// interpreter as default for Android"); nativeSetNumThreads is registered by pytorch_jni_common.cpp,
// which both JNI libraries link. Whether setNumThreads really takes effect is a device-only check.
public final class PyTorchAndroid {
  private PyTorchAndroid() {}

  // These two build a NativePeer (full JIT, libpytorch_jni.so), absent from the lite AAR. @Deprecated only in
  // this stub (not upstream), so that -Werror rejects a call: use LiteModuleLoader.loadModuleFromAsset.
  @Deprecated
  public static Module loadModuleFromAsset(
      final AssetManager assetManager, final String assetName, final Device device) {
    throw Stub.fail();
  }

  @Deprecated
  public static Module loadModuleFromAsset(final AssetManager assetManager, final String assetName) {
    throw Stub.fail();
  }

  /** Globally sets the number of threads used on native side; numThreads must be positive. */
  public static void setNumThreads(int numThreads) {
    throw Stub.fail();
  }
}
