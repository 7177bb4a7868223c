"""Stage 5: script each tower, optimize it for the target, save ``.ptl`` (and ``.pt``) atomically.

Targets:
- ``android``: ``optimize_for_mobile`` (freeze, XNNPACK prepacking, fusions) — what the phone runs.
- ``x86``: scripted and saved *unfrozen*. Two measured reasons: the XNNPACK rewrites make x86 slower
  (MKL/fbgemm beat XNNPACK there), and freezing an fbgemm-quantized model duplicates every weight.
  A lite file serializes its constants twice (the TorchScript constants and the bytecode constants,
  de-duplicated by storage identity); a frozen packed weight is a constant, and fbgemm's packed params
  rebuild a *new* weight tensor each time they are pickled (qnnpack's keep the original), so each
  int8 weight lands in the file twice (ViT-B-32 image tower 170 MiB instead of 85). Unfrozen, the
  packed params are module attributes pickled once.
"""
from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import torch

from .artifact import EXTRA_FILE, bytecode_version
from .errors import ExportError, one_line
from .files import atomic_write, atomic_write_bytes

# pytorch_android_lite 2.1.0, the last Android runtime release, loads bytecode v4..v9.
ANDROID_RUNTIME_BYTECODE = (4, 9)


class _SortedNames(set):
    """A ``set`` that iterates its strings sorted (see :func:`deterministic_scripting`)."""

    def __iter__(self):
        items = list(set.__iter__(self))
        if all(isinstance(item, str) for item in items):
            items.sort()
        return iter(items)


def importable_name(filename: str | None) -> str | None:
    """``/any/prefix/open_clip/transformer.py`` -> ``open_clip/transformer.py``: the path below the
    longest ``sys.path`` entry holding it (where ``import`` finds it), else the bare file name.

    TorchScript records each scripted function's source file name in the archive's ``.debug_pkl``
    records (the source ranges its error messages quote); absolute paths made two installs of the same
    kit and torch (two virtualenvs, two clones) write different artifacts (issue 21)."""
    import os
    import sys

    if not filename:
        return filename
    path = os.path.abspath(filename)
    roots = sorted((os.path.abspath(p or os.curdir) for p in sys.path), key=len, reverse=True)
    for root in roots:
        if path.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, root).replace(os.sep, "/")
    return os.path.basename(path)


def _relative_source_files(get_source_lines_and_file):
    def wrapper(obj, error_msg=None):
        lines, lineno, filename = get_source_lines_and_file(obj, error_msg)
        return lines, lineno, importable_name(filename)

    return wrapper


# The modules that call torch._sources.get_source_lines_and_file by their own global name.
_SOURCE_FILE_USERS = ("torch._sources", "torch.jit.frontend", "torch._jit_internal", "torch.jit.annotations")


@contextlib.contextmanager
def deterministic_scripting():
    """Script so that the same module gives the same archive bytes in any process, at any time.

    Two things made ``text_encoder.ptl`` differ between two conversions of the same model (measured,
    torch 2.12.1; the ``.data/serialization_id`` record is derived from the other records' names and
    CRC32s, so it differed only as a consequence):

    - **Constant order.** TorchScript collects a module class's constants (``__constants__`` and
      ``torch.jit.Final`` attributes) in a Python ``set`` and inserts them in that order into a C++
      ``unordered_map``, whose order is the class header in ``code/``. String hashes are salted per
      process (``PYTHONHASHSEED``), so ``TextEncoder``'s three ``Final`` attributes (every target) and
      ``LayerNorm``'s three constants (x86, unfrozen) came out in another order from run to run.
      While scripting, ``torch.jit._recursive`` sees a ``set`` that iterates sorted.
    - **Mangled class names.** Every scripted class lives in one process-wide compilation unit, which
      renames a second class of the same name ``___torch_mangle_N`` with a process-wide counter; a
      second conversion in the same process (tests, notebooks) wrote other names.
      Each tower is scripted into a fresh compilation unit and type cache (the module keeps its unit
      alive; ``optimize_for_mobile`` clones into the module's own unit).

    - **Source file names.** The ``.debug_pkl`` records name each scripted function's file: the
      absolute path differed between two installs (two virtualenvs or clones). While scripting, the
      file names are the importable ones (:func:`importable_name`: ``convert/head.py``,
      ``open_clip/transformer.py``).

    All patch private names of ``torch.jit`` (pinned torch 2.12.1) and are undone on exit; a torch
    without those names scripts as it always did (and ``tests/test_reproducible.py`` fails).
    """
    import importlib

    from torch.jit import _recursive, _state

    sources = [importlib.import_module(name) for name in _SOURCE_FILE_USERS]
    sources = [m for m in sources if callable(getattr(m, "get_source_lines_and_file", None))]
    original = {m: m.get_source_lines_and_file for m in sources}
    for m in sources:
        m.get_source_lines_and_file = _relative_source_files(original[m])
    try:
        with _fresh_compilation_unit(_recursive, _state):
            yield
    finally:
        for m, fn in original.items():
            m.get_source_lines_and_file = fn


