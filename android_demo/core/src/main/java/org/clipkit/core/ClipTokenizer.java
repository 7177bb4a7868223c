package org.clipkit.core;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.GZIPInputStream;

/**
 * Port of open_clip's {@code SimpleTokenizer} (open_clip 3.3, {@code tokenizer.py}): byte-level BPE over
 * {@code bpe_simple_vocab_16e6.txt.gz}, {@code <start_of_text>}/{@code <end_of_text>}, truncation to the
 * context length with the end token kept in the last position, zero padding.
 *
 * <p>Text clean-up is {@link TextCleaner} (see there for the one gap to ftfy: mojibake repair).
 * Pre-tokenisation regex (open_clip, with IGNORECASE):
 * {@code <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+}.
 * One quirk of the {@code regex} module is reproduced: under IGNORECASE, U+0345 COMBINING GREEK
 * YPOGEGRAMMENI (category Mn, but its case partner U+0399 is a letter) is excluded by the negated
 * class and not matched by {@code [\p{L}]}, so open_clip silently drops it; so does this port
 * (checked exhaustively over all code points against regex 2026.11.19: it is the only such one).
 *
 * <p>One quirk of the {@code regex} module is reproduced: under IGNORECASE, U+0345 COMBINING GREEK
 * YPOGEGRAMMENI (category Mn, but its case partner U+0399 is a letter) is excluded by the negated
 * class and not matched by {@code [\p{L}]}, so open_clip silently drops it; so does this port
 * (checked over all code points against regex 2026.11.19: the only such code point).
 *
 * <p>Bounded work: the BPE merge loop shortens the word every round, so it ends after at most
 * word-length rounds; encoding stops as soon as the context is full (later tokens are discarded
 * anyway, which yields identical output); the word cache is an LRU of {@value #CACHE_SIZE} entries.
 * Thread-safe.
 */
public final class ClipTokenizer {
    public static final String SOT = "<start_of_text>";
    public static final String EOT = "<end_of_text>";
    static final int CACHE_SIZE = 10_000;
    private static final int N_MERGES = 49152 - 256 - 2;

    private static final Pattern PAT = Pattern.compile(
            "<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\p{IsWhite_Space}\\p{L}\\p{N}\\u0345]+",
            Pattern.CASE_INSENSITIVE | Pattern.UNICODE_CASE);

    private final Map<String, Integer> encoder;
    private final String[] decoder;
    private final Map<Long, int[]> merges; // (left id, right id) -> {rank, merged id}
    private final int[] byteId = new int[256];
    private final int[] byteEndId = new int[256];
    private final char[] byteToChar = new char[256];
    private final int sotId;
    private final int eotId;
    private final int contextLength;
    private final TextCleaner.Mode clean;
    private final Map<String, int[]> cache;

