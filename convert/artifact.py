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
import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ArtifactError, one_line, quoted
from .files import atomic_write, sha256_of
from .schema import (
    EXTRA_FILE,
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    KIT_VERSION,
    MANIFEST_NAME,
    MODEL_ROLES,
    TARGET_ENGINES,
    validate_manifest,
    validate_metadata,
)

__all__ = ["EXTRA_FILE", "FORMAT", "FORMAT_VERSION", "KINDS", "KIT_VERSION", "MANIFEST_NAME", "MODEL_ROLES",
           "TARGET_ENGINES", "VerifiedArtifacts", "build_manifest", "bytecode_version", "check_model_file",
           "file_entry", "host_target", "io_specs", "read_manifest", "read_metadata", "require_executorch_version", "require_target",
           "validate_manifest", "verify_all", "verify_artifacts", "verify_file", "versions", "write_manifest"]

_MAX_JSON_BYTES = 64 << 20


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


def versions(bytecode: int | None, executorch: str | None = None) -> dict[str, Any]:
    import open_clip
    import torch

    found = {"torch": torch.__version__, "open_clip": open_clip.__version__,
             "python": platform.python_version(), "bytecode": bytecode}
    if executorch:
        found["executorch"] = executorch
    return found


def build_manifest(*, model: dict, target: str, engine: str, config: dict, preprocess: dict,
                   tokenizer: dict, zero_shot: dict | None, files: list[dict], fidelity: dict,
                   bytecode: int | None, quantized: dict, runtime: dict | None = None,
                   executorch: str | None = None) -> dict[str, Any]:
    """The manifest dict (see ``docs/formats.md``); ``created_utc`` is the only time-dependent field."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kit_version": KIT_VERSION,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(bytecode, executorch),
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


def read_manifest(directory: str | Path, *, check_versions: bool = True) -> dict[str, Any]:
    """Read and validate ``manifest.json`` (format, version, every field's type, the torch version)."""
    from .files import describe_path, path_kind

    kind = path_kind(str(directory))
    if kind != "a directory":
        raise ArtifactError(describe_path(str(directory), kind, "artifact directory", "a directory"))
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    kind = path_kind(str(path))
    if kind == "missing":
        raise ArtifactError(f"{path} is missing: not an artifact directory{_artifact_folders_in(directory)}")
    if kind != "file":
        raise ArtifactError(describe_path(str(path), kind, "manifest"))
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


def _artifact_folders_in(directory: Path, n: int = 3) -> str:
    """' (it holds the artifact folders a, b: pass one of them)' when ``directory`` is the parent of artifact
    folders (``--artifacts out`` for ``out/ViT-B-32-android``), else the advice to convert first."""
    try:
        found = sorted(str(d) for d in directory.iterdir() if (d / MANIFEST_NAME).is_file())
    except OSError:
        found = []
    if not found:
        return " (run python -m convert first)"
    more = f" and {len(found) - n} more" if len(found) > n else ""
    return f"; it holds the artifact folder{'s' if len(found) > 1 else ''} {', '.join(found[:n])}{more}: pass one"


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
    # (not for a .pte: its metadata is read through ExecuTorch's runtime, which no unverified file may reach; and
    # a .pte has no engine to mix up)
    if (size != entry["bytes"] or digest != entry["sha256"]) and manifest is not None and entry["role"] in MODEL_ROLES \
            and entry["format"] != "pte":
        try:
            meta = read_metadata(path, entry["format"])
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


def read_metadata(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """The ``clip_kit.json`` embedded in a model file: from the zip of a ``.ptl``/``.pt`` (no model load), from
    the ``clip_kit_json`` method of a ``.pte`` (``fmt`` ``"pte"``, or the suffix; the forward method is not loaded).

    Raises :class:`ArtifactError` when the file is no readable archive or carries no metadata.
    """
    import zipfile

    path = Path(path)
    if (fmt or ("pte" if path.suffix == ".pte" else "lite")) == "pte":
        from .export_pte import read_pte_metadata

        return validate_metadata(read_pte_metadata(path), f"{path.name}: its {EXTRA_FILE}")
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
    meta = read_metadata(path, entry["format"])
    if meta.get("role") != entry["role"]:
        raise ArtifactError(f"{path.name} is a {quoted(meta.get('role'))} artifact, the manifest lists it as {quoted(entry['role'])}")
    name = (meta.get("model") or {}).get("name") if isinstance(meta.get("model"), dict) else None
    if name != manifest["model"]["name"]:
        raise ArtifactError(f"{path.name} was converted from {quoted(name)}, the manifest says {quoted(manifest['model']['name'])}")
    if any(key in meta and meta[key] != manifest[key] for key in ("target", "engine")):
        raise _mixed(path, meta, manifest)
    if entry["format"] == "pte":
        require_executorch_version(manifest, path.name, (meta.get("versions") or {}).get("executorch"))
    if entry["format"] == "lite":
        try:
            got = bytecode_version(path)
        except Exception as exc:  # noqa: BLE001 - C++ errors
            raise ArtifactError(f"{path.name}: cannot read its bytecode version ({one_line(exc, 120)})") from None
        want = manifest["versions"].get("bytecode")
        if want is not None and got != want:
            raise ArtifactError(f"{path.name}: bytecode version {got}, the manifest says {want}")


def require_executorch_version(manifest: dict[str, Any], name: str, embedded: Any = None) -> str:
    """The installed executorch is the one that wrote ``name`` (the manifest's and the file's own record): a
    ``.pte`` from another release is refused in one line (its program and kernels may not match this runtime)."""
    from .export_pte import INSTALL, executorch_version

    have = executorch_version()
    written = manifest["versions"].get("executorch")
    if have is None:
        raise ArtifactError(f"{name} is an ExecuTorch program and executorch is not installed: {INSTALL}")
    for what, version in (("the manifest", written), (f"{name}'s metadata", embedded)):
        if version is not None and _base_version(version) != _base_version(have):
            raise ArtifactError(f"{name} was written by executorch {version} ({what}), this is executorch {have}: "
                                f"reconvert with this executorch, or {INSTALL}")
    return have


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


def require_cpu(manifest: dict[str, Any], flags: set[str] | None = None) -> None:
    """Refuse artifacts whose ``runtime.requires_cpu_flags_any`` this CPU lacks (``--full-range``)."""
    needed = (manifest.get("runtime") or {}).get("requires_cpu_flags_any")  # a list of names (validate_manifest)
    if not needed:
        return
    from .quantize import cpu_flags

    have = cpu_flags() if flags is None else flags
    if not have.intersection(needed):
        raise ArtifactError(f"these artifacts quantize activations to 8 bits and need a CPU with "
                            f"{' or '.join(map(str, needed))}; this one has none (its int8 sums would saturate): "
                            "reconvert without --full-range")


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
    require_cpu(manifest)
    entries = [e for e in manifest["files"] if e["role"] in MODEL_ROLES and e["format"] in formats
               and (roles is None or e["role"] in roles)]
    if require_image and (roles is None or "image_encoder" in roles) and not any(
            e["role"] == "image_encoder" for e in entries):
        hint = (" (convert with --also-pt for .pt twins)" if "torchscript" in formats
                else " (convert with --format pte or --format both)" if "pte" in formats
                else " (convert with --format ptl or --format both)" if "lite" in formats else "")
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


def verify_all(directory: str | Path, target: str | None = None) -> dict[str, Any]:
    """Check every file the manifest lists, loading no model; returns the manifest (``python -m deploy verify``).

    Model files as :func:`verify_artifacts` checks them (confinement, size, sha256, embedded metadata,
    bytecode), every other file (vocabulary, ops.yaml, ...) by size and sha256. ``target`` ("android" or
    "x86") also requires artifacts converted for it.
    """
    manifest = read_manifest(directory)
    if target is not None:
        require_target(manifest, target, {"android": "a phone", "x86": "an x86 machine"}[target])
    formats = tuple(sorted({e["format"] for e in manifest["files"] if e["role"] in MODEL_ROLES}))
    verified = verify_artifacts(directory, None, formats, require_image=False)
    checked = {path.name for path in verified.paths.values()}
    for entry in manifest["files"]:
        if entry["file"] not in checked:
            verify_file(verified.directory, entry, manifest)
    return manifest
