package org.clipkit.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.Random;
import org.junit.Test;

/** Behaviour of the tokenizer on edge and pathological inputs (must terminate, right shape). */
public class ClipTokenizerTest {

    private static void checkRow(ClipTokenizer t, int[] r) {
        assertEquals(t.contextLength(), r.length);
        assertEquals(t.sotTokenId(), r[0]);
        int eot = -1;
        for (int i = 1; i < r.length; i++) if (r[i] == t.eotTokenId()) { eot = i; break; }
        assertTrue("eot present", eot > 0);
        for (int i = eot + 1; i < r.length; i++) assertEquals("zero padding", 0, r[i]);
        for (int v : r) assertTrue(v >= 0 && v < t.vocabSize());
    }

    @Test
    public void emptyAndWhitespaceOnly() throws Exception {
        ClipTokenizer t = TestData.tokenizer(77);
        for (String s : new String[]{"", " ", "\n\t\r ", "\u3000\u00a0", "\u0000\u0001"}) {
            int[] r = t.tokenize(s);
            assertEquals(t.sotTokenId(), r[0]);
            assertEquals(t.eotTokenId(), r[1]);
            assertEquals(0, r[2]);
        }
        assertEquals(0, t.encode(null).size());
    }

    @Test
    public void truncationKeepsEotLast() throws Exception {
        ClipTokenizer t = TestData.tokenizer(32);
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 100; i++) b.append("word").append(i).append(' ');
        int[] r = t.tokenize(b.toString());
        checkRow(t, r);
        assertEquals(t.eotTokenId(), r[31]);
        assertTrue(r[30] != 0);
    }

    @Test
    public void rowsThroughEotForTowersOfDynamicLength() throws Exception {
        ClipTokenizer t = TestData.tokenizer(32);
        int[] full = t.tokenize("a photo of a dog.");
        long[] cut = t.tokenizeToLongs("a photo of a dog.", true);
        assertEquals(t.eotTokenId(), cut[cut.length - 1]);
        for (int i = 0; i < cut.length; i++) assertEquals(full[i], cut[i]);
        for (int i = cut.length; i < full.length; i++) assertEquals(0, full[i]); // only padding dropped
        assertEquals(32, t.tokenizeToLongs("a photo of a dog.", false).length);
        assertEquals(2, t.tokenizeToLongs("", true).length); // [sot, eot]
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 100; i++) b.append("word").append(i).append(' ');
        assertEquals(32, t.tokenizeToLongs(b.toString(), true).length); // a truncated prompt fills the context
    }

    @Test
    public void pathologicalInputsTerminate() throws Exception {
        ClipTokenizer t = TestData.tokenizer(77);
        StringBuilder sb = new StringBuilder();
        String[] pieces = {"a", "ab", "😀", "日本", "é", "&amp;", "&", "'", "'s", "<", "\u0301", "\ud83d", "x\u200b", "!?"};
        Random rng = new Random(7);
        for (int i = 0; i < 10000; i++) sb.append(pieces[rng.nextInt(pieces.length)]);
        String[] inputs = {
            repeat("a", 10000), repeat("ab", 5000), repeat("😀", 5000), repeat("&amp;", 3000),
            repeat("&#x26;", 2000), repeat("'", 10000), repeat("\u0301", 10000), repeat(" ", 10000),
            repeat("\ud83d", 1000), repeat("\udc00", 1000), repeat("<start_of_text>", 700), sb.toString(),
            repeat("\u200b", 10000), repeat("ﬃ", 5000), repeat("Ｗ", 10000), repeat("1", 10000),
        };
        for (String s : inputs) checkRow(t, t.tokenize(s));
        // long words go through the full BPE (no context shortcut inside one word)
        assertTrue(t.encode(repeat("x", 10000)).size() > 100);
    }

    @Test
    public void specialTokensInText() throws Exception {
        ClipTokenizer t = TestData.tokenizer(77);
        int[] r = t.tokenize("<start_of_text>");
        assertEquals(t.sotTokenId(), r[1]);
        assertEquals(t.eotTokenId(), r[2]);
    }

    @Test
    public void decodeRoundTrip() throws Exception {
        ClipTokenizer t = TestData.tokenizer(77);
        java.util.List<Integer> ids = t.encode("a photo of a cat, naïve 日本 😀");
        int[] a = new int[ids.size()];
        for (int i = 0; i < a.length; i++) a[i] = ids.get(i);
        assertEquals("a photo of a cat , naïve 日本 😀 ", t.decode(a));
    }

    @Test
    public void cleanModes() {
        assertEquals("hello world", TextCleaner.clean("  Hello \n World ", TextCleaner.Mode.LOWER));
        assertEquals("Hello World", TextCleaner.clean("  Hello \n World ", TextCleaner.Mode.WHITESPACE));
        assertEquals("hello world its", TextCleaner.clean("Hello, world_it's!", TextCleaner.Mode.CANONICALIZE));
        assertEquals("<b>", TextCleaner.htmlUnescape("&lt;b&gt;"));
        assertEquals("\u00ac that", TextCleaner.htmlUnescape("&not that"));
        assertEquals("this&not that", TextCleaner.fixText("this&not that"));
        assertEquals("PÉREZ", TextCleaner.fixText("P&EACUTE;REZ"));
    }

    @Test(expected = IllegalArgumentException.class)
    public void unknownCleanModeRejected() throws Exception {
        new ClipTokenizer(TestData.stream("bpe_simple_vocab_16e6.txt.gz"), 77, "nfkc");
    }

    static String repeat(String s, int n) {
        StringBuilder b = new StringBuilder(s.length() * n);
        for (int i = 0; i < n; i++) b.append(s);
        return b.toString();
    }
}
