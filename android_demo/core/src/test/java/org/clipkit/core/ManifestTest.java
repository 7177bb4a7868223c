package org.clipkit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class ManifestTest {

    private static String sample() throws Exception {
        return new String(TestData.bytes("manifest/manifest.json"), StandardCharsets.UTF_8);
    }

    @Test
    public void parsesSampleManifest() throws Exception {
        Manifest m = Manifest.parse(sample());
        assertEquals(1, m.formatVersion);
        assertEquals("kit-tiny-clip", m.modelName);
        assertEquals(Long.valueOf(64), m.embedDim);
        assertEquals(8, m.bytecodeVersion);
        assertEquals("qnnpack", m.engine);
        assertEquals(64, m.preprocess.imageHeight);
        assertEquals(64, m.preprocess.imageWidth);
        assertArrayEquals(new float[]{0.48145466f, 0.4578275f, 0.40821073f}, m.preprocess.mean, 0f);
        assertArrayEquals(new float[]{0.26862954f, 0.26130258f, 0.27577711f}, m.preprocess.std, 0f);
        assertEquals("bicubic", m.preprocess.interpolation);
        assertEquals("shortest", m.preprocess.resizeMode);
        assertEquals(32, m.tokenizer.contextLength);
        assertEquals(49406, m.tokenizer.sotTokenId);
        assertEquals(49407, m.tokenizer.eotTokenId);
        assertEquals("bpe_simple_vocab_16e6.txt.gz", m.tokenizer.vocabFile);
        assertEquals("lower", m.tokenizer.clean);
        assertEquals(3, m.zeroShot.labels.size());
        assertEquals("red circle", m.zeroShot.labels.get(0));
        assertEquals(100f, m.zeroShot.logitScale, 0f);
        assertEquals("image_encoder.ptl", m.requireFile("image_encoder").file);
        assertEquals("lite", m.requireFile("text_encoder").format);
        assertNull(m.file("nope"));
        ImagePreprocessor p = new ImagePreprocessor(m.preprocess);
        assertEquals(3 * 64 * 64, p.process(new int[17 * 9], 17, 9).length);
        assertEquals("android", m.target);
    }

    @Test
    public void parsesInputAndOutputSpecs() throws Exception {
        Manifest m = Manifest.parse(sample());
        Manifest.FileEntry img = m.requireFile("image_encoder");
        assertEquals(1, img.inputs.size());
        assertEquals("image", img.inputs.get(0).name);
        assertEquals("float32", img.inputs.get(0).dtype);
        assertArrayEquals(new long[]{1, 3, 64, 64}, img.inputs.get(0).shape());
        assertEquals(3 * 64 * 64, img.inputs.get(0).numel());
        assertEquals("embedding", img.outputs.get(0).name);
        assertArrayEquals(new long[]{1, 64}, img.outputs.get(0).shape());
        Manifest.FileEntry text = m.requireFile("text_encoder");
        assertEquals("int64", text.inputs.get(0).dtype);
        assertArrayEquals(new long[]{1, 32}, text.inputs.get(0).shape());
        assertArrayEquals(new long[]{1, 3}, m.requireFile("zero_shot_head").outputs.get(0).shape());
        // shape() is a copy
        img.inputs.get(0).shape()[0] = 7;
        assertEquals(1, img.inputs.get(0).shape()[0]);
        // files that are not models carry no specs
        assertTrue(m.requireFile("vocab").inputs.isEmpty());
        assertTrue(m.requireFile("ops").outputs.isEmpty());
        assertFalse(m.requireFile("vocab").isModel());
        assertTrue(img.isModel());
    }

    @Test
    public void refusesArtifactsForAnotherTarget() throws Exception {
        String s = sample();
        String x86 = s.replace("\"target\": \"android\"", "\"target\": \"x86\"").replace("\"engine\": \"qnnpack\"", "\"engine\": \"fbgemm\"");
        assertTrue("test setup: replacement applied", !x86.equals(s));
        try {
            Manifest.parse(x86);
            fail("accepted an x86 manifest");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("--target x86 (engine fbgemm)"));
            assertTrue(e.getMessage(), e.getMessage().contains("packed for x86"));
            assertTrue(e.getMessage(), e.getMessage().contains("reconvert with `python -m convert --target android"));
        }
        // an android conversion with the engine overridden to fbgemm is refused as well
        String engine = s.replaceFirst("\"engine\": \"qnnpack\"", "\"engine\": \"fbgemm\"");
        try {
            Manifest.parse(engine);
            fail("accepted an fbgemm manifest");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("--target android (engine fbgemm)"));
        }
    }

    @Test
    public void verifiesSha256() throws Exception {
        File dir = new File(System.getProperty("java.io.tmpdir"), "clipkit-manifest-test-" + System.nanoTime());
        assertTrue(dir.mkdirs());
        File f = new File(dir, "image_encoder.ptl");
        try (FileOutputStream o = new FileOutputStream(f)) {
            o.write("abc".getBytes(StandardCharsets.US_ASCII));
        }
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                Manifest.sha256Hex(new ByteArrayInputStream("abc".getBytes(StandardCharsets.US_ASCII))));
        Manifest m = Manifest.parse(sample());
        assertTrue(Manifest.verify(m.requireFile("image_encoder"), f));
        assertFalse(Manifest.verify(m.requireFile("text_encoder"), f));
        try (FileOutputStream o = new FileOutputStream(f)) {
            o.write("abd".getBytes(StandardCharsets.US_ASCII));
        }
        assertFalse(Manifest.verify(m.requireFile("image_encoder"), f));
        assertFalse(Manifest.verify(m.requireFile("image_encoder"), new File(dir, "missing")));
        f.delete();
        dir.delete();
    }

    @Test
    public void rejectsBadManifests() throws Exception {
        String s = sample();
        String[] bad = {
            s.replace("\"clip-mobile-kit-manifest\"", "\"other\""),
            s.replace("\"format_version\": 1", "\"format_version\": 2"),
            s.replace("\"resize_mode\": \"shortest\"", "\"resize_mode\": \"fit\""),
            s.replace("\"clean\": \"lower\"", "\"clean\": \"nfkc\""),
            s.replace("\"file\": \"image_encoder.ptl\"", "\"file\": \"../image_encoder.ptl\""),
            s.replace("\"context_length\": 32", "\"context_length\": \"32\""),
            s.replace("\"image_size\": [64, 64]", "\"image_size\": [64]"),
            s.replace("  \"target\": \"android\",\n", ""),
            s.replace("  \"engine\": \"qnnpack\",\n", ""),
            s.replace("\"dtype\": \"int64\"", "\"dtype\": \"float16\""),
            s.replace("\"shape\": [1, 32]", "\"shape\": [1, -32]"),
            s.replace("\"shape\": [1, 32]", "\"shape\": [1, 32.0]"),
            s.replace("\"inputs\": [{\"name\": \"image\", \"shape\": [1, 3, 64, 64], \"dtype\": \"float32\"}],", ""),
            s.replace("{\"name\": \"tokens\", ", "{"),
        };
        for (String b : bad) {
            assertTrue("test setup: replacement applied", !b.equals(s));
            try {
                Manifest.parse(b);
                fail("accepted a bad manifest");
            } catch (IllegalArgumentException expected) {
                // ok
            }
        }
    }

    @Test
    public void strictJson() {
        Map<String, Object> o = Json.obj(Json.parse(" {\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}} "), "o");
        List<Object> a = Json.arr(o.get("a"), "a");
        assertEquals(1L, a.get(0));
        assertEquals(-2500.0, (Double) a.get(1), 0);
        assertEquals(Boolean.TRUE, a.get(2));
        assertNull(a.get(4));
        assertEquals("xé😀\n", a.get(5));
        String[] bad = {"", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "+1", "NaN", "'x'", "\"a\tb\"", "{\"a\":1}x",
                "{\"a\":1,\"a\":2}", "[1 2]", "\"\\x\"", "tru", "{a:1}", "// c\n1", "1e", "-", "\"\\u12\""};
        for (String b : bad) {
            try {
                Json.parse(b);
                fail("accepted bad JSON: " + b);
            } catch (Json.JsonException expected) {
                // ok
            }
        }
        StringBuilder deep = new StringBuilder();
        for (int i = 0; i < 2000; i++) deep.append('[');
        try {
            Json.parse(deep.toString());
            fail("accepted too deep JSON");
        } catch (Json.JsonException expected) {
            // ok
        }
    }
}
