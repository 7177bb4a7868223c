package org.clipkit.demo;

import android.content.Context;
import android.content.Intent;
import android.content.res.AssetManager;
import android.graphics.Bitmap;
import android.util.Log;

import org.clipkit.core.Backend;
import org.clipkit.core.ClipTokenizer;
import org.clipkit.core.ImagePreprocessor;
import org.clipkit.core.Manifest;
import org.clipkit.core.Runtimes;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The converted artifacts on the device. Everything model-specific comes from manifest.json:
 * image size, mean/std, interpolation, resize mode, context length, clean mode, labels, logit scale.
 *
 * <p>Artifacts ship in the APK under assets/clipkit/ (installed there by
 * {@code python -m convert --target android --out out/android_demo --force --install-to android_demo}); on first use they are copied to
 * app-private storage (filesDir/clipkit), because both runtimes load from a file path, and checked
 * against the manifest's sha256. All loading and inference must run off the main thread: use
 * {@link #executor()}.
 *
 * <p>The runtime: {@code .pte} through ExecuTorch or {@code .ptl} through pytorch_android_lite, chosen by the core's
 * {@link Runtimes#choose} from the manifest's {@code files[].format} and the runtimes this build links
 * ({@link BuiltIn}, one per Gradle flavor); the intent extra {@code runtime} ({@code ptl} / {@code pte}) forces one,
 * e.g. {@code adb shell am start -n org.clipkit.demo/.MainActivity --es runtime ptl}. The choice holds for the
 * process until another activity forces the other one.
 */
public final class ClipKit {
    static final String TAG = "ClipKit";
    static final String ASSET_DIR = "clipkit";
    /** Intent extra forcing the runtime: {@code ptl} or {@code pte}. */
    static final String EXTRA_RUNTIME = "runtime";

    private static ClipKit instance;
    private static final ExecutorService EXECUTOR = Executors.newSingleThreadExecutor();

    public final File dir;
    public final Manifest manifest;
    public final ImagePreprocessor preprocessor;
    /** {@link Runtimes#PTL} or {@link Runtimes#PTE}: the files this instance runs. */
    public final String format;
    public final Backend backend;
    private ClipTokenizer tokenizer;
    private final Map<String, Backend.Model> models = new HashMap<>();

    /** One background thread: the runtime's modules are used from it only. */
    public static ExecutorService executor() {
        return EXECUTOR;
    }

    /**
     * Copies/verifies the artifacts and parses the manifest; honours the intent's {@code runtime} extra (null
     * intent: keep the current choice). Call on {@link #executor()}.
     */
    public static synchronized ClipKit get(Context ctx, Intent intent) throws IOException {
        String forced = intent == null ? null : intent.getStringExtra(EXTRA_RUNTIME);
        boolean other = forced != null && !forced.isEmpty() && instance != null && !forced.equals(instance.format);
        if (other) instance.destroy();
        if (instance == null || other) instance = new ClipKit(ctx.getApplicationContext(), forced);
        return instance;
    }

    private ClipKit(Context ctx, String forcedFormat) throws IOException {
        dir = new File(ctx.getFilesDir(), ASSET_DIR);
        if (!dir.isDirectory() && !dir.mkdirs()) throw new IOException("cannot create " + dir);
        AssetManager am = ctx.getAssets();
        File manifestFile = new File(dir, "manifest.json");
        copyAsset(am, ASSET_DIR + "/manifest.json", manifestFile);
        manifest = Manifest.load(manifestFile);
        List<String> builtIn = new ArrayList<>();
        for (Backend b : BuiltIn.BACKENDS) builtIn.add(b.format());
        format = Runtimes.choose(manifest, builtIn, forcedFormat);
        backend = BuiltIn.BACKENDS[builtIn.indexOf(format)];
        for (Manifest.FileEntry f : manifest.files) {
            if (!(format.equals(f.runtimeFormat()) || f.format.equals("bpe-merges-gz"))) continue;
            File out = new File(dir, f.file);
            if (!Manifest.verify(f, out)) {
                copyAsset(am, ASSET_DIR + "/" + f.file, out);
                if (!Manifest.verify(f, out))
                    throw new IOException(f.file + ": sha256 does not match manifest.json (re-run the converter's --install-to)");
            }
        }
        preprocessor = new ImagePreprocessor(manifest.preprocess);
        Log.i(TAG, "artifacts ready in " + dir + " model=" + manifest.modelName + " engine=" + manifest.engine + " runtime="
                + backend.runtime() + " (" + format + ")");
    }

    private static void copyAsset(AssetManager am, String asset, File out) throws IOException {
        File tmp = new File(out.getPath() + ".tmp");
        try (InputStream in = am.open(asset); OutputStream o = new FileOutputStream(tmp)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) o.write(buf, 0, n);
        } catch (IOException e) {
            throw new IOException("asset " + asset + " missing: install artifacts with "
                    + "`python -m convert --target android --out out/android_demo --force --install-to android_demo` and rebuild", e);
        }
        if (!tmp.renameTo(out)) throw new IOException("cannot move " + tmp + " to " + out);
    }

    public synchronized ClipTokenizer tokenizer() throws IOException {
        if (tokenizer == null) {
            Manifest.TokenizerConfig t = manifest.tokenizer;
            try (InputStream in = new FileInputStream(new File(dir, t.vocabFile))) {
                tokenizer = new ClipTokenizer(in, t.contextLength, t.clean);
            }
            if (tokenizer.sotTokenId() != t.sotTokenId || tokenizer.eotTokenId() != t.eotTokenId
                    || tokenizer.vocabSize() != t.vocabSize)
                throw new IOException("vocabulary does not match manifest tokenizer block");
        }
        return tokenizer;
    }

    /** The manifest entry of this role in the runtime's format. */
    public Manifest.FileEntry entry(String role) {
        return manifest.requireFile(role, format);
    }

    /** Loads (once) the model with this manifest role, with the runtime's default thread count. */
    public synchronized Backend.Model model(String role) {
        Backend.Model m = models.get(role);
        if (m == null) {
            File f = new File(dir, entry(role).file);
            long t0 = System.nanoTime();
            m = backend.load(f.getAbsolutePath(), 0);
            Log.i(TAG, "loaded " + f.getName() + " in " + (System.nanoTime() - t0) / 1e6 + " ms");
            models.put(role, m);
        }
        return m;
    }

    private synchronized void destroy() {
        for (Backend.Model m : models.values()) m.destroy();
        models.clear();
    }

    /** ARGB pixels of a bitmap (ARGB_8888). */
    public static int[] pixels(Bitmap bmp) {
        Bitmap b = bmp.getConfig() == Bitmap.Config.ARGB_8888 ? bmp : bmp.copy(Bitmap.Config.ARGB_8888, false);
        int[] px = new int[b.getWidth() * b.getHeight()];
        b.getPixels(px, 0, b.getWidth(), 0, 0, b.getWidth(), b.getHeight());
        return px;
    }

    /** Unnormalised image embedding (docs/formats.md). */
    public float[] encodeImage(Bitmap bmp) {
        float[] chw = preprocessor.process(pixels(bmp), bmp.getWidth(), bmp.getHeight());
        return model("image_encoder").run(chw, new long[]{1, 3, preprocessor.outputHeight(), preprocessor.outputWidth()});
    }

    /** Token ids of one text as the text tower takes them: {@code [1, L]}, see {@link Manifest#truncateText}. */
    public long[] textIds(String text) throws IOException {
        return tokenizer().tokenizeToLongs(text, manifest.truncateText);
    }

    /** Unnormalised text embedding. */
    public float[] encodeText(String text) throws IOException {
        long[] ids = textIds(text);
        return model("text_encoder").run(ids, new long[]{1, ids.length});
    }

    /** Zero-shot logits (logit_scale * cosine) for one image embedding. */
    public float[] zeroShotLogits(float[] imageEmbedding) {
        return model("zero_shot_head").run(imageEmbedding, new long[]{1, imageEmbedding.length});
    }
}
