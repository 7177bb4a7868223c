"""``python -m deploy search --artifacts DIR --images FOLDER (--query TEXT | --image-query IMG)``.

Image embeddings of ``FOLDER`` are computed once with the artifact's image encoder and saved to an
index file (``--index``; default ``<cache>/index/<folder key>-<artifacts key>.pt`` under
``$CLIPKIT_CACHE`` or ``~/.cache/clip-mobile-kit``). Each entry is keyed by absolute path, mtime (ns) and
size; the whole index by the artifacts' model-file sha256s (content hashes: a reconversion of the same
model with the same recipe writes byte-identical files, so it keeps its index). On the next run unchanged
files are reused, new or modified ones are embedded, deleted ones dropped; different artifacts rebuild
the index. When a default index is written, the folder's stale ones are deleted: those of the same
artifacts directory (superseded by a reconversion), and those whose artifacts are gone or changed.
Indexes of other live artifacts stay. The image encoder is loaded only when images must be embedded.
Ranking is by cosine similarity of L2-normalised embeddings. Unreadable images are reported on stderr and
skipped (not cached, so they are retried next time); the exit status is 0 unless nothing could be indexed.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from convert.entry import add_json_option, json_to_stdout, write_json
from convert.errors import ConfigError, OutputError
from convert.files import torch_save_atomic

from .artifacts import add_runtime_option, load_artifacts
from .preprocess import DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP, ImageError, Preprocessor, list_images, open_image
from .runtime import Progress, cache_dir, encode_images, encode_tokens, ensure_role, warn_random_weights, warn_truncated
from .tokenizer import KitTokenizer

INDEX_FORMAT = "clip-mobile-kit-index"
INDEX_VERSION = 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("search", help="rank a folder of images by a text or image query",
                              description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", required=True, help="artifact directory (with manifest.json)")
    p.add_argument("--images", required=True, metavar="FOLDER", help="folder of images (searched recursively)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", help="text query")
    q.add_argument("--image-query", metavar="IMG", help="image query (image-to-image search)")
    p.add_argument("--index", help="index file (default: a cache file per folder and artifacts)")
    p.add_argument("--topk", type=int, default=5, help="results shown (default 5)")
    add_json_option(p, "the results")
    add_runtime_option(p)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=MAX_PIXELS_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no warnings")
    p.set_defaults(func=run)


def _folder_key(folder: Path) -> str:
    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]


def default_index_path(folder: Path, artifact_sha: str) -> Path:
    """``<cache>/index/<folder key>-<artifacts key>.pt``: one index per folder and model-file content."""
    return cache_dir() / "index" / f"{_folder_key(Path(folder))}-{artifact_sha[:16]}.pt"


def _artifacts_live(directory: str | None, artifact_sha: str | None) -> bool:
    """True when ``directory`` still holds artifacts whose model files are ``artifact_sha``."""
    if not directory or not artifact_sha:
        return False
    from convert.artifact import VerifiedArtifacts, read_manifest

    try:
        manifest = read_manifest(directory, check_versions=False)
        return VerifiedArtifacts(Path(directory), manifest, {}).fingerprint == artifact_sha
    except Exception:  # noqa: BLE001 - gone, unreadable or invalid: not live
        return False


def remove_stale_indexes(path: Path, folder: Path, artifacts_dir: Path) -> list[Path]:
    """Delete the other default indexes of ``folder`` that no live artifacts can use again: those of
    ``artifacts_dir`` (this run superseded them) and those whose artifacts directory is gone or now
    holds other files. Indexes of other live artifacts stay. Reads only each file's header (mmap).
    Returns the deleted paths."""
    folder, artifacts_dir = str(folder.resolve()), str(Path(artifacts_dir).resolve())
    removed = []
    ours = sorted(path.parent.glob(f"{_folder_key(Path(folder))}-*.pt"))
    # The first naming (sha256(folder|artifacts)[:20].pt) is never read again: those of this folder go too.
    legacy = [p for p in sorted(path.parent.glob("*.pt")) if len(p.stem) == 20 and "-" not in p.stem]
    for other in ours + legacy:
        if other == path:
            continue
        try:
            data = torch.load(other, map_location="cpu", weights_only=True, mmap=True)
            same_folder = isinstance(data, dict) and data.get("folder") == folder
            stale = same_folder and (other in legacy or data.get("artifacts_dir") == artifacts_dir
                                     or not _artifacts_live(data.get("artifacts_dir"), data.get("artifact_sha")))
        except Exception:  # noqa: BLE001 - an unreadable index of this folder is of no use to anyone
            stale = other not in legacy  # (an unreadable legacy file may be another folder's: left alone)
        if stale:
            other.unlink(missing_ok=True)
            removed.append(other)
    return removed


def _valid_index(data: Any, dim: int | None) -> bool:
    """Entries of the right types, one finite float32 row of width ``dim`` each: a cache is never trusted."""
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return False
    entries, emb = data["entries"], data.get("embeddings")
    if not isinstance(emb, torch.Tensor) or emb.dtype != torch.float32 or emb.dim() != 2 or len(emb) != len(entries):
        return False
    if dim is not None and emb.shape[1] != dim:
        return False
    return bool(torch.isfinite(emb).all()) and all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("mtime_ns"), int)
        and isinstance(e.get("size"), int) for e in entries)


def _load_index(path: Path, artifact_sha: str, dim: int | None = None, quiet: bool = False,
                explicit: bool = False) -> dict[str, Any] | None:
    """The one reader of an index file: the index to reuse, or ``None`` (no file, another model's index,
    or an invalid one: rebuilt, with a warning for a corrupt one). A directory is an error. A file named
    with ``--index`` (``explicit``) that is no clip-mobile-kit index at all is an error and is left as it
    is: a mistyped ``--index`` must never overwrite someone's checkpoint or photo."""
    from convert.files import describe_path, path_kind

    kind = path_kind(str(path))
    if kind == "a directory":
        raise ConfigError(f"index {path} is a directory; give a file name such as {path / 'index.pt'}")
    if kind == "missing":
        return None
    if kind != "file":  # a named pipe, a device, or no file name at all: never given to torch.load
        raise ConfigError(describe_path(str(path), kind, "index"))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, not an error
        data = None
    ours = isinstance(data, dict) and data.get("format") == INDEX_FORMAT
    if not ours and explicit:
        raise ConfigError(f"--index {path} is not a clip-mobile-kit search index (unreadable or another kind of "
                          "file); it was left as it is: delete it or choose another --index")
    if ours and data.get("version") == INDEX_VERSION and data.get("artifact_sha") != artifact_sha:
        return None  # another model's index (an explicit --index shared between models): rebuilt silently
    if not (ours and data.get("version") == INDEX_VERSION and _valid_index(data, dim)):
        if not quiet:
            print(f"warning: index {path} is unreadable or invalid; rebuilding it", file=sys.stderr)
        return None
    return data


