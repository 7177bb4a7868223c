package org.clipkit.demo;

import org.clipkit.core.Backend;

/** The runtimes this flavor links (executorch: executorch-android only, the one that can target Android 15+ on Play). */
final class BuiltIn {
    private BuiltIn() {}

    static final Backend[] BACKENDS = {new ExecutorchBackend()};
}
