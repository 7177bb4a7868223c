package org.clipkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.List;
import java.util.Map;
import org.junit.Test;

public class BenchReportTest {

    @Test
    public void statisticsMatchTheHarness() {
        // odd count: the middle value; p90 interpolates between the 4th and 5th of 5 (pos 3.6)
        BenchReport.Stats s = BenchReport.stats(new double[]{5, 1, 3, 2, 4}, "x");
        assertEquals(3.0, s.median, 0);
        assertEquals(4.6, s.p90, 0);
        assertArrayEquals(new double[]{5, 1, 3, 2, 4}, s.samples(), 0); // sample order kept
        // even count: mean of the two middle values; p90 at pos 2.7
        assertEquals(2.5, BenchReport.median(new double[]{4, 1, 3, 2}), 0);
        assertEquals(3.7, BenchReport.percentile(new double[]{4, 1, 3, 2}, 90), 1e-15);
        assertEquals(7.0, BenchReport.percentile(new double[]{7}, 90), 0);
        assertEquals(1.0, BenchReport.percentile(new double[]{3, 1, 2}, 0), 0);
        assertEquals(3.0, BenchReport.percentile(new double[]{3, 1, 2}, 100), 0);
    }

    @Test
    public void roundsLikePython() {
        // round(0.03125, 4) == 0.0312 and round(0.09375, 4) == 0.0938 in Python: half-even on exact ties
        assertEquals(0.0312, BenchReport.round4(0.03125), 0);
        assertEquals(0.0938, BenchReport.round4(0.09375), 0);
        // round(2.675, 4) == 2.675 and round(1.00005, 4) == 1.0001 (1.00005 is slightly above the tie in binary)
        assertEquals(2.675, BenchReport.round4(2.675), 0);
        assertEquals(1.0001, BenchReport.round4(1.00005), 0);
        assertEquals(-1.2346, BenchReport.round4(-1.23456), 0);
    }

    @Test
    public void rejectsBadInput() {
        Runnable[] bad = {
            () -> BenchReport.stats(new double[0], "x"),
            () -> BenchReport.stats(new double[]{1, Double.NaN}, "x"),
            () -> BenchReport.stats(new double[]{Double.POSITIVE_INFINITY}, "x"),
            () -> BenchReport.percentile(new double[]{1}, 101),
            () -> new BenchReport("2026-11-27 10:00:00", "d", "r", 1, "qnnpack"),
            () -> new BenchReport("2026-11-27T10:00:00Z", "", "r", 1, "qnnpack"),
            () -> new BenchReport.Result("image_encoder", "lite", "f.ptl", 1, "qnnpack", -1, new double[]{1}, 1, new double[]{1}, null, null),
            () -> new BenchReport.Result("image_encoder", "lite", "f.ptl", 1, "qnnpack", 1, new double[]{1}, Double.NaN, new double[]{1}, null, null),
            () -> new BenchReport.Result("image_encoder", "jit", "f.pt", 1, "qnnpack", 1, new double[]{1}, 1, new double[]{1}, null, null),
            () -> new BenchReport.Result("image_encoder", "pte", "f.pte", 1, "qnnpack", 1, new double[0], 1, new double[]{1}, null, null),
            () -> BenchReport.variant("torchscript"),
            () -> BenchReport.ramPssUsageMb(-1, 10),
            () -> BenchReport.trimmedMean(new double[0]),
            () -> BenchReport.mean(new double[0]),
            () -> new BenchReport("2026-11-27T10:00:00Z", "d", "r", 1, "qnnpack").settings(0, 5, 1),
        };
        for (int i = 0; i < bad.length; i++) {
            try {
                bad[i].run();
                fail("accepted bad input #" + i);
            } catch (IllegalArgumentException expected) {
                // ok
            }
        }
        try {
            new BenchReport("2026-11-27T10:00:00Z", "d", "r", 1, "qnnpack").toJson();
            fail("wrote a report without results");
        } catch (IllegalStateException expected) {
            // ok
        }
    }