def build_index(artifacts, folder: str | Path, index_path: str | Path | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS, *, quiet: bool = False) -> tuple[dict[str, Any], dict[str, int]]:
    """Load, refresh and save the index of ``folder``; returns ``(index, stats)``.

    ``index`` has ``paths`` (list of str) and ``embeddings`` (``[N, D]`` normalised float32).
    ``stats``: ``reused``, ``embedded``, ``removed``, ``failed``. The image encoder is loaded only when
    some image must be embedded; a progress bar shows on long runs (not with ``quiet``).
    """
    folder = Path(folder)
    files = list_images(folder, required=True)
    path = Path(index_path) if index_path else default_index_path(folder, artifacts.sha256)
    old = _load_index(path, artifacts.sha256, artifacts.embed_dim, quiet, explicit=bool(index_path))
    cached: dict[tuple, torch.Tensor] = {}
    if old is not None:
        for entry, emb in zip(old["entries"], old["embeddings"]):
            cached[(entry["path"], entry["mtime_ns"], entry["size"])] = emb
    entries, embs, stats = [], [], {"reused": 0, "embedded": 0, "removed": 0, "failed": 0}
    todo: list[tuple[Path, dict]] = []
    for f in files:
        st = f.stat()
        entry = {"path": str(f.resolve()), "mtime_ns": int(st.st_mtime_ns), "size": int(st.st_size)}
        key = (entry["path"], entry["mtime_ns"], entry["size"])
        if key in cached:
            entries.append(entry)
            embs.append(cached.pop(key))
            stats["reused"] += 1
        else:
            todo.append((f, entry))
    if todo:
        ensure_role(artifacts, "image_encoder")
        pre = Preprocessor(artifacts.preprocess)
        # Decoded a chunk at a time (a 10 000-image folder decoded at once is 6 GB of ViT-B inputs).
        with Progress(len(todo), f"indexing {len(todo)} image(s)", enabled=not quiet) as bar:
            for i in range(0, len(todo), 32):
                chunk = []
                for f, entry in todo[i:i + 32]:
                    try:
                        chunk.append((entry, pre(open_image(f, max_pixels))))
                    except ImageError as exc:
                        if not quiet:
                            print(f"warning: skipped {exc}", file=sys.stderr)
                        stats["failed"] += 1
                if chunk:
                    out = F.normalize(encode_images(artifacts, torch.stack([t for _, t in chunk])), dim=-1)
                    for (entry, _), emb in zip(chunk, out):
                        entries.append(entry)
                        embs.append(emb)
                    stats["embedded"] += len(chunk)
                bar.advance(len(todo[i:i + 32]))
    stats["removed"] = len(cached)
    if not entries:
        raise ImageError(f"none of the {len(files)} images in {folder} could be read")
    order = sorted(range(len(entries)), key=lambda k: entries[k]["path"])
    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "artifact_sha": artifacts.sha256,
             "model": artifacts.manifest["model"]["name"], "folder": str(folder.resolve()),
             "artifacts_dir": str(Path(artifacts.directory).resolve()),
             "entries": [entries[k] for k in order], "embeddings": torch.stack([embs[k] for k in order]).contiguous()}
    if stats["embedded"] or stats["removed"] or old is None:
        try:  # through memory, then a checked atomic write: no abort and no temporary file on a full disk
            path.parent.mkdir(parents=True, exist_ok=True)
            torch_save_atomic(index, path)
        except OSError as exc:  # OutputError included
            if isinstance(exc, OutputError):
                message = str(exc)
            elif isinstance(exc, (FileExistsError, NotADirectoryError)):
                message = f"cannot write {path}: a part of {path.parent} is a file, not a folder"
            else:
                message = f"cannot write {path}: {exc.strerror or exc}"
            if index_path:
                raise OutputError(f"index: {message}") from None
            if not quiet:
                print(f"warning: the search index is not saved ({message})", file=sys.stderr)
    if not index_path:
        remove_stale_indexes(path, folder, artifacts.directory)
    index["paths"] = [e["path"] for e in index["entries"]]
    index["file"] = str(path)
    return index, stats


