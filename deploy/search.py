"""``python -m deploy search --artifacts DIR --images FOLDER (--query TEXT | --image-query IMG)``.

Image embeddings of ``FOLDER`` are computed once with the artifact's image encoder and saved to an
index file (``--index``; default ``$CLIP_KIT_CACHE`` or ``~/.cache/clip-mobile-kit``, one file per
folder + artifacts). Each entry is keyed by absolute path, mtime (ns) and size; the whole index by the
artifacts' model-file sha256s. On the next run unchanged files are reused, new or modified ones are
embedded, deleted ones dropped; different artifacts rebuild the index. Ranking is by cosine similarity
of L2-normalised embeddings. Unreadable images are reported on stderr and skipped (not cached, so they
are retried next time); the exit status is 0 unless nothing could be indexed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from convert.errors import ConfigError, KitError

from .artifacts import load_artifacts
from .preprocess import DEFAULT_MAX_PIXELS, ImageError, Preprocessor, list_images, open_image
from .runtime import encode_images, encode_tokens, warn_truncated
from .tokenizer import KitTokenizer

INDEX_FORMAT = "clip-mobile-kit-index"
INDEX_VERSION = 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("search", help="rank a folder of images by a text or image query",
                              description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", required=True)
    p.add_argument("--images", required=True, metavar="FOLDER", help="folder of images (searched recursively)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", help="text query")
    q.add_argument("--image-query", metavar="IMG", help="image query (image-to-image search)")
    p.add_argument("--index", help="index file (default: a cache file per folder and artifacts)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument("--jit", action="store_true", help="run the .pt twins instead of the .ptl files")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    p.set_defaults(func=run)


def default_index_path(folder: Path, artifact_sha: str) -> Path:
    root = Path(os.environ.get("CLIP_KIT_CACHE") or Path.home() / ".cache" / "clip-mobile-kit")
    key = hashlib.sha256(f"{folder.resolve()}|{artifact_sha}".encode()).hexdigest()[:20]
    return root / "index" / f"{key}.pt"


def _load_index(path: Path, artifact_sha: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, not an error
        print(f"warning: index {path} is unreadable; rebuilding it", file=sys.stderr)
        return None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("version") != INDEX_VERSION:
        return None
    if data.get("artifact_sha") != artifact_sha:
        return None
    return data


def build_index(artifacts, folder: str | Path, index_path: str | Path | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[dict[str, Any], dict[str, int]]:
    """Load, refresh and save the index of ``folder``; returns ``(index, stats)``.

    ``index`` has ``paths`` (list of str) and ``embeddings`` (``[N, D]`` normalised float32).
    ``stats``: ``reused``, ``embedded``, ``removed``, ``failed``.
    """
    folder = Path(folder)
    files = list_images(folder)
    if not files:
        raise ImageError(f"image folder {folder} contains no images ({', '.join(s for s in ('.jpg', '.png', '.webp', '...'))})")
    path = Path(index_path) if index_path else default_index_path(folder, artifacts.sha256)
    old = _load_index(path, artifacts.sha256)
    cached: dict[tuple, torch.Tensor] = {}
    if old is not None:
        for entry, emb in zip(old["entries"], old["embeddings"]):
            cached[(entry["path"], entry["mtime_ns"], entry["size"])] = emb
    pre = Preprocessor(artifacts.preprocess)
    entries, embs, stats = [], [], {"reused": 0, "embedded": 0, "removed": 0, "failed": 0}
    todo: list[tuple[dict, torch.Tensor]] = []
    for f in files:
        st = f.stat()
        entry = {"path": str(f.resolve()), "mtime_ns": int(st.st_mtime_ns), "size": int(st.st_size)}
        key = (entry["path"], entry["mtime_ns"], entry["size"])
        if key in cached:
            entries.append(entry)
            embs.append(cached.pop(key))
            stats["reused"] += 1
            continue
        try:
            todo.append((entry, pre(open_image(f, max_pixels))))
        except ImageError as exc:
            print(f"warning: skipped {exc}", file=sys.stderr)
            stats["failed"] += 1
    for i in range(0, len(todo), 32):
        chunk = todo[i:i + 32]
        out = F.normalize(encode_images(artifacts, torch.stack([t for _, t in chunk])), dim=-1)
        for (entry, _), emb in zip(chunk, out):
            entries.append(entry)
            embs.append(emb)
        stats["embedded"] += len(chunk)
    stats["removed"] = len(cached)
    if not entries:
        raise ImageError(f"none of the {len(files)} images in {folder} could be read")
    order = sorted(range(len(entries)), key=lambda k: entries[k]["path"])
    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "artifact_sha": artifacts.sha256,
             "model": artifacts.manifest["model"]["name"], "folder": str(folder.resolve()),
             "entries": [entries[k] for k in order], "embeddings": torch.stack([embs[k] for k in order]).contiguous()}
    if stats["embedded"] or stats["removed"] or old is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(index, tmp)
        os.replace(tmp, path)
    index["paths"] = [e["path"] for e in index["entries"]]
    index["file"] = str(path)
    return index, stats


def rank(index: dict[str, Any], query: torch.Tensor, k: int) -> list[tuple[str, float]]:
    scores = index["embeddings"] @ F.normalize(query.reshape(-1), dim=0)
    values, idx = scores.topk(min(k, len(scores)))
    return [(index["paths"][int(i)], float(v)) for v, i in zip(values, idx)]


def query_embedding(artifacts, text: str | None = None, image: str | None = None,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    if image is not None:
        return encode_images(artifacts, Preprocessor(artifacts.preprocess)(open_image(image, max_pixels)).unsqueeze(0))[0]
    if text is None or not text.strip():
        raise ConfigError("the text query is empty")
    tok = KitTokenizer.from_artifacts(artifacts)
    tokens, truncated = tok.encode([text])
    warn_truncated([text], truncated, tok.context_length)
    return encode_tokens(artifacts, tokens)[0]


def run(args: argparse.Namespace) -> int:
    if args.topk < 1:
        raise ConfigError(f"--topk {args.topk} must be at least 1")
    if args.query is not None and not args.query.strip():
        raise ConfigError("the text query is empty")
    roles = ("image_encoder",) if args.image_query else ("image_encoder", "text_encoder")
    artifacts = load_artifacts(args.artifacts, "jit" if args.jit else "lite", roles=roles)
    max_pixels = args.max_pixels or None
    q = query_embedding(artifacts, args.query, args.image_query, max_pixels)
    index, stats = build_index(artifacts, args.images, args.index, max_pixels)
    hits = rank(index, q, args.topk)
    if args.json:
        print(json.dumps({"query": args.query, "image_query": args.image_query, "index": index["file"],
                          "stats": stats, "results": [{"path": p, "score": round(s, 6)} for p, s in hits]},
                         indent=2, ensure_ascii=False))
    else:
        from rich.console import Console
        from rich.table import Table

        what = f"'{args.query}'" if args.query is not None else f"image {args.image_query}"
        table = Table(title=f"{what} in {args.images} ({len(index['paths'])} images; "
                            f"{stats['reused']} from the index, {stats['embedded']} embedded)")
        table.add_column("#", justify="right")
        table.add_column("cosine", justify="right")
        table.add_column("image")
        for i, (p, s) in enumerate(hits, 1):
            table.add_row(str(i), f"{s:.4f}", p)
        Console().print(table)
    return 0
