package org.clipkit.core;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * ftfy 6.3's {@code fix_encoding} (mojibake repair: "cafÃ©" -> "café", "â€œquotedâ€\u009d" -> "“quoted”"),
 * ported step for step from {@code ftfy/__init__.py} ({@code fix_encoding_and_explain},
 * {@code _fix_encoding_one_step_and_explain}) and {@code ftfy/fixes.py}, with the default configuration:
 *
 * <ol>
 *   <li>ASCII text, or text without a match of ftfy's badness regex ({@code is_bad}), is left alone: the detection
 *       heuristic, not a try-decode of everything, is what keeps "naïve café" or "Ελληνικά" intact.</li>
 *   <li>For each single-byte encoding ftfy tries, in its order (latin-1, sloppy windows-1252/1251/1250/1253/1254/1257,
 *       iso-8859-2, macroman, cp437) that can encode the whole text: encode it; {@code restore_byte_a0} (a space
 *       that was a UTF-8 0xA0 continuation byte) except in macroman; {@code replace_lossy_sequences} for the sloppy
 *       codecs (U+FFFD / 0x1A inside a UTF-8 sequence); then decode as UTF-8, or ftfy's {@code utf-8-variants}
 *       (CESU-8 surrogate pairs, Java's 0xC0 0x80 null) when byte 0xED or 0xC0 occurs. The first that decodes wins.</li>
 *   <li>{@code decode_inconsistent_utf8}: UTF-8 mojibake embedded in otherwise good text, fixed piece by piece.</li>
 *   <li>Latin-1 text with C1 controls re-read as windows-1252; then remaining C1 controls as their windows-1252
 *       characters.</li>
 * </ol>
 * repeated until the text stops changing. The regexes and code tables are not hand-copied: they are generated
 * from the installed ftfy by {@code tools/make_ftfy_tables.py} into {@code ftfy_tables.txt}, with Python's
 * {@code \s}, {@code \w} and {@code .} spelled out as the code points Python's {@code re} matches.
 *
 * <p>Remaining differences: the badness and detector regexes run on {@code java.util.regex}, whose engine
 * semantics match Python's for the constructs used (classes, alternation, a one-character look-behind,
 * {@code ^}); NFC and the other steps of {@code fix_text} use the JVM's Unicode tables (see {@link TextCleaner}).
 */
final class FixEncoding {
    private FixEncoding() {}

    private static final String TABLES = "ftfy_tables.txt";
    static final Pattern BADNESS, UTF8_DETECTOR, ALTERED_UTF8, LOSSY_UTF8, A_GRAVE_WORD;
    /** ftfy's CHARMAP_ENCODINGS, in the order it tries them. */
    static final List<String> CHARMAP_ENCODINGS;
    /** Per encoding: char -> byte for the chars of bytes 0x80-0xFF and 0x1A (ASCII maps to itself). */
    private static final Map<String, Map<Character, Character>> ENCODE = new HashMap<>();
    /** Strict windows-1252 (Python's codec): byte 0x80-0xFF -> char, 0 where undefined. */
    private static final char[] WINDOWS_1252 = new char[256];
    /** U+FFFD as UTF-8 bytes, one char per byte (the byte strings here are Latin-1 strings). */
    private static final String REPLACEMENT_UTF8 = "\u00ef\u00bf\u00bd";

