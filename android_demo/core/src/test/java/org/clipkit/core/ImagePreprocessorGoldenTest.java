package org.clipkit.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.GZIPInputStream;
import javax.imageio.ImageIO;
import org.junit.Test;

/** Preprocessed tensors against open_clip.transform.image_transform(is_train=False) + Pillow (golden/pixels.*). */
public class ImagePreprocessorGoldenTest {
    private static final double TOL = 1e-5;

    private static byte[] blob() throws Exception {
        try (InputStream in = new GZIPInputStream(TestData.stream("golden/pixels.bin.gz"))) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) b.write(buf, 0, n);
            return b.toByteArray();
        }
    }

    private static int[] argb(String name) throws Exception {
        try (InputStream in = TestData.stream("images/" + name)) {
            BufferedImage im = ImageIO.read(in);
            return im.getRGB(0, 0, im.getWidth(), im.getHeight(), null, 0, im.getWidth());
        }
    }

    @Test
    public void imageIoDecodesSameRgbAsPil() throws Exception {
        Map<String, Object> g = TestData.json("golden/pixels.json");
        byte[] blob = blob();
        for (Map.Entry<String, Object> e : Json.obj(g.get("sources"), "sources").entrySet()) {
            Map<String, Object> s = Json.obj(e.getValue(), "source");
            int w = (int) Json.integer(s.get("width"), "w"), h = (int) Json.integer(s.get("height"), "h");
            int off = (int) Json.integer(s.get("offset"), "off");
            int[] px = argb(e.getKey());
            assertEquals(w * h, px.length);
            for (int i = 0; i < w * h; i++) {
                int r = (px[i] >> 16) & 0xff, gg = (px[i] >> 8) & 0xff, b = px[i] & 0xff;
                if (r != (blob[off + 3 * i] & 0xff) || gg != (blob[off + 3 * i + 1] & 0xff) || b != (blob[off + 3 * i + 2] & 0xff))
                    fail(e.getKey() + ": ImageIO pixel " + i + " differs from PIL");
            }
        }
    }

    @Test
    public void allModesMatchOpenClipWithin1e5() throws Exception {
        Map<String, Object> g = TestData.json("golden/pixels.json");
        byte[] blob = blob();
        Map<String, Object> norms = Json.obj(g.get("normalizers"), "normalizers");
        Map<String, Double> worst = new TreeMap<>();
        int n = 0, exactBytes = 0, bytes = 0;
        StringBuilder failures = new StringBuilder();
        for (Object o : Json.arr(g.get("cases"), "cases")) {
            Map<String, Object> c = Json.obj(o, "case");
            String image = Json.str(c.get("image"), "image");
            List<Object> size = Json.arr(c.get("image_size"), "size");
            int h = (int) Json.integer(size.get(0), "h"), w = (int) Json.integer(size.get(1), "w");
            String mode = Json.str(c.get("resize_mode"), "mode"), interp = Json.str(c.get("interpolation"), "interp");
            int fill = (int) Json.integer(c.get("fill_color"), "fill");
            Map<String, Object> norm = Json.obj(norms.get(Json.str(c.get("normalizer"), "normalizer")), "norm");
            float[] mean = new float[3], std = new float[3];
            float[][] lut = new float[3][256];
            for (int ch = 0; ch < 3; ch++) {
                mean[ch] = (float) Json.num(Json.arr(norm.get("mean"), "mean").get(ch), "mean");
                std[ch] = (float) Json.num(Json.arr(norm.get("std"), "std").get(ch), "std");
                List<Object> l = Json.arr(Json.arr(norm.get("lut"), "lut").get(ch), "lut");
                for (int v = 0; v < 256; v++) lut[ch][v] = (float) Json.num(l.get(v), "lut");
            }
            ImagePreprocessor p = new ImagePreprocessor(h, w, mean, std, ImagePreprocessor.Interpolation.parse(interp),
                    ImagePreprocessor.ResizeMode.parse(mode), fill);
            Map<String, Object> src = Json.obj(Json.obj(g.get("sources"), "sources").get(image), "src");
            int sw = (int) Json.integer(src.get("width"), "w"), sh = (int) Json.integer(src.get("height"), "h");
            int[] px = argb(image);
            float[] out = p.process(px, sw, sh);
            byte[] u8 = p.transformToRgb(px, sw, sh).toHwc();
            int off = (int) Json.integer(c.get("offset"), "offset");
            assertEquals(3 * h * w, out.length);
            double maxDiff = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        int gi = off + (y * w + x) * 3 + ch;
                        float expected = lut[ch][blob[gi] & 0xff];
                        double d = Math.abs(expected - out[ch * h * w + y * w + x]);
                        maxDiff = Math.max(maxDiff, d);
                        bytes++;
                        if (u8[(y * w + x) * 3 + ch] == blob[gi]) exactBytes++;
                    }
            String k = mode + "/" + interp;
            worst.put(k, Math.max(worst.containsKey(k) ? worst.get(k) : 0.0, maxDiff));
            n++;
            if (maxDiff > TOL) failures.append(String.format("%n  %s %dx%d %s %s fill=%d: max abs diff %.3g",
                    image, h, w, mode, interp, fill, maxDiff));
        }
        System.out.println("[preprocess] cases: " + n + ", uint8 exact: " + exactBytes + "/" + bytes
                + ", max abs diff per mode: " + worst);
        assertTrue(n >= 60);
        if (failures.length() > 0) fail("pixels differ from open_clip:" + failures);
    }
}
