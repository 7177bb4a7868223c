package org.clipkit.core;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.text.Normalizer;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The text clean-up open_clip applies before BPE ({@code open_clip/tokenizer.py}):
 * {@code basic_clean} = {@code ftfy.fix_text} + {@code html.unescape} twice + strip, then
 * {@code whitespace_clean}, then (mode {@code lower}) {@code str.lower()}.
 *
 * <p>{@link #fixText} ports ftfy 6.3 {@code fix_text} with its default configuration, step by step:
 * per-line segments (unescape disabled for this and later segments once a segment contains '<'),
 * then repeated until stable: ftfy's HTML unescape (semicolon-terminated HTML5 entities plus
 * upper-case Latin variants such as {@code &EACUTE;}), fix_encoding ({@link FixEncoding}: mojibake
 * detection and repair, e.g. "cafÃ©" -> "café", "â€œ" -> '"', "ÐŸÑ€Ð¸" -> "При"), fix_c1_controls,
 * fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates,
 * remove_terminal_escapes, remove_control_chars, NFC.
 *
 * <p><b>Known gaps to ftfy</b>: character property tables (NFC, {@code str.isspace}, case mapping) come
 * from the JVM's Unicode version (Java 17: Unicode 13; Python 3.11: 14; an Android release has its own),
 * so code points newer than the JVM's tables may clean differently; segments longer than 1,000,000 chars
 * are split at a char (not code point) offset.
 *
 * <p>{@link #htmlUnescape} is an exact port of Python's {@code html.unescape} (all 2231 HTML5
 * named references, numeric references with the HTML5 replacement rules, longest-prefix matching
 * for references without ';'); the table is {@code html5_entities.tsv}, generated from Python's
 * {@code html.entities.html5} by {@code tools/make_entity_table.py}.
 */
public final class TextCleaner {
    private TextCleaner() {}

    /** Clean modes of open_clip's {@code get_clean_fn}. */
    public enum Mode { LOWER, WHITESPACE, CANONICALIZE;
        public static Mode parse(String s) {
            if ("lower".equals(s)) return LOWER;
            if ("whitespace".equals(s)) return WHITESPACE;
            if ("canonicalize".equals(s)) return CANONICALIZE;
            throw new IllegalArgumentException("unknown tokenizer clean mode '" + s
                    + "' (expected lower, whitespace or canonicalize)");
        }
    }

    private static final int MAX_FIX_ROUNDS = 64;
    private static final int MAX_SEGMENT = 1_000_000;

    // ------------------------------------------------------------------------- tables
    /** html.entities.html5: name (with or without ';') -> replacement. */
    private static final Map<String, String> HTML5;
    /** ftfy's HTML_ENTITIES: "&name;" -> replacement, plus upper-case variants. */
    private static final Map<String, String> FTFY_ENTITIES;
    private static final Pattern FTFY_ENTITY_RE = Pattern.compile("&#?[0-9A-Za-z]{1,24};");
    private static final Pattern CHARREF_RE = Pattern.compile(
            "&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\\t\\n\\f <&#;]{1,32};?)");
    private static final Pattern ANSI_RE = Pattern.compile("\u001b\\[((?:\\p{Nd}|;)*)([a-zA-Z])");
    private static final String[] C1_TO_1252 = new String[32];
    private static final Map<Integer, String> LIGATURES = new HashMap<>();
    private static final Map<Integer, String> WIDTH = new HashMap<>();
    private static final Set<Integer> INVALID_CODEPOINTS = new HashSet<>();


