package org.clipkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.List;
import org.junit.Test;

public class RankingTest {

    @Test
    public void softmaxSumsToOneAndIsShiftInvariant() {
        float[] p = Ranking.softmax(new float[]{1f, 2f, 3f});
        assertEquals(1.0, p[0] + p[1] + p[2], 1e-6);
        assertEquals(0.09003057f, p[0], 1e-7);
        assertEquals(0.66524096f, p[2], 1e-7);
        assertArrayEquals(p, Ranking.softmax(new float[]{1001f, 1002f, 1003f}), 1e-7f);
        float[] big = Ranking.softmax(new float[]{1000f, -1000f});
        assertEquals(1f, big[0], 0f);
        assertEquals(0f, big[1], 0f);
        assertEquals(0, Ranking.softmax(new float[0]).length);
        float[] inf = Ranking.softmax(new float[]{Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY});
        assertEquals(0.5f, inf[0], 0f);
    }

    @Test
    public void topKStableOnTiesAndNaNLast() {
        assertArrayEquals(new int[]{1, 3, 0}, Ranking.topK(new float[]{0.5f, 0.9f, 0.1f, 0.9f}, 3));
        assertArrayEquals(new int[]{0, 1, 2, 3}, Ranking.topK(new float[]{1f, 1f, 1f, 1f}, 10));
        assertArrayEquals(new int[]{2, 0, 1}, Ranking.topK(new float[]{0f, Float.NaN, 3f}, 3));
        assertArrayEquals(new int[]{0, 1}, Ranking.topK(new float[]{-0f, 0f}, 2));
        assertEquals(0, Ranking.topK(new float[]{1f}, 0).length);
        assertEquals(0, Ranking.topK(new float[]{1f}, -3).length);
    }

    @Test
    public void l2NormalizeAndCosine() {
        float[] n = Ranking.l2Normalize(new float[]{3f, 4f});
        assertArrayEquals(new float[]{0.6f, 0.8f}, n, 1e-7f);
        assertArrayEquals(new float[]{0f, 0f}, Ranking.l2Normalize(new float[]{0f, 0f}), 0f);
        assertEquals(1f, Ranking.cosine(new float[]{1f, 2f}, new float[]{2f, 4f}), 1e-6f);
        assertEquals(-1f, Ranking.cosine(new float[]{1f, 0f}, new float[]{-5f, 0f}), 1e-6f);
        assertEquals(0f, Ranking.cosine(new float[]{1f, 0f}, new float[]{0f, 3f}), 1e-6f);
    }

    @Test
    public void searchRanksByCosine() {
        EmbeddingIndex idx = new EmbeddingIndex(3, "model-a");
        idx.put("x", new float[]{10f, 0f, 0f});
        idx.put("y", new float[]{0f, 1f, 0f});
        idx.put("xy", new float[]{1f, 1f, 0f});
        idx.put("y2", new float[]{0f, 7f, 0f}); // ties with y: insertion order kept
        List<Ranking.Hit> hits = Ranking.search(new float[]{0f, 2f, 0.0f}, idx, 3);
        assertEquals("y", hits.get(0).key);
        assertEquals("y2", hits.get(1).key);
        assertEquals("xy", hits.get(2).key);
        assertEquals(1f, hits.get(0).score, 1e-6f);
        assertEquals((float) Math.sqrt(0.5), hits.get(2).score, 1e-6f);
        try {
            Ranking.search(new float[]{1f, 2f}, idx, 1);
            fail();
        } catch (IllegalArgumentException expected) {
            // ok
        }
    }

    @Test
    public void indexRoundTripAndCorruption() throws Exception {
        EmbeddingIndex idx = new EmbeddingIndex(4, "sha256:abc");
        idx.put("content://media/external/images/media/1@1700000000", new float[]{1f, 2f, 3f, 4f});
        idx.put("ключ 😀", new float[]{-1f, 0f, 0f, 0f});
        idx.put("content://media/external/images/media/1@1700000000", new float[]{0f, 0f, 0f, 2f}); // replace
        assertEquals(2, idx.size());
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        idx.write(b);
        byte[] data = b.toByteArray();
        assertEquals('C', data[0]);
        assertEquals(4 * 5 + 10 + (4 + 50 + 16) + (4 + "ключ 😀".getBytes("UTF-8").length + 16) + 4, data.length);
        EmbeddingIndex r = EmbeddingIndex.read(new ByteArrayInputStream(data));
        assertEquals(4, r.dim());
        assertEquals("sha256:abc", r.modelId());
        assertEquals(2, r.size());
        assertEquals("ключ 😀", r.key(1));
        assertArrayEquals(new float[]{0f, 0f, 0f, 1f}, r.vector(0), 0f);
        assertTrue(r.contains("ключ 😀"));
        EmbeddingIndex empty = new EmbeddingIndex(8, null);
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        empty.write(e);
        assertEquals(0, EmbeddingIndex.read(new ByteArrayInputStream(e.toByteArray())).size());
        for (int pos : new int[]{0, 5, 20, data.length - 1}) {
            byte[] c = data.clone();
            c[pos] ^= 0x40;
            try {
                EmbeddingIndex.read(new ByteArrayInputStream(c));
                fail("corruption at " + pos + " not detected");
            } catch (IOException expected) {
                // ok
            }
        }
        try {
            EmbeddingIndex.read(new ByteArrayInputStream(java.util.Arrays.copyOf(data, data.length - 7)));
            fail("truncation not detected");
        } catch (IOException expected) {
            // ok
        }
    }
}
