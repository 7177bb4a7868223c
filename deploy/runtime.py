"""Running loaded artifacts: batched encoders, class embeddings from the artifact's text encoder (cached on
disk), the head, and the kit's cache folder and progress bar."""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from convert.errors import ArtifactError, LabelsError, quoted

from . import heap, threads
from .tokenizer import KitTokenizer


def _run(artifacts, role: str, x: torch.Tensor) -> torch.Tensor:
    module = artifacts.modules[role]
    try:
        with torch.no_grad(), threads.sized(torch, artifacts.work(role), x), heap.first_call(module):
            return module(x)
    except Exception as exc:  # noqa: BLE001 - the interpreters raise C++ errors
        raise ArtifactError(f"{role} failed on input of shape {list(x.shape)} ({' '.join(str(exc).split())[:160]})") from None


def _check_dim(out: torch.Tensor, expected: int, role: str) -> torch.Tensor:
    if out.dim() != 2 or out.shape[-1] != expected:
        raise ArtifactError(f"{role} returns embeddings of shape {list(out.shape)}, the manifest says embed_dim {expected}")
    return out


def encode_images(artifacts, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Unnormalised image embeddings ``[N, D]`` from the artifact's image encoder."""
    if artifacts.image_encoder is None:
        raise ArtifactError(f"{artifacts.directory} has no loaded image_encoder")
    outs = [_run(artifacts, "image_encoder", images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return _check_dim(torch.cat(outs), artifacts.embed_dim, "image_encoder")


def ensure_role(artifacts, role: str) -> None:
    """Verify and load ``role`` into ``artifacts`` if it is not loaded yet (commands load a tower only
    when they need it: a cached ``classify --labels`` never loads the text encoder)."""
    if artifacts.modules.get(role) is None:
        from .artifacts import load_artifacts

        more = load_artifacts(artifacts.directory, artifacts.kind, roles=(role,))
        if more.modules.get(role) is not None:
            artifacts.modules[role] = more.modules[role]


def encode_tokens(artifacts, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    if artifacts.text_encoder is None:
        raise ArtifactError(f"{artifacts.directory} has no text_encoder (needed for text queries and custom labels)")
    outs = [_run(artifacts, "text_encoder", tokens[i:i + batch_size]) for i in range(0, len(tokens), batch_size)]
    return _check_dim(torch.cat(outs), artifacts.embed_dim, "text_encoder")


def _truncation_warning(count: int, example: str, context_length: int, stream=None) -> None:
    print(f"warning: {count} text(s) longer than the {context_length}-token context were truncated "
          f"(e.g. {quoted(example)})", file=stream or sys.stderr)


def warn_truncated(texts: Sequence[str], truncated: Sequence[bool], context_length: int, stream=None) -> int:
    """One warning line when texts were truncated to the context length; returns how many."""
    cut = [t for t, flag in zip(texts, truncated) if flag]
    if cut:
        _truncation_warning(len(cut), cut[0], context_length, stream)
    return len(cut)


RANDOM_WEIGHTS_NOTE = "these artifacts carry RANDOM weights (--pretrained none): their answers mean nothing"


def random_weights(manifest: dict) -> bool:
    """True when the artifacts were converted from seeded random weights (``--pretrained none``); manifests
    written before ``model.random_weights`` existed say so by ``model.pretrained == "none"``."""
    model = manifest.get("model") or {}
    if "random_weights" in model:
        return bool(model["random_weights"])
    return model.get("pretrained") == "none" and not model.get("checkpoint")


def warn_random_weights(manifest: dict, stream=None) -> bool:
    """One warning line (stderr) when the artifacts carry random weights; returns whether it warned.
    For the output header of classify and search."""
    if random_weights(manifest):
        print(f"warning: {RANDOM_WEIGHTS_NOTE}", file=stream or sys.stderr)
        return True
    return False


def cache_dir() -> Path:
    """The kit's cache folder: ``$CLIPKIT_CACHE``, else ``~/.cache/clip-mobile-kit`` (``$CLIP_KIT_CACHE``,
    the spelling the search index used first, is still read)."""
    root = os.environ.get("CLIPKIT_CACHE") or os.environ.get("CLIP_KIT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "clip-mobile-kit"


class Progress:
    """``with Progress(total, what) as bar: ... bar.advance(n)``: a rich progress bar on stderr that
    appears only if the work is still running after ``delay`` seconds, so quick calls print nothing
    (a timer shows it, so a slow first step is covered too).

    Never with ``enabled=False`` (``--quiet``). Transient (gone when done) and without source paths (rich's
    ``console.log`` would add ``file.py:NN``). When stderr is no terminal, one plain line instead, and with
    ``every`` another one at most every ``every`` seconds as the work advances (long runs: bench, evaluate).
    ``describe(what)`` changes the description; ``log(message)`` prints a line above the bar.
    """

    def __init__(self, total: int, what: str, enabled: bool = True, delay: float = 1.0,
                 every: float | None = None) -> None:
        import threading

        self.total, self.what, self.enabled, self.delay, self.every = int(total), what, enabled, delay, every
        self.done = 0
        self._last_line: float | None = None
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._timer = None
        self._bar = None
        self._task = None
        self._closed = False

    def __enter__(self) -> Progress:
        import threading

        if self.enabled and self.total > 0:
            self._timer = threading.Timer(self.delay, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _show(self) -> None:
        with self._lock:
            if self._closed or self.done >= self.total:
                return
            from rich.console import Console

            console = Console(stderr=True)
            if not console.is_terminal:
                self._plain_line()
                return
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, completed=self.done)

    def _plain_line(self) -> None:
        self._last_line = time.monotonic()
        print(f"{self.what}: {self.done}/{self.total} done after {self._last_line - self.start:.0f} s ...",
              file=sys.stderr, flush=True)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done)
            elif (self._last_line is not None and self.every is not None and not self._closed
                  and self.done < self.total and time.monotonic() - self._last_line >= self.every):
                self._plain_line()

    def describe(self, what: str) -> None:
        """A new description (the step now running)."""
        with self._lock:
            self.what = what
            if self._bar is not None:
                self._bar.update(self._task, description=what)

    def log(self, message: str) -> None:
        """One plain line on stderr (above the bar when it shows), unless disabled."""
        if not self.enabled:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
            else:
                print(message, file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._bar is not None:
                self._bar.stop()
                self._bar = None


# Prompts per text-encoder call in class_embeddings: small enough for a progress bar that moves (ViT-B-32
# android artifacts on 2 x86 cores: ~0.1 s a prompt), large enough to keep the per-call overhead small.
PROMPT_BATCH = 32


def class_embeddings(artifacts, tokenizer: KitTokenizer, labels: Sequence[str], templates: Sequence,
                     *, quiet: bool = False, truncated_out: list | None = None) -> torch.Tensor:
    """``[C, D]`` normalised class embeddings from the artifact's (quantized) text encoder, the same
    recipe as open_clip's ``build_zero_shot_classifier``: mean of normalised template embeddings,
    renormalised. A progress bar shows on long runs and a warning names truncated prompts, unless
    ``quiet``; ``truncated_out`` receives the truncated prompts."""
    if not labels:
        raise LabelsError("the label list is empty; give at least one class name")
    prompts = [t.format(label) if isinstance(t, str) else t(label) for label in labels for t in templates]
    tokens, truncated = tokenizer.encode(prompts)
    cut = [p for p, flag in zip(prompts, truncated) if flag]
    if truncated_out is not None:
        truncated_out.extend(cut)
    if cut and not quiet:
        _truncation_warning(len(cut), cut[0], tokenizer.context_length)
    outs = []
    what = f"encoding {len(labels)} label(s) x {len(templates)} template(s)"
    with Progress(len(prompts), what, enabled=not quiet) as bar:
        for i in range(0, len(tokens), PROMPT_BATCH):
            outs.append(encode_tokens(artifacts, tokens[i:i + PROMPT_BATCH]))
            bar.advance(len(outs[-1]))
    emb = F.normalize(torch.cat(outs), dim=-1).reshape(len(labels), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


CLASS_CACHE_FORMAT = "clip-mobile-kit-class-embeddings"
CLASS_CACHE_VERSION = 1


def class_cache_key(artifacts, labels: Sequence[str], templates: str) -> str | None:
    """What class embeddings depend on, hashed: the model files (content hashes), the vocabulary and
    tokenizer settings, the labels, the templates, the runtime (lite/jit) and torch. ``None`` (no
    caching) when ``templates`` is neither a named set nor a readable file (the loader says why).

    Named sets are keyed by the source of their templates (open_clip's ``zero_shot_metadata.py``, the
    kit's version for ``plain``), read without importing open_clip; a file by its bytes.
    """
    from convert.artifact import KIT_VERSION
    from convert.config import TEMPLATE_SETS
    from convert.load import open_clip_dir

    if templates in TEMPLATE_SETS:
        source = open_clip_dir() / "zero_shot_metadata.py"
        tmpl = ["named", templates, KIT_VERSION, hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None]
    else:
        from convert.errors import ConfigError
        from convert.files import path_kind, read_user_text

        if path_kind(templates) != "file":
            return None
        # Through the one reader (never a named pipe, which blocked here forever); UTF-8 bytes = the file's.
        tmpl = ["file", hashlib.sha256(read_user_text(templates, "templates file", ConfigError).encode()).hexdigest()]
    vocab = next((e.get("sha256") for e in artifacts.manifest["files"] if e.get("role") == "vocab"), None)
    parts = {"format": CLASS_CACHE_FORMAT, "version": CLASS_CACHE_VERSION, "model_files": artifacts.sha256,
             "kind": artifacts.kind, "vocab": vocab, "tokenizer": artifacts.tokenizer, "labels": list(labels),
             "templates": tmpl, "torch": torch.__version__.split("+", 1)[0], "prompt_batch": PROMPT_BATCH}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def _read_class_cache(path: Path, key: str, n_labels: int, dim: int) -> dict | None:
    """The cached entry if it is exactly what ``key`` asks for; anything else is ``None`` (recompute)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a corrupt or foreign file is recomputed, never trusted
        return None
    if not isinstance(data, dict) or data.get("format") != CLASS_CACHE_FORMAT or data.get("key") != key:
        return None
    weights, cut = data.get("weights"), data.get("truncated")
    if (not isinstance(weights, torch.Tensor) or weights.dtype != torch.float32 or tuple(weights.shape) != (n_labels, dim)
            or not bool(torch.isfinite(weights).all())
            or not torch.allclose(weights.norm(dim=-1), torch.ones(n_labels), atol=1e-3)
            or not isinstance(cut, list) or not all(isinstance(c, str) for c in cut)):
        return None
    return {"weights": weights.contiguous(), "truncated": cut}


def _write_class_cache(path: Path, entry: dict) -> None:
    """Atomically (``convert.files.torch_save_atomic``: a full disk is one line, never a half-written file);
    a cache that cannot be written is only a slower next call, so it warns instead of failing."""
    from convert.errors import OutputError
    from convert.files import torch_save_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch_save_atomic(entry, path)
    except OSError as exc:  # OutputError included
        detail = str(exc) if isinstance(exc, OutputError) else (exc.strerror or str(exc))
        print(f"warning: cannot write the class-embedding cache {path} ({detail})", file=sys.stderr)


def cached_class_embeddings(artifacts, labels: Sequence[str], templates: str, *, quiet: bool = False,
                            use_cache: bool = True) -> torch.Tensor:
    """:func:`class_embeddings` for a template spec (``openai``, ``simple``, ``plain`` or a file), stored in
    ``cache_dir()/class_embeddings`` per :func:`class_cache_key`: a repeated call loads ``[C, D]``
    floats instead of encoding ``C x templates`` prompts, and needs neither the tokenizer nor open_clip.
    A cache file that does not validate (key, dtype, shape, finite unit rows) is recomputed and rewritten.
    """
    labels = list(labels)
    if not labels:
        raise LabelsError("the label list is empty; give at least one class name")
    key = class_cache_key(artifacts, labels, templates) if use_cache else None
    path = cache_dir() / "class_embeddings" / f"{key[:32]}.pt" if key else None
    if path is not None and path.is_file():
        hit = _read_class_cache(path, key, len(labels), artifacts.embed_dim)
        if hit is not None:
            if hit["truncated"] and not quiet:
                _truncation_warning(len(hit["truncated"]), hit["truncated"][0], int(artifacts.tokenizer["context_length"]))
            return hit["weights"]
        if not quiet:
            print(f"warning: class-embedding cache {path} is unreadable or stale; recomputing it", file=sys.stderr)
    from convert.head import load_templates

    _, tmpl = load_templates(templates)
    ensure_role(artifacts, "text_encoder")
    cut: list[str] = []
    weights = class_embeddings(artifacts, KitTokenizer.from_artifacts(artifacts), labels, tmpl, quiet=quiet,
                               truncated_out=cut)
    if path is not None:
        _write_class_cache(path, {"format": CLASS_CACHE_FORMAT, "version": CLASS_CACHE_VERSION, "key": key,
                                  "labels": labels, "templates": templates, "truncated": cut,
                                  "weights": weights.detach().float().contiguous()})
    return weights


def head_logits(artifacts, embeddings: torch.Tensor) -> torch.Tensor:
    """The shipped zero-shot head on image embeddings, with a clear error when its width differs."""
    head = artifacts.zero_shot_head
    if head is None:
        raise ArtifactError(f"{artifacts.directory} has no zero_shot_head; pass --labels")
    try:
        with torch.no_grad():
            logits = head(embeddings)
    except Exception as exc:  # noqa: BLE001
        detail = " ".join(str(exc).split())
        shapes = re.findall(r"\d+x\d+", detail)
        raise ArtifactError(
            f"zero_shot_head does not fit the image encoder: the image encoder gives {embeddings.shape[-1]}-dim "
            f"embeddings{' (head matmul shapes ' + ' and '.join(shapes[:2]) + ')' if shapes else ''}; "
            "the head comes from another model: reconvert, or pass --labels to build classes with the text encoder"
        ) from None
    labels = artifacts.labels or []
    if logits.dim() != 2 or logits.shape[-1] != len(labels):
        raise ArtifactError(f"zero_shot_head gives {logits.shape[-1]} logits, the manifest lists {len(labels)} labels")
    return logits


def logits_from_weights(embeddings: torch.Tensor, weights: torch.Tensor, scale: float) -> torch.Tensor:
    if weights.shape[-1] != embeddings.shape[-1]:
        raise ArtifactError(
            f"class embeddings are {weights.shape[-1]}-dim, image embeddings {embeddings.shape[-1]}-dim (different models)"
        )
    return scale * F.normalize(embeddings, dim=-1) @ weights.t()


def topk(logits: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Softmax probabilities and the ``k`` best labels for each row of ``logits``."""
    probs = logits.float().softmax(dim=-1)
    k = min(k, probs.shape[-1])
    values, indices = probs.topk(k, dim=-1)
    return [
        [(labels[int(i)], float(v)) for v, i in zip(row_v, row_i)]
        for row_v, row_i in zip(values, indices)
    ]
