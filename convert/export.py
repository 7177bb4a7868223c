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

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import ExportError, OutputError

EXTRA_FILE = "clip_kit.json"
# pytorch_android_lite 2.1.0, the last Android runtime release, loads bytecode v4..v9.
ANDROID_RUNTIME_BYTECODE = (4, 9)


def script_tower(module: torch.nn.Module, role: str) -> torch.jit.ScriptModule:
    """``torch.jit.script`` with a one-line :class:`ExportError` on failure (never an eager fallback)."""
    try:
        return torch.jit.script(module.eval())
    except Exception as exc:  # noqa: BLE001 - TorchScript raises many types
        first = " ".join(str(exc).split())[:300]
        raise ExportError(f"{role}: torch.jit.script failed: {first}") from None


def optimize_tower(scripted: torch.jit.ScriptModule, target: str, role: str) -> torch.jit.ScriptModule:
    """Apply the target's optimizations (see module docstring); failures are errors, not fallbacks."""
    if target == "x86":
        return scripted.eval()
    from torch.utils.mobile_optimizer import optimize_for_mobile

    try:
        return optimize_for_mobile(scripted.eval())
    except Exception as exc:  # noqa: BLE001
        first = " ".join(str(exc).split())[:300]
        raise ExportError(f"{role}: optimize_for_mobile failed: {first}") from None


def atomic_write(path: Path, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A failure (disk full, unwritable directory, a writer error) removes the temporary file, so no
    half-written artifact is ever visible under ``path``.
    """
    path = Path(path)
    # The temporary file keeps the final name inside a temporary folder: a TorchScript archive takes
    # its top-level folder name from the file name, and readers should see `image_encoder/...`.
    folder = tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = os.path.join(folder, path.name)
    try:
        try:
            writer(tmp)
            os.chmod(tmp, 0o666 & ~current_umask())  # ordinary files, not mkstemp's 0600
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        except RuntimeError as exc:
            message = " ".join(str(exc).split())[:300]
            if "No space left" in message or ("write" in message.lower() and "fail" in message.lower()):
                raise OutputError(f"cannot write {path}: {message}") from None
            raise ExportError(f"cannot save {path.name}: {message}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_lite(module: torch.jit.ScriptModule, path: Path, metadata: dict[str, Any]) -> None:
    """Save for the lite interpreter with the kit's metadata embedded as ``clip_kit.json``."""
    extra = {EXTRA_FILE: json.dumps(metadata, sort_keys=True)}
    atomic_write(path, lambda tmp: module._save_for_lite_interpreter(tmp, _extra_files=extra))


def save_torchscript(module: torch.jit.ScriptModule, path: Path, metadata: dict[str, Any]) -> None:
    """Save the TorchScript (full JIT) twin with the same embedded metadata."""
    extra = {EXTRA_FILE: json.dumps(metadata, sort_keys=True)}
    atomic_write(path, lambda tmp: torch.jit.save(module, tmp, _extra_files=extra))


def bytecode_version(path: Path) -> int:
    from torch.jit.mobile import _get_model_bytecode_version

    return int(_get_model_bytecode_version(str(path)))


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

    atomic_write(path, write)
    return bytecode_version(path)


def operator_names(module: torch.jit.ScriptModule) -> list[str]:
    """Root operators the artifact calls, for a selective (size-trimmed) mobile runtime build."""
    return sorted(set(torch.jit.export_opnames(module)))


def load_lite(path: Path):
    """Load a ``.ptl`` in the lite interpreter (the loader a phone uses)."""
    from torch.jit.mobile import _load_for_lite_interpreter

    return _load_for_lite_interpreter(str(path))


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``clip_kit.json`` embedded in a ``.ptl``/``.pt`` (read from the zip, no model load).

    Raises :class:`ArtifactError` when the file is no readable archive or carries no metadata.
    """
    import zipfile

    from .errors import ArtifactError

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}")), None)
            meta = json.loads(archive.read(name)) if name else None
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path.name} is not a readable TorchScript archive ({exc})") from None
    if meta is None:
        raise ArtifactError(f"{path.name} carries no {EXTRA_FILE}: not written by clip-mobile-kit")
    return meta
