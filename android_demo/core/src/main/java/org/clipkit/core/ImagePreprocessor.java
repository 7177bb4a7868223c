package org.clipkit.core;

/**
 * open_clip's eval image transform ({@code open_clip.transform.image_transform(..., is_train=False)})
 * on 8-bit RGB pixels, bit-exact with torchvision + Pillow 13 for the resize/crop/pad steps, then
 * ToTensor + Normalize in float32 (docs/formats.md "Preprocessing").
 *
 * <p>Per {@code resize_mode} (target {@code image_size = [h, w]}):
 * <ul>
 * <li>{@code shortest}, square target: torchvision {@code Resize(S)} (shorter side = S, longer =
 *     {@code int(S * long / short)}), then {@code CenterCrop(S)}. Non-square target: open_clip's
 *     {@code ResizeKeepRatio(image_size)} (ratio = min(h/th, w/tw), size = {@code round(x / ratio)};
 *     note open_clip passes no interpolation there, so it is always <b>bicubic</b>), then
 *     {@code CenterCrop}.</li>
 * <li>{@code longest}: {@code ResizeKeepRatio(longest=1)} with the configured interpolation, then
 *     {@code CenterCropOrPad(fill=fill_color)}.</li>
 * <li>{@code squash}: {@code Resize((h, w))}.</li>
 * </ul>
 * Crop offsets use Python's {@code int(round(x / 2.0))} (round half to even); pads are
 * {@code (d // 2, (d + 1) // 2)}.
 *
 * <p>Resampling ports Pillow's {@code libImaging/Resample.c} for 8-bit images: separable convolution,
 * filter support scaled by the down-scale factor (antialias), bicubic a = -0.5 or bilinear (triangle),
 * coefficients normalised then quantised to 22 fractional bits ({@code PRECISION_BITS = 32 - 8 - 2}),
 * horizontal pass first unless the height shrinks by more than twice as many pixels as the width
 * (then vertical first; Pillow 13), result clipped to uint8 after each pass; a pass is skipped when
 * that axis keeps its size. Alpha is ignored (docs: {@code convert("RGB")} first, no premultiplication).
 *
 * <p>Output: {@code float[3 * h * w]}, CHW, {@code (v / 255f - mean[c]) / std[c]} in float32.
 */
public final class ImagePreprocessor {
    public enum Interpolation { BICUBIC, BILINEAR;
        public static Interpolation parse(String s) {
            if ("bicubic".equals(s)) return BICUBIC;
            if ("bilinear".equals(s)) return BILINEAR;
            // open_clip: 'random' is allowed and means bicubic at inference
            if ("random".equals(s)) return BICUBIC;
            throw new IllegalArgumentException("unsupported interpolation '" + s + "' (bicubic, bilinear)");
        }
    }

    public enum ResizeMode { SHORTEST, LONGEST, SQUASH;
        public static ResizeMode parse(String s) {
            if ("shortest".equals(s)) return SHORTEST;
            if ("longest".equals(s)) return LONGEST;
            if ("squash".equals(s)) return SQUASH;
            throw new IllegalArgumentException("unsupported resize_mode '" + s + "' (shortest, longest, squash)");
        }
    }

    private final int outH, outW;
    private final float[] mean, std;
    private final Interpolation interpolation;
    private final ResizeMode mode;
    private final int fill;

    public ImagePreprocessor(int height, int width, float[] mean, float[] std,
                             Interpolation interpolation, ResizeMode mode, int fillColor) {
        if (height <= 0 || width <= 0) throw new IllegalArgumentException("bad image_size");
        if (mean.length != 3 || std.length != 3) throw new IllegalArgumentException("mean/std need 3 values");
        this.outH = height;
        this.outW = width;
        this.mean = mean.clone();
        this.std = std.clone();
        this.interpolation = interpolation;
        this.mode = mode;
        this.fill = Math.max(0, Math.min(255, fillColor));
    }

