"""Load a converted artifact directory exactly as a device would, after verifying it.

Order of checks (nothing reaches the TorchScript loader before the hash check, so a tampered or
truncated file gives one :class:`~convert.errors.ArtifactError` line, never a C++ traceback):

1. ``manifest.json`` exists, is JSON, has the kit's ``format`` and a supported ``format_version``;
2. the torch version that wrote the artifacts equals the running one (``+cu``/``+cpu`` suffixes ignored);
3. every file the manifest lists (for the roles and format asked for) exists, has the listed size and
   the listed sha256;
4. each model file is a zip whose bytecode version (lite files) equals the manifest's, and whose embedded
   ``clip_kit.json`` names the same role and model as the manifest;
5. then ``.ptl`` files go to the lite interpreter (:func:`convert.export.load_lite`), ``.pt`` files to
   ``torch.jit.load``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convert.errors import ArtifactError
from convert.export import read_metadata
from convert.manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME, sha256_of

KINDS = {"lite": ("lite", ".ptl"), "jit": ("torchscript", ".pt")}
MODEL_ROLES = ("image_encoder", "text_encoder", "zero_shot_head")


def _base_version(version: str) -> str:
    return str(version).split("+", 1)[0]


@dataclass
class Artifacts:
    """A verified, loaded artifact directory."""

    directory: Path
    manifest: dict[str, Any]
    kind: str
    modules: dict[str, Any] = field(default_factory=dict)

    @property
    def image_encoder(self):
        return self.modules.get("image_encoder")

    @property
    def text_encoder(self):
        return self.modules.get("text_encoder")

    @property
    def zero_shot_head(self):
        return self.modules.get("zero_shot_head")

    @property
    def labels(self) -> list[str] | None:
        zs = self.manifest.get("zero_shot") or {}
        return list(zs["labels"]) if zs.get("labels") else None

    @property
    def logit_scale(self) -> float:
        zs = self.manifest.get("zero_shot") or {}
        return float(zs.get("logit_scale") or 100.0)

    @property
    def preprocess(self) -> dict[str, Any]:
        return self.manifest["preprocess"]

    @property
    def tokenizer(self) -> dict[str, Any]:
        return self.manifest["tokenizer"]

    @property
    def embed_dim(self) -> int:
        return int(self.manifest["model"]["embed_dim"])

    @property
    def sha256(self) -> str:
        """One fingerprint of the model files (keys caches such as a search index)."""
        import hashlib

        digest = hashlib.sha256()
        for entry in sorted(self.manifest["files"], key=lambda e: e["file"]):
            if entry["role"] in MODEL_ROLES:
                digest.update(f"{entry['file']}:{entry['sha256']};".encode())
        return digest.hexdigest()

    def vocab_path(self) -> Path:
        return self.directory / self.tokenizer["vocab_file"]


def read_manifest(directory: str | Path, *, check_versions: bool = True) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json`` (format, format version, torch version)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory {directory} does not exist")
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: not an artifact directory (run python -m convert first)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} cannot be read as JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a clip-mobile-kit manifest (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported (this kit reads {FORMAT_VERSION})"
        )
    for key in ("versions", "model", "preprocess", "tokenizer", "files"):
        if key not in manifest:
            raise ArtifactError(f"{path}: required key {key!r} is missing")
    if check_versions:
        written = manifest["versions"].get("torch")
        if _base_version(written) != _base_version(torch.__version__):
            raise ArtifactError(
                f"{path}: artifacts were written by torch {written}, this is torch {torch.__version__}; "
                "reconvert with this torch (TorchScript/lite files are only guaranteed to load in the same version)"
            )
    return manifest


def verify_file(directory: Path, entry: dict[str, Any]) -> Path:
    """Existence, size and sha256 of one manifest entry; returns its path."""
    name = entry.get("file")
    if not name or Path(name).name != name:
        raise ArtifactError(f"manifest lists an invalid file name {name!r}")
    path = directory / name
    if not path.is_file():
        raise ArtifactError(f"{name} ({entry.get('role')}) is missing from {directory}")
    size = path.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        what = "truncated" if size < entry["bytes"] else "larger than listed"
        raise ArtifactError(f"{name} is {what}: {size} bytes, manifest says {entry['bytes']}")
    digest = sha256_of(path)
    if digest != entry.get("sha256"):
        raise ArtifactError(
            f"{name}: sha256 {digest[:16]}... does not match the manifest's {str(entry.get('sha256'))[:16]}... "
            "(file modified or from another conversion)"
        )
    return path


def _check_model_file(path: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
    meta = read_metadata(path)
    if meta.get("role") != entry["role"]:
        raise ArtifactError(f"{path.name} is a {meta.get('role')!r} artifact, the manifest lists it as {entry['role']!r}")
    if (meta.get("model") or {}).get("name") != manifest["model"].get("name"):
        raise ArtifactError(
            f"{path.name} was converted from {(meta.get('model') or {}).get('name')!r}, "
            f"the manifest says {manifest['model'].get('name')!r}"
        )
    if entry["format"] == "lite":
        from convert.export import bytecode_version

        try:
            got = bytecode_version(path)
        except Exception as exc:  # noqa: BLE001 - C++ errors
            raise ArtifactError(f"{path.name}: cannot read its bytecode version ({' '.join(str(exc).split())[:120]})") from None
        want = manifest["versions"].get("bytecode")
        if want is not None and got != want:
            raise ArtifactError(f"{path.name}: bytecode version {got}, the manifest says {want}")


def _load_module(path: Path, fmt: str):
    try:
        if fmt == "lite":
            from convert.export import load_lite

            return load_lite(path)
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - the loaders raise C++ errors
        raise ArtifactError(f"{path.name}: the {fmt} loader refused it ({' '.join(str(exc).split())[:200]})") from None


def load_artifacts(directory: str | Path, kind: str = "lite", roles: tuple[str, ...] | None = None,
                   *, check_versions: bool = True) -> Artifacts:
    """Verify and load the artifacts of ``directory`` (``kind``: ``lite`` = .ptl, ``jit`` = .pt).

    ``roles`` restricts which model files are loaded (default: every model role the manifest lists
    in that format). All listed files of the requested format, and the vocabulary, are hash-checked.
    """
    if kind not in KINDS:
        raise ArtifactError(f"kind={kind!r} is not one of: {', '.join(KINDS)}")
    directory = Path(directory)
    manifest = read_manifest(directory, check_versions=check_versions)
    fmt, _suffix = KINDS[kind]
    entries = [e for e in manifest["files"] if e.get("role") in MODEL_ROLES and e.get("format") == fmt]
    if roles is not None:
        entries = [e for e in entries if e["role"] in roles]
    if not any(e["role"] == "image_encoder" for e in entries) and (roles is None or "image_encoder" in roles):
        hint = " (convert with --also-pt for .pt twins)" if kind == "jit" else ""
        raise ArtifactError(f"{directory}/{MANIFEST_NAME} lists no {fmt} image_encoder{hint}")
    paths = []
    for entry in entries:
        path = verify_file(directory, entry)
        _check_model_file(path, entry, manifest)
        paths.append((entry, path))
    for entry in manifest["files"]:
        if entry.get("role") == "vocab":
            verify_file(directory, entry)
    artifacts = Artifacts(directory=directory, manifest=manifest, kind=kind)
    for entry, path in paths:
        artifacts.modules[entry["role"]] = _load_module(path, fmt)
    return artifacts


def verify_only(directory: str | Path) -> dict[str, Any]:
    """Hash-check every file the manifest lists without loading any model; returns the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for entry in manifest["files"]:
        verify_file(directory, entry)
    return manifest
