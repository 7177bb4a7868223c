"""How this process's C heap holds a loaded artifact: weights mapped on their own while a model loads and
packs, activations on the heap while it runs (glibc only; elsewhere nothing changes).

Why: loading reads every int8 weight into its own buffer, and the first call (x86 artifacts pack on the first
call, ``convert/packing.py``; qnnpack packs lazily too) replaces each by its packed copy and frees it. Under
glibc's default rule the mmap threshold rises to the size of the largest mapping freed so far (up to 32 MiB),
so after the first few weights every buffer lands on the heap, and each freed one is a hole glibc never hands
back. So ``M_MMAP_THRESHOLD`` is 128 KiB during :func:`load` and during each model's :func:`first_call`: every
weight and every packed weight is a mapping of its own, and the unpacked ones go back to the system when
packing frees them. Otherwise the threshold is 32 MiB and the trim threshold 64 MiB, where glibc's dynamic
rule would have taken them, so steady calls keep their activations on the heap. The phase ends after the
first call, not after the load, because the packed weights are made there. What it saves and costs, and the
alternatives measured against it: docs/performance.md ("Heap phase") and
``benchmarks/results/profile/README.md`` sections 4 and 6.

``CLIPKIT_HEAP_PHASE=0`` turns it off (for comparisons). Standard library only: the bench worker uses it.
"""
from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
LOAD_MMAP_THRESHOLD = 128 * 1024
SERVE_MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
SERVE_TRIM_THRESHOLD = 2 * SERVE_MMAP_THRESHOLD  # what the dynamic rule sets beside it

_libc = None
_depth = 0
_fresh: set[int] = set()  # ids of loaded models that have not been called yet


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if os.environ.get("CLIPKIT_HEAP_PHASE", "1") != "0" and sys.platform.startswith("linux"):
            try:
                if os.confstr("CS_GNU_LIBC_VERSION"):
                    _libc = ctypes.CDLL(None)  # the process's own libc: the allocator torch uses
            except (OSError, ValueError, AttributeError):  # musl and others: leave the allocator alone
                _libc = False
    return _libc or None


def active() -> bool:
    """True when loads change the allocator's thresholds (glibc, and not turned off)."""
    return _glibc() is not None


@contextmanager
def _mapped():
    """Inside: every allocation of 128 KiB or more is its own mapping. On leaving: the serving thresholds."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    _depth += 1
    libc.mallopt(M_MMAP_THRESHOLD, LOAD_MMAP_THRESHOLD)
    try:
        yield
    finally:
        _depth -= 1
        if not _depth:
            libc.mallopt(M_MMAP_THRESHOLD, SERVE_MMAP_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, SERVE_TRIM_THRESHOLD)


def load(loader, *args, **kwargs):
    """``loader(*args, **kwargs)`` with the weights it reads mapped on their own; the model it returns is
    remembered until :func:`first_call` has seen it called once."""
    with _mapped():
        module = loader(*args, **kwargs)
    _fresh.add(id(module))
    return module


@contextmanager
def first_call(module):
    """Around a call of ``module``: its first call after :func:`load` (where weights are packed and the
    unpacked ones freed) allocates mapped memory too, so the packed weights are mappings of their own and
    the freed ones go back to the system; later calls are left alone."""
    key = id(module)
    if key not in _fresh:
        yield
        return
    with _mapped():
        yield
    _fresh.discard(key)