    @Test
    public void writesTheV1Schema() {
        String json = BenchReportSample.sample().toJson();
        assertTrue(json.endsWith("}\n"));
        Map<String, Object> r = Json.obj(Json.parse(json), "report");
        assertEquals("clip-mobile-kit-bench", r.get("schema"));
        assertEquals(1L, r.get("schema_version"));
        assertEquals("2026-11-27T10:00:00Z", r.get("created_utc"));
        Map<String, Object> env = Json.obj(r.get("environment"), "environment");
        assertEquals("android", env.get("host"));
        assertEquals("Google Pixel \"7\" (Android 14, API 34, arm64-v8a) \u2013 \u00fcn\u00efcode", env.get("device"));
        assertEquals("pytorch_android_lite 2.1.0", env.get("torch"));
        assertEquals(2L, env.get("threads"));
        assertEquals("qnnpack", env.get("engine"));
        assertTrue(env.containsKey("omp_wait_policy"));
        assertNull(env.get("omp_wait_policy"));
        assertEquals(0, Json.arr(env.get("cpu_flags"), "cpu_flags").size());
        List<Object> results = Json.arr(r.get("results"), "results");
        assertEquals(2, results.size());
        Map<String, Object> img = Json.obj(results.get(0), "result");
        assertEquals("image_encoder", img.get("role"));
        assertEquals("lite", img.get("variant"));
        assertEquals("image_encoder.ptl", img.get("file"));
        assertEquals(123456L, img.get("size_bytes"));
        assertEquals(104857600L, img.get("peak_rss_bytes"));
        Map<String, Object> steady = Json.obj(img.get("steady_ms"), "steady_ms");
        // sorted: 11.25 11.25 11.5 12 12.125 12.5 13 19.75 -> median (12 + 12.125) / 2; p90 at pos 6.3
        assertEquals(12.0625, (Double) steady.get("median"), 0);
        assertEquals(13.0 + (19.75 - 13.0) * (7 * 90 / 100.0 - 6), (Double) steady.get("p90"), 1e-4);
        assertEquals(8, Json.arr(steady.get("samples"), "samples").size());
        Map<String, Object> load = Json.obj(img.get("load_ms"), "load_ms");
        assertEquals(40.0, (Double) load.get("median"), 0);
        assertEquals(25.125, (Double) img.get("first_ms"), 0);
        Map<String, Object> head = Json.obj(results.get(1), "result");
        assertTrue(head.containsKey("peak_rss_bytes"));
        assertNull(head.get("peak_rss_bytes"));
        assertEquals(0.0312, (Double) head.get("first_ms"), 0);
        assertEquals(0.0938, (Double) Json.obj(head.get("steady_ms"), "steady_ms").get("median"), 0);
        assertEquals("kit-tiny-clip", Json.obj(r.get("model"), "model").get("name"));
        assertEquals("android", r.get("target"));
        Map<String, Object> settings = Json.obj(r.get("settings"), "settings");
        assertEquals(1L, settings.get("repeats"));
        assertEquals(8L, settings.get("iters"));
    }

    @Test
    public void minibenchTrimmedMeanKeepsTheMiddleEightyPercent() {
        // n = 10: indices [1, 9) of the sorted samples, one dropped at each end
        double[] ten = {100, 1, 2, 3, 4, 5, 6, 7, 8, -50};
        assertEquals((1 + 2 + 3 + 4 + 5 + 6 + 7 + 8) / 8.0, BenchReport.trimmedMean(ten), 0);
        // n = 15: [15/10, 15*9/10) = [1, 13): one dropped at the bottom, two at the top (integer division)
        double[] fifteen = new double[15];
        for (int i = 0; i < 15; i++) fifteen[i] = 14 - i; // 14..0, unsorted input
        double sum = 0;
        for (int v = 1; v <= 12; v++) sum += v;
        assertEquals(sum / 12, BenchReport.trimmedMean(fifteen), 0);
        // n < 10: nothing dropped at the bottom, the top one(s) dropped by n*9/10 (n = 5 -> [0, 4))
        assertEquals(2.5, BenchReport.trimmedMean(new double[]{5, 4, 3, 2, 1}) - 0.0, 0);
        // n = 2 -> [0, 1): the smaller one; n = 1 -> empty window: null (Minibench writes 0.0)
        assertEquals(3.0, BenchReport.trimmedMean(new double[]{9, 3}), 0);
        assertNull(BenchReport.trimmedMean(new double[]{7}));
        assertEquals(3.0, BenchReport.mean(new double[]{1, 2, 6}), 0);
    }

