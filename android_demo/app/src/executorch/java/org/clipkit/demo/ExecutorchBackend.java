package org.clipkit.demo;

import org.clipkit.core.Backend;
import org.clipkit.core.Runtimes;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

import java.util.Locale;

/** {@code .pte} files through org.pytorch:executorch-android (the {@code executorch} flavor). */
final class ExecutorchBackend implements Backend {
    /** As benchmark reports name it: keep in step with executorch in gradle/libs.versions.toml (checked by check_app.sh). */
    static final String RUNTIME = "executorch-android 1.3.1";

    @Override
    public String format() {
        return Runtimes.PTE;
    }

    @Override
    public String runtime() {
        return RUNTIME;
    }

    @Override
    public Model load(String path, int threads) {
        // LOAD_MODE_FILE is what Module.load(path) uses, as Minibench does: the file read into memory at load, like
        // the lite loader, so load times and memory compare. Module.load only opens the program; loadMethod does the
        // work (delegate init, XNNPACK packing), so it belongs to the load and not to the first call.
        final Module m = Module.load(path, Module.LOAD_MODE_FILE, threads);
        int err = m.loadMethod("forward");
        if (err != 0) {
            m.destroy();
            throw new IllegalStateException(path + ": ExecuTorch loadMethod(\"forward\") failed with error 0x"
                    + Integer.toHexString(err).toUpperCase(Locale.ROOT) + " (a .pte from another executorch version?)");
        }
        return new Model() {
            @Override
            public float[] run(float[] data, long[] shape) {
                return first(m.forward(EValue.from(Tensor.fromBlob(data, shape))));
            }

            @Override
            public float[] run(long[] data, long[] shape) {
                return first(m.forward(EValue.from(Tensor.fromBlob(data, shape))));
            }

            @Override
            public void destroy() {
                m.destroy();
            }
        };
    }

    private static float[] first(EValue[] out) {
        // forward returns an empty array (and logs) on a destroyed module instead of throwing
        if (out.length == 0) throw new IllegalStateException("ExecuTorch forward returned no output (module destroyed?)");
        return out[0].toTensor().getDataAsFloatArray();
    }
}
