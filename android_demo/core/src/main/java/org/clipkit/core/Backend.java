package org.clipkit.core;

/**
 * A model runtime as the app sees it: load a file, run one tensor in, get a float tensor out. Two thin
 * implementations live in the app (pytorch_android_lite for {@code .ptl}, ExecuTorch for {@code .pte}), one per
 * Gradle flavor; everything else (which one to use, inputs, timing, reports) is decided here in the core, so the
 * activities are the same for either runtime.
 *
 * <p>Every CLIP file the kit writes takes exactly one input (image float32 {@code [1,3,H,W]}, token ids int64
 * {@code [1,L]}, image embedding float32 {@code [1,D]}) and returns one float32 tensor, so two {@code run}
 * overloads are the whole surface.
 */
public interface Backend {
    /** The manifest's {@code files[].format} this runtime reads: {@link Runtimes#PTL} or {@link Runtimes#PTE}. */
    String format();

    /** What reports call the runtime ({@code environment.torch}), e.g. {@code executorch-android 1.3.1}. */
    String runtime();

    /**
     * Loads a file ready to run: for ExecuTorch this includes {@code loadMethod("forward")} (its {@code load} is
     * lazy), so that load times measure the same work in both runtimes and match Minibench's
     * {@code model_load_time}.
     *
     * @param threads threads for inference; 0 keeps the runtime's default
     */
    Model load(String path, int threads);

    /** A loaded file. Not thread-safe: use it from one thread. */
    interface Model {
        float[] run(float[] data, long[] shape);

        float[] run(long[] data, long[] shape);

        /** Frees the native memory now (the garbage collector would do it later). */
        void destroy();
    }
}
