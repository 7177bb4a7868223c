package org.clipkit.core;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Date;
import java.util.List;
import java.util.Locale;
import java.util.TimeZone;

/**
 * A {@code clip-mobile-kit-bench} v1 report (docs/formats.md), the JSON the desktop harness writes
 * ({@code python -m deploy bench}) and the app's benchmark screen writes, so phone and desktop figures land
 * in one table ({@code python -m deploy bench --from-json}).
 *
 * <p>Statistics are computed exactly as the harness does (deploy/bench/plan.py {@code stats}): median as
 * Python's {@code statistics.median}, p90 by linear interpolation between order statistics (numpy's default),
 * every figure rounded half-even to 4 decimals on the exact binary value (Python's {@code round(x, 4)}), so the
 * same samples give the same numbers on both sides. Extra fields beyond the schema follow the harness:
 * {@code model}, {@code target}, {@code artifact_engine}, {@code settings} (with {@code repeats}, which the
 * Markdown renderer reads), {@code command}; per result {@code model} and {@code target}.
 *
 * <p>Per result, beyond the harness's fields: {@code load_cold_ms} (the first load in the process: file cache and
 * runtime initialisation included), {@code load_warm_ms} (the later loads, stats like {@code load_ms}; null with one
 * load), {@code steady_percentiles_ms} (p50/p90/p95/p99) and {@code minibench}, the metrics ExecuTorch's Minibench
 * app writes (extension/benchmark/android, {@code ModelRunner}) under its own names and units, so a row can be put
 * beside theirs: {@code model_load_time(ms)} (one load; Minibench times {@code Module.load} +
 * {@code loadMethod("forward")} once in the process, which is our cold load), {@code avg_inference_latency(ms)}
 * (mean of the timed calls), {@code trimmean_inference_latency(ms)} ({@link #trimmedMean}), {@code ram_pss_usage(mb)}
 * ({@link #ramPssUsageMb}) and {@code load_status} (0: the app writes a report only for a run that loaded).
 */
public final class BenchReport {
    public static final String SCHEMA = "clip-mobile-kit-bench";
    public static final int SCHEMA_VERSION = 1;
    /** The harness's variant names of the two phone runtimes (deploy/bench/report.py VARIANTS). */
    public static final String VARIANT_LITE = "lite", VARIANT_PTE = "pte";

    /** The report variant of a runtime format: {@code ptl} files are the harness's {@code lite} rows. */
    public static String variant(String runtimeFormat) {
        if (Runtimes.PTL.equals(runtimeFormat)) return VARIANT_LITE;
        if (Runtimes.PTE.equals(runtimeFormat)) return VARIANT_PTE;
        throw new IllegalArgumentException("no benchmark variant for format '" + runtimeFormat + "' (ptl, pte)");
    }

    /** Median, p90 and the samples (rounded like the harness). */
    public static final class Stats {
        public final double median, p90;
        private final double[] samples;

        Stats(double median, double p90, double[] samples) {
            this.median = median;
            this.p90 = p90;
            this.samples = samples;
        }

        public double[] samples() {
            return samples.clone();
        }
    }

    /** One timed file. */
    public static final class Result {
        public final String role, variant, file, engine;
        public final int threads;
        public final long sizeBytes;
        public final Stats loadMs, steadyMs;
        public final double firstMs;
        /** VmHWM of the process, bytes; null when the platform does not report it. */
        public final Long peakRssBytes;
        /** Minibench's {@code ram_pss_usage(mb)}; null when not measured. */
        public final Long ramPssUsageMb;
        /** The first load; the later ones (null with a single load). */
        public final double loadColdMs;
        public final Stats loadWarmMs;
        /** Minibench's mean and trimmed mean of the timed calls (trimmed: null with fewer than 2 calls). */
        public final double avgInferenceMs;
        public final Double trimmeanInferenceMs;
        /** p50, p90, p95, p99 of the timed calls. */
        public final double[] steadyPercentiles;

