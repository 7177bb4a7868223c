"""The artifact directory format: roles, per-role input/output specs, the manifest, embedded metadata.

This module is the one reader of an artifact directory: ``python -m convert`` writes with it, and
``deploy`` (classify, search, evaluate, bench), the benchmarks and the tests read through
:func:`verify_artifacts`. Order of checks, so that nothing reaches a TorchScript loader before its hash
is checked (a tampered or truncated file is one :class:`ArtifactError` line, never a C++ traceback):

1. ``manifest.json`` exists, is JSON, has the kit's ``format``, a supported ``format_version`` and every
   field with the right type, finite numbers, each file listed once, the vocabulary among the listed
   (hash-checked) files, output widths that match ``model.embed_dim`` and the labels
   (:func:`validate_manifest`);
2. the torch that wrote the artifacts is the running one (``+cu``/``+cpu`` suffixes ignored);
3. each listed file is a plain name inside the directory (no path, no symlink leaving it), has the listed
   size and the listed sha256;
4. each model file's embedded ``clip_kit.json`` has fields of the right types (:func:`validate_metadata`),
   names the same role, model, target and engine as the manifest, and a lite file's bytecode version is
   the manifest's.

The format is documented in ``docs/formats.md``; the C++ runner and the Android app read the same file.
Imports no torch at module level.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ArtifactError, ExportError, OutputError, one_line

FORMAT = "clip-mobile-kit-manifest"
FORMAT_VERSION = 1
KIT_VERSION = "0.1.0"
MANIFEST_NAME = "manifest.json"
EXTRA_FILE = "clip_kit.json"
MODEL_ROLES = ("image_encoder", "text_encoder", "zero_shot_head")
# kind asked for by a loader -> (files[].format, suffix)
KINDS = {"lite": ("lite", ".ptl"), "jit": ("torchscript", ".pt")}
FILE_FORMATS = ("lite", "torchscript", "bpe-merges-gz", "yaml")
# The phone runs qnnpack weights; fbgemm (x86) weights on a phone are the shipped-the-wrong-file mistake.
TARGET_ENGINES = {"android": ("qnnpack",), "x86": ("fbgemm", "qnnpack")}
_MAX_JSON_BYTES = 64 << 20


# ---------------------------------------------------------------------------------------------- writing
def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A failure (disk full, unwritable directory, a writer error) removes the temporary file, so no
    half-written artifact is ever visible under ``path``.
    """
    path = Path(path)
    # The temporary file keeps the final name inside a temporary folder: a TorchScript archive takes
    # its top-level folder name from the file name, and readers should see `image_encoder/...`.
    try:
        folder = tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = os.path.join(folder, path.name)
    try:
        try:
            writer(tmp)
            os.chmod(tmp, 0o666 & ~current_umask())  # ordinary files, not mkstemp's 0600
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        except RuntimeError as exc:
            message = one_line(exc)
            if "No space left" in message or ("write" in message.lower() and "fail" in message.lower()):
                raise OutputError(f"cannot write {path}: {message}") from None
            raise ExportError(f"cannot save {path.name}: {message}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """:func:`atomic_write` of bytes already in memory, written with Python's checked I/O.

    Why (measured on a 1-3 MiB tmpfs, torch 2.12.1): torch's C++ zip writer ignores the failed write and
    then trips over its own position check (``c10::Error "unexpected pos 64 vs 0"``). Under
    ``torch.jit.save``/``_save_for_lite_interpreter`` to a file name that error escapes a C++ destructor:
    ``std::terminate``, SIGABRT (exit -6), no ``except``/``finally`` runs and the staging folder stays;
    ``torch.save`` to a file name raises a RuntimeError that says nothing of the disk. Serialize to memory
    first (``torch.save(obj, BytesIO)``, ``torch.jit.save(module, BytesIO)``,
    ``module._save_to_buffer_for_lite_interpreter()``), then write with this: ENOSPC is one
    :class:`OutputError` line and the temporary file is removed.
    """
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def torch_save_atomic(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` into ``path`` through memory and :func:`atomic_write_bytes` (no abort on a full disk)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path, role: str, fmt: str, **extra: Any) -> dict[str, Any]:
    """One ``files[]`` entry: role, file name, format, size and sha256 (plus e.g. inputs/outputs)."""
    path = Path(path)
    entry = {"role": role, "file": path.name, "format": fmt, "bytes": path.stat().st_size,
             "sha256": sha256_of(path)}
    entry.update(extra)
    return entry


def io_specs(image_size: list[int], context_length: int, embed_dim: int,
             n_labels: int) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per role, the ``(inputs, outputs)`` declaration written into ``files[]`` (batch of one shown)."""
    def spec(name: str, shape: list[int], dtype: str = "float32") -> list[dict[str, Any]]:
        return [{"name": name, "shape": shape, "dtype": dtype}]

    return {
        "image_encoder": (spec("image", [1, 3, *image_size]), spec("embedding", [1, embed_dim])),
        "text_encoder": (spec("tokens", [1, context_length], "int64"), spec("embedding", [1, embed_dim])),
        "zero_shot_head": (spec("embedding", [1, embed_dim]), spec("logits", [1, n_labels])),
    }


def versions(bytecode: int | None) -> dict[str, Any]:
    import open_clip
    import torch

    return {"torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version(), "bytecode": bytecode}


def build_manifest(*, model: dict, target: str, engine: str, config: dict, preprocess: dict,
                   tokenizer: dict, zero_shot: dict | None, files: list[dict], fidelity: dict,
                   bytecode: int | None, quantized: dict, runtime: dict | None = None) -> dict[str, Any]:
    """The manifest dict (see ``docs/formats.md``); ``created_utc`` is the only time-dependent field."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kit_version": KIT_VERSION,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(bytecode),
        "model": model,
        "target": target,
        "engine": engine,
        "config": config,
        "preprocess": preprocess,
        "tokenizer": tokenizer,
        "zero_shot": zero_shot,
        "quantized": quantized,
        "files": files,
        "fidelity": fidelity,
    }
    if runtime:
        manifest["runtime"] = runtime
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST_NAME
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


# ---------------------------------------------------------------------------------------------- reading
def _base_version(version: str) -> str:
    return str(version).split("+", 1)[0]


class _Check:
    """Type checks of one JSON document, each failure one line naming the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, value: Any, valid: str) -> None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ArtifactError(f"{self.source}: {field} is {shown} ({type(value).__name__}); valid: {valid}")

    def get(self, obj: dict, key: str, where: str, kinds: tuple, valid: str, *, optional: bool = False) -> Any:
        field = f"{where}.{key}" if where else key
        if key not in obj:
            if optional:
                return None
            raise ArtifactError(f"{self.source}: required field {field} is missing")
        value = obj[key]
        if optional and value is None:
            return None
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            self.fail(field, value, valid)
        return value

    def integer(self, obj: dict, key: str, where: str, low: int = 0, *, optional: bool = False) -> int | None:
        value = self.get(obj, key, where, (int,), f"an integer >= {low}", optional=optional)
        if value is not None and value < low:
            self.fail(f"{where}.{key}", value, f"an integer >= {low}")
        return value

    def number(self, obj: dict, key: str, where: str) -> float:
        value = self.get(obj, key, where, (int, float), "a finite number")
        if not math.isfinite(value):  # json.loads reads NaN and Infinity
            self.fail(f"{where}.{key}", value, "a finite number")
        return value

    def text(self, obj: dict, key: str, where: str, *, optional: bool = False) -> str | None:
        value = self.get(obj, key, where, (str,), "a non-empty string", optional=optional)
        if value is not None and not value:
            self.fail(f"{where}.{key}" if where else key, value, "a non-empty string")
        return value

    def mapping(self, obj: dict, key: str, where: str = "", *, optional: bool = False) -> dict | None:
        return self.get(obj, key, where, (dict,), "a JSON object", optional=optional)

    def numbers(self, obj: dict, key: str, where: str, n: int, kinds=(int, float)) -> list:
        value = self.get(obj, key, where, (list,), f"a list of {n} numbers")
        if len(value) != n or not all(isinstance(v, kinds) and not isinstance(v, bool) and math.isfinite(v)
                                      for v in value):
            self.fail(f"{where}.{key}", value, f"a list of {n} {'integers' if kinds == (int,) else 'numbers'}")
        return value


def validate_manifest(manifest: Any, source: str = MANIFEST_NAME) -> dict[str, Any]:
    """Check every field a reader uses; raise :class:`ArtifactError` naming the file, field and what is valid.

    Nothing downstream indexes the manifest without this check having passed.
    """
    from .config import ENGINES, TARGETS

    c = _Check(source)
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{source} is not a clip-mobile-kit manifest (a {type(manifest).__name__}, not an object)")
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{source} is not a clip-mobile-kit manifest (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{source}: format_version {manifest.get('format_version')!r} is not supported "
                            f"(this kit reads {FORMAT_VERSION})")
    v = c.mapping(manifest, "versions")
    c.text(v, "torch", "versions")
    c.integer(v, "bytecode", "versions", 1, optional=True)
    m = c.mapping(manifest, "model")
    c.text(m, "name", "model")
    c.integer(m, "embed_dim", "model", 1)
    for key, choices in (("target", TARGETS), ("engine", ENGINES)):
        value = c.text(manifest, key, "")
        if value not in choices:
            c.fail(key, value, " or ".join(choices))
    if manifest["engine"] not in TARGET_ENGINES[manifest["target"]]:
        c.fail("engine", manifest["engine"], f"{' or '.join(TARGET_ENGINES[manifest['target']])} for target "
               f"{manifest['target']}")
    c.mapping(manifest, "config", optional=True)
    p = c.mapping(manifest, "preprocess")
    size = c.numbers(p, "image_size", "preprocess", 2, kinds=(int,))
    if min(size) < 1:
        c.fail("preprocess.image_size", size, "two positive integers")
    c.numbers(p, "mean", "preprocess", 3)
    std = c.numbers(p, "std", "preprocess", 3)
    if any(s <= 0 for s in std):
        c.fail("preprocess.std", std, "three positive numbers")
    for key in ("interpolation", "resize_mode"):
        c.text(p, key, "preprocess", optional=True)
    c.integer(p, "fill_color", "preprocess", 0, optional=True)
    t = c.mapping(manifest, "tokenizer")
    c.integer(t, "context_length", "tokenizer", 2)
    for key in ("vocab_size", "sot_token_id", "eot_token_id"):
        c.integer(t, key, "tokenizer", 0, optional=True)
    vocab = c.text(t, "vocab_file", "tokenizer", optional=True)
    if vocab is not None and Path(vocab).name != vocab:
        c.fail("tokenizer.vocab_file", vocab, "a plain file name inside the artifact directory")
    zs = c.mapping(manifest, "zero_shot", optional=True)
    if zs is not None:
        labels = c.get(zs, "labels", "zero_shot", (list,), "a list of label strings", optional=True)
        if labels is not None and not all(isinstance(x, str) and x for x in labels):
            c.fail("zero_shot.labels", labels, "a list of non-empty strings")
        if zs.get("logit_scale") is not None:
            c.number(zs, "logit_scale", "zero_shot")
    files = c.get(manifest, "files", "", (list,), "a list of file entries")
    for i, entry in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(entry, dict):
            c.fail(where, entry, "a JSON object")
        name = c.text(entry, "file", where)
        if Path(name).name != name or name in (".", ".."):
            c.fail(f"{where}.file", name, "a plain file name inside the artifact directory")
        c.text(entry, "role", where)
        fmt = c.text(entry, "format", where)
        if fmt not in FILE_FORMATS:
            c.fail(f"{where}.format", fmt, ", ".join(FILE_FORMATS))
        c.integer(entry, "bytes", where, 0)
        digest = c.text(entry, "sha256", where)
        if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            c.fail(f"{where}.sha256", digest, "64 lower-case hex digits")
        for key in ("inputs", "outputs"):
            specs = c.get(entry, key, where, (list,), "a list of tensor specs", optional=True)
            for j, spec in enumerate(specs or []):
                if not isinstance(spec, dict):
                    c.fail(f"{where}.{key}[{j}]", spec, "a JSON object")
                c.text(spec, "name", f"{where}.{key}[{j}]")
                shape = c.get(spec, "shape", f"{where}.{key}[{j}]", (list,), "a list of integers")
                if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                    c.fail(f"{where}.{key}[{j}].shape", shape, "a list of non-negative integers")
                c.text(spec, "dtype", f"{where}.{key}[{j}]")
    _check_file_list(c, manifest)
    c.mapping(manifest, "fidelity", optional=True)
    return manifest


def _check_file_list(c: _Check, manifest: dict[str, Any]) -> None:
    """Cross-checks of ``files[]``: one entry per file name and per (model role, format); the tokenizer's
    vocabulary is a listed (hence hash-checked) file; the declared output widths agree with
    ``model.embed_dim`` and the number of labels (a reader indexes labels by the head's logits)."""
    names: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for i, entry in enumerate(manifest["files"]):
        if entry["file"] in names:
            c.fail(f"files[{i}].file", entry["file"], "a file listed once")
        names.add(entry["file"])
        if entry["role"] in MODEL_ROLES:
            if (entry["role"], entry["format"]) in pairs:
                c.fail(f"files[{i}]", f"{entry['role']} ({entry['format']})", "one file per role and format")
            pairs.add((entry["role"], entry["format"]))
    vocab = manifest["tokenizer"].get("vocab_file")
    if vocab is not None and not any(e["file"] == vocab and e["role"] == "vocab" for e in manifest["files"]):
        c.fail("tokenizer.vocab_file", vocab, "a file listed in files[] with role vocab (so that it is hash-checked)")
    dim = manifest["model"]["embed_dim"]
    labels = (manifest.get("zero_shot") or {}).get("labels")
    for i, entry in enumerate(manifest["files"]):
        outputs = entry.get("outputs") or []
        width = outputs[0]["shape"][-1] if outputs and outputs[0]["shape"] else None
        if width is None:
            continue
        if entry["role"] in ("image_encoder", "text_encoder") and width != dim:
            c.fail(f"files[{i}].outputs[0].shape", outputs[0]["shape"], f"[..., {dim}] (model.embed_dim)")
        if entry["role"] == "zero_shot_head" and labels is not None and width != len(labels):
            c.fail(f"files[{i}].outputs[0].shape", outputs[0]["shape"], f"[..., {len(labels)}] (one logit per label)")
    if labels is None and any(e["role"] == "zero_shot_head" for e in manifest["files"]):
        c.fail("zero_shot.labels", labels, "the head's labels (files[] lists a zero_shot_head)")


def read_manifest(directory: str | Path, *, check_versions: bool = True) -> dict[str, Any]:
    """Read and validate ``manifest.json`` (format, version, every field's type, the torch version)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory {directory} does not exist"
                            + (" (it is a file)" if directory.exists() else ""))
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: not an artifact directory (run python -m convert first)")
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise ArtifactError(f"{path} is {path.stat().st_size} bytes: not a manifest (at most {_MAX_JSON_BYTES})")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path} cannot be read as JSON ({one_line(exc, 120)})") from None
    except RecursionError:
        raise ArtifactError(f"{path} cannot be read as JSON (nested too deeply)") from None
    validate_manifest(manifest, str(path))
    if check_versions:
        import torch

        written = manifest["versions"]["torch"]
        if _base_version(written) != _base_version(torch.__version__):
            from .torchcheck import FIX, PINNED_TORCH

            if _base_version(written) == PINNED_TORCH:
                advice = f"run them with the kit's pinned torch ({FIX})"
            else:
                advice = f"reconvert them with the pinned torch {PINNED_TORCH} ({FIX})"
            raise ArtifactError(
                f"{path}: artifacts were written by torch {written}, this is torch {torch.__version__}; {advice}"
            )
    return manifest


def verify_file(directory: Path, entry: dict[str, Any], manifest: dict[str, Any] | None = None) -> Path:
    """Existence, confinement, size and sha256 of one (validated) manifest entry; returns its path.

    With ``manifest``, a model file that fails its size or hash check and carries another target's metadata
    is named as such (the copied-in x86 file), not only as "modified"."""
    directory = Path(directory)
    name = entry["file"]
    path = directory / name
    if path.is_symlink():
        target = path.resolve()
        if directory.resolve() not in target.parents:
            raise ArtifactError(f"{name} is a symbolic link leaving {directory} (to {target}); copy the file instead")
    if not path.is_file():
        raise ArtifactError(f"{name} ({entry.get('role')}) is missing from {directory}")
    size = path.stat().st_size
    digest = sha256_of(path) if size == entry["bytes"] else None
    if (size != entry["bytes"] or digest != entry["sha256"]) and manifest is not None and entry["role"] in MODEL_ROLES:
        try:
            meta = read_metadata(path)
        except ArtifactError:
            meta = {}
        if any(key in meta and meta[key] != manifest[key] for key in ("target", "engine")):
            raise _mixed(path, meta, manifest)
    if size != entry["bytes"]:
        what = "truncated" if size < entry["bytes"] else "larger than listed"
        raise ArtifactError(f"{name} is {what}: {size} bytes, manifest says {entry['bytes']}")
    if digest != entry["sha256"]:
        raise ArtifactError(
            f"{name}: sha256 {digest[:16]}... does not match the manifest's {entry['sha256'][:16]}... "
            "(file modified or from another conversion)"
        )
    return path


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``clip_kit.json`` embedded in a ``.ptl``/``.pt`` (read from the zip, no model load).

    Raises :class:`ArtifactError` when the file is no readable archive or carries no metadata.
    """
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}")), None)
            if name and archive.getinfo(name).file_size > _MAX_JSON_BYTES:
                raise ArtifactError(f"{path.name}: its {EXTRA_FILE} is {archive.getinfo(name).file_size} bytes, "
                                    f"not metadata (at most {_MAX_JSON_BYTES})")
            meta = json.loads(archive.read(name)) if name else None
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{path.name} is not a readable TorchScript archive ({one_line(exc, 120)})") from None
    if meta is None:
        raise ArtifactError(f"{path.name} carries no {EXTRA_FILE}: not written by clip-mobile-kit")
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path.name}: its {EXTRA_FILE} is not a JSON object")
    return validate_metadata(meta, f"{path.name}: its {EXTRA_FILE}")


