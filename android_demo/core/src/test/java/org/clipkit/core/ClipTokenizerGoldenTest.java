package org.clipkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Token ids against open_clip.get_tokenizer('ViT-B-32') (golden/tokens.json). */
public class ClipTokenizerGoldenTest {

    private static int[] row(List<Object> ids, int ctx) {
        int[] r = new int[ctx];
        for (int i = 0; i < ids.size(); i++) r[i] = (int) Json.integer(ids.get(i), "id");
        return r;
    }

    @Test
    public void allParityStringsMatchOpenClipAtContext77And32() throws Exception {
        Map<String, Object> g = TestData.json("golden/tokens.json");
        ClipTokenizer t77 = TestData.tokenizer(77), t32 = TestData.tokenizer(32);
        assertEquals(Json.integer(g.get("sot"), "sot"), t77.sotTokenId());
        assertEquals(Json.integer(g.get("eot"), "eot"), t77.eotTokenId());
        assertEquals(49408, t77.vocabSize());
        int n = 0, bad = 0;
        StringBuilder report = new StringBuilder();
        for (Object o : Json.arr(g.get("cases"), "cases")) {
            Map<String, Object> c = Json.obj(o, "case");
            if (!(Boolean) c.get("parity")) continue;
            String text = Json.str(c.get("text"), "text");
            n++;
            int[] e77 = row(Json.arr(c.get("ids77"), "ids77"), 77), e32 = row(Json.arr(c.get("ids32"), "ids32"), 32);
            int[] a77 = t77.tokenize(text), a32 = t32.tokenize(text);
            if (!Arrays.equals(e77, a77) || !Arrays.equals(e32, a32)) {
                bad++;
                if (bad <= 15) report.append("\n  '").append(TestData.show(text)).append("'\n    expected ")
                        .append(Arrays.toString(e77)).append("\n    actual   ").append(Arrays.toString(a77));
            }
        }
        System.out.println("[tokenizer] parity strings: " + n + ", mismatches: " + bad);
        assertTrue("expected >= 300 parity strings, got " + n, n >= 300);
        if (bad > 0) fail(bad + " of " + n + " strings differ from open_clip:" + report);
    }

    /**
     * Strings open_clip repairs with ftfy's fix_encoding (mojibake, {@code "parity": false} in the golden file, which
     * predates the port): the core now equals open_clip on them too, and no longer equals open_clip without it.
     */
    @Test
    public void mojibakeStringsMatchOpenClipWithFixEncoding() throws Exception {
        Map<String, Object> g = TestData.json("golden/tokens.json");
        ClipTokenizer t77 = TestData.tokenizer(77);
        int n = 0;
        for (Object o : Json.arr(g.get("cases"), "cases")) {
            Map<String, Object> c = Json.obj(o, "case");
            if ((Boolean) c.get("parity")) continue;
            n++;
            String text = Json.str(c.get("text"), "text");
            int[] noenc = row(Json.arr(c.get("ids77_no_fix_encoding"), "noenc"), 77);
            int[] full = row(Json.arr(c.get("ids77"), "ids77"), 77);
            int[] a = t77.tokenize(text);
            assertArrayEquals("with fix_encoding: '" + TestData.show(text) + "'", full, a);
            assertFalse(Arrays.equals(noenc, a));
        }
        System.out.println("[tokenizer] mojibake strings repaired like open_clip: " + n);
        assertTrue(n > 0);
    }
}
