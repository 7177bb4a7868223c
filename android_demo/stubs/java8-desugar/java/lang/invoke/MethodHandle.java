// COMPILE-ONLY STUB for android_demo/check_app.sh, never packaged. API 23's android.jar has no java.lang.invoke
// (added in API 26), but javac needs these symbols to emit invokedynamic for lambdas; on the phone, D8
// desugars every lambda for minSdk < 26, exactly as AGP does (its compileSdk 35 android.jar has the real ones).
// Signatures: OpenJDK 8 java.lang.invoke (the bootstrap javac resolves: LambdaMetafactory.metafactory).
package java.lang.invoke;

public abstract class MethodHandle {
}
