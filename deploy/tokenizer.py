"""open_clip's CLIP BPE tokenizer, configured from a manifest's ``tokenizer`` block.

Texts longer than ``context_length`` tokens are **truncated**, exactly like open_clip (and the phone's
``ClipTokenizer``): the first ``context_length - 1`` tokens are kept and the last slot is the
end-of-text token. :meth:`KitTokenizer.encode` reports which texts were cut, so the CLIs can say so.
Any Unicode text (accents, CJK, emoji) is accepted; characters outside the byte-level BPE still map
to byte tokens.

The tokenizer is open_clip's own ``tokenizer.py`` (the same code, so the same tokens), loaded by file
path: importing ``open_clip.tokenizer`` runs the package's ``__init__`` (models, losses, pretrained
tables, transformers probes), 3.4 s of a 6.5 s cached ``deploy search`` query, for a module that needs
only ``ftfy``, ``regex`` and ``torch``.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from convert.errors import ArtifactError, ConfigError, quoted
from convert.files import sha256_of
from convert.load import open_clip_dir, open_clip_submodule

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"


def default_vocab_path() -> Path:
    return open_clip_dir() / VOCAB_NAME


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


class KitTokenizer:
    """Tokens ``[N, context_length]`` int64 for a list of texts, per the manifest's tokenizer block."""

    def __init__(self, block: dict[str, Any], vocab_path: str | Path | None = None) -> None:
        module = open_clip_submodule("tokenizer")
        self.block = dict(block)
        self.context_length = int(block["context_length"])
        vocab = Path(vocab_path) if vocab_path else default_vocab_path()
        if not vocab.is_file():
            raise ArtifactError(f"tokenizer vocabulary {vocab} is missing")
        clean = block.get("clean", "lower")
        # open_clip's module builds a default tokenizer (standard vocabulary, clean="lower") when it loads:
        # with the same vocabulary bytes it is this one, and building a second costs 0.2-0.3 s per call.
        shared = getattr(module, "_tokenizer", None)
        try:
            if shared is not None and clean == "lower" and _same_bytes(vocab, default_vocab_path()):
                self._tok = shared
            else:
                self._tok = module.SimpleTokenizer(bpe_path=str(vocab), context_length=self.context_length, clean=clean)
        except Exception as exc:  # noqa: BLE001 - gzip/unicode errors
            raise ArtifactError(f"tokenizer vocabulary {vocab.name} cannot be read ({exc})") from None
        for key, got in (("vocab_size", len(self._tok.encoder)), ("sot_token_id", self._tok.sot_token_id),
                         ("eot_token_id", self._tok.eot_token_id)):
            if key in block and int(block[key]) != int(got):
                raise ArtifactError(f"tokenizer vocabulary {vocab.name}: {key} is {got}, the manifest says {block[key]}")

    @classmethod
    def from_artifacts(cls, artifacts) -> KitTokenizer:
        return cls(artifacts.tokenizer, artifacts.vocab_path())

    def token_count(self, text: str) -> int:
        """Tokens ``text`` needs including start and end tokens."""
        return len(self._tok.encode(text)) + 2

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, list[bool]]:
        """``(tokens, truncated)``: ``truncated[i]`` is True when text ``i`` did not fit."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ConfigError("no text to tokenize")
        for t in texts:
            if not isinstance(t, str):
                raise ConfigError(f"text {quoted(t)} is not a string")
        tokens = self._tok(texts, context_length=self.context_length)
        truncated = [self.token_count(t) > self.context_length for t in texts]
        return tokens, truncated

    def __call__(self, texts: Sequence[str] | str) -> torch.Tensor:
        return self.encode(texts)[0]


def export_vocab(dest: str | Path, manifest: dict[str, Any] | None = None, source: str | Path | None = None) -> dict[str, Any]:
    """Write the BPE vocabulary as a versioned asset: ``dest`` (a directory or file path) gets the
    ``.txt.gz`` and a ``<file>.json`` sidecar with ``vocab_id``, ``sha256`` and ``bytes``.

    With a ``manifest``, the written file must match its ``vocab`` entry's sha256 (else ArtifactError).
    Returns the sidecar dict.
    """
    src = Path(source) if source else default_vocab_path()
    dest = Path(dest)
    if dest.is_dir() or not dest.suffix:
        dest.mkdir(parents=True, exist_ok=True)
        dest = dest / VOCAB_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != dest.resolve():
        shutil.copyfile(src, dest)
    digest = sha256_of(dest)
    size = len(open_clip_submodule("tokenizer").SimpleTokenizer(bpe_path=str(dest)).encoder)
    info = {"file": dest.name, "vocab_id": f"openai-clip-bpe-{size}", "vocab_size": size,
            "bytes": dest.stat().st_size, "sha256": digest, "format": "bpe-merges-gz"}
    if manifest is not None:
        entry = next((f for f in manifest.get("files", []) if f.get("role") == "vocab"), None)
        if entry is None:
            raise ArtifactError("the manifest lists no vocab file")
        if entry["sha256"] != digest:
            raise ArtifactError(f"{dest.name}: sha256 {digest[:16]}... differs from the manifest's vocab {entry['sha256'][:16]}...")
        if manifest.get("tokenizer", {}).get("vocab_id") not in (None, info["vocab_id"]):
            raise ArtifactError(f"{dest.name}: vocab_id {info['vocab_id']} differs from the manifest's {manifest['tokenizer']['vocab_id']}")
    sidecar = dest.with_name(dest.name + ".json")
    sidecar.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
