package org.clipkit.demo;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Bundle;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.TextView;

import org.clipkit.core.Ranking;

import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.Locale;

/** Screen 1: zero-shot classification of a picked or camera image; top-5 labels with probabilities. */
public class ClassifyActivity extends Activity {
    private static final int PICK = 1, CAMERA = 2;
    private ImageView image;
    private TextView result;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        LinearLayout root = UiTask.column(this);
        Button pick = UiTask.button(this, "Pick an image", v -> {
            Intent i = new Intent(Intent.ACTION_GET_CONTENT);
            i.setType("image/*");
            startActivityForResult(i, PICK);
        });
        Button camera = UiTask.button(this, "Camera",
                v -> startActivityForResult(new Intent("android.media.action.IMAGE_CAPTURE"), CAMERA));
        image = new ImageView(this);
        image.setAdjustViewBounds(true);
        image.setMaxHeight(800);
        result = new TextView(this);
        result.setTextSize(16);
        root.addView(pick);
        root.addView(camera);
        root.addView(image);
        root.addView(result);
        ScrollView sv = new ScrollView(this);
        sv.addView(root);
        setContentView(sv);
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        super.onActivityResult(requestCode, resultCode, data);
        if (resultCode != RESULT_OK || data == null) return;
        Bitmap bmp = null;
        try {
            if (requestCode == PICK && data.getData() != null) bmp = decode(data.getData());
            else if (requestCode == CAMERA && data.getExtras() != null) bmp = (Bitmap) data.getExtras().get("data"); // thumbnail
        } catch (IOException e) {
            result.setText("Cannot read image: " + e.getMessage());
            return;
        }
        if (bmp == null) return;
        image.setImageBitmap(bmp);
        classify(bmp);
    }

    /** Full-resolution decode (the desktop reference resizes the full image with PIL), ARGB_8888. */
    private Bitmap decode(Uri uri) throws IOException {
        BitmapFactory.Options o = new BitmapFactory.Options();
        o.inPreferredConfig = Bitmap.Config.ARGB_8888;
        o.inScaled = false;
        try (InputStream in = getContentResolver().openInputStream(uri)) {
            Bitmap b = BitmapFactory.decodeStream(in, null, o);
            if (b == null) throw new IOException("unsupported image");
            return b;
        }
    }

    private void classify(final Bitmap bmp) {
        result.setText("Classifying…");
        UiTask.run(this, result, "Classification failed", () -> {
            ClipKit kit = ClipKit.get(this, getIntent());
            if (kit.manifest.zeroShot == null) throw new IOException("manifest has no zero_shot block");
            long t0 = System.nanoTime();
            float[] emb = kit.encodeImage(bmp);
            float[] probs = Ranking.softmax(kit.zeroShotLogits(emb));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            List<String> labels = kit.manifest.zeroShot.labels;
            if (probs.length != labels.size()) throw new IOException("head gives " + probs.length + " logits for " + labels.size() + " labels");
            StringBuilder sb = new StringBuilder();
            for (int i : Ranking.topK(probs, 5))
                sb.append(String.format(Locale.ROOT, "%-28s %6.2f %%%n", labels.get(i), 100f * probs[i]));
            sb.append(ms).append(" ms (preprocess + image encoder + head)");
            return sb.toString();
        });
    }
}