        /**
         * @param loadMs one sample per load of the file (non-empty)
         * @param firstMs the first forward call after the last load
         * @param steadyMs the timed calls after warm-up (non-empty)
         * @param variant {@link #VARIANT_LITE} or {@link #VARIANT_PTE} (see {@link #variant(String)})
         * @param ramPssUsageMb see {@link #ramPssUsageMb}; null when not measured
         */
        public Result(String role, String variant, String file, int threads, String engine, long sizeBytes, double[] loadMs,
                      double firstMs, double[] steadyMs, Long peakRssBytes, Long ramPssUsageMb) {
            this.role = nonEmpty(role, "role");
            if (!VARIANT_LITE.equals(variant) && !VARIANT_PTE.equals(variant))
                throw new IllegalArgumentException("variant '" + variant + "' is not " + VARIANT_LITE + " or " + VARIANT_PTE);
            this.variant = variant;
            this.file = nonEmpty(file, "file");
            this.engine = nonEmpty(engine, "engine");
            if (threads < 0) throw new IllegalArgumentException("threads must be >= 0 (0: runtime default)");
            if (sizeBytes < 0) throw new IllegalArgumentException("size_bytes must be >= 0");
            if (peakRssBytes != null && peakRssBytes < 0) throw new IllegalArgumentException("peak_rss_bytes must be >= 0 or null");
            this.threads = threads;
            this.sizeBytes = sizeBytes;
            this.loadMs = stats(loadMs, "load_ms");
            this.firstMs = round4(finite(firstMs, "first_ms"));
            this.steadyMs = stats(steadyMs, "steady_ms");
            this.peakRssBytes = peakRssBytes;
            this.ramPssUsageMb = ramPssUsageMb;
            this.loadColdMs = round4(loadMs[0]);
            this.loadWarmMs = loadMs.length > 1 ? stats(Arrays.copyOfRange(loadMs, 1, loadMs.length), "load_warm_ms") : null;
            this.avgInferenceMs = round4(mean(steadyMs));
            Double trimmed = trimmedMean(steadyMs);
            this.trimmeanInferenceMs = trimmed == null ? null : round4(trimmed);
            this.steadyPercentiles = new double[PERCENTILES.length];
            for (int i = 0; i < PERCENTILES.length; i++) steadyPercentiles[i] = round4(percentile(steadyMs, PERCENTILES[i]));
        }
    }

    /** The percentiles of {@code steady_percentiles_ms}. */
    static final int[] PERCENTILES = {50, 90, 95, 99};

    private final String createdUtc, device, runtime, engine;
    private final int threads;
    private final List<Result> results = new ArrayList<>();
    private String modelName, target, command;
    private int iters = -1, warmup = -1, loads = -1;

