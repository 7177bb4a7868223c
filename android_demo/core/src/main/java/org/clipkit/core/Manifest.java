package org.clipkit.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code manifest.json} written by {@code python -m convert} (docs/formats.md, format_version 1).
 * Parsed strictly: unknown format or a newer format_version is rejected; the blocks the device needs
 * ({@code preprocess}, {@code tokenizer}, {@code files} with their input/output specs) must be complete;
 * {@code zero_shot} is optional. Only phone artifacts are accepted ({@code target: android},
 * {@code engine: qnnpack}): x86 artifacts carry fbgemm-packed int8 weights that pytorch_android_lite's ARM
 * build cannot run, the classic mistake when copying a converter output to a phone.
 */
public final class Manifest {
    public static final String FORMAT = "clip-mobile-kit-manifest";
    public static final int FORMAT_VERSION = 1;
    /** The only target and engine the app runs (convert/config.py: DEFAULT_ENGINE["android"]). */
    public static final String TARGET = "android";
    public static final String ENGINE = "qnnpack";

    public final int formatVersion;
    public final String kitVersion;
    public final String modelName;
    public final String target;
    public final String engine;
    public final int bytecodeVersion; // -1 when absent
    /** {@code versions.executorch}: the ExecuTorch that wrote the {@code .pte} files; null when absent. */
    public final String executorchVersion;
    /**
     * {@code config.truncate_text}: the text tower pools at the end-of-text token under a causal mask, so the ids
     * after it change nothing and the app passes {@code [1, L]} up to it (what a {@code .pte} with a dynamic
     * sequence length expects). False when absent: the full {@code [1, context_length]} row.
     */
    public final boolean truncateText;
    public final Long embedDim;       // null when absent
    public final Preprocess preprocess;
    public final TokenizerConfig tokenizer;
    public final ZeroShot zeroShot;   // null when absent
    public final List<FileEntry> files;
    /** The whole parsed document, for fields this class does not model. */
    public final Map<String, Object> raw;

    public static final class Preprocess {
        public final int imageHeight, imageWidth;
        public final float[] mean, std;
        public final String interpolation, resizeMode, mode;
        public final int fillColor;

        Preprocess(Map<String, Object> p) {
            List<Object> size = Json.arr(Json.req(p, "image_size", "preprocess"), "preprocess.image_size");
            if (size.size() != 2) throw new IllegalArgumentException("preprocess.image_size: expected [h, w]");
            imageHeight = (int) Json.integer(size.get(0), "preprocess.image_size[0]");
            imageWidth = (int) Json.integer(size.get(1), "preprocess.image_size[1]");
            mean = floats(Json.req(p, "mean", "preprocess"), "preprocess.mean");
            std = floats(Json.req(p, "std", "preprocess"), "preprocess.std");
            for (float s : std) if (!(s > 0)) throw new IllegalArgumentException("preprocess.std must be > 0");
            interpolation = Json.str(Json.req(p, "interpolation", "preprocess"), "preprocess.interpolation");
            resizeMode = Json.str(Json.req(p, "resize_mode", "preprocess"), "preprocess.resize_mode");
            fillColor = p.containsKey("fill_color") ? (int) Json.integer(p.get("fill_color"), "preprocess.fill_color") : 0;
            mode = p.containsKey("mode") ? Json.str(p.get("mode"), "preprocess.mode") : "RGB";
            if (!"RGB".equals(mode)) throw new IllegalArgumentException("preprocess.mode '" + mode + "' unsupported (RGB)");
            ImagePreprocessor.Interpolation.parse(interpolation);
            ImagePreprocessor.ResizeMode.parse(resizeMode);
        }

        private static float[] floats(Object o, String what) {
            List<Object> l = Json.arr(o, what);
            if (l.size() != 3) throw new IllegalArgumentException(what + ": expected 3 values");
            float[] f = new float[3];
            for (int i = 0; i < 3; i++) f[i] = (float) Json.num(l.get(i), what);
            return f;
        }
    }

