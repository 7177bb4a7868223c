// COMPILE-ONLY STUB of org.pytorch:executorch-android:1.3.1 -- never packaged, every method throws.
// Used by android_demo/check_app.sh to type-check the app without Maven/Gradle; the APK built by Gradle
// links the real AAR instead. Public signatures copied from ExecuTorch's Java sources:
//   pytorch/executorch  extension/android/executorch_android/src/main/java/org/pytorch/executorch/Module.java
// (read from the stored copy at commit ad41c6d2885316400e8aa5dd48770d3ddd4cee56; load(path, loadMode, numThreads)
// reads the same in the other stored copies searched; the exact 1.3.1 tag was not among them). Only the public members the app may use are
// reproduced; the JNI plumbing (HybridData, native methods, MethodMetadata) is left out.
package org.pytorch.executorch;

/** Java wrapper for an ExecuTorch Module (upstream: experimental API). */
public class Module {
  public static final int LOAD_MODE_FILE = 0;
  public static final int LOAD_MODE_MMAP = 1;
  public static final int LOAD_MODE_MMAP_USE_MLOCK = 2;
  public static final int LOAD_MODE_MMAP_USE_MLOCK_IGNORE_ERRORS = 3;

  private Module() {
    throw Stub.fail();
  }

  /** numThreads 0: a hardware-specific default. */
  public static Module load(final String modelPath, int loadMode, int numThreads) { throw Stub.fail(); }
  public static Module load(final String modelPath, int loadMode) { throw Stub.fail(); }
  public static Module load(final String modelPath) { throw Stub.fail(); }

  /** Upstream: returns an empty array (and logs) when the module was destroyed. */
  public EValue[] forward(EValue... inputs) { throw Stub.fail(); }
  public EValue[] execute(String methodName, EValue... inputs) { throw Stub.fail(); }
  /** The error code, 0 when the method loaded. */
  public int loadMethod(String methodName) { throw Stub.fail(); }
  public String[] getMethods() { throw Stub.fail(); }
  public String[] readLogBuffer() { throw Stub.fail(); }
  public void destroy() { throw Stub.fail(); }
}