    /**
     * @param createdUtc ISO-8601 UTC time, {@code yyyy-MM-ddTHH:mm:ssZ} (see {@link #utc(long)})
     * @param device what the harness calls {@code device}: maker, model, Android release, API level, ABI
     * @param runtime the runtime ({@code environment.torch}), e.g. {@code pytorch_android_lite 2.1.0}
     * @param threads thread count set on the runtime (0: its default)
     * @param engine quantized engine of the artifacts ({@code qnnpack})
     */
    public BenchReport(String createdUtc, String device, String runtime, int threads, String engine) {
        if (createdUtc == null || !createdUtc.matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ"))
            throw new IllegalArgumentException("created_utc must look like 2026-11-26T18:00:00Z, got " + createdUtc);
        this.createdUtc = createdUtc;
        this.device = nonEmpty(device, "device");
        this.runtime = nonEmpty(runtime, "runtime");
        this.engine = nonEmpty(engine, "engine");
        if (threads < 0) throw new IllegalArgumentException("threads must be >= 0");
        this.threads = threads;
    }

    /** The converted model ({@code manifest.model.name}) and target ({@code manifest.target}); optional. */
    public BenchReport model(String name, String target) {
        this.modelName = name;
        this.target = target;
        return this;
    }

    /** How the samples were taken (one process: {@code repeats} is 1); optional. */
    public BenchReport settings(int iters, int warmup, int loads) {
        if (iters < 1 || warmup < 0 || loads < 1) throw new IllegalArgumentException("need iters >= 1, warmup >= 0, loads >= 1");
        this.iters = iters;
        this.warmup = warmup;
        this.loads = loads;
        return this;
    }

    /** The command that reproduces the run (e.g. the {@code adb shell am start ...} line); optional. */
    public BenchReport command(String command) {
        this.command = command;
        return this;
    }

    public BenchReport add(Result r) {
        if (r == null) throw new IllegalArgumentException("result is null");
        results.add(r);
        return this;
    }

    public List<Result> results() {
        return Collections.unmodifiableList(results);
    }

    /** The report as JSON text (UTF-8, ends with a newline); it parses with {@link Json#parse}. */
    public String toJson() {
        if (results.isEmpty()) throw new IllegalStateException("a report needs at least one result");
        StringBuilder j = new StringBuilder(512);
        j.append("{\n  \"schema\": ").append(Json.quote(SCHEMA)).append(", \"schema_version\": ").append(SCHEMA_VERSION).append(",\n");
        j.append("  \"created_utc\": ").append(Json.quote(createdUtc)).append(",\n");
        j.append("  \"environment\": {\"host\": \"android\", \"device\": ").append(Json.quote(device))
                .append(", \"torch\": ").append(Json.quote(runtime))
                .append(", \"threads\": ").append(threads)
                .append(", \"engine\": ").append(Json.quote(engine))
                .append(", \"omp_wait_policy\": null, \"cpu_flags\": []},\n");
        j.append("  \"results\": [");
        for (int i = 0; i < results.size(); i++) {
            Result r = results.get(i);
            j.append(i == 0 ? "\n" : ",\n");
            j.append("    {\"role\": ").append(Json.quote(r.role)).append(", \"variant\": ").append(Json.quote(r.variant))
                    .append(", \"file\": ").append(Json.quote(r.file)).append(", \"threads\": ").append(r.threads)
                    .append(", \"engine\": ").append(Json.quote(r.engine)).append(", \"size_bytes\": ").append(r.sizeBytes).append(",\n")
                    .append("     \"load_ms\": ").append(json(r.loadMs)).append(",\n")
                    .append("     \"first_ms\": ").append(num(r.firstMs)).append(",\n")
                    .append("     \"steady_ms\": ").append(json(r.steadyMs)).append(",\n")
                    .append("     \"peak_rss_bytes\": ").append(r.peakRssBytes == null ? "null" : r.peakRssBytes.toString()).append(",\n")
                    .append("     \"load_cold_ms\": ").append(num(r.loadColdMs))
                    .append(", \"load_warm_ms\": ").append(r.loadWarmMs == null ? "null" : json(r.loadWarmMs)).append(",\n")
                    .append("     \"steady_percentiles_ms\": {");
            for (int p = 0; p < PERCENTILES.length; p++)
                j.append(p == 0 ? "" : ", ").append("\"p").append(PERCENTILES[p]).append("\": ").append(num(r.steadyPercentiles[p]));
            j.append("},\n")
                    .append("     \"minibench\": {\"model_load_time(ms)\": ").append(num(r.loadColdMs))
                    .append(", \"avg_inference_latency(ms)\": ").append(num(r.avgInferenceMs))
                    .append(", \"trimmean_inference_latency(ms)\": ").append(r.trimmeanInferenceMs == null ? "null" : num(r.trimmeanInferenceMs))
                    .append(", \"ram_pss_usage(mb)\": ").append(r.ramPssUsageMb == null ? "null" : r.ramPssUsageMb.toString())
                    .append(", \"load_status\": 0}");
            if (modelName != null) j.append(", \"model\": ").append(Json.quote(modelName));
            if (target != null) j.append(", \"target\": ").append(Json.quote(target));
            j.append('}');
        }
        j.append("\n  ]");
        if (modelName != null) j.append(",\n  \"model\": {\"name\": ").append(Json.quote(modelName)).append('}');
        if (target != null) j.append(",\n  \"target\": ").append(Json.quote(target));
        j.append(",\n  \"artifact_engine\": ").append(Json.quote(engine));
        if (iters > 0)
            j.append(",\n  \"settings\": {\"repeats\": 1, \"iters\": ").append(iters).append(", \"warmup\": ").append(warmup)
                    .append(", \"loads\": ").append(loads).append(", \"interleaved\": false, \"fresh_process_per_sample\": false}");
        if (command != null) j.append(",\n  \"command\": ").append(Json.quote(command));
        j.append("\n}\n");
        return j.toString();
    }

    // ------------------------------------------------------------------------------------------ statistics

    /** Median, p90 and samples, each rounded like the harness; samples must be non-empty and finite. */
    public static Stats stats(double[] samples, String what) {
        if (samples == null || samples.length == 0) throw new IllegalArgumentException(what + ": no samples");
        double[] rounded = new double[samples.length];
        for (int i = 0; i < samples.length; i++) rounded[i] = round4(finite(samples[i], what));
        return new Stats(round4(median(samples)), round4(percentile(samples, 90)), rounded);
    }

    /** Python's {@code statistics.median}: the middle value, or the mean of the two middle values. */
    public static double median(double[] values) {
        double[] s = sorted(values);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }

    /**
     * Linear-interpolated percentile, {@code q} in [0, 100]: the harness's {@code percentile}
     * (deploy/bench/plan.py) operation for operation, so every intermediate double rounds the same way.
     */
    public static double percentile(double[] values, double q) {
        if (!(q >= 0 && q <= 100)) throw new IllegalArgumentException("q must be in [0, 100]");
        double[] s = sorted(values);
        if (s.length == 1) return s[0];
        double pos = (s.length - 1) * q / 100.0;
        int lo = (int) pos;
        int hi = Math.min(lo + 1, s.length - 1);
        return s[lo] + (s[hi] - s[lo]) * (pos - lo);
    }

    /** Arithmetic mean (Minibench's {@code avg_inference_latency}). */
    public static double mean(double[] values) {
        if (values == null || values.length == 0) throw new IllegalArgumentException("no values");
        double sum = 0;
        for (double v : values) sum += v;
        return sum / values.length;
    }

    /**
     * Minibench's {@code trimmean_inference_latency}: the samples sorted, then the mean of indices
     * {@code [n/10, n*9/10)} in integer arithmetic ("only use 80% samples in the middle"). With n = 10 that drops
     * one sample at each end; with n = 15, one at the bottom and two at the top (13 = 15*9/10). Minibench reports
     * 0.0 when that window is empty (n < 2); this returns null instead, since 0 ms is not a latency.
     */
    public static Double trimmedMean(double[] values) {
        double[] s = sorted(values);
        int lo = s.length / 10, hi = s.length * 9 / 10;
        if (hi <= lo) return null;
        double sum = 0;
        for (int i = lo; i < hi; i++) sum += s[i];
        return sum / (hi - lo);
    }

    /**
     * Minibench's {@code ram_pss_usage(mb)}: {@code (Debug.getPss() after the timed calls - Debug.getPss() before
     * the load) / 1024}, both in KiB, in Java {@code long} division (truncated toward zero, so it can be 0 or
     * negative when the heap shrank).
     */
    public static long ramPssUsageMb(long pssIdleKb, long pssAfterKb) {
        if (pssIdleKb < 0 || pssAfterKb < 0) throw new IllegalArgumentException("PSS must be >= 0 KiB");
        return (pssAfterKb - pssIdleKb) / 1024;
    }

    /** Python's {@code round(v, 4)}: half-even on the exact binary value. */
    public static double round4(double v) {
        return new BigDecimal(finite(v, "value")).setScale(4, RoundingMode.HALF_EVEN).doubleValue();
    }

    /** {@code yyyy-MM-ddTHH:mm:ssZ} for a time in milliseconds since the epoch. */
    public static String utc(long epochMillis) {
        SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.ROOT);
        f.setTimeZone(TimeZone.getTimeZone("UTC"));
        return f.format(new Date(epochMillis));
    }

    private static double[] sorted(double[] values) {
        if (values == null || values.length == 0) throw new IllegalArgumentException("no values");
        double[] s = values.clone();
        Arrays.sort(s);
        return s;
    }

    private static String json(Stats s) {
        StringBuilder b = new StringBuilder("{\"median\": ").append(num(s.median)).append(", \"p90\": ").append(num(s.p90))
                .append(", \"samples\": [");
        for (int i = 0; i < s.samples.length; i++) b.append(i == 0 ? "" : ", ").append(num(s.samples[i]));
        return b.append("]}").toString();
    }

    /** A rounded figure as a JSON number (always with a fraction, like Python's float repr). */
    private static String num(double v) {
        return new BigDecimal(v).setScale(4, RoundingMode.HALF_EVEN).toPlainString();
    }

    private static double finite(double v, String what) {
        if (Double.isNaN(v) || Double.isInfinite(v)) throw new IllegalArgumentException(what + ": not a finite number: " + v);
        return v;
    }

    private static String nonEmpty(String s, String what) {
        if (s == null || s.isEmpty()) throw new IllegalArgumentException(what + " is empty");
        return s;
    }
}
