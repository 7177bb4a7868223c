package org.clipkit.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/** Test resources (goldens written by golden/make_golden.py). */
final class TestData {
    private TestData() {}

    static InputStream stream(String path) {
        InputStream in = TestData.class.getClassLoader().getResourceAsStream(path);
        if (in == null) throw new IllegalStateException("test resource missing: " + path);
        return in;
    }

    static byte[] bytes(String path) throws IOException {
        try (InputStream in = stream(path)) {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) b.write(buf, 0, n);
            return b.toByteArray();
        }
    }

    static Map<String, Object> json(String path) throws IOException {
        return Json.obj(Json.parse(new String(bytes(path), StandardCharsets.UTF_8)), path);
    }

    /** The first 80 chars of a string, non-printable-ASCII as {@code \\uXXXX}, for failure messages. */
    static String show(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < Math.min(s.length(), 80); i++) {
            char c = s.charAt(i);
            if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c)); else b.append(c);
        }
        return b.toString();
    }

    private static ClipTokenizer tok77, tok32;

    static synchronized ClipTokenizer tokenizer(int ctx) throws IOException {
        if (ctx == 77) {
            if (tok77 == null) tok77 = new ClipTokenizer(stream("bpe_simple_vocab_16e6.txt.gz"), 77, "lower");
            return tok77;
        }
        if (ctx == 32) {
            if (tok32 == null) tok32 = new ClipTokenizer(stream("bpe_simple_vocab_16e6.txt.gz"), 32, "lower");
            return tok32;
        }
        return new ClipTokenizer(stream("bpe_simple_vocab_16e6.txt.gz"), ctx, "lower");
    }
}
