package org.clipkit.demo;

import android.Manifest;
import android.app.Activity;
import android.content.ContentUris;
import android.content.pm.PackageManager;
import android.database.Cursor;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.provider.MediaStore;
import android.util.Log;
import android.widget.Button;
import android.widget.EditText;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.TextView;

import org.clipkit.core.EmbeddingIndex;
import org.clipkit.core.Ranking;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.util.List;
import java.util.Locale;

/**
 * Screen 2: free-text search over the phone's pictures. Image embeddings are computed once per picture
 * (key = content URI + "@" + DATE_MODIFIED) and stored in filesDir/clipkit/image_index.ckei (core's
 * EmbeddingIndex format); the index is rebuilt when the image encoder's sha256 changes. Queries are
 * tokenized by the core tokenizer and encoded on the device.
 */
public class SearchActivity extends Activity {
    private static final int PERMISSION = 7;
    private EditText query;
    private TextView out;
    private volatile boolean indexing;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        LinearLayout root = UiTask.column(this);
        Button index = UiTask.button(this, "Index pictures", v -> ensurePermissionThenIndex());
        query = new EditText(this);
        query.setHint("e.g. a dog on a beach");
        Button search = UiTask.button(this, "Search", v -> search(query.getText().toString()));
        out = new TextView(this);
        root.addView(index);
        root.addView(query);
        root.addView(search);
        root.addView(out);
        ScrollView sv = new ScrollView(this);
        sv.addView(root);
        setContentView(sv);
    }

    /**
     * Manifest.permission.READ_MEDIA_IMAGES is API 33 (TIRAMISU): written as its literal value (javac inlines the
     * constant anyway) so that the app compiles against the API 23 android.jar of the CI check; the SDK_INT
     * guard keeps READ_EXTERNAL_STORAGE, declared with maxSdkVersion 32, for older phones.
     */
    static final String READ_MEDIA_IMAGES = "android.permission.READ_MEDIA_IMAGES";
    static final int TIRAMISU = 33; // Build.VERSION_CODES.TIRAMISU, API 33

    private String permission() {
        return Build.VERSION.SDK_INT >= TIRAMISU ? READ_MEDIA_IMAGES : Manifest.permission.READ_EXTERNAL_STORAGE;
    }

    private void ensurePermissionThenIndex() {
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.M && checkSelfPermission(permission()) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(new String[]{permission()}, PERMISSION);
        } else {
            buildIndex();
        }
    }

    @Override
    public void onRequestPermissionsResult(int requestCode, String[] permissions, int[] grantResults) {
        if (requestCode == PERMISSION && grantResults.length > 0 && grantResults[0] == PackageManager.PERMISSION_GRANTED) buildIndex();
        else out.setText("Permission to read pictures denied.");
    }

    private static File indexFile(ClipKit kit) {
        return new File(kit.dir, "image_index.ckei");
    }

    private static EmbeddingIndex loadIndex(ClipKit kit, int dim) {
        String modelId = kit.entry("image_encoder").sha256;
        File f = indexFile(kit);
        if (f.isFile()) {
            try (InputStream in = new FileInputStream(f)) {
                EmbeddingIndex idx = EmbeddingIndex.read(in);
                if (idx.modelId().equals(modelId) && idx.dim() == dim) return idx;
                Log.i(ClipKit.TAG, "index belongs to another model, rebuilding");
            } catch (Exception e) {
                Log.w(ClipKit.TAG, "index unreadable, rebuilding: " + e);
            }
        }
        return new EmbeddingIndex(dim, modelId);
    }

    private void buildIndex() {
        if (indexing) return;
        indexing = true;
        out.setText("Indexing…");
        UiTask.run(this, out, "Indexing failed", () -> {
            try {
                return indexPictures();
            } finally {
                indexing = false;
            }
        });
    }

    /** Adds the pictures not yet in the index; runs on the background thread. */
    private String indexPictures() throws Exception {
        ClipKit kit = ClipKit.get(this, getIntent());
        EmbeddingIndex idx = null;
        int added = 0, seen = 0;
        Uri collection = MediaStore.Images.Media.EXTERNAL_CONTENT_URI;
        String[] cols = {MediaStore.Images.Media._ID, MediaStore.Images.Media.DATE_MODIFIED};
        try (Cursor c = getContentResolver().query(collection, cols, null, null,
                MediaStore.Images.Media.DATE_MODIFIED + " DESC")) {
            while (c != null && c.moveToNext()) {
                seen++;
                Uri uri = ContentUris.withAppendedId(collection, c.getLong(0));
                String key = uri + "@" + c.getLong(1);
                if (idx != null && idx.contains(key)) continue;
                Bitmap bmp = decodeForIndex(uri, Math.max(kit.preprocessor.outputHeight(), kit.preprocessor.outputWidth()));
                if (bmp == null) continue;
                float[] emb = kit.encodeImage(bmp);
                bmp.recycle();
                if (idx == null) idx = loadIndex(kit, emb.length);
                if (idx.contains(key)) continue;
                idx.put(key, emb);
                added++;
                if (added % 20 == 0) {
                    save(kit, idx);
                    UiTask.show(this, out, "Indexed " + added + " new pictures…");
                }
            }
        }
        if (idx != null) save(kit, idx);
        return "Pictures: " + seen + ", newly indexed: " + added + ", index: " + indexFile(kit);
    }

    private static void save(ClipKit kit, EmbeddingIndex idx) throws java.io.IOException {
        File tmp = new File(indexFile(kit).getPath() + ".tmp");
        try (FileOutputStream o = new FileOutputStream(tmp)) {
            idx.write(o);
        }
        if (!tmp.renameTo(indexFile(kit))) throw new java.io.IOException("cannot write index");
    }

    /**
     * Index-time decode: subsampled by a power of two while the shorter side stays >= 4x the model input,
     * which keeps memory bounded (the reference pipeline resizes the full image, so scores differ slightly).
     */
    private Bitmap decodeForIndex(Uri uri, int modelSide) {
        try {
            BitmapFactory.Options o = new BitmapFactory.Options();
            o.inJustDecodeBounds = true;
            try (InputStream in = getContentResolver().openInputStream(uri)) {
                BitmapFactory.decodeStream(in, null, o);
            }
            int target = 4 * modelSide;
            int sample = 1;
            while (Math.min(o.outWidth, o.outHeight) / (sample * 2) >= target) sample *= 2;
            BitmapFactory.Options d = new BitmapFactory.Options();
            d.inSampleSize = sample;
            d.inPreferredConfig = Bitmap.Config.ARGB_8888;
            try (InputStream in = getContentResolver().openInputStream(uri)) {
                return BitmapFactory.decodeStream(in, null, d);
            }
        } catch (Exception e) {
            Log.w(ClipKit.TAG, "skip " + uri + ": " + e);
            return null;
        }
    }

    private void search(final String text) {
        out.setText("Searching…");
        UiTask.run(this, out, "Search failed", () -> {
            ClipKit kit = ClipKit.get(this, getIntent());
            float[] q = kit.encodeText(text);
            EmbeddingIndex idx = loadIndex(kit, q.length);
            if (idx.size() == 0) throw new IllegalStateException("index is empty: tap 'Index pictures' first");
            List<Ranking.Hit> hits = Ranking.search(q, idx, 20);
            StringBuilder sb = new StringBuilder();
            for (Ranking.Hit h : hits)
                sb.append(String.format(Locale.ROOT, "%.3f  %s%n", h.score, h.key.substring(0, h.key.lastIndexOf('@'))));
            return sb.toString();
        });
    }
}