    static {
        // Python html._invalid_charrefs for 0x80..0x9F == ftfy's sloppy-windows-1252 for C1 bytes
        String w = "\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f"
                + "\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178";
        for (int i = 0; i < 32; i++) C1_TO_1252[i] = String.valueOf(w.charAt(i));

        String[][] lig = {
            {"\u0132", "IJ"}, {"\u0133", "ij"}, {"\u0149", "\u02bcn"}, {"\u01f1", "DZ"}, {"\u01f2", "Dz"},
            {"\u01f3", "dz"}, {"\u01c4", "D\u017d"}, {"\u01c5", "D\u017e"}, {"\u01c6", "d\u017e"},
            {"\u01c7", "LJ"}, {"\u01c8", "Lj"}, {"\u01c9", "lj"}, {"\u01ca", "NJ"}, {"\u01cb", "Nj"},
            {"\u01cc", "nj"}, {"\ufb00", "ff"}, {"\ufb01", "fi"}, {"\ufb02", "fl"}, {"\ufb03", "ffi"},
            {"\ufb04", "ffl"}, {"\ufb05", "\u017ft"}, {"\ufb06", "st"},
        };
        for (String[] l : lig) LIGATURES.put((int) l[0].charAt(0), l[1]);

        WIDTH.put(0x3000, " ");
        for (int i = 0xFF01; i < 0xFFF0; i++) {
            String c = String.valueOf((char) i);
            String alt = Normalizer.normalize(c, Normalizer.Form.NFKC);
            if (!alt.equals(c)) WIDTH.put(i, alt);
        }

        int[] inv = {0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xb, 0xe, 0xf, 0x7f};
        for (int v : inv) INVALID_CODEPOINTS.add(v);
        for (int v = 0x10; v <= 0x1f; v++) INVALID_CODEPOINTS.add(v);
        for (int v = 0x80; v <= 0x9f; v++) INVALID_CODEPOINTS.add(v);
        for (int v = 0xfdd0; v <= 0xfdef; v++) INVALID_CODEPOINTS.add(v);
        for (int plane = 0; plane <= 0x10; plane++) {
            INVALID_CODEPOINTS.add(plane * 0x10000 + 0xfffe);
            INVALID_CODEPOINTS.add(plane * 0x10000 + 0xffff);
        }
        HTML5 = loadHtml5();
        FTFY_ENTITIES = buildFtfyEntities();
    }