def rank(index: dict[str, Any], query: torch.Tensor, k: int) -> list[tuple[str, float]]:
    scores = index["embeddings"] @ F.normalize(query.reshape(-1), dim=0)
    values, idx = scores.topk(min(k, len(scores)))
    return [(index["paths"][int(i)], float(v)) for v, i in zip(values, idx)]


def query_embedding(artifacts, text: str | None = None, image: str | None = None,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS, *, quiet: bool = False) -> torch.Tensor:
    if image is not None:
        ensure_role(artifacts, "image_encoder")
        return encode_images(artifacts, Preprocessor(artifacts.preprocess)(open_image(image, max_pixels)).unsqueeze(0))[0]
    if text is None or not text.strip():
        raise ConfigError("the text query is empty")
    ensure_role(artifacts, "text_encoder")
    tok = KitTokenizer.from_artifacts(artifacts)
    tokens, truncated = tok.encode([text])
    if not quiet:
        warn_truncated([text], truncated, tok.context_length)
    return encode_tokens(artifacts, tokens)[0]


def run(args: argparse.Namespace) -> int:
    if args.topk < 1:
        raise ConfigError(f"--topk {args.topk} must be at least 1")
    if args.query is not None and not args.query.strip():
        raise ConfigError("the text query is empty")
    # Only the query's tower now; build_index loads the image encoder if some image needs embedding.
    roles = ("image_encoder",) if args.image_query else ("text_encoder",)
    artifacts = load_artifacts(args.artifacts, args.runtime, roles=roles)
    max_pixels = args.max_pixels or None
    q = query_embedding(artifacts, args.query, args.image_query, max_pixels, quiet=args.quiet)
    index, stats = build_index(artifacts, args.images, args.index, max_pixels, quiet=args.quiet)
    hits = rank(index, q, args.topk)
    if not args.quiet:  # with the answers it qualifies, not with an error line
        warn_random_weights(artifacts.manifest)
    write_json({"query": args.query, "image_query": args.image_query, "index": index["file"], "stats": stats,
                "results": [{"path": p, "score": round(s, 6)} for p, s in hits]}, args.json)
    if not json_to_stdout(args):
        from rich.console import Console
        from rich.table import Table

        what = f"'{args.query}'" if args.query is not None else f"image {args.image_query}"
        # A plain line, not a table title: rich wraps titles mid-word.
        print(f"{what} in {args.images} ({len(index['paths'])} images; "
              f"{stats['reused']} from the index, {stats['embedded']} embedded)", flush=True)
        table = Table()
        table.add_column("#", justify="right")
        table.add_column("cosine", justify="right")
        table.add_column("image")
        for i, (p, s) in enumerate(hits, 1):
            table.add_row(str(i), f"{s:.4f}", p)
        Console().print(table)
    return 0