def validate_metadata(meta: Any, source: str = EXTRA_FILE) -> dict[str, Any]:
    """The types of the embedded metadata's fields (the Android app reads the same ones)."""
    from .config import ENGINES, TARGETS

    c = _Check(source)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{source} is not a JSON object")
    role = c.text(meta, "role", "")
    if role not in MODEL_ROLES:
        c.fail("role", role, ", ".join(MODEL_ROLES))
    model = c.mapping(meta, "model")
    c.text(model, "name", "model")
    c.integer(model, "embed_dim", "model", 1, optional=True)
    for key, choices in (("target", TARGETS), ("engine", ENGINES)):
        value = c.text(meta, key, "", optional=True)
        if value is not None and value not in choices:
            c.fail(key, value, " or ".join(choices))
    for key in ("preprocess", "tokenizer", "zero_shot", "versions"):
        c.mapping(meta, key, optional=True)
    return meta


def bytecode_version(path: Path) -> int:
    """The lite file's bytecode version: the first item of its ``bytecode.pkl`` tuple.

    Read from the pickle's opcodes without unpickling anything (``\x80\x02`` protocol 2, then ``K n`` /
    ``M nn`` for the version, with or without a ``(`` mark first): 5 ms, where torch's
    ``_get_model_bytecode_version`` reads the whole archive (0.4-1.7 s per ViT-B-32 tower, measured).
    Any other layout falls back to torch's reader.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/bytecode.pkl") and n.count("/") == 1), None)
            head = archive.open(name).read(8) if name else b""
    except (OSError, zipfile.BadZipFile):
        head = b""
    if head[:2] == b"\x80\x02":
        body = head[3:] if head[2:3] == b"(" else head[2:]
        if body[:1] == b"K":
            return body[1]
        if body[:1] == b"M" and len(body) >= 3:
            return int.from_bytes(body[1:3], "little")
    from torch.jit.mobile import _get_model_bytecode_version

    return int(_get_model_bytecode_version(str(path)))


def check_model_file(path: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The embedded metadata of a verified model file agrees with its manifest entry."""
    meta = read_metadata(path)
    if meta.get("role") != entry["role"]:
        raise ArtifactError(f"{path.name} is a {meta.get('role')!r} artifact, the manifest lists it as {entry['role']!r}")
    name = (meta.get("model") or {}).get("name") if isinstance(meta.get("model"), dict) else None
    if name != manifest["model"]["name"]:
        raise ArtifactError(f"{path.name} was converted from {name!r}, the manifest says {manifest['model']['name']!r}")
    if any(key in meta and meta[key] != manifest[key] for key in ("target", "engine")):
        raise _mixed(path, meta, manifest)
    if entry["format"] == "lite":
        try:
            got = bytecode_version(path)
        except Exception as exc:  # noqa: BLE001 - C++ errors
            raise ArtifactError(f"{path.name}: cannot read its bytecode version ({one_line(exc, 120)})") from None
        want = manifest["versions"].get("bytecode")
        if want is not None and got != want:
            raise ArtifactError(f"{path.name}: bytecode version {got}, the manifest says {want}")


