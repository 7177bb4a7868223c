package org.clipkit.demo;

import android.app.Activity;
import android.content.Intent;
import android.os.Build;
import android.os.Bundle;
import android.os.Debug;
import android.util.Log;
import android.widget.ScrollView;
import android.widget.TextView;

import org.clipkit.core.BenchReport;
import org.clipkit.core.Backend;
import org.clipkit.core.Manifest;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileOutputStream;
import java.io.FileReader;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Locale;
import java.util.Random;

/**
 * Screen 3: benchmark of one artifact in the chosen runtime (lite .ptl or ExecuTorch .pte, see {@link ClipKit}),
 * also driven by intent extras:
 * <pre>
 * adb shell am start -n org.clipkit.demo/.BenchmarkActivity --es model image_encoder \
 *     --ei iters 50 --ei warmup 5 --ei threads 2 [--ei loads 3] [--es runtime ptl|pte]
 * </pre>
 * {@code model} is a role or a file name of the runtime's format. Writes a clip-mobile-kit-bench v1 report
 * (docs/formats.md; built by the core's {@link BenchReport}, with Minibench's metrics beside the kit's) to
 * {@code getExternalFilesDir(null)/bench/bench-<role>-<variant>-<threads>t-<utc>.json} (app-specific storage,
 * readable with {@code adb pull /sdcard/Android/data/org.clipkit.demo/files/bench/}); the path is logged
 * with tag ClipKit and shown on screen. benchmarks/android/bench_app.sh waits for the log lines
 * "benchmark report written to" and "benchmark failed": keep both.
 */