    /** From the manifest's {@code preprocess} block. */
    public ImagePreprocessor(Manifest.Preprocess p) {
        this(p.imageHeight, p.imageWidth, p.mean, p.std, Interpolation.parse(p.interpolation),
                ResizeMode.parse(p.resizeMode), p.fillColor);
    }

    public int outputHeight() { return outH; }
    public int outputWidth() { return outW; }

    /** Packed ARGB pixels (Android {@code Bitmap.getPixels}, {@code BufferedImage.getRGB}) -> CHW floats. */
    public float[] process(int[] argb, int width, int height) {
        return normalize(transformToRgb(argb, width, height));
    }

    /** The uint8 image right before ToTensor: {@code Rgb} of size image_size. */
    public Rgb transformToRgb(int[] argb, int width, int height) {
        if (width <= 0 || height <= 0 || argb.length < width * height)
            throw new IllegalArgumentException("bad pixel buffer " + width + "x" + height);
        Rgb img = Rgb.fromArgb(argb, width, height);
        switch (mode) {
            case SQUASH:
                return resize(img, outW, outH, interpolation);
            case LONGEST: {
                int[] s = keepRatioSize(img.height, img.width, outH, outW, 1.0);
                img = resize(img, s[1], s[0], interpolation);
                return centerCropOrPad(img, outH, outW, fill);
            }
            default: {
                if (outH == outW) {
                    int S = outH, w = img.width, h = img.height;
                    int shortSide = Math.min(w, h), longSide = Math.max(w, h);
                    int newLong = (int) ((double) ((long) S * longSide) / shortSide);
                    int nw = w <= h ? S : newLong, nh = w <= h ? newLong : S;
                    img = resize(img, nw, nh, interpolation);
                } else {
                    int[] s = keepRatioSize(img.height, img.width, outH, outW, 0.0);
                    img = resize(img, s[1], s[0], Interpolation.BICUBIC);
                }
                return centerCropOrPad(img, outH, outW, 0);
            }
        }
    }

    /** ToTensor + Normalize: CHW float32. */
    public float[] normalize(Rgb img) {
        int n = img.width * img.height;
        float[] out = new float[3 * n];
        float[][] lut = new float[3][256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++) lut[c][v] = ((float) v / 255f - mean[c]) / std[c];
        for (int c = 0; c < 3; c++) {
            byte[] plane = img.planes[c];
            int base = c * n;
            for (int i = 0; i < n; i++) out[base + i] = lut[c][plane[i] & 0xff];
        }
        return out;
    }

    /** open_clip {@code ResizeKeepRatio.get_params} without randomness: returns {h, w}. */
    static int[] keepRatioSize(int h, int w, int th, int tw, double longest) {
        double rh = (double) h / th, rw = (double) w / tw;
        double ratio = Math.max(rh, rw) * longest + Math.min(rh, rw) * (1.0 - longest);
        return new int[]{(int) Math.rint(h * 1.0 / ratio), (int) Math.rint(w * 1.0 / ratio)};
    }

    /** torchvision center_crop / open_clip center_crop_or_pad. */
    static Rgb centerCropOrPad(Rgb img, int ch, int cw, int fill) {
        if (cw > img.width || ch > img.height) {
            int l = cw > img.width ? (cw - img.width) / 2 : 0;
            int t = ch > img.height ? (ch - img.height) / 2 : 0;
            int r = cw > img.width ? (cw - img.width + 1) / 2 : 0;
            int b = ch > img.height ? (ch - img.height + 1) / 2 : 0;
            img = img.pad(l, t, r, b, fill);
            if (img.width == cw && img.height == ch) return img;
        }
        int top = (int) Math.rint((img.height - ch) / 2.0);
        int left = (int) Math.rint((img.width - cw) / 2.0);
        return img.crop(left, top, cw, ch);
    }

    // ------------------------------------------------------------------------------- Pillow resample

    private static final int PRECISION_BITS = 32 - 8 - 2;

