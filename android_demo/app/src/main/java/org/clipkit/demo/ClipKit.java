package org.clipkit.demo;

import android.content.Context;
import android.content.res.AssetManager;
import android.graphics.Bitmap;
import android.util.Log;

import org.clipkit.core.ClipTokenizer;
import org.clipkit.core.ImagePreprocessor;
import org.clipkit.core.Manifest;
import org.pytorch.IValue;
import org.pytorch.LiteModuleLoader;
import org.pytorch.Module;
import org.pytorch.PyTorchAndroid;
import org.pytorch.Tensor;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The converted artifacts on the device. Everything model-specific comes from manifest.json:
 * image size, mean/std, interpolation, resize mode, context length, clean mode, labels, logit scale.
 *
 * <p>Artifacts ship in the APK under assets/clipkit/ (installed there by
 * {@code python -m convert --target android --out out/android_demo --force --install-to android_demo}); on first use they are copied to
 * app-private storage (filesDir/clipkit), because LiteModuleLoader.load needs a file path, and checked
 * against the manifest's sha256. All loading and inference must run off the main thread: use
 * {@link #executor()}.
 */
public final class ClipKit {
    static final String TAG = "ClipKit";
    static final String ASSET_DIR = "clipkit";
    /** The runtime, as benchmark reports name it: keep in step with pytorchLite in gradle/libs.versions.toml (checked by check_app.sh). */
    static final String RUNTIME = "pytorch_android_lite 2.1.0";

    private static ClipKit instance;
    private static final ExecutorService EXECUTOR = Executors.newSingleThreadExecutor();

    public final File dir;
    public final Manifest manifest;
    public final ImagePreprocessor preprocessor;
    private ClipTokenizer tokenizer;
    private final Map<String, Module> modules = new HashMap<>();

    /** One background thread: PyTorch modules are used from it only. */
    public static ExecutorService executor() {
        return EXECUTOR;
    }

    /** Copies/verifies the artifacts and parses the manifest. Call on {@link #executor()}. */
    public static synchronized ClipKit get(Context ctx) throws IOException {
        if (instance == null) instance = new ClipKit(ctx.getApplicationContext());
        return instance;
    }

    private ClipKit(Context ctx) throws IOException {
        dir = new File(ctx.getFilesDir(), ASSET_DIR);
        if (!dir.isDirectory() && !dir.mkdirs()) throw new IOException("cannot create " + dir);
        AssetManager am = ctx.getAssets();
        File manifestFile = new File(dir, "manifest.json");
        copyAsset(am, ASSET_DIR + "/manifest.json", manifestFile);
        manifest = Manifest.load(manifestFile);
        for (Manifest.FileEntry f : manifest.files) {
            if (!(f.format.equals("lite") || f.format.equals("bpe-merges-gz"))) continue;
            File out = new File(dir, f.file);
            if (!Manifest.verify(f, out)) {
                copyAsset(am, ASSET_DIR + "/" + f.file, out);
                if (!Manifest.verify(f, out))
                    throw new IOException(f.file + ": sha256 does not match manifest.json (re-run the converter's --install-to)");
            }
        }
        preprocessor = new ImagePreprocessor(manifest.preprocess);
        Log.i(TAG, "artifacts ready in " + dir + " model=" + manifest.modelName + " engine=" + manifest.engine);
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

    public static void setThreads(int threads) {
        if (threads > 0) PyTorchAndroid.setNumThreads(threads);
    }

    /** Loads (once) the lite module with this manifest role. */
    public synchronized Module module(String role) {
        Module m = modules.get(role);
        if (m == null) {
            File f = new File(dir, manifest.requireFile(role).file);
            long t0 = System.nanoTime();
            m = LiteModuleLoader.load(f.getAbsolutePath());
            Log.i(TAG, "loaded " + f.getName() + " in " + (System.nanoTime() - t0) / 1e6 + " ms");
            modules.put(role, m);
        }
        return m;
    }

    /** ARGB pixels of a bitmap (ARGB_8888). */
    public static int[] pixels(Bitmap bmp) {
        Bitmap b = bmp.getConfig() == Bitmap.Config.ARGB_8888 ? bmp : bmp.copy(Bitmap.Config.ARGB_8888, false);
        int[] px = new int[b.getWidth() * b.getHeight()];
        b.getPixels(px, 0, b.getWidth(), 0, 0, b.getWidth(), b.getHeight());
        return px;
    }

    public Tensor imageTensor(Bitmap bmp) {
        float[] chw = preprocessor.process(pixels(bmp), bmp.getWidth(), bmp.getHeight());
        return Tensor.fromBlob(chw, new long[]{1, 3, preprocessor.outputHeight(), preprocessor.outputWidth()});
    }

    /** Unnormalised image embedding (docs/formats.md). */
    public float[] encodeImage(Bitmap bmp) {
        return module("image_encoder").forward(IValue.from(imageTensor(bmp))).toTensor().getDataAsFloatArray();
    }

    /** Unnormalised text embedding. */
    public float[] encodeText(String text) throws IOException {
        long[] ids = tokenizer().tokenizeToLongs(text);
        Tensor t = Tensor.fromBlob(ids, new long[]{1, ids.length});
        return module("text_encoder").forward(IValue.from(t)).toTensor().getDataAsFloatArray();
    }

    /** Zero-shot logits (logit_scale * cosine) for one image embedding. */
    public float[] zeroShotLogits(float[] imageEmbedding) {
        Tensor t = Tensor.fromBlob(imageEmbedding, new long[]{1, imageEmbedding.length});
        return module("zero_shot_head").forward(IValue.from(t)).toTensor().getDataAsFloatArray();
    }
}