@contextlib.contextmanager
def _fresh_compilation_unit(_recursive, _state):
    """Constant order and mangled names (see :func:`deterministic_scripting`)."""
    if not (hasattr(_state, "_python_cu") and all(
            hasattr(_recursive, name) for name in ("_python_cu", "concrete_type_store", "ConcreteTypeStore"))):
        yield
        return
    saved = (_state._python_cu, _recursive._python_cu, _recursive.concrete_type_store)
    had_set = "set" in vars(_recursive)
    old_set = vars(_recursive).get("set")
    unit = torch._C.CompilationUnit()
    _state._python_cu = _recursive._python_cu = unit
    _recursive.concrete_type_store = _recursive.ConcreteTypeStore()
    _recursive.set = _SortedNames
    try:
        yield
    finally:
        _state._python_cu, _recursive._python_cu, _recursive.concrete_type_store = saved
        if had_set:
            _recursive.set = old_set
        else:
            del _recursive.set


def script_tower(module: torch.nn.Module, role: str) -> torch.jit.ScriptModule:
    """``torch.jit.script`` with a one-line :class:`ExportError` on failure (never an eager fallback),
    reproducibly (:func:`deterministic_scripting`)."""
    try:
        with deterministic_scripting():
            return torch.jit.script(module.eval())
    except Exception as exc:  # noqa: BLE001 - TorchScript raises many types
        raise ExportError(f"{role}: torch.jit.script failed: {one_line(exc)}") from None


def optimize_tower(scripted: torch.jit.ScriptModule, target: str, role: str) -> torch.jit.ScriptModule:
    """Apply the target's optimizations (see module docstring); failures are errors, not fallbacks."""
    if target == "x86":
        return scripted.eval()
    from torch.utils.mobile_optimizer import optimize_for_mobile

    try:
        return optimize_for_mobile(scripted.eval())
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{role}: optimize_for_mobile failed: {one_line(exc)}") from None


# Both savers serialize into memory and write with Python's checked I/O (convert.files.atomic_write_bytes):
# torch's C++ file writer aborts the whole process (SIGABRT, no cleanup) when the disk fills mid-save.
# In-memory archives name their top-level folder "archive/" instead of the file's stem; readers look
# for "*/extra/clip_kit.json" and "*/bytecode.pkl", so nothing depends on that name.
def save_lite(module: torch.jit.ScriptModule, path: Path, metadata: dict[str, Any]) -> None:
    """Save for the lite interpreter with the kit's metadata embedded as ``clip_kit.json``."""
    extra = {EXTRA_FILE: json.dumps(metadata, sort_keys=True)}
    atomic_write_bytes(path, _serialize(lambda: module._save_to_buffer_for_lite_interpreter(_extra_files=extra)))


