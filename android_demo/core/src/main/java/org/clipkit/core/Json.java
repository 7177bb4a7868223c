package org.clipkit.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A small strict JSON (RFC 8259) parser, no dependencies.
 *
 * <p>Values map to: object -> {@code Map<String,Object>} (insertion ordered, unmodifiable),
 * array -> {@code List<Object>} (unmodifiable), string -> {@link String}, number -> {@link Long}
 * when it has no fraction/exponent and fits, otherwise {@link Double}, true/false -> {@link Boolean},
 * null -> {@code null}.
 *
 * <p>Strict: no comments, no trailing commas, no single quotes, no leading zeros, no NaN/Infinity,
 * raw control characters inside strings are rejected, duplicate keys are rejected, nothing but
 * whitespace may follow the value, nesting depth is bounded (512).
 */
public final class Json {
    private static final int MAX_DEPTH = 512;

    private final String s;
    private int pos;

    private Json(String s) {
        this.s = s;
    }

    /** Parses one JSON document. */
    public static Object parse(String text) {
        if (text == null) throw new JsonException("null input", 0);
        Json p = new Json(text);
        // tolerate a UTF-8 BOM decoded as U+FEFF
        if (text.length() > 0 && text.charAt(0) == '\uFEFF') p.pos = 1;
        p.ws();
        Object v = p.value(0);
        p.ws();
        if (p.pos != text.length()) throw new JsonException("trailing content", p.pos);
        return v;
    }