    static {
        Map<String, String> regex = new HashMap<>();
        List<String> encodings = null;
        InputStream in = FixEncoding.class.getResourceAsStream(TABLES);
        if (in == null) throw new IllegalStateException("resource org/clipkit/core/" + TABLES + " missing");
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.US_ASCII))) {
            String line;
            while ((line = r.readLine()) != null) {
                if (line.isEmpty() || line.startsWith("#")) continue;
                String[] f = line.split("\t", 3);
                if (f[0].equals("regex")) {
                    regex.put(f[1], f[2]);
                } else if (f[0].equals("list")) {
                    encodings = Collections.unmodifiableList(Arrays.asList(f[2].split(" ")));
                } else if (f[0].equals("charmap")) {
                    Map<Character, Character> m = new HashMap<>();
                    for (String pair : f[2].split(" ")) {
                        int colon = pair.indexOf(':');
                        char c = (char) Integer.parseInt(pair.substring(0, colon), 16);
                        char b = (char) Integer.parseInt(pair.substring(colon + 1), 16);
                        m.put(c, b);
                        if (f[1].equals("windows-1252") && b >= 0x80) WINDOWS_1252[b] = c;
                    }
                    ENCODE.put(f[1], m);
                }
            }
        } catch (IOException e) {
            throw new IllegalStateException("cannot read " + TABLES, e);
        }
        BADNESS = Pattern.compile(regex.get("badness"));
        UTF8_DETECTOR = Pattern.compile(regex.get("utf8_detector"));
        ALTERED_UTF8 = Pattern.compile(regex.get("altered_utf8"));
        LOSSY_UTF8 = Pattern.compile(regex.get("lossy_utf8"));
        A_GRAVE_WORD = Pattern.compile(regex.get("a_grave_word"));
        CHARMAP_ENCODINGS = encodings;
        for (String e : CHARMAP_ENCODINGS)
            if (!ENCODE.containsKey(e)) throw new IllegalStateException(TABLES + ": no charmap for " + e);
    }

    /** ftfy's {@code is_bad}: the text has a sequence that is far likelier mojibake than intended. */
    static boolean isBad(String text) {
        return BADNESS.matcher(text).find();
    }

    /** ftfy's {@code fix_encoding(text)} with the default configuration. */
    static String fix(String text) {
        while (true) {
            String prev = text;
            text = oneStep(text);
            if (text.equals(prev)) return text;
        }
    }

    private static String oneStep(String text) {
        if (text.isEmpty() || isAscii(text) || !isBad(text)) return text;
        List<String> possible = new ArrayList<>();
        for (String encoding : CHARMAP_ENCODINGS) {
            if (!possibleEncoding(text, encoding)) continue;
            possible.add(encoding);
            String bytes = encode(text, encoding);
            // macroman: an en dash then a space would match, a false positive (ftfy's comment)
            if (!encoding.equals("macroman") && ALTERED_UTF8.matcher(bytes).find()) bytes = restoreByteA0(bytes);
            if (encoding.startsWith("sloppy")) bytes = LOSSY_UTF8.matcher(bytes).replaceAll(REPLACEMENT_UTF8);
            boolean variants = bytes.indexOf('\u00ed') >= 0 || bytes.indexOf('\u00c0') >= 0;
            try {
                return variants ? decodeUtf8Variants(bytes) : decodeUtf8(bytes, 0, bytes.length());
            } catch (CharacterCodingException e) {
                // not UTF-8 in this encoding: try the next one
            }
        }
        if (UTF8_DETECTOR.matcher(text).find()) {
            String fixed = decodeInconsistentUtf8(text);
            if (!fixed.equals(text)) return fixed;
        }
        // ftfy checks `"windows-1252" in possible_1byte_encodings` here, but the list holds "sloppy-windows-1252",
        // never "windows-1252": Latin-1-encodable text is always re-read as (strict) windows-1252.
        if (possible.contains("latin-1")) {
            String fixed = latin1AsWindows1252(text);
            if (fixed != null && !fixed.equals(text)) return fixed;
        }
        if (hasC1(text)) return TextCleaner.fixC1Controls(text);
        return text;
    }

    private static boolean isAscii(String text) {
        for (int i = 0; i < text.length(); i++) if (text.charAt(i) > 0x7f) return false;
        return true;
    }

    private static boolean hasC1(String text) {
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c >= 0x80 && c <= 0x9f) return true;
        }
        return false;
    }

    /** ftfy's {@code possible_encoding}: every char is ASCII other than 0x1A, or one of the encoding's bytes 0x80-0xFF / 0x1A. */
    static boolean possibleEncoding(String text, String encoding) {
        Map<Character, Character> m = ENCODE.get(encoding);
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (!((c <= 0x7f && c != 0x1a) || m.containsKey(c))) return false;
        }
        return true;
    }

    /** {@code text.encode(encoding)} as a string of chars U+0000-U+00FF, one per byte. */
    private static String encode(String text, String encoding) {
        Map<Character, Character> m = ENCODE.get(encoding);
        StringBuilder b = new StringBuilder(text.length());
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            Character byt = m.get(c);
            b.append(byt != null ? byt : c);
        }
        return b.toString();
    }

    /** ftfy's {@code restore_byte_a0}. */
    private static String restoreByteA0(String bytes) {
        bytes = A_GRAVE_WORD.matcher(bytes).replaceAll("\u00c3\u00a0 ");
        Matcher m = ALTERED_UTF8.matcher(bytes);
        StringBuffer b = new StringBuffer(bytes.length());
        while (m.find()) m.appendReplacement(b, Matcher.quoteReplacement(m.group().replace(' ', '\u00a0')));
        m.appendTail(b);
        return b.toString();
    }

    /** ftfy's {@code decode_inconsistent_utf8}. */
    private static String decodeInconsistentUtf8(String text) {
        Matcher m = UTF8_DETECTOR.matcher(text);
        StringBuffer b = new StringBuffer(text.length());
        while (m.find()) {
            String sub = m.group();
            // shorter than the whole text, so that this does not recurse forever (ftfy's comment)
            String rep = sub.length() < text.length() && isBad(sub) ? fix(sub) : sub;
            m.appendReplacement(b, Matcher.quoteReplacement(rep));
        }
        m.appendTail(b);
        return b.toString();
    }

    /** {@code text.encode("latin-1").decode("windows-1252")}, or null when a byte is undefined in windows-1252. */
    private static String latin1AsWindows1252(String text) {
        StringBuilder b = new StringBuilder(text.length());
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c < 0x80) {
                b.append(c);
            } else {
                char w = WINDOWS_1252[c]; // possibleEncoding("latin-1") held: c <= 0xFF
                if (w == 0) return null;
                b.append(w);
            }
        }
        return b.toString();
    }

    /** Strict UTF-8 of bytes[from, to) (chars U+0000-U+00FF), like Python's decoder. */
    private static String decodeUtf8(String bytes, int from, int to) throws CharacterCodingException {
        byte[] raw = new byte[to - from];
        for (int i = from; i < to; i++) raw[i - from] = (byte) bytes.charAt(i);
        CharBuffer out = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(raw));
        return out.toString();
    }

    /**
     * ftfy's {@code utf-8-variants} codec: UTF-8, plus CESU-8 surrogate pairs
     * ({@code ED A0-AF 80-BF ED B0-BF 80-BF}) and {@code C0 80} for U+0000; anything else at 0xC0 or at a
     * surrogate lead {@code ED A0-BF} fails, as in Python.
     */
    private static String decodeUtf8Variants(String b) throws CharacterCodingException {
        StringBuilder out = new StringBuilder(b.length());
        int n = b.length(), start = 0, i = 0;
        while (i < n) {
            char c = b.charAt(i);
            boolean nul = c == 0xc0 && (i + 1 == n || b.charAt(i + 1) == 0x80);
            boolean surrogate = c == 0xed && (i + 1 == n || (b.charAt(i + 1) >= 0xa0 && b.charAt(i + 1) <= 0xbf));
            if (!nul && !surrogate) {
                i++;
                continue;
            }
            out.append(decodeUtf8(b, start, i));
            if (nul) {
                if (i + 1 == n) throw new CharacterCodingException();
                out.append('\u0000');
                i += 2;
            } else {
                if (i + 6 > n || !isCesu8Pair(b, i)) throw new CharacterCodingException();
                int cp = ((b.charAt(i + 1) & 0x0f) << 16) + ((b.charAt(i + 2) & 0x3f) << 10)
                        + ((b.charAt(i + 4) & 0x0f) << 6) + (b.charAt(i + 5) & 0x3f) + 0x10000;
                out.appendCodePoint(cp);
                i += 6;
            }
            start = i;
        }
        out.append(decodeUtf8(b, start, n));
        return out.toString();
    }

    private static boolean isCesu8Pair(String b, int i) {
        return in(b.charAt(i + 1), 0xa0, 0xaf) && in(b.charAt(i + 2), 0x80, 0xbf) && b.charAt(i + 3) == 0xed
                && in(b.charAt(i + 4), 0xb0, 0xbf) && in(b.charAt(i + 5), 0x80, 0xbf);
    }

    private static boolean in(char c, int lo, int hi) {
        return c >= lo && c <= hi;
    }
}