def require_target(manifest: dict[str, Any], target: str, what: str, where: str = "these artifacts") -> None:
    """Refuse artifacts converted for another target (e.g. x86 fbgemm weights given to a phone): one line
    that says what they were converted for, what ``what`` runs, and how to reconvert."""
    if manifest["target"] != target or manifest["engine"] not in TARGET_ENGINES[target]:
        raise ArtifactError(
            f"{where} {'was' if where != 'these artifacts' else 'were'} converted for {manifest['target']} "
            f"({manifest['engine']}); {what} runs {TARGET_ENGINES[target][0]}: reconvert with --target {target}"
        )


def _mixed(path: Path, meta: dict[str, Any], manifest: dict[str, Any]) -> ArtifactError:
    return ArtifactError(f"{path} was converted for {meta.get('target')} ({meta.get('engine')}), the manifest says "
                         f"{manifest['target']} ({manifest['engine']}): android and x86 artifacts are mixed in one "
                         f"directory; reconvert with --target {manifest['target']}")


def host_target() -> str | None:
    """The target whose artifacts this machine runs natively (arm64 hosts run qnnpack: android)."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64") or machine.startswith("arm"):
        return "android"
    return None


@dataclass(frozen=True)
class VerifiedArtifacts:
    """An artifact directory whose manifest validated and whose selected files passed every check."""

    directory: Path
    manifest: dict[str, Any]
    paths: dict[tuple[str, str], Path]  # (role, files[].format) -> path

    def path(self, role: str, fmt: str = "lite") -> Path | None:
        return self.paths.get((role, fmt))

    def entry(self, role: str, fmt: str = "lite") -> dict[str, Any] | None:
        return next((e for e in self.manifest["files"] if e["role"] == role and e["format"] == fmt), None)

    @property
    def fingerprint(self) -> str:
        """One fingerprint of the model files (keys caches such as a search index or class embeddings)."""
        digest = hashlib.sha256()
        for entry in sorted(self.manifest["files"], key=lambda e: e["file"]):
            if entry["role"] in MODEL_ROLES:
                digest.update(f"{entry['file']}:{entry['sha256']};".encode())
        return digest.hexdigest()


def verify_artifacts(directory: str | Path, roles: tuple[str, ...] | None = None,
                     formats: tuple[str, ...] = ("lite",), *, check_versions: bool = True,
                     require_image: bool = True) -> VerifiedArtifacts:
    """Validate the manifest and check every file of ``roles`` x ``formats`` (default: all model roles)
    plus the vocabulary: confinement, size, sha256, embedded metadata, bytecode. Loads no model.

    On an arm64 host, artifacts converted for x86 are refused (fbgemm weights do not belong on a phone).
    """
    directory = Path(directory).absolute()
    manifest = read_manifest(directory, check_versions=check_versions)
    if host_target() == "android":
        require_target(manifest, "android", f"this {platform.machine()} machine")
    entries = [e for e in manifest["files"] if e["role"] in MODEL_ROLES and e["format"] in formats
               and (roles is None or e["role"] in roles)]
    if require_image and (roles is None or "image_encoder" in roles) and not any(
            e["role"] == "image_encoder" for e in entries):
        hint = " (convert with --also-pt for .pt twins)" if "torchscript" in formats else ""
        raise ArtifactError(f"{directory / MANIFEST_NAME} lists no {'/'.join(formats)} image_encoder{hint}")
    paths: dict[tuple[str, str], Path] = {}
    for entry in entries:
        path = verify_file(directory, entry, manifest)
        check_model_file(path, entry, manifest)
        paths[(entry["role"], entry["format"])] = path
    for entry in manifest["files"]:
        if entry["role"] == "vocab":
            paths[("vocab", entry["format"])] = verify_file(directory, entry)
    return VerifiedArtifacts(directory=directory, manifest=manifest, paths=paths)


def verify_all(directory: str | Path) -> dict[str, Any]:
    """Hash-check every file the manifest lists without loading any model; returns the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for entry in manifest["files"]:
        verify_file(directory, entry, manifest)
    return manifest
