package org.clipkit.demo;

import org.clipkit.core.Backend;
import org.clipkit.core.Runtimes;
import org.pytorch.IValue;
import org.pytorch.LiteModuleLoader;
import org.pytorch.Module;
import org.pytorch.PyTorchAndroid;
import org.pytorch.Tensor;

/** {@code .ptl} files through org.pytorch:pytorch_android_lite (the {@code lite} flavor). */
final class LiteBackend implements Backend {
    /** As benchmark reports name it: keep in step with pytorchLite in gradle/libs.versions.toml (checked by check_app.sh). */
    static final String RUNTIME = "pytorch_android_lite 2.1.0";

    @Override
    public String format() {
        return Runtimes.PTL;
    }

    @Override
    public String runtime() {
        return RUNTIME;
    }

    @Override
    public Model load(String path, int threads) {
        // The lite runtime's thread count is process-wide, not per module.
        if (threads > 0) PyTorchAndroid.setNumThreads(threads);
        final Module m = LiteModuleLoader.load(path);
        return new Model() {
            @Override
            public float[] run(float[] data, long[] shape) {
                return m.forward(IValue.from(Tensor.fromBlob(data, shape))).toTensor().getDataAsFloatArray();
            }

            @Override
            public float[] run(long[] data, long[] shape) {
                return m.forward(IValue.from(Tensor.fromBlob(data, shape))).toTensor().getDataAsFloatArray();
            }

            @Override
            public void destroy() {
                m.destroy();
            }
        };
    }
}