    @Test
    public void minibenchPssIsIntegerMegabytesAboveIdle() {
        assertEquals(100L, BenchReport.ramPssUsageMb(50_000, 50_000 + 100 * 1024 + 1023));
        assertEquals(0L, BenchReport.ramPssUsageMb(50_000, 50_000 + 1023));
        assertEquals(-1L, BenchReport.ramPssUsageMb(50_000 + 1500, 50_000)); // -1.46: truncated toward zero, not floored
    }

    @Test
    public void writesColdWarmPercentilesAndMinibenchFields() {
        for (String format : new String[]{Runtimes.PTL, Runtimes.PTE}) {
            Map<String, Object> r = Json.obj(Json.parse(BenchReportSample.sample(format).toJson()), "report");
            Map<String, Object> env = Json.obj(r.get("environment"), "environment");
            assertEquals(format.equals("pte") ? "executorch-android 1.3.1" : "pytorch_android_lite 2.1.0", env.get("torch"));
            List<Object> results = Json.arr(r.get("results"), "results");
            Map<String, Object> img = Json.obj(results.get(0), "result");
            assertEquals(format.equals("pte") ? "pte" : "lite", img.get("variant"));
            assertEquals("image_encoder." + format, img.get("file"));
            // loads 41.5, 38.25, 40.0: the first is cold, the others warm
            assertEquals(41.5, (Double) img.get("load_cold_ms"), 0);
            Map<String, Object> warm = Json.obj(img.get("load_warm_ms"), "load_warm_ms");
            assertEquals((38.25 + 40.0) / 2, (Double) warm.get("median"), 0);
            assertEquals(2, Json.arr(warm.get("samples"), "samples").size());
            // steady sorted: 11.25 11.25 11.5 12 12.125 12.5 13 19.75
            Map<String, Object> pct = Json.obj(img.get("steady_percentiles_ms"), "steady_percentiles_ms");
            assertEquals(12.0625, (Double) pct.get("p50"), 0);
            assertEquals(BenchReport.round4(13.0 + (19.75 - 13.0) * (7 * 0.99 - 6)), (Double) pct.get("p99"), 0);
            Map<String, Object> mb = Json.obj(img.get("minibench"), "minibench");
            assertEquals(41.5, (Double) mb.get("model_load_time(ms)"), 0);
            assertEquals(BenchReport.round4((12.5 + 11.25 + 13.0 + 11.25 + 19.75 + 12.0 + 12.125 + 11.5) / 8),
                    (Double) mb.get("avg_inference_latency(ms)"), 0);
            // n = 8: [0, 7) of the sorted samples: the 19.75 outlier dropped, nothing at the bottom
            assertEquals(BenchReport.round4((11.25 + 11.25 + 11.5 + 12 + 12.125 + 12.5 + 13) / 7),
                    (Double) mb.get("trimmean_inference_latency(ms)"), 0);
            assertEquals(100L, mb.get("ram_pss_usage(mb)"));
            assertEquals(0L, mb.get("load_status"));
            Map<String, Object> head = Json.obj(results.get(1), "result");
            assertTrue(head.containsKey("load_warm_ms"));
            assertNull(head.get("load_warm_ms"));
            Map<String, Object> headMb = Json.obj(head.get("minibench"), "minibench");
            assertNull(headMb.get("trimmean_inference_latency(ms)"));
            assertNull(headMb.get("ram_pss_usage(mb)"));
        }
    }

    @Test
    public void utcFormat() {
        assertEquals("1970-01-01T00:00:00Z", BenchReport.utc(0));
        assertEquals("2026-11-27T10:00:00Z", BenchReport.utc(1795773600000L));
    }
}
