package org.clipkit.demo;

import org.clipkit.core.Backend;

/** The runtimes this flavor links (lite: pytorch_android_lite only; its .so files are not 16 KB-aligned, see README). */
final class BuiltIn {
    private BuiltIn() {}

    static final Backend[] BACKENDS = {new LiteBackend()};
}
