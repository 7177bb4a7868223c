package org.clipkit.demo;

import android.app.Activity;
import android.content.Intent;
import android.os.Bundle;
import android.widget.Button;
import android.widget.LinearLayout;
import android.widget.TextView;

/** Entry: three screens. */
public class MainActivity extends Activity {
    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        LinearLayout root = UiTask.column(this);
        final TextView status = new TextView(this);
        status.setText("Loading manifest…");
        root.addView(status);
        root.addView(button("Zero-shot classification", ClassifyActivity.class));
        root.addView(button("Search my pictures", SearchActivity.class));
        root.addView(button("Benchmark", BenchmarkActivity.class));
        setContentView(root);
        UiTask.run(this, status, "Artifacts not usable", () -> {
            ClipKit kit = ClipKit.get(this, getIntent());
            return "Runtime: " + kit.backend.runtime() + " (" + kit.format + " files)\nModel: " + kit.manifest.modelName + " (" + kit.manifest.target + ", " + kit.manifest.engine + ", bytecode "
                    + kit.manifest.bytecodeVersion + "), input " + kit.manifest.preprocess.imageHeight + "x"
                    + kit.manifest.preprocess.imageWidth + ", context " + kit.manifest.tokenizer.contextLength;
        });
    }

    private Button button(String label, final Class<?> target) {
        return UiTask.button(this, label, v -> startActivity(new Intent(this, target)));
    }
}