    /**
     * PIL {@code Image.resize((w, h), BICUBIC|BILINEAR)} on an RGB image (no reducing_gap), Pillow 13
     * {@code ImagingResampleInner}: horizontal pass first, except when the height shrinks by more than
     * twice as many pixels as the width does ({@code (inH - h) > 0 && (inH - h) > (inW - w) * 2}),
     * then vertical first. A pass is skipped when its axis keeps its size.
     */
    public static Rgb resize(Rgb in, int w, int h, Interpolation f) {
        if (w <= 0 || h <= 0) throw new IllegalArgumentException("resize to " + w + "x" + h);
        if (w == in.width && h == in.height) return in;
        double support = f == Interpolation.BICUBIC ? 2.0 : 1.0;
        boolean needH = w != in.width, needV = h != in.height;
        boolean horizontalFirst = !((in.height - h) > 0 && (in.height - h) > (in.width - w) * 2);
        Coeffs vert = needV || horizontalFirst ? Coeffs.compute(in.height, 0f, (float) in.height, h, support, f) : null;
        Coeffs hor = needH ? Coeffs.compute(in.width, 0f, (float) in.width, w, support, f) : null;
        if (horizontalFirst) {
            Rgb cur = in;
            if (needH) {
                int y0 = vert.bounds[0];
                int y1 = vert.bounds[(h - 1) * 2] + vert.bounds[(h - 1) * 2 + 1];
                for (int i = 0; i < h; i++) vert.bounds[i * 2] -= y0;
                cur = horizontalPass(cur, hor, w, y0, y1 - y0);
            }
            if (needV) cur = verticalPass(cur, vert, h);
            return cur;
        }
        Rgb cur = in;
        if (needV) cur = verticalPass(cur, vert, h);
        if (needH) cur = horizontalPass(cur, hor, w, 0, cur.height);
        return cur;
    }

    private static Rgb horizontalPass(Rgb src, Coeffs hor, int w, int rowOffset, int rows) {
        Rgb out = new Rgb(w, rows);
        for (int c = 0; c < 3; c++) {
            byte[] s = src.planes[c], d = out.planes[c];
            for (int yy = 0; yy < rows; yy++) {
                int rowIn = (yy + rowOffset) * src.width, rowOut = yy * w;
                for (int xx = 0; xx < w; xx++) {
                    int xmin = hor.bounds[xx * 2], xmax = hor.bounds[xx * 2 + 1], k0 = xx * hor.ksize;
                    int ss = 1 << (PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++) ss += (s[rowIn + x + xmin] & 0xff) * hor.k[k0 + x];
                    d[rowOut + xx] = clip8(ss);
                }
            }
        }
        return out;
    }

    private static Rgb verticalPass(Rgb src, Coeffs vert, int h) {
        Rgb out = new Rgb(src.width, h);
        int w = src.width;
        for (int c = 0; c < 3; c++) {
            byte[] s = src.planes[c], d = out.planes[c];
            for (int yy = 0; yy < h; yy++) {
                int ymin = vert.bounds[yy * 2], ymax = vert.bounds[yy * 2 + 1], k0 = yy * vert.ksize;
                for (int xx = 0; xx < w; xx++) {
                    int ss = 1 << (PRECISION_BITS - 1);
                    for (int y = 0; y < ymax; y++) ss += (s[(y + ymin) * w + xx] & 0xff) * vert.k[k0 + y];
                    d[yy * w + xx] = clip8(ss);
                }
            }
        }
        return out;
    }

    private static byte clip8(int ss) {
        int v = ss >> PRECISION_BITS;
        return (byte) (v < 0 ? 0 : (v > 255 ? 255 : v));
    }

