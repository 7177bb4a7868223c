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