    /**
     * @param vocabGz       stream of {@code bpe_simple_vocab_16e6.txt.gz} (closed by this call)
     * @param contextLength tokens per row (e.g. 77; the manifest's {@code tokenizer.context_length})
     * @param clean         open_clip clean mode: {@code lower} (default), {@code whitespace}, {@code canonicalize}
     */
    public ClipTokenizer(InputStream vocabGz, int contextLength, String clean) throws IOException {
        if (contextLength < 2) throw new IllegalArgumentException("context_length must be >= 2");
        this.contextLength = contextLength;
        this.clean = TextCleaner.Mode.parse(clean == null ? "lower" : clean);

        // bytes_to_unicode
        List<Integer> bs = new ArrayList<>();
        for (int b = '!'; b <= '~'; b++) bs.add(b);
        for (int b = 0xA1; b <= 0xAC; b++) bs.add(b);
        for (int b = 0xAE; b <= 0xFF; b++) bs.add(b);
        List<Integer> cs = new ArrayList<>(bs);
        int extra = 0;
        for (int b = 0; b < 256; b++) {
            if (!bs.contains(b)) {
                bs.add(b);
                cs.add(256 + extra++);
            }
        }
        List<String> vocab = new ArrayList<>(49408);
        for (int i = 0; i < 256; i++) {
            byteToChar[bs.get(i)] = (char) (int) cs.get(i);
            vocab.add(String.valueOf((char) (int) cs.get(i)));
        }
        for (int i = 0; i < 256; i++) vocab.add(vocab.get(i) + "</w>");

        List<String[]> mergeList = new ArrayList<>(N_MERGES);
        try (BufferedReader r = new BufferedReader(new InputStreamReader(new GZIPInputStream(vocabGz),
                StandardCharsets.UTF_8))) {
            String line;
            int lineNo = 0;
            // python: read().split('\n')[1 : 49152-256-2+1]
            while ((line = r.readLine()) != null && mergeList.size() < N_MERGES) {
                if (lineNo++ == 0) continue;
                String[] parts = line.trim().split("\\s+");
                if (parts.length != 2) throw new IOException("bad merge line " + lineNo + ": '" + line + "'");
                mergeList.add(parts);
            }
        }
        if (mergeList.size() != N_MERGES) throw new IOException("vocab has " + mergeList.size() + " merges, expected " + N_MERGES);
        for (String[] m : mergeList) vocab.add(m[0] + m[1]);
        vocab.add(SOT);
        vocab.add(EOT);

        encoder = new HashMap<>(vocab.size() * 2);
        for (int i = 0; i < vocab.size(); i++) encoder.put(vocab.get(i), i); // later duplicates win, like dict(zip())
        decoder = new String[vocab.size()];
        for (Map.Entry<String, Integer> e : encoder.entrySet()) decoder[e.getValue()] = e.getKey();
        for (int b = 0; b < 256; b++) {
            String c = String.valueOf(byteToChar[b]);
            byteId[b] = encoder.get(c);
            byteEndId[b] = encoder.get(c + "</w>");
        }
        merges = new HashMap<>(N_MERGES * 2);
        for (int rank = 0; rank < mergeList.size(); rank++) {
            String[] m = mergeList.get(rank);
            Integer a = encoder.get(m[0]), b = encoder.get(m[1]), ab = encoder.get(m[0] + m[1]);
            if (a == null || b == null || ab == null) continue; // can never apply
            merges.put(key(a, b), new int[]{rank, ab}); // later duplicates win, like dict(zip())
        }
        sotId = encoder.get(SOT);
        eotId = encoder.get(EOT);
        cache = new LinkedHashMap<String, int[]>(256, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, int[]> eldest) {
                return size() > CACHE_SIZE;
            }
        };
    }

    private static long key(int a, int b) {
        return ((long) a << 32) | (b & 0xffffffffL);
    }

    public int sotTokenId() { return sotId; }
    public int eotTokenId() { return eotId; }
    public int vocabSize() { return decoder.length; }
    public int contextLength() { return contextLength; }

    /** Token row for one text: {@code [sot, ..., eot, 0, ...]} of length context_length. */
    public int[] tokenize(String text) {
        return tokenize(text, contextLength);
    }

    public int[] tokenize(String text, int ctx) {
        if (ctx < 2) throw new IllegalArgumentException("context length must be >= 2");
        // only the first ctx-2 BPE tokens survive; knowing there are >= ctx-1 is enough to decide truncation
        List<Integer> body = encode(text, ctx - 1);
        int[] row = new int[ctx];
        row[0] = sotId;
        int n = Math.min(body.size(), ctx - 2);
        for (int i = 0; i < n; i++) row[1 + i] = body.get(i);
        row[1 + n] = eotId;
        return row;
    }

    /** {@link #tokenize(String)} as int64, ready for {@code Tensor.fromBlob(long[], {1, ctx})}. */
    public long[] tokenizeToLongs(String text) {
        return tokenizeToLongs(text, false);
    }

    /**
     * Like {@link #tokenizeToLongs(String)}; with {@code throughEot} the row ends at the end-of-text token
     * ({@code [sot, ..., eot]}, length 2..context_length), the input of a text tower that computes only a prompt's
     * own positions (a {@code .pte} exported with a dynamic sequence length; exact under a causal mask).
     */
    public long[] tokenizeToLongs(String text, boolean throughEot) {
        int[] r = tokenize(text);
        int n = r.length;
        if (throughEot) {
            n = 0;
            while (r[n] != eotId) n++;
            n++;
        }
        long[] l = new long[n];
        for (int i = 0; i < n; i++) l[i] = r[i];
        return l;
    }

    /** open_clip {@code encode}: BPE ids of the cleaned text, no start/end tokens. */
    public List<Integer> encode(String text) {
        return encode(text, Integer.MAX_VALUE);
    }

    private List<Integer> encode(String text, int limit) {
        List<Integer> out = new ArrayList<>();
        String cleaned = TextCleaner.clean(text == null ? "" : text, clean);
        Matcher m = PAT.matcher(cleaned);
        while (m.find() && out.size() < limit) {
            String tok = m.group();
            if (tok.equals(SOT) || tok.equals(EOT)) { // open_clip's cache holds the special tokens
                out.add(tok.equals(SOT) ? sotId : eotId);
                continue;
            }
            byte[] utf8 = tok.getBytes(StandardCharsets.UTF_8);
            char[] chars = new char[utf8.length];
            for (int i = 0; i < utf8.length; i++) chars[i] = byteToChar[utf8[i] & 0xff];
            String key = new String(chars);
            int[] ids;
            synchronized (cache) {
                ids = cache.get(key);
            }
            if (ids == null) {
                ids = bpe(utf8);
                synchronized (cache) {
                    cache.put(key, ids);
                }
            }
            for (int id : ids) out.add(id);
        }
        return out;
    }

    /** open_clip {@code bpe()} on symbol ids: merge the lowest-ranked adjacent pair everywhere until none applies. */
    private int[] bpe(byte[] utf8) {
        int n = utf8.length;
        int[] word = new int[n];
        for (int i = 0; i < n - 1; i++) word[i] = byteId[utf8[i] & 0xff];
        word[n - 1] = byteEndId[utf8[n - 1] & 0xff];
        int len = n;
        int[] next = new int[n];
        while (len > 1) {
            int bestRank = Integer.MAX_VALUE, bestA = -1, bestB = -1, merged = -1;
            for (int i = 0; i + 1 < len; i++) {
                int[] mr = merges.get(key(word[i], word[i + 1]));
                if (mr != null && mr[0] < bestRank) {
                    bestRank = mr[0];
                    bestA = word[i];
                    bestB = word[i + 1];
                    merged = mr[1];
                }
            }
            if (merged < 0) break;
            int j = 0;
            for (int i = 0; i < len; ) {
                if (i + 1 < len && word[i] == bestA && word[i + 1] == bestB) {
                    next[j++] = merged;
                    i += 2;
                } else {
                    next[j++] = word[i++];
                }
            }
            int[] t = word;
            word = next;
            next = t;
            len = j;
        }
        int[] res = new int[len];
        System.arraycopy(word, 0, res, 0, len);
        return res;
    }

    /** open_clip {@code decode}: ids back to text ('</w>' becomes a space; special tokens kept as names). */
    public String decode(int[] ids) {
        StringBuilder sym = new StringBuilder();
        for (int id : ids) {
            if (id < 0 || id >= decoder.length) throw new IllegalArgumentException("token id out of range: " + id);
            sym.append(decoder[id]);
        }
        java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
        Map<Character, Integer> inv = new HashMap<>();
        for (int b = 0; b < 256; b++) inv.put(byteToChar[b], b);
        for (int i = 0; i < sym.length(); i++) {
            Integer b = inv.get(sym.charAt(i));
            if (b != null) bytes.write(b);
            else bytes.write(sym.substring(i, i + 1).getBytes(StandardCharsets.UTF_8), 0,
                    sym.substring(i, i + 1).getBytes(StandardCharsets.UTF_8).length);
        }
        return new String(bytes.toByteArray(), StandardCharsets.UTF_8).replace("</w>", " ");
    }
}
