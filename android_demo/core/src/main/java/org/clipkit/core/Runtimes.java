package org.clipkit.core;

import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * Which runtime runs a manifest: the one place the app decides between {@code .ptl} (pytorch_android_lite) and
 * {@code .pte} (ExecuTorch). The manifest's {@code files[].format} says what a directory holds (a
 * {@code --format both} conversion lists both for each role); the build says which runtimes are linked in (one
 * per Gradle flavor); an intent extra may force one. No fallback is silent: a forced format that the build or the
 * manifest lacks is an error naming what is available.
 */
public final class Runtimes {
    /** TorchScript lite-interpreter file, run by pytorch_android_lite. */
    public static final String PTL = "ptl";
    /** ExecuTorch program, run by executorch-android. */
    public static final String PTE = "pte";
    /** Preference when nothing is forced: ExecuTorch first (maintained, 16 KB-aligned; see README). */
    public static final List<String> PREFERENCE = Collections.unmodifiableList(Arrays.asList(PTE, PTL));
    /** The model roles every runtime must provide for the app to run on it. */
    public static final List<String> ROLES =
            Collections.unmodifiableList(Arrays.asList("image_encoder", "text_encoder", "zero_shot_head"));

    private Runtimes() {}

    /**
     * The format to run.
     *
     * @param builtIn formats whose runtime this build links ({@link Backend#format()} of each built-in backend)
     * @param forced {@code "ptl"}, {@code "pte"}, or null/empty for the preference order
     * @throws IllegalArgumentException when the forced format is unknown, not built in, or not complete in the
     *     manifest, or when no built-in runtime has all model roles in the manifest
     */
    public static String choose(Manifest manifest, Collection<String> builtIn, String forced) {
        Set<String> complete = completeFormats(manifest);
        if (forced != null && !forced.isEmpty()) {
            if (!PREFERENCE.contains(forced))
                throw new IllegalArgumentException("runtime '" + forced + "' is not one of " + PREFERENCE);
            if (!builtIn.contains(forced))
                throw new IllegalArgumentException("runtime '" + forced + "' is not built into this app (it has "
                        + new TreeSet<>(builtIn) + "): build the " + flavor(forced) + " flavor");
            if (!complete.contains(forced))
                throw new IllegalArgumentException("manifest.json has no complete '" + forced + "' set of " + ROLES
                        + " (it has " + describe(manifest) + "): convert with --format " + forced + " or both");
            return forced;
        }
        for (String f : PREFERENCE) if (builtIn.contains(f) && complete.contains(f)) return f;
        throw new IllegalArgumentException("no runtime of this app (" + new TreeSet<>(builtIn) + ") can run these artifacts ("
                + describe(manifest) + "): convert with --format " + (builtIn.contains(PTE) ? PTE : PTL)
                + " or build the other flavor");
    }

    /** The Gradle flavor that links the runtime of {@code format}. */
    public static String flavor(String format) {
        return PTE.equals(format) ? "executorch" : "lite";
    }

    /** Formats for which the manifest lists every model role. */
    public static Set<String> completeFormats(Manifest manifest) {
        Set<String> out = new TreeSet<>();
        for (String f : PREFERENCE) {
            boolean all = true;
            for (String role : ROLES) all &= manifest.file(role, f) != null;
            if (all) out.add(f);
        }
        return out;
    }

    private static String describe(Manifest manifest) {
        // String.join is API 26: the app runs from API 21
        StringBuilder b = new StringBuilder();
        for (Manifest.FileEntry e : manifest.files)
            if (e.runtimeFormat() != null) b.append(b.length() == 0 ? "" : ", ").append(e.file);
        return b.length() == 0 ? "no model files" : b.toString();
    }
}