public class BenchmarkActivity extends Activity {
    private TextView out;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        out = new TextView(this);
        out.setPadding(32, 32, 32, 32);
        out.setTextIsSelectable(true);
        ScrollView sv = new ScrollView(this);
        sv.addView(out);
        setContentView(sv);
        Intent i = getIntent();
        final String model = i.hasExtra("model") ? i.getStringExtra("model") : "image_encoder";
        final int iters = Math.max(1, i.getIntExtra("iters", 50));
        final int warmup = Math.max(0, i.getIntExtra("warmup", 5));
        final int threads = Math.max(0, i.getIntExtra("threads", 2)); // 0: the runtime's default
        final int loads = Math.max(1, i.getIntExtra("loads", 3));
        out.setText("Benchmarking " + model + " (" + iters + " iters, " + warmup + " warm-up, " + threads + " threads)…");
        // UiTask logs "benchmark failed" on failure
        UiTask.run(this, out, "Benchmark failed", () -> run(model, iters, warmup, threads, loads));
    }

    private String run(String model, int iters, int warmup, int threads, int loads) throws Exception {
        ClipKit kit = ClipKit.get(this, getIntent());
        Manifest.FileEntry entry = null;
        for (Manifest.FileEntry f : kit.manifest.files)
            if (kit.format.equals(f.runtimeFormat()) && (f.file.equals(model) || f.role.equals(model))) entry = f;
        if (entry == null)
            throw new IllegalArgumentException("no " + kit.format + " file '" + model + "' in manifest.json (runtime "
                    + kit.backend.runtime() + "; --es runtime ptl|pte picks the other one)");
        File file = new File(kit.dir, entry.file);
        Input input = input(kit, entry);

        // Minibench's ram_pss_usage: PSS before the first load, again after the timed calls
        long pssIdleKb = Debug.getPss();
        double[] loadMs = new double[loads];
        Backend.Model m = null;
        for (int l = 0; l < loads; l++) {
            if (m != null) m.destroy();
            long t0 = System.nanoTime();
            m = kit.backend.load(file.getAbsolutePath(), threads);
            loadMs[l] = (System.nanoTime() - t0) / 1e6;
        }
        long t0 = System.nanoTime();
        input.run(m);
        double firstMs = (System.nanoTime() - t0) / 1e6;
        for (int w = 0; w < warmup; w++) input.run(m);
        double[] steady = new double[iters];
        for (int it = 0; it < iters; it++) {
            long s = System.nanoTime();
            input.run(m);
            steady[it] = (System.nanoTime() - s) / 1e6;
        }
        long pssAfterKb = Debug.getPss();
        m.destroy();

        String variant = BenchReport.variant(kit.format);
        String utc = BenchReport.utc(System.currentTimeMillis());
        String device = Build.MANUFACTURER + " " + Build.MODEL + " (Android " + Build.VERSION.RELEASE + ", API "
                + Build.VERSION.SDK_INT + ", " + Build.SUPPORTED_ABIS[0] + ")";
        String json = new BenchReport(utc, device, kit.backend.runtime(), threads, kit.manifest.engine)
                .model(kit.manifest.modelName, kit.manifest.target)
                .settings(iters, warmup, loads)
                .command(String.format(Locale.ROOT, "adb shell am start -n org.clipkit.demo/.BenchmarkActivity --es model %s "
                        + "--ei iters %d --ei warmup %d --ei threads %d --ei loads %d --es runtime %s", entry.file, iters, warmup,
                        threads, loads, kit.format))
                .add(new BenchReport.Result(entry.role, variant, entry.file, threads, kit.manifest.engine, file.length(), loadMs,
                        firstMs, steady, peakRssBytes(), BenchReport.ramPssUsageMb(pssIdleKb, pssAfterKb)))
                .toJson();

        File base = getExternalFilesDir(null);
        File dir = new File(base != null ? base : getFilesDir(), "bench");
        if (!dir.isDirectory() && !dir.mkdirs()) throw new IOException("cannot create " + dir);
        File report = new File(dir, "bench-" + entry.role + "-" + variant + "-" + threads + "t-" + utc.replace(":", "") + ".json");
        try (Writer w = new OutputStreamWriter(new FileOutputStream(report), StandardCharsets.UTF_8)) {
            w.write(json);
        }
        Log.i(ClipKit.TAG, "benchmark report written to " + report.getAbsolutePath());
        return "Report: " + report.getAbsolutePath() + "\n\n" + json;
    }

    /** The one input of a model file, float32 or int64. */
    private static final class Input {
        final float[] floats;
        final long[] longs;
        final long[] shape;

        Input(float[] floats, long[] longs, long[] shape) {
            this.floats = floats;
            this.longs = longs;
            this.shape = shape;
        }

        void run(Backend.Model m) {
            if (floats != null) m.run(floats, shape);
            else m.run(longs, shape);
        }
    }

    /**
     * A deterministic input of the name, shape and dtype manifest.json declares for this file: the token ids of a
     * real sentence for the text tower (random ids would not be a sentence), as the app passes them
     * ({@link ClipKit#textIds}); seeded Gaussian noise for float32.
     */
    private static Input input(ClipKit kit, Manifest.FileEntry entry) throws IOException {
        if (entry.inputs.size() != 1)
            throw new IllegalArgumentException(entry.file + ": " + entry.inputs.size() + " inputs; the kit's files take one");
        Manifest.TensorSpec spec = entry.inputs.get(0);
        long[] shape = spec.shape();
        if (spec.dtype.equals("int64") && entry.role.equals("text_encoder")) {
            long[] ids = kit.textIds("a photo of a dog.");
            if (ids.length > spec.numel())
                throw new IllegalArgumentException(entry.file + ": " + ids.length + " token ids for input shape " + Arrays.toString(shape));
            return new Input(null, ids, new long[]{1, ids.length});
        }
        if (spec.dtype.equals("float32")) {
            float[] x = new float[spec.numel()];
            Random r = new Random(0);
            for (int k = 0; k < x.length; k++) x[k] = (float) r.nextGaussian();
            return new Input(x, null, shape);
        }
        throw new IllegalArgumentException(entry.file + ": no benchmark input for " + spec.name + " (" + spec.dtype + ")");
    }

    /** VmHWM of this process (peak resident set), bytes; null if unavailable. */
    private static Long peakRssBytes() {
        try (BufferedReader r = new BufferedReader(new FileReader("/proc/self/status"))) {
            String line;
            while ((line = r.readLine()) != null) {
                if (line.startsWith("VmHWM:")) {
                    String[] p = line.trim().split("\\s+");
                    return Long.parseLong(p[1]) * 1024L;
                }
            }
        } catch (IOException | RuntimeException e) {
            Log.w(ClipKit.TAG, "no VmHWM: " + e);
        }
        return null;
    }
}