    public static final class TokenizerConfig {
        public final int contextLength, vocabSize, sotTokenId, eotTokenId, padTokenId;
        public final String vocabFile, vocabId, clean;

        TokenizerConfig(Map<String, Object> t) {
            contextLength = (int) Json.integer(Json.req(t, "context_length", "tokenizer"), "tokenizer.context_length");
            vocabSize = (int) Json.integer(Json.req(t, "vocab_size", "tokenizer"), "tokenizer.vocab_size");
            vocabFile = Json.str(Json.req(t, "vocab_file", "tokenizer"), "tokenizer.vocab_file");
            vocabId = t.containsKey("vocab_id") ? Json.str(t.get("vocab_id"), "tokenizer.vocab_id") : null;
            sotTokenId = (int) Json.integer(Json.req(t, "sot_token_id", "tokenizer"), "tokenizer.sot_token_id");
            eotTokenId = (int) Json.integer(Json.req(t, "eot_token_id", "tokenizer"), "tokenizer.eot_token_id");
            padTokenId = t.containsKey("pad_token_id") ? (int) Json.integer(t.get("pad_token_id"), "tokenizer.pad_token_id") : 0;
            clean = t.containsKey("clean") ? Json.str(t.get("clean"), "tokenizer.clean") : "lower";
            TextCleaner.Mode.parse(clean);
            if (contextLength < 2) throw new IllegalArgumentException("tokenizer.context_length must be >= 2");
            if (padTokenId != 0) throw new IllegalArgumentException("tokenizer.pad_token_id must be 0 (open_clip pads with 0)");
        }
    }

    public static final class ZeroShot {
        public final List<String> labels;
        public final String templates;
        public final int nTemplates;
        public final float logitScale;

        ZeroShot(Map<String, Object> z) {
            List<String> l = new ArrayList<>();
            for (Object o : Json.arr(Json.req(z, "labels", "zero_shot"), "zero_shot.labels"))
                l.add(Json.str(o, "zero_shot.labels[]"));
            labels = Collections.unmodifiableList(l);
            templates = z.containsKey("templates") && z.get("templates") != null ? Json.str(z.get("templates"), "zero_shot.templates") : null;
            nTemplates = z.containsKey("n_templates") ? (int) Json.integer(z.get("n_templates"), "zero_shot.n_templates") : 0;
            logitScale = (float) Json.num(Json.req(z, "logit_scale", "zero_shot"), "zero_shot.logit_scale");
        }
    }

    /** One tensor of a file's {@code inputs} / {@code outputs}: {@code {"name", "shape": [..], "dtype"}}. */
    public static final class TensorSpec {
        /** The dtypes a pytorch_android_lite Tensor can hold (org.pytorch.DType), as the manifest spells them. */
        public static final List<String> DTYPES = Collections.unmodifiableList(
                Arrays.asList("float32", "float64", "int64", "int32", "int8", "uint8"));
        public final String name, dtype;
        private final long[] shape;

        TensorSpec(Map<String, Object> t, String what) {
            name = Json.str(Json.req(t, "name", what), what + ".name");
            dtype = Json.str(Json.req(t, "dtype", what), what + ".dtype");
            if (!DTYPES.contains(dtype))
                throw new IllegalArgumentException(what + ".dtype '" + dtype + "' is not one of " + DTYPES);
            List<Object> dims = Json.arr(Json.req(t, "shape", what), what + ".shape");
            shape = new long[dims.size()];
            for (int d = 0; d < shape.length; d++) {
                shape[d] = Json.integer(dims.get(d), what + ".shape[" + d + "]");
                if (shape[d] < 0) throw new IllegalArgumentException(what + ".shape[" + d + "] is negative");
            }
        }

        /** The shape (a fresh copy, like org.pytorch.Tensor.shape()). */
        public long[] shape() {
            return shape.clone();
        }

        /** Number of elements; throws when it does not fit a Java array. */
        public int numel() {
            long n = 1;
            for (long d : shape) {
                n *= d;
                if (n > Integer.MAX_VALUE) throw new IllegalArgumentException(name + ": shape too large for one array");
            }
            return (int) n;
        }
    }

