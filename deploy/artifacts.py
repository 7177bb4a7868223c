"""Load a converted artifact directory exactly as a device would, after verifying it.

Every check happens in :func:`convert.artifact.verify_artifacts` (the one reader: manifest schema, torch
version, confinement, size, sha256, embedded metadata, bytecode); only files that passed reach a loader:
``.ptl`` files the lite interpreter (:func:`convert.export.load_lite`), ``.pt`` files ``torch.jit.load``,
``.pte`` files ExecuTorch's runtime (:func:`convert.export_pte.load_pte`, called like a module).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convert.artifact import KINDS, MODEL_ROLES, VerifiedArtifacts, read_manifest, verify_artifacts
from convert.errors import ArtifactError, one_line
from convert.export import load_lite

from . import heap

# What --runtime takes: a kind of KINDS, or auto (the .ptl files where the directory has them, else the .pte)
RUNTIMES = ("auto", *KINDS)


@dataclass
class Artifacts:
    """A verified, loaded artifact directory."""

    verified: VerifiedArtifacts
    kind: str
    modules: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.verified.directory

    @property
    def manifest(self) -> dict[str, Any]:
        return self.verified.manifest

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
        return self.verified.fingerprint

    def work(self, role: str) -> dict[str, Any] | None:
        """The tower's ``files[].work`` (width and rows per input; ``deploy.threads`` sizes calls by it)."""
        entry = self.verified.entry(role, KINDS[self.kind][0])
        return None if entry is None else entry.get("work")

    def vocab_path(self) -> Path:
        return self.directory / self.tokenizer["vocab_file"]


def _load_module(path: Path, fmt: str, role: str, work: dict[str, Any] | None):
    try:
        if fmt == "lite":
            return heap.load(load_lite, path)
        if fmt == "pte":
            from convert.export_pte import load_pte

            return heap.load(load_pte, path, role, work)
        return heap.load(torch.jit.load, str(path), map_location="cpu").eval()
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - the loaders raise C++ errors
        raise ArtifactError(f"{path.name}: the {fmt} loader refused it ({one_line(exc, 200)})") from None


def resolve_kind(directory: str | Path, kind: str) -> str:
    """``auto``: ``lite`` where the directory lists ``.ptl`` files, else ``pte``; any other kind as given."""
    if kind not in RUNTIMES:
        raise ArtifactError(f"runtime {kind!r} is not one of: {', '.join(RUNTIMES)}")
    if kind != "auto":
        return kind
    formats = {e["format"] for e in read_manifest(directory, check_versions=False)["files"] if e["role"] in MODEL_ROLES}
    return "lite" if "lite" in formats or "pte" not in formats else "pte"


def add_runtime_option(parser) -> None:
    """The one ``--runtime`` option of the deploy commands (``--jit`` stays as its old spelling)."""
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto", help=(
        "which model files run: lite (.ptl, TorchScript lite interpreter), jit (.pt twins), pte (ExecuTorch "
        "+ XNNPACK); default auto: the .ptl files where the directory has them, else the .pte"))
    parser.add_argument("--jit", action="store_const", dest="runtime", const="jit", help="same as --runtime jit")


def load_artifacts(directory: str | Path, kind: str = "lite", roles: tuple[str, ...] | None = None,
                   *, check_versions: bool = True) -> Artifacts:
    """Verify and load the artifacts of ``directory`` (``kind``: ``lite`` = .ptl, ``jit`` = .pt, ``pte`` =
    .pte, ``auto`` = :func:`resolve_kind`).

    ``roles`` restricts which model files are loaded (default: every model role the manifest lists
    in that format). The loaded files and the vocabulary are verified first.
    """
    kind = resolve_kind(directory, kind)
    fmt = KINDS[kind][0]
    verified = verify_artifacts(directory, roles, (fmt,), check_versions=check_versions)
    artifacts = Artifacts(verified=verified, kind=kind)
    torch.backends.quantized.engine = verified.manifest["engine"]
    for (role, file_format), path in verified.paths.items():
        if file_format == fmt:
            entry = verified.entry(role, fmt) or {}
            artifacts.modules[role] = _load_module(path, fmt, role, entry.get("work"))
    return artifacts