    /**
     * {@code s} as a JSON string literal, quotes included: quote and backslash escaped with a backslash,
     * control characters (below U+0020) as six-character u-escapes, everything else written as is (UTF-8 text).
     */
    public static String quote(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    /** Thrown on malformed input; carries the character offset. */
    public static final class JsonException extends RuntimeException {
        private static final long serialVersionUID = 1L;
        public final int offset;

        JsonException(String msg, int offset) {
            super(msg + " at offset " + offset);
            this.offset = offset;
        }
    }

    private void ws() {
        while (pos < s.length()) {
            char c = s.charAt(pos);
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') pos++;
            else break;
        }
    }

    private Object value(int depth) {
        if (depth > MAX_DEPTH) throw new JsonException("nesting too deep", pos);
        if (pos >= s.length()) throw new JsonException("unexpected end", pos);
        char c = s.charAt(pos);
        switch (c) {
            case '{': return object(depth);
            case '[': return array(depth);
            case '"': return string();
            case 't': return literal("true", Boolean.TRUE);
            case 'f': return literal("false", Boolean.FALSE);
            case 'n': return literal("null", null);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return number();
                throw new JsonException("unexpected character '" + c + "'", pos);
        }
    }

    private Object literal(String word, Object v) {
        if (!s.startsWith(word, pos)) throw new JsonException("bad literal", pos);
        pos += word.length();
        return v;
    }

    private Map<String, Object> object(int depth) {
        pos++; // {
        Map<String, Object> m = new LinkedHashMap<>();
        ws();
        if (peek() == '}') {
            pos++;
            return Collections.unmodifiableMap(m);
        }
        while (true) {
            ws();
            if (peek() != '"') throw new JsonException("expected string key", pos);
            int keyPos = pos;
            String k = string();
            ws();
            expect(':');
            ws();
            Object v = value(depth + 1);
            if (m.containsKey(k)) throw new JsonException("duplicate key '" + k + "'", keyPos);
            m.put(k, v);
            ws();
            char c = peek();
            if (c == ',') {
                pos++;
                continue;
            }
            if (c == '}') {
                pos++;
                return Collections.unmodifiableMap(m);
            }
            throw new JsonException("expected ',' or '}'", pos);
        }
    }

    private List<Object> array(int depth) {
        pos++; // [
        List<Object> a = new ArrayList<>();
        ws();
        if (peek() == ']') {
            pos++;
            return Collections.unmodifiableList(a);
        }
        while (true) {
            ws();
            a.add(value(depth + 1));
            ws();
            char c = peek();
            if (c == ',') {
                pos++;
                continue;
            }
            if (c == ']') {
                pos++;
                return Collections.unmodifiableList(a);
            }
            throw new JsonException("expected ',' or ']'", pos);
        }
    }

    private char peek() {
        if (pos >= s.length()) throw new JsonException("unexpected end", pos);
        return s.charAt(pos);
    }

    private void expect(char c) {
        if (peek() != c) throw new JsonException("expected '" + c + "'", pos);
        pos++;
    }

    private String string() {
        pos++; // opening quote
        StringBuilder b = new StringBuilder();
        while (true) {
            if (pos >= s.length()) throw new JsonException("unterminated string", pos);
            char c = s.charAt(pos++);
            if (c == '"') return b.toString();
            if (c < 0x20) throw new JsonException("raw control character in string", pos - 1);
            if (c != '\\') {
                b.append(c);
                continue;
            }
            if (pos >= s.length()) throw new JsonException("unterminated escape", pos);
            char e = s.charAt(pos++);
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u': {
                    if (pos + 4 > s.length()) throw new JsonException("short \\u escape", pos);
                    int v = 0;
                    for (int i = 0; i < 4; i++) {
                        int d = Character.digit(s.charAt(pos + i), 16);
                        if (d < 0 || s.charAt(pos + i) > 'f') throw new JsonException("bad \\u escape", pos);
                        v = v * 16 + d;
                    }
                    pos += 4;
                    b.append((char) v);
                    break;
                }
                default:
                    throw new JsonException("bad escape '\\" + e + "'", pos - 1);
            }
        }
    }

    private Object number() {
        int start = pos;
        if (peek() == '-') pos++;
        if (pos >= s.length()) throw new JsonException("bad number", start);
        char c = s.charAt(pos);
        if (c == '0') {
            pos++;
        } else if (c >= '1' && c <= '9') {
            while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
        } else {
            throw new JsonException("bad number", start);
        }
        boolean integral = true;
        if (pos < s.length() && s.charAt(pos) == '.') {
            integral = false;
            pos++;
            int d = pos;
            while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
            if (pos == d) throw new JsonException("bad fraction", start);
        }
        if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
            integral = false;
            pos++;
            if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) pos++;
            int d = pos;
            while (pos < s.length() && isDigit(s.charAt(pos))) pos++;
            if (pos == d) throw new JsonException("bad exponent", start);
        }
        String t = s.substring(start, pos);
        if (integral && t.length() <= 18) return Long.parseLong(t);
        double v = Double.parseDouble(t);
        if (Double.isInfinite(v)) throw new JsonException("number out of range", start);
        return v;
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    // ------------------------------------------------------------------ typed accessors

    @SuppressWarnings("unchecked")
    public static Map<String, Object> obj(Object o, String what) {
        if (!(o instanceof Map)) throw new IllegalArgumentException(what + ": expected an object");
        return (Map<String, Object>) o;
    }

    @SuppressWarnings("unchecked")
    public static List<Object> arr(Object o, String what) {
        if (!(o instanceof List)) throw new IllegalArgumentException(what + ": expected an array");
        return (List<Object>) o;
    }

    public static String str(Object o, String what) {
        if (!(o instanceof String)) throw new IllegalArgumentException(what + ": expected a string");
        return (String) o;
    }

    public static double num(Object o, String what) {
        if (!(o instanceof Number)) throw new IllegalArgumentException(what + ": expected a number");
        return ((Number) o).doubleValue();
    }

    public static long integer(Object o, String what) {
        if (!(o instanceof Long)) throw new IllegalArgumentException(what + ": expected an integer");
        return (Long) o;
    }

    public static Object req(Map<String, Object> m, String key, String what) {
        if (!m.containsKey(key)) throw new IllegalArgumentException(what + ": missing '" + key + "'");
        return m.get(key);
    }
}