    public static final class FileEntry {
        public final String role, file, format, sha256;
        public final long bytes;
        /** Input / output specs (empty for files that are not models: vocab, ops). */
        public final List<TensorSpec> inputs, outputs;

        FileEntry(Map<String, Object> f) {
            role = Json.str(Json.req(f, "role", "files[]"), "files[].role");
            file = Json.str(Json.req(f, "file", "files[]"), "files[].file");
            format = Json.str(Json.req(f, "format", "files[]"), "files[].format");
            sha256 = Json.str(Json.req(f, "sha256", "files[]"), "files[].sha256").toLowerCase(Locale.ROOT);
            bytes = f.containsKey("bytes") ? Json.integer(f.get("bytes"), "files[].bytes") : -1;
            if (file.contains("/") || file.contains("\\") || file.equals("..") || file.isEmpty())
                throw new IllegalArgumentException("files[].file must be a plain file name: '" + file + "'");
            if (!sha256.matches("[0-9a-f]{64}")) throw new IllegalArgumentException("files[].sha256 of " + file + " is not 64 hex digits");
            inputs = specs(f, "inputs");
            outputs = specs(f, "outputs");
            if (isModel() && inputs.isEmpty())
                throw new IllegalArgumentException("files[] " + file + " (" + format + "): no inputs spec (reconvert with this kit)");
        }

        private List<TensorSpec> specs(Map<String, Object> f, String key) {
            if (!f.containsKey(key)) return Collections.emptyList();
            List<TensorSpec> l = new ArrayList<>();
            List<Object> raw = Json.arr(f.get(key), file + "." + key);
            for (int i = 0; i < raw.size(); i++) {
                String what = file + "." + key + "[" + i + "]";
                l.add(new TensorSpec(Json.obj(raw.get(i), what), what));
            }
            return Collections.unmodifiableList(l);
        }

        /** A model file: TorchScript ({@code lite}/{@code ptl} .ptl, {@code torchscript} .pt) or ExecuTorch ({@code pte}). */
        public boolean isModel() {
            return runtimeFormat() != null || format.equals("torchscript");
        }

        /**
         * {@link Runtimes#PTL} for a lite-interpreter file ({@code "lite"}, the kit's spelling since format_version 1,
         * or {@code "ptl"}), {@link Runtimes#PTE} for an ExecuTorch program, null for anything a phone does not run.
         */
        public String runtimeFormat() {
            if (format.equals("lite") || format.equals(Runtimes.PTL)) return Runtimes.PTL;
            return format.equals(Runtimes.PTE) ? Runtimes.PTE : null;
        }
    }

