package org.clipkit.demo;

import android.app.Activity;
import android.content.Context;
import android.util.Log;
import android.view.View;
import android.widget.Button;
import android.widget.LinearLayout;
import android.widget.TextView;

import java.util.Locale;

/**
 * The one pattern of every screen: run a job on {@link ClipKit#executor()} (model loading and inference
 * must stay off the main thread) and show the text it returns, or the failure, in a TextView on the UI thread.
 */
final class UiTask {
    /** Background work that returns the text to show. */
    interface Job {
        String run() throws Exception;
    }

    private UiTask() {}

    /**
     * Runs {@code job} on the background thread and shows its result in {@code target}; on failure shows
     * {@code failure + ": " + error} and logs (tag ClipKit) {@code failure} in lower case with the stack trace.
     * Errors are caught too: UnsatisfiedLinkError (native library) and OutOfMemoryError (a large model) are the
     * likely failures on a phone, and an uncaught one would kill the app instead of saying what went wrong.
     */
    static void run(final Activity activity, final TextView target, final String failure, final Job job) {
        ClipKit.executor().execute(() -> {
            String text;
            try {
                text = job.run();
            } catch (Throwable e) {
                Log.e(ClipKit.TAG, failure.toLowerCase(Locale.ROOT), e);
                text = failure + ": " + e;
            }
            show(activity, target, text);
        });
    }

    /** Sets {@code target}'s text on the UI thread (from any thread), unless the activity is finishing. */
    static void show(final Activity activity, final TextView target, final String text) {
        activity.runOnUiThread(() -> {
            if (!activity.isFinishing()) target.setText(text);
        });
    }

    /** The screens' layout: one padded vertical column. */
    static LinearLayout column(Context context) {
        LinearLayout root = new LinearLayout(context);
        root.setOrientation(LinearLayout.VERTICAL);
        root.setPadding(32, 32, 32, 32);
        return root;
    }

    /** A labelled button that calls {@code onClick}. */
    static Button button(Context context, String label, View.OnClickListener onClick) {
        Button b = new Button(context);
        b.setText(label);
        b.setOnClickListener(onClick);
        return b;
    }
}