    private static double filter(Interpolation f, double x) {
        if (x < 0.0) x = -x;
        if (f == Interpolation.BILINEAR) return x < 1.0 ? 1.0 - x : 0.0;
        final double a = -0.5;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /** Pillow {@code precompute_coeffs} + {@code normalize_coeffs_8bpc}. */
    private static final class Coeffs {
        int ksize;
        int[] bounds;
        int[] k;

        static Coeffs compute(int inSize, float in0, float in1, int outSize, double baseSupport, Interpolation f) {
            double scale = (double) (in1 - in0) / outSize;
            double filterscale = Math.max(scale, 1.0);
            double support = baseSupport * filterscale;
            int ksize = (int) Math.ceil(support) * 2 + 1;
            double[] kk = new double[outSize * ksize];
            int[] bounds = new int[outSize * 2];
            for (int xx = 0; xx < outSize; xx++) {
                double center = in0 + (xx + 0.5) * scale;
                double ww = 0.0, ss = 1.0 / filterscale;
                int xmin = (int) (center - support + 0.5);
                if (xmin < 0) xmin = 0;
                int xmax = (int) (center + support + 0.5);
                if (xmax > inSize) xmax = inSize;
                xmax -= xmin;
                int k0 = xx * ksize;
                for (int x = 0; x < xmax; x++) {
                    double w = filter(f, (x + xmin - center + 0.5) * ss);
                    kk[k0 + x] = w;
                    ww += w;
                }
                for (int x = 0; x < xmax; x++) if (ww != 0.0) kk[k0 + x] /= ww;
                bounds[xx * 2] = xmin;
                bounds[xx * 2 + 1] = xmax;
            }
            Coeffs c = new Coeffs();
            c.ksize = ksize;
            c.bounds = bounds;
            c.k = new int[kk.length];
            for (int i = 0; i < kk.length; i++) {
                c.k[i] = kk[i] < 0 ? (int) (-0.5 + kk[i] * (1 << PRECISION_BITS))
                        : (int) (0.5 + kk[i] * (1 << PRECISION_BITS));
            }
            return c;
        }
    }

    /** An 8-bit RGB image, one byte plane per channel. */
    public static final class Rgb {
        public final int width, height;
        public final byte[][] planes;

        public Rgb(int width, int height) {
            this.width = width;
            this.height = height;
            this.planes = new byte[3][width * height];
        }

        public static Rgb fromArgb(int[] argb, int width, int height) {
            Rgb r = new Rgb(width, height);
            for (int i = 0; i < width * height; i++) {
                int p = argb[i];
                r.planes[0][i] = (byte) (p >> 16);
                r.planes[1][i] = (byte) (p >> 8);
                r.planes[2][i] = (byte) p;
            }
            return r;
        }

        /** Interleaved HWC bytes (R, G, B). */
        public byte[] toHwc() {
            byte[] o = new byte[width * height * 3];
            for (int i = 0; i < width * height; i++)
                for (int c = 0; c < 3; c++) o[i * 3 + c] = planes[c][i];
            return o;
        }

        Rgb copy() {
            Rgb r = new Rgb(width, height);
            for (int c = 0; c < 3; c++) System.arraycopy(planes[c], 0, r.planes[c], 0, planes[c].length);
            return r;
        }

        Rgb crop(int left, int top, int w, int h) {
            // PIL crop: outside pixels are zero (does not happen for centre crops after padding)
            Rgb r = new Rgb(w, h);
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++) {
                        int sx = x + left, sy = y + top;
                        if (sx >= 0 && sy >= 0 && sx < width && sy < height)
                            r.planes[c][y * w + x] = planes[c][sy * width + sx];
                    }
            return r;
        }

        Rgb pad(int l, int t, int rr, int b, int fill) {
            Rgb r = new Rgb(width + l + rr, height + t + b);
            for (int c = 0; c < 3; c++) {
                java.util.Arrays.fill(r.planes[c], (byte) fill);
                for (int y = 0; y < height; y++)
                    System.arraycopy(planes[c], y * width, r.planes[c], (y + t) * r.width + l, width);
            }
            return r;
        }
    }
}