    private Manifest(Map<String, Object> m) {
        raw = m;
        String format = Json.str(Json.req(m, "format", "manifest"), "format");
        if (!FORMAT.equals(format)) throw new IllegalArgumentException("not a clip-mobile-kit manifest: format '" + format + "'");
        formatVersion = (int) Json.integer(Json.req(m, "format_version", "manifest"), "format_version");
        if (formatVersion < 1 || formatVersion > FORMAT_VERSION)
            throw new IllegalArgumentException("manifest format_version " + formatVersion + " unsupported (this app reads " + FORMAT_VERSION + ")");
        kitVersion = m.containsKey("kit_version") ? Json.str(m.get("kit_version"), "kit_version") : null;
        Map<String, Object> model = m.containsKey("model") ? Json.obj(m.get("model"), "model") : Collections.<String, Object>emptyMap();
        modelName = model.containsKey("name") ? Json.str(model.get("name"), "model.name") : null;
        embedDim = model.get("embed_dim") instanceof Long ? (Long) model.get("embed_dim") : null;
        target = Json.str(Json.req(m, "target", "manifest"), "target");
        engine = Json.str(Json.req(m, "engine", "manifest"), "engine");
        if (!TARGET.equals(target) || !ENGINE.equals(engine))
            throw new IllegalArgumentException("these artifacts were converted with --target " + target + " (engine " + engine + ")"
                    + ("fbgemm".equals(engine) ? ": their int8 weights are packed for x86 (fbgemm)" : "")
                    + "; the phone runs --target " + TARGET + " (engine " + ENGINE + "): reconvert with "
                    + "`python -m convert --target android --out out/android_demo --force --install-to android_demo`");
        Map<String, Object> versions = m.containsKey("versions") ? Json.obj(m.get("versions"), "versions") : Collections.<String, Object>emptyMap();
        bytecodeVersion = versions.get("bytecode") instanceof Long ? (int) (long) (Long) versions.get("bytecode") : -1;
        executorchVersion = versions.get("executorch") == null ? null : Json.str(versions.get("executorch"), "versions.executorch");
        Map<String, Object> config = m.get("config") == null ? Collections.<String, Object>emptyMap() : Json.obj(m.get("config"), "config");
        Object truncate = config.get("truncate_text");
        if (truncate != null && !(truncate instanceof Boolean))
            throw new IllegalArgumentException("config.truncate_text must be true, false or null, got " + truncate);
        truncateText = Boolean.TRUE.equals(truncate);
        preprocess = new Preprocess(Json.obj(Json.req(m, "preprocess", "manifest"), "preprocess"));
        tokenizer = new TokenizerConfig(Json.obj(Json.req(m, "tokenizer", "manifest"), "tokenizer"));
        zeroShot = m.get("zero_shot") == null ? null : new ZeroShot(Json.obj(m.get("zero_shot"), "zero_shot"));
        List<FileEntry> fl = new ArrayList<>();
        for (Object o : Json.arr(Json.req(m, "files", "manifest"), "files")) fl.add(new FileEntry(Json.obj(o, "files[]")));
        files = Collections.unmodifiableList(fl);
    }

    public static Manifest parse(String json) {
        return new Manifest(Json.obj(Json.parse(json), "manifest"));
    }

    public static Manifest load(File f) throws IOException {
        try (InputStream in = new FileInputStream(f)) {
            return load(in);
        }
    }

    public static Manifest load(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        int n;
        while ((n = in.read(buf)) > 0) b.write(buf, 0, n);
        return parse(new String(b.toByteArray(), StandardCharsets.UTF_8));
    }

    /** First entry with this role ({@code image_encoder}, {@code text_encoder}, {@code zero_shot_head}, {@code vocab}, ...), or null. */
    public FileEntry file(String role) {
        for (FileEntry f : files) if (f.role.equals(role)) return f;
        return null;
    }

    /** The entry with this role and runtime format ({@link Runtimes#PTL} / {@link Runtimes#PTE}), or null. */
    public FileEntry file(String role, String runtimeFormat) {
        for (FileEntry f : files) if (f.role.equals(role) && runtimeFormat.equals(f.runtimeFormat())) return f;
        return null;
    }

    /** Like {@link #file(String, String)} but throws when missing. */
    public FileEntry requireFile(String role, String runtimeFormat) {
        FileEntry f = file(role, runtimeFormat);
        if (f == null) throw new IllegalArgumentException("manifest has no " + runtimeFormat + " file with role '" + role + "'");
        return f;
    }

    /** Like {@link #file} but throws when missing. */
    public FileEntry requireFile(String role) {
        FileEntry f = file(role);
        if (f == null) throw new IllegalArgumentException("manifest has no file with role '" + role + "'");
        return f;
    }

    /** True when {@code f} has the manifest's sha256 (and size, when the manifest gives one). */
    public static boolean verify(FileEntry entry, File f) throws IOException {
        if (!f.isFile()) return false;
        if (entry.bytes >= 0 && f.length() != entry.bytes) return false;
        try (InputStream in = new FileInputStream(f)) {
            return sha256Hex(in).equals(entry.sha256);
        }
    }

    public static String sha256Hex(InputStream in) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) md.update(buf, 0, n);
        StringBuilder s = new StringBuilder(64);
        for (byte b : md.digest()) s.append(String.format(Locale.ROOT, "%02x", b & 0xff));
        return s.toString();
    }
}