def save_torchscript(module: torch.jit.ScriptModule, path: Path, metadata: dict[str, Any]) -> None:
    """Save the TorchScript (full JIT) twin with the same embedded metadata."""
    extra = {EXTRA_FILE: json.dumps(metadata, sort_keys=True)}

    def to_bytes() -> bytes:
        buffer = io.BytesIO()
        torch.jit.save(module, buffer, _extra_files=extra)
        return buffer.getvalue()

    atomic_write_bytes(path, _serialize(to_bytes))


def _serialize(save) -> bytes:
    try:
        return save()
    except RuntimeError as exc:
        raise ExportError(f"cannot serialize: {one_line(exc)}") from None


def backport(path: Path, to_version: int) -> int:
    """Rewrite ``path`` in place at bytecode ``to_version`` (older runtimes); returns the version."""
    from torch.jit.mobile import _backport_for_mobile

    current = bytecode_version(path)
    if to_version == current:
        return current
    if to_version > current:
        raise ExportError(
            f"bytecode_version={to_version} is newer than this torch writes ({current}); "
            f"valid: {ANDROID_RUNTIME_BYTECODE[0]}..{current}"
        )
    ok = [False]

    def write(tmp: str) -> None:
        ok[0] = bool(_backport_for_mobile(str(path), tmp, to_version))
        if not ok[0]:
            raise ExportError(
                f"bytecode_version={to_version}: torch cannot backport {path.name} that far "
                f"(valid: {ANDROID_RUNTIME_BYTECODE[0]}..{current})"
            )
        canonical_storage_names(tmp)

    atomic_write(path, write)
    return bytecode_version(path)


def _pickle_strings(key: str) -> tuple[bytes, bytes]:
    raw = key.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw, b"\x8c" + struct.pack("<B", len(raw)) + raw


def canonical_storage_names(path: str | Path) -> bool:
    """Rename the constant storages of a backported lite archive ``0.storage, 1.storage, ...`` in record
    order.

    ``_backport_for_mobile`` names each constant storage ``constants/<address>.storage`` after the
    tensor's memory address (e.g. ``94188251343168``), so a backported file differed in every run. The
    names (``<address>.storage``) are the persistent ids pickled in ``constants.pkl`` / ``bytecode.pkl``
    (protocol-2 unicode strings, replaced with their length prefix). The archive is rewritten by torch's own writer (64-byte
    record alignment, CRC32s, a serialization id derived from the records); its other records are kept
    byte for byte and in order. Returns whether anything was renamed.
    """
    import re
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        top = names[0].split("/", 1)[0] + "/"
        records = [(name[len(top):], archive.read(name)) for name in names]
    storage = re.compile(r"constants/(\d+\.storage)")
    keys = [m.group(1) for name, _ in records if (m := storage.fullmatch(name))]
    mapping = {key: f"{i}.storage" for i, key in enumerate(keys)}
    if all(old == new for old, new in mapping.items()):
        return False
    encoded = {}
    for old, new in mapping.items():
        for a, b in zip(_pickle_strings(old), _pickle_strings(new)):
            encoded[a] = b
    pattern = re.compile(b"|".join(re.escape(k) for k in sorted(encoded, key=len, reverse=True)))
    writer = torch._C.PyTorchFileWriter(str(path))
    for name, data in records:
        if name == ".data/serialization_id":
            continue  # the writer derives a new one from the records
        if (m := storage.fullmatch(name)) is not None:
            name = f"constants/{mapping[m.group(1)]}"
        elif name.endswith(".pkl"):
            data = pattern.sub(lambda hit: encoded[hit.group(0)], data)
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    return True


def operator_names(module: torch.jit.ScriptModule) -> list[str]:
    """Root operators the artifact calls, for a selective (size-trimmed) mobile runtime build."""
    return sorted(set(torch.jit.export_opnames(module)))


def load_lite(path: Path):
    """Load a ``.ptl`` in the lite interpreter (the loader a phone uses)."""
    from torch.jit.mobile import _load_for_lite_interpreter

    return _load_for_lite_interpreter(str(path))
