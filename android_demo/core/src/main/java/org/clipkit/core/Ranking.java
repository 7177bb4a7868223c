package org.clipkit.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/** Scores to answers: softmax, top-k, L2 normalisation, cosine search over an {@link EmbeddingIndex}. */
public final class Ranking {
    private Ranking() {}

    /** Numerically stable softmax (max subtracted, double accumulation). NaN inputs give NaN outputs. */
    public static float[] softmax(float[] logits) {
        float[] p = new float[logits.length];
        if (logits.length == 0) return p;
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) if (v > max) max = v;
        if (max == Double.NEGATIVE_INFINITY) { // all -inf: uniform
            Arrays.fill(p, 1f / logits.length);
            return p;
        }
        double sum = 0;
        double[] e = new double[logits.length];
        for (int i = 0; i < logits.length; i++) {
            e[i] = Math.exp(logits[i] - max);
            sum += e[i];
        }
        for (int i = 0; i < logits.length; i++) p[i] = (float) (e[i] / sum);
        return p;
    }

    /**
     * Indices of the k largest scores, best first. Ties keep the lower index first (stable);
     * NaN ranks below every number. k is clamped to [0, n].
     */
    public static int[] topK(final float[] scores, int k) {
        int n = scores.length;
        k = Math.max(0, Math.min(k, n));
        Integer[] idx = new Integer[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        Arrays.sort(idx, new Comparator<Integer>() { // TimSort: stable
            @Override
            public int compare(Integer a, Integer b) {
                float x = scores[a], y = scores[b];
                boolean nx = Float.isNaN(x), ny = Float.isNaN(y);
                if (nx || ny) return nx == ny ? 0 : (nx ? 1 : -1);
                return x > y ? -1 : (x < y ? 1 : 0); // -0.0 == 0.0 is a tie
            }
        });
        int[] out = new int[k];
        for (int i = 0; i < k; i++) out[i] = idx[i];
        return out;
    }

    /** x / ||x||2 (double accumulation); the zero vector stays zero. */
    public static float[] l2Normalize(float[] x) {
        double s = 0;
        for (float v : x) s += (double) v * v;
        float[] o = new float[x.length];
        if (s == 0) return o;
        double inv = 1.0 / Math.sqrt(s);
        for (int i = 0; i < x.length; i++) o[i] = (float) (x[i] * inv);
        return o;
    }

    public static float dot(float[] a, float[] b) {
        if (a.length != b.length) throw new IllegalArgumentException("dimension mismatch " + a.length + " vs " + b.length);
        double s = 0;
        for (int i = 0; i < a.length; i++) s += (double) a[i] * b[i];
        return (float) s;
    }

    public static float cosine(float[] a, float[] b) {
        return dot(l2Normalize(a), l2Normalize(b));
    }

    /** One search result. */
    public static final class Hit {
        public final int index;
        public final String key;
        public final float score;

        public Hit(int index, String key, float score) {
            this.index = index;
            this.key = key;
            this.score = score;
        }

        @Override
        public String toString() {
            return key + "=" + score;
        }
    }

    /** Cosine similarity of {@code query} (any scale) against every stored (normalised) vector; top k. */
    public static List<Hit> search(float[] query, EmbeddingIndex index, int k) {
        if (query.length != index.dim())
            throw new IllegalArgumentException("query dim " + query.length + " != index dim " + index.dim());
        float[] q = l2Normalize(query);
        float[] scores = new float[index.size()];
        for (int i = 0; i < scores.length; i++) scores[i] = dot(q, index.vector(i));
        List<Hit> hits = new ArrayList<>();
        for (int i : topK(scores, k)) hits.add(new Hit(i, index.key(i), scores[i]));
        return hits;
    }
}
