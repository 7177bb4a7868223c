"""``manifest.json``: what is in an artifact directory, with hashes, versions, config and fidelity.

The format is documented in ``docs/formats.md`` and read by ``deploy``, the C++ runner and the app.
"""
from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .export import atomic_write

FORMAT = "clip-mobile-kit-manifest"
FORMAT_VERSION = 1
KIT_VERSION = "0.1.0"
MANIFEST_NAME = "manifest.json"


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


def versions(bytecode: int | None) -> dict[str, Any]:
    import open_clip
    import torch

    return {"torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version(), "bytecode": bytecode}


def build_manifest(*, model: dict, target: str, engine: str, config: dict, preprocess: dict,
                   tokenizer: dict, zero_shot: dict | None, files: list[dict], fidelity: dict,
                   bytecode: int | None, quantized: dict) -> dict[str, Any]:
    return {
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


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST_NAME
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / MANIFEST_NAME).read_text(encoding="utf-8"))
