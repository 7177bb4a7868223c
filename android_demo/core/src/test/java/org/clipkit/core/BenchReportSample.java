package org.clipkit.core;

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Test-only: writes a benchmark report from a small fixed set of samples, the way the app's benchmark screen
 * builds it, so that tests/test_android_core.py can check it with the Python schema validator and compare the
 * statistics with the desktop harness's. Usage:
 * {@code java ... org.clipkit.core.BenchReportSample [OUT.json [ptl|pte]]} (stdout without an argument; ptl by
 * default).
 */
public final class BenchReportSample {
    private BenchReportSample() {}

    /** Load samples (ms): odd count, unsorted. */
    static final double[] LOAD_MS = {41.5, 38.25, 40.0};
    /** Steady samples (ms): even count, unsorted, with a tie and an outlier. */
    static final double[] STEADY_MS = {12.5, 11.25, 13.0, 11.25, 19.75, 12.0, 12.125, 11.5};

    /** PSS before the load and after the timed calls (KiB): 100 MiB + 1 KiB above idle -> 100 MB. */
    static final long PSS_IDLE_KB = 50_000, PSS_AFTER_KB = 50_000 + 100 * 1024 + 1;

    static BenchReport sample() {
        return sample(Runtimes.PTL);
    }

    static BenchReport sample(String format) {
        String variant = BenchReport.variant(format);
        String ext = "." + format;
        return new BenchReport("2026-11-27T10:00:00Z", "Google Pixel \"7\" (Android 14, API 34, arm64-v8a) \u2013 \u00fcn\u00efcode",
                Runtimes.PTE.equals(format) ? "executorch-android 1.3.1" : "pytorch_android_lite 2.1.0", 2, "qnnpack")
                .model("kit-tiny-clip", "android")
                .settings(STEADY_MS.length, 5, LOAD_MS.length)
                .command("adb shell am start -n org.clipkit.demo/.BenchmarkActivity --es model image_encoder" + ext
                        + " --es runtime " + format + " --ei threads 2")
                .add(new BenchReport.Result("image_encoder", variant, "image_encoder" + ext, 2, "qnnpack", 123456L, LOAD_MS, 25.125,
                        STEADY_MS, 104857600L, BenchReport.ramPssUsageMb(PSS_IDLE_KB, PSS_AFTER_KB)))
                .add(new BenchReport.Result("zero_shot_head", variant, "zero_shot_head" + ext, 2, "qnnpack", 4096L, new double[]{0.5},
                        0.03125, new double[]{0.09375}, null, null));
    }

    public static void main(String[] args) throws IOException {
        byte[] json = sample(args.length > 1 ? args[1] : Runtimes.PTL).toJson().getBytes(StandardCharsets.UTF_8);
        if (args.length == 0) {
            System.out.write(json);
            System.out.flush();
            return;
        }
        try (OutputStream o = new FileOutputStream(args[0])) {
            o.write(json);
        }
    }
}
