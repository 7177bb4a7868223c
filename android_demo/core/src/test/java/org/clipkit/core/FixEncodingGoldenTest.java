package org.clipkit.core;

import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import org.junit.Test;

/** ftfy's fix_encoding and fix_text, and open_clip's ids, against golden/mojibake.tsv (make_mojibake_golden.py). */
public class FixEncodingGoldenTest {

    @Test
    public void matchesFtfyAndOpenClipOnMojibakeAndOnTextFtfyLeavesAlone() throws Exception {
        String tsv = new String(TestData.bytes("golden/mojibake.tsv"), StandardCharsets.UTF_8);
        ClipTokenizer t77 = TestData.tokenizer(77);
        int n = 0, changed = 0, bad = 0;
        StringBuilder report = new StringBuilder();
        for (String line : tsv.split("\n")) {
            if (line.isEmpty() || line.startsWith("#")) continue;
            String[] f = line.split("\t");
            String input = Json.str(Json.parse(f[0]), "input");
            String encoding = Json.str(Json.parse(f[1]), "fix_encoding");
            String text = Json.str(Json.parse(f[2]), "fix_text");
            String[] idText = f[3].split(" ");
            int[] ids = new int[77];
            for (int i = 0; i < idText.length; i++) ids[i] = Integer.parseInt(idText[i]);
            n++;
            if (!encoding.equals(input)) changed++;
            String gotEncoding = FixEncoding.fix(input), gotText = TextCleaner.fixText(input);
            int[] gotIds = t77.tokenize(input);
            if (!gotEncoding.equals(encoding) || !gotText.equals(text) || !Arrays.equals(gotIds, ids)) {
                bad++;
                if (bad <= 15)
                    report.append("\n  '").append(TestData.show(input)).append("'\n    ftfy  '").append(TestData.show(encoding))
                            .append("' / '").append(TestData.show(text)).append("'\n    java  '").append(TestData.show(gotEncoding))
                            .append("' / '").append(TestData.show(gotText)).append('\'');
            }
        }
        System.out.println("[fix_encoding] golden cases: " + n + " (" + changed + " repaired by ftfy), mismatches: " + bad);
        assertTrue("expected >= 1000 cases, got " + n, n >= 1000);
        assertTrue("expected both mojibake and text ftfy leaves alone", changed > 500 && n - changed > 100);
        if (bad > 0) fail(bad + " of " + n + " cases differ from ftfy/open_clip:" + report);
    }

    @Test
    public void theCasesOfTheIssue() {
        List<String[]> cases = Arrays.asList(
                new String[]{"Adem\u00c3\u00a1s", "Adem\u00e1s"},
                new String[]{"\u00c3\u00a9t\u00c3\u00a9", "\u00e9t\u00e9"},
                new String[]{"\u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d", "\u201cquoted\u201d"},
                new String[]{"caf\u00c3\u00a9", "caf\u00e9"},
                new String[]{"na\u00efve caf\u00e9", "na\u00efve caf\u00e9"},
                new String[]{"\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac"},
                new String[]{"\u65e5\u672c\u8a9e", "\u65e5\u672c\u8a9e"},
                new String[]{"\ud83d\ude00 ok", "\ud83d\ude00 ok"});
        for (String[] c : cases)
            if (!FixEncoding.fix(c[0]).equals(c[1])) fail("'" + TestData.show(c[0]) + "' -> '" + TestData.show(FixEncoding.fix(c[0])) + "'");
    }
}