    private static Map<String, String> loadHtml5() {
        Map<String, String> m = new HashMap<>(4096);
        InputStream in = TextCleaner.class.getResourceAsStream("html5_entities.tsv");
        if (in == null) throw new IllegalStateException("resource org/clipkit/core/html5_entities.tsv missing");
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.US_ASCII))) {
            String line;
            while ((line = r.readLine()) != null) {
                if (line.isEmpty() || line.startsWith("#")) continue;
                int tab = line.indexOf('\t');
                StringBuilder v = new StringBuilder();
                for (String hex : line.substring(tab + 1).split(" ")) v.appendCodePoint(Integer.parseInt(hex, 16));
                m.put(line.substring(0, tab), v.toString());
            }
        } catch (IOException e) {
            throw new IllegalStateException("cannot read html5_entities.tsv", e);
        }
        return m;
    }

    private static Map<String, String> buildFtfyEntities() {
        Map<String, String> m = new HashMap<>(8192);
        for (Map.Entry<String, String> e : HTML5.entrySet()) {
            String name = e.getKey();
            if (!name.endsWith(";")) continue;
            m.put("&" + name, e.getValue());
        }
        for (Map.Entry<String, String> e : HTML5.entrySet()) {
            String name = e.getKey();
            if (!name.endsWith(";")) continue;
            if (name.equals(name.toLowerCase(Locale.ROOT))) {
                String upper = "&" + name.toUpperCase(Locale.ROOT);
                if (htmlUnescape(upper).equals(upper)) m.put(upper, e.getValue().toUpperCase(Locale.ROOT));
            }
        }
        return m;
    }

    // ------------------------------------------------------------------------- open_clip clean fns

    /** open_clip's clean function for {@code mode}. */
    public static String clean(String text, Mode mode) {
        switch (mode) {
            case LOWER: return whitespaceClean(basicClean(text)).toLowerCase(Locale.ROOT);
            case WHITESPACE: return whitespaceClean(basicClean(text));
            default: return canonicalize(basicClean(text));
        }
    }

    /** {@code basic_clean}: ftfy.fix_text, html.unescape twice, strip. */
    public static String basicClean(String text) {
        String t = fixText(text);
        t = htmlUnescape(htmlUnescape(t));
        return pyStrip(t);
    }

    /** {@code whitespace_clean}: {@code " ".join(text.split()).strip()}. */
    public static String whitespaceClean(String text) {
        StringBuilder b = new StringBuilder(text.length());
        int i = 0, n = text.length();
        boolean pending = false;
        while (i < n) {
            int cp = text.codePointAt(i);
            int len = Character.charCount(cp);
            if (isPySpace(cp)) {
                if (b.length() > 0) pending = true;
            } else {
                if (pending) b.append(' ');
                pending = false;
                b.appendCodePoint(cp);
            }
            i += len;
        }
        return b.toString();
    }

    /** open_clip {@code canonicalize_text}: '_' to ' ', ASCII punctuation removed, lower, whitespace. */
    public static String canonicalize(String text) {
        String punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
        StringBuilder b = new StringBuilder(text.length());
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '_') b.append(' ');
            else if (punct.indexOf(c) < 0) b.append(c);
        }
        return whitespaceClean(b.toString().toLowerCase(Locale.ROOT));
    }

    /** Python {@code str.isspace()} for one code point: bidi WS/B/S or category Zs. */
    public static boolean isPySpace(int cp) {
        if (Character.getType(cp) == Character.SPACE_SEPARATOR) return true;
        byte d = Character.getDirectionality(cp);
        return d == Character.DIRECTIONALITY_WHITESPACE || d == Character.DIRECTIONALITY_PARAGRAPH_SEPARATOR
                || d == Character.DIRECTIONALITY_SEGMENT_SEPARATOR;
    }

    static String pyStrip(String t) {
        int a = 0, b = t.length();
        while (a < b) {
            int cp = t.codePointAt(a);
            if (!isPySpace(cp)) break;
            a += Character.charCount(cp);
        }
        while (b > a) {
            int cp = t.codePointBefore(b);
            if (!isPySpace(cp)) break;
            b -= Character.charCount(cp);
        }
        return t.substring(a, b);
    }

    // ------------------------------------------------------------------------- ftfy.fix_text

    /** ftfy 6.3 {@code fix_text(text)} with default options, minus {@code fix_encoding} (see class doc). */
    public static String fixText(String text) {
        StringBuilder out = new StringBuilder(text.length());
        boolean unescape = true; // "auto"
        int pos = 0, n = text.length();
        while (pos < n) {
            int nl = text.indexOf('\n', pos);
            int end = nl < 0 ? n : nl + 1;
            if (end - pos > MAX_SEGMENT) {
                end = pos + MAX_SEGMENT;
                if (Character.isHighSurrogate(text.charAt(end - 1)) && end < n) end++;
            }
            String seg = text.substring(pos, end);
            if (unescape && seg.indexOf('<') >= 0) unescape = false;
            out.append(fixSegment(seg, unescape));
            pos = end;
        }
        return out.toString();
    }

    private static String fixSegment(String text, boolean unescape) {
        for (int round = 0; round < MAX_FIX_ROUNDS; round++) {
            String orig = text;
            if (unescape) text = ftfyUnescapeHtml(text);
            text = FixEncoding.fix(text);
            text = fixC1Controls(text);
            text = translate(text, LIGATURES);
            text = translate(text, WIDTH);
            text = uncurlQuotes(text);
            text = fixLineBreaks(text);
            text = fixSurrogates(text);
            text = ANSI_RE.matcher(text).replaceAll("");
            text = removeControlChars(text);
            text = Normalizer.normalize(text, Normalizer.Form.NFC);
            if (text.equals(orig)) return text;
        }
        return text;
    }

    static String ftfyUnescapeHtml(String text) {
        if (text.indexOf('&') < 0) return text;
        Matcher m = FTFY_ENTITY_RE.matcher(text);
        StringBuffer b = new StringBuffer(text.length());
        while (m.find()) {
            String g = m.group();
            String rep;
            String known = FTFY_ENTITIES.get(g);
            if (known != null) {
                rep = known;
            } else if (g.startsWith("&#")) {
                String u = htmlUnescape(g);
                rep = u.indexOf(';') >= 0 ? g : u;
            } else {
                rep = g;
            }
            m.appendReplacement(b, Matcher.quoteReplacement(rep));
        }
        m.appendTail(b);
        return b.toString();
    }

    /** ftfy's {@code fix_c1_controls}: C1 control characters as their (sloppy) windows-1252 characters. */
    static String fixC1Controls(String text) {
        StringBuilder b = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c >= 0x80 && c <= 0x9f) {
                if (b == null) b = new StringBuilder(text.length()).append(text, 0, i);
                b.append(C1_TO_1252[c - 0x80]);
            } else if (b != null) {
                b.append(c);
            }
        }
        return b == null ? text : b.toString();
    }

    private static String translate(String text, Map<Integer, String> map) {
        StringBuilder b = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            String r = map.get((int) c);
            if (r != null) {
                if (b == null) b = new StringBuilder(text.length()).append(text, 0, i);
                b.append(r);
            } else if (b != null) {
                b.append(c);
            }
        }
        return b == null ? text : b.toString();
    }

    private static String uncurlQuotes(String text) {
        StringBuilder b = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            char r = c;
            if (c == '\u02bc' || (c >= '\u2018' && c <= '\u201b')) r = '\'';
            else if (c >= '\u201c' && c <= '\u201f') r = '"';
            if (r != c && b == null) b = new StringBuilder(text.length()).append(text, 0, i);
            if (b != null) b.append(r);
        }
        return b == null ? text : b.toString();
    }

    private static String fixLineBreaks(String text) {
        return text.replace("\r\n", "\n").replace('\r', '\n').replace('\u2028', '\n')
                .replace('\u2029', '\n').replace('\u0085', '\n');
    }

    private static String fixSurrogates(String text) {
        StringBuilder b = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            boolean lone;
            if (Character.isHighSurrogate(c)) {
                if (i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))) {
                    if (b != null) b.append(c).append(text.charAt(i + 1));
                    i++;
                    continue;
                }
                lone = true;
            } else {
                lone = Character.isLowSurrogate(c);
            }
            if (lone && b == null) b = new StringBuilder(text.length()).append(text, 0, i);
            if (b != null) b.append(lone ? '\ufffd' : c);
        }
        return b == null ? text : b.toString();
    }

    private static boolean isRemovedControl(char c) {
        return c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f
                || (c >= 0x206a && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc);
    }

    private static String removeControlChars(String text) {
        StringBuilder b = null;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            boolean drop = isRemovedControl(c);
            if (drop && b == null) b = new StringBuilder(text.length()).append(text, 0, i);
            if (b != null && !drop) b.append(c);
        }
        return b == null ? text : b.toString();
    }

    // ------------------------------------------------------------------------- html.unescape

    /** Exact port of Python's {@code html.unescape}. */
    public static String htmlUnescape(String s) {
        if (s.indexOf('&') < 0) return s;
        Matcher m = CHARREF_RE.matcher(s);
        StringBuffer b = new StringBuffer(s.length());
        while (m.find()) {
            m.appendReplacement(b, Matcher.quoteReplacement(replaceCharref(m.group(1))));
        }
        m.appendTail(b);
        return b.toString();
    }

    private static String replaceCharref(String s) {
        if (s.charAt(0) == '#') {
            BigInteger num;
            if (s.charAt(1) == 'x' || s.charAt(1) == 'X') num = new BigInteger(stripSemi(s.substring(2)), 16);
            else num = new BigInteger(stripSemi(s.substring(1)));
            if (num.compareTo(BigInteger.valueOf(0x10FFFF)) > 0) return "\ufffd";
            int v = num.intValue();
            if (v == 0x00) return "\ufffd";
            if (v == 0x0d) return "\r";
            if (v >= 0x80 && v <= 0x9f) return C1_TO_1252[v - 0x80];
            if (v >= 0xD800 && v <= 0xDFFF) return "\ufffd";
            if (INVALID_CODEPOINTS.contains(v)) return "";
            return new String(Character.toChars(v));
        }
        String full = HTML5.get(s);
        if (full != null) return full;
        for (int x = s.length() - 1; x > 1; x--) {
            String p = HTML5.get(s.substring(0, x));
            if (p != null) return p + s.substring(x);
        }
        return "&" + s;
    }

    private static String stripSemi(String s) {
        int e = s.length();
        while (e > 0 && s.charAt(e - 1) == ';') e--;
        return s.substring(0, e);
    }
}
