// COMPILE-ONLY STUB of org.pytorch:pytorch_android_lite:2.1.0 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from PyTorch's Java sources:
//   pytorch/pytorch  android/pytorch_android/src/main/java/org/pytorch/Module.java
// (read from the stored v1.13 tree, mirror Creativity-Spot/pytorch@bee00bab5ab2aa51437b8615d06ae609c21b0fb4,
// and compared with the stored pytorch/pytorch copies: the members the app calls are identical in all of them).
// Only public members are reproduced; package-private JNI plumbing (NativePeer, HybridData, jniCode) is left out.
package org.pytorch;

import java.util.Map;

/** Java wrapper for torch::jit::Module. */
public class Module {
  private Module() {
    throw Stub.fail();
  }

  // Module.load is the full-JIT loader: in the lite AAR it needs libpytorch_jni.so, which is not shipped.
  // @Deprecated exists only in this stub (not upstream) so that the check's -Xlint:deprecation -Werror
  // rejects any call from the app: use LiteModuleLoader.load.
  @Deprecated
  public static Module load(final String modelPath, final Map<String, String> extraFiles, final Device device) {
    throw Stub.fail();
  }

  @Deprecated
  public static Module load(final String modelPath) {
    throw Stub.fail();
  }

  public IValue forward(IValue... inputs) {
    throw Stub.fail();
  }

  public IValue runMethod(String methodName, IValue... inputs) {
    throw Stub.fail();
  }

  public void destroy() {
    throw Stub.fail();
  }
}
