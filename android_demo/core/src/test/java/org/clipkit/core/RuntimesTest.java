package org.clipkit.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import org.junit.Test;

public class RuntimesTest {
    private static final List<String> BOTH = Arrays.asList(Runtimes.PTL, Runtimes.PTE);
    private static final List<String> LITE = Collections.singletonList(Runtimes.PTL);
    private static final List<String> ET = Collections.singletonList(Runtimes.PTE);

    /** A manifest whose model files are {@code file:format} pairs (role from the file name). */
    static Manifest manifest(String extra, String... files) {
        StringBuilder f = new StringBuilder();
        for (String spec : files) {
            String[] p = spec.split(":");
            String role = p[0].substring(0, p[0].indexOf('.'));
            String dtype = role.equals("text_encoder") ? "int64" : "float32";
            f.append(f.length() == 0 ? "" : ",").append("{\"role\": \"").append(role).append("\", \"file\": \"").append(p[0])
                    .append("\", \"format\": \"").append(p[1]).append("\", \"sha256\": \"").append(new String(new char[64]).replace('\0', 'a'))
                    .append("\", \"inputs\": [{\"name\": \"x\", \"shape\": [1, 4], \"dtype\": \"").append(dtype).append("\"}]}");
        }
        return Manifest.parse("{\"format\": \"clip-mobile-kit-manifest\", \"format_version\": 1, \"target\": \"android\", "
                + "\"engine\": \"qnnpack\"" + extra + ", "
                + "\"preprocess\": {\"image_size\": [4, 4], \"mean\": [0, 0, 0], \"std\": [1, 1, 1], \"interpolation\": \"bicubic\", "
                + "\"resize_mode\": \"shortest\"}, "
                + "\"tokenizer\": {\"context_length\": 4, \"vocab_size\": 49408, \"vocab_file\": \"v.gz\", \"sot_token_id\": 49406, "
                + "\"eot_token_id\": 49407}, \"files\": [" + f + "]}");
    }

    static final String[] PTL_OLD = {"image_encoder.ptl:lite", "text_encoder.ptl:lite", "zero_shot_head.ptl:lite"};
    static final String[] PTL_NEW = {"image_encoder.ptl:ptl", "text_encoder.ptl:ptl", "zero_shot_head.ptl:ptl"};
    static final String[] PTE = {"image_encoder.pte:pte", "text_encoder.pte:pte", "zero_shot_head.pte:pte"};

    static String[] concat(String[] a, String[] b) {
        String[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    @Test
    public void readsTheFormatOfEachFile() {
        Manifest old = manifest("", PTL_OLD);
        assertEquals(Runtimes.PTL, old.requireFile("image_encoder", Runtimes.PTL).runtimeFormat());
        assertNull(old.file("image_encoder", Runtimes.PTE));
        assertNull(old.executorchVersion);
        Manifest both = manifest(", \"versions\": {\"executorch\": \"1.3.1\"}", concat(PTL_NEW, PTE));
        assertEquals("image_encoder.pte", both.requireFile("image_encoder", Runtimes.PTE).file);
        assertEquals("image_encoder.ptl", both.requireFile("image_encoder", Runtimes.PTL).file);
        assertTrue(both.requireFile("text_encoder", Runtimes.PTE).isModel());
        assertEquals("1.3.1", both.executorchVersion);
        assertEquals(BOTH.size(), Runtimes.completeFormats(both).size());
    }

    @Test
    public void prefersExecuTorchWhenBuiltInAndPresent() {
        Manifest both = manifest("", concat(PTL_OLD, PTE));
        assertEquals(Runtimes.PTE, Runtimes.choose(both, BOTH, null));
        assertEquals(Runtimes.PTE, Runtimes.choose(both, ET, ""));
        assertEquals(Runtimes.PTL, Runtimes.choose(both, LITE, null)); // the lite flavor runs the ptl half
        assertEquals(Runtimes.PTL, Runtimes.choose(manifest("", PTL_OLD), BOTH, null)); // old manifests: ptl
        assertEquals(Runtimes.PTE, Runtimes.choose(manifest("", PTE), BOTH, null));
    }

    @Test
    public void aForcedRuntimeWinsOrFailsInOneLine() {
        Manifest both = manifest("", concat(PTL_NEW, PTE));
        assertEquals(Runtimes.PTL, Runtimes.choose(both, BOTH, "ptl"));
        assertEquals(Runtimes.PTE, Runtimes.choose(both, BOTH, "pte"));
        expectFailure(both, LITE, "pte", "not built into this app");
        expectFailure(both, BOTH, "onnx", "is not one of");
        expectFailure(manifest("", PTL_OLD), BOTH, "pte", "no complete 'pte' set");
    }

    @Test
    public void incompleteSetsAreNotRunnable() {
        // a pte image tower alone is not a runtime choice: the text tower and head would be missing
        Manifest partial = manifest("", "image_encoder.pte:pte", "image_encoder.ptl:lite", "text_encoder.ptl:lite",
                "zero_shot_head.ptl:lite");
        assertEquals(Collections.singleton(Runtimes.PTL), Runtimes.completeFormats(partial));
        expectFailure(partial, ET, null, "no runtime of this app");
        expectFailure(manifest("", PTE), LITE, null, "build the other flavor");
    }

    @Test
    public void truncateTextComesFromTheConfig() {
        assertTrue(manifest(", \"config\": {\"truncate_text\": true}", PTE).truncateText);
        assertTrue(!manifest(", \"config\": {\"truncate_text\": null}", PTE).truncateText);
        assertTrue(!manifest("", PTE).truncateText);
        try {
            manifest(", \"config\": {\"truncate_text\": \"yes\"}", PTE);
            fail("accepted a string truncate_text");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("truncate_text"));
        }
    }

    private static void expectFailure(Manifest m, List<String> builtIn, String forced, String message) {
        try {
            fail("chose " + Runtimes.choose(m, builtIn, forced));
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().contains(message));
        }
    }
}
