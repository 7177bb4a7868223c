package org.clipkit.demo;

import android.app.Activity;
import android.content.Intent;
import android.os.Build;
import android.os.Bundle;
import android.util.Log;
import android.widget.ScrollView;
import android.widget.TextView;

import org.clipkit.core.Json;
import org.clipkit.core.Manifest;
import org.pytorch.IValue;
import org.pytorch.LiteModuleLoader;
import org.pytorch.Module;
import org.pytorch.PyTorchAndroid;
import org.pytorch.Tensor;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileOutputStream;
import java.io.FileReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.text.SimpleDateFormat;
import java.util.Arrays;
import java.util.Date;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TimeZone;

/**
 * Screen 3: benchmark of one lite artifact, also driven by intent extras:
 * <pre>
 * adb shell am start -n org.clipkit.demo/.BenchmarkActivity --es model image_encoder.ptl \
 *     --ei iters 50 --ei warmup 5 --ei threads 2 [--ei loads 3]
 * </pre>
 * Writes a clip-mobile-kit-bench v1 report (docs/formats.md) to
 * {@code getExternalFilesDir(null)/bench/bench-<model>-<threads>t-<utc>.json} (app-specific storage,
 * readable with {@code adb pull /sdcard/Android/data/org.clipkit.demo/files/bench/}); the path is logged
 * with tag ClipKit and shown on screen.
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
        final String model = i.hasExtra("model") ? i.getStringExtra("model") : "image_encoder.ptl";
        final int iters = Math.max(1, i.getIntExtra("iters", 50));
        final int warmup = Math.max(0, i.getIntExtra("warmup", 5));
        final int threads = i.getIntExtra("threads", 2);
        final int loads = Math.max(1, i.getIntExtra("loads", 3));
        out.setText("Benchmarking " + model + " (" + iters + " iters, " + warmup + " warm-up, " + threads + " threads)…");
        ClipKit.executor().execute(() -> {
            String msg;
            try {
                msg = run(model, iters, warmup, threads, loads);
            } catch (Throwable e) {
                Log.e(ClipKit.TAG, "benchmark failed", e);
                msg = "Benchmark failed: " + e;
            }
            final String m = msg;
            runOnUiThread(() -> out.setText(m));
        });
    }

    private String run(String model, int iters, int warmup, int threads, int loads) throws Exception {
        ClipKit kit = ClipKit.get(this);
        Manifest.FileEntry entry = null;
        for (Manifest.FileEntry f : kit.manifest.files) if (f.file.equals(model) || f.role.equals(model)) entry = f;
        if (entry == null || !entry.format.equals("lite")) throw new IllegalArgumentException("no lite file '" + model + "' in manifest.json");
        if (threads > 0) PyTorchAndroid.setNumThreads(threads);
        File file = new File(kit.dir, entry.file);
        IValue input = input(kit, entry);

        double[] loadMs = new double[loads];
        Module m = null;
        for (int l = 0; l < loads; l++) {
            if (m != null) m.destroy();
            long t0 = System.nanoTime();
            m = LiteModuleLoader.load(file.getAbsolutePath());
            loadMs[l] = (System.nanoTime() - t0) / 1e6;
        }
        long t0 = System.nanoTime();
        m.forward(input);
        double firstMs = (System.nanoTime() - t0) / 1e6;
        for (int w = 0; w < warmup; w++) m.forward(input);
        double[] steady = new double[iters];
        for (int it = 0; it < iters; it++) {
            long s = System.nanoTime();
            m.forward(input);
            steady[it] = (System.nanoTime() - s) / 1e6;
        }
        m.destroy();
        long peakRss = peakRssBytes();

        String utc = utcNow();
        StringBuilder j = new StringBuilder();
        j.append("{\n  \"schema\": \"clip-mobile-kit-bench\", \"schema_version\": 1,\n");
        j.append("  \"created_utc\": ").append(q(utc)).append(",\n");
        j.append("  \"environment\": {\"host\": \"android\", \"device\": ").append(q(Build.MANUFACTURER + " " + Build.MODEL
                + " (Android " + Build.VERSION.RELEASE + ", API " + Build.VERSION.SDK_INT + ", " + Build.SUPPORTED_ABIS[0] + ")"))
                .append(", \"torch\": ").append(q("pytorch_android_lite 2.1.0"))
                .append(", \"threads\": ").append(threads)
                .append(", \"engine\": ").append(q(kit.manifest.engine == null ? "qnnpack" : kit.manifest.engine))
                .append(", \"omp_wait_policy\": null, \"cpu_flags\": []},\n");
        j.append("  \"results\": [\n    {\"role\": ").append(q(entry.role)).append(", \"variant\": \"lite\", \"file\": ")
                .append(q(entry.file)).append(", \"threads\": ").append(threads)
                .append(", \"engine\": ").append(q(kit.manifest.engine == null ? "qnnpack" : kit.manifest.engine))
                .append(", \"size_bytes\": ").append(file.length()).append(",\n")
                .append("     \"load_ms\": ").append(stats(loadMs)).append(",\n")
                .append("     \"first_ms\": ").append(num(firstMs)).append(",\n")
                .append("     \"steady_ms\": ").append(stats(steady)).append(",\n")
                .append("     \"peak_rss_bytes\": ").append(peakRss).append("}\n  ]\n}\n");
        String json = j.toString();
        Json.parse(json); // self-check: valid JSON

        File dir = new File(getExternalFilesDir(null) != null ? getExternalFilesDir(null) : getFilesDir(), "bench");
        if (!dir.isDirectory() && !dir.mkdirs()) throw new java.io.IOException("cannot create " + dir);
        File report = new File(dir, "bench-" + entry.role + "-" + threads + "t-" + utc.replace(":", "") + ".json");
        try (Writer w = new OutputStreamWriter(new FileOutputStream(report), StandardCharsets.UTF_8)) {
            w.write(json);
        }
        Log.i(ClipKit.TAG, "benchmark report written to " + report.getAbsolutePath());
        return "Report: " + report.getAbsolutePath() + "\n\n" + json;
    }

    /** A deterministic input of the shape manifest.json declares for this file. */
    @SuppressWarnings("unchecked")
    private static IValue input(ClipKit kit, Manifest.FileEntry entry) throws Exception {
        if (entry.role.equals("text_encoder")) {
            long[] ids = kit.tokenizer().tokenizeToLongs("a photo of a dog.");
            return IValue.from(Tensor.fromBlob(ids, new long[]{1, ids.length}));
        }
        long[] shape = null;
        for (Object o : Json.arr(kit.manifest.raw.get("files"), "files")) {
            Map<String, Object> f = Json.obj(o, "file");
            if (!entry.file.equals(f.get("file")) || !f.containsKey("inputs")) continue;
            List<Object> dims = Json.arr(Json.obj(Json.arr(f.get("inputs"), "inputs").get(0), "input").get("shape"), "shape");
            shape = new long[dims.size()];
            for (int d = 0; d < shape.length; d++) shape[d] = Json.integer(dims.get(d), "dim");
        }
        if (shape == null) {
            if (entry.role.equals("image_encoder"))
                shape = new long[]{1, 3, kit.preprocessor.outputHeight(), kit.preprocessor.outputWidth()};
            else throw new IllegalArgumentException("manifest gives no input shape for " + entry.file);
        }
        int n = 1;
        for (long d : shape) n *= (int) d;
        float[] x = new float[n];
        Random r = new Random(0);
        for (int k = 0; k < n; k++) x[k] = (float) r.nextGaussian();
        return IValue.from(Tensor.fromBlob(x, shape));
    }

    private static String stats(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        StringBuilder b = new StringBuilder("{\"median\": ").append(num(quantile(s, 0.5)))
                .append(", \"p90\": ").append(num(quantile(s, 0.9))).append(", \"samples\": [");
        for (int i = 0; i < v.length; i++) b.append(i == 0 ? "" : ", ").append(num(v[i]));
        return b.append("]}").toString();
    }

    /** Linear interpolation between order statistics (numpy's default). */
    static double quantile(double[] sorted, double q) {
        double pos = q * (sorted.length - 1);
        int lo = (int) Math.floor(pos), hi = (int) Math.ceil(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }

    private static String num(double v) {
        return String.format(Locale.ROOT, "%.4f", v);
    }

    private static String q(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    private static String utcNow() {
        SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.ROOT);
        f.setTimeZone(TimeZone.getTimeZone("UTC"));
        return f.format(new Date());
    }

    /** VmHWM of this process (peak resident set), bytes; -1 if unavailable. */
    private static long peakRssBytes() {
        try (BufferedReader r = new BufferedReader(new FileReader("/proc/self/status"))) {
            String line;
            while ((line = r.readLine()) != null) {
                if (line.startsWith("VmHWM:")) {
                    String[] p = line.trim().split("\\s+");
                    return Long.parseLong(p[1]) * 1024L;
                }
            }
        } catch (Exception ignored) {
            // fall through
        }
        return -1;
    }
}
