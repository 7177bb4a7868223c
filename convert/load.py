"""Stage 1: build the open_clip model (eval mode, train-time branches folded: ``convert.reparam``) and capture
its preprocessing and tokenizer facts."""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import BUILTIN_MODEL, ConvertConfig, build_config
from .errors import CheckpointError, ModelError, close_matches, one_line, quoted
from .probes import probe_images, probe_texts
from .reparam import reparameterize_towers


def open_clip_dir() -> Path:
    """open_clip's package folder, found without importing the package (its ``__init__`` builds the model
    registry and imports everything: ~3.4 s measured, which a cached ``search`` query must not pay)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("open_clip is not installed (pip install open_clip_torch)")
    return Path(list(spec.submodule_search_locations)[0])


def open_clip_submodule(name: str):
    """``open_clip/<name>.py`` (``tokenizer``, ``zero_shot_metadata``) as a stand-alone module, without the
    package; open_clip's own module when the package is already imported (same code)."""
    import importlib
    import importlib.util
    import sys

    if f"open_clip.{name}" in sys.modules:
        return sys.modules[f"open_clip.{name}"]
    alias = f"_clipkit_open_clip_{name}"
    if alias not in sys.modules:
        spec = importlib.util.spec_from_file_location(alias, open_clip_dir() / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ImportError:  # a future open_clip whose module imports its package: slower, same code
            module = importlib.import_module(f"open_clip.{name}")
        sys.modules[alias] = module
    return sys.modules[alias]


@dataclass(frozen=True)
class LoadedModel:
    """The fp32 reference model with what a device needs to feed it."""

    model: torch.nn.Module
    name: str
    pretrained: str | None
    checkpoint: str | None
    preprocess: dict[str, Any]
    tokenizer: dict[str, Any]
    embed_dim: int
    # role -> what folding train-time branches into their inference form did (convert.reparam)
    reparameterized: dict[str, Any] = field(default_factory=dict)


def _register_builtin() -> None:
    from assets import register_tiny_model

    register_tiny_model()


def known_models() -> list[str]:
    import open_clip

    _register_builtin()
    return list(open_clip.list_models())


def check_model_name(name: str) -> None:
    """Raise :class:`ModelError` (with the closest names) unless open_clip knows ``name``."""
    models = known_models()
    if name not in models and not name.startswith(("hf-hub:", "local-dir:")):
        raise ModelError(f"unknown model {quoted(name)}{close_matches(name, models)}; see open_clip.list_models()")


def _check_tag(name: str, tag: str) -> None:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        valid = ", ".join(["none", *tags]) if tags else "none (this model has no pretrained tags)"
        raise ModelError(f"unknown pretrained tag {quoted(tag)} for {name}{close_matches(tag, tags)}; valid: {valid}")


def _check_checkpoint_file(path: str) -> None:
    from .files import describe_path, path_kind

    kind = path_kind(str(path))
    if kind != "file":  # never given to torch.load: a named pipe would block it
        raise CheckpointError(describe_path(str(path), kind, "checkpoint"))
    p = Path(path)
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise CheckpointError(f"checkpoint {path} is not readable")


def load_model(config: ConvertConfig) -> LoadedModel:
    """Create the fp32 open_clip model named by ``config`` (eval mode, on CPU).

    Weights come from the built-in tiny checkpoint, an open_clip pretrained tag (needs the network on
    first use), a local checkpoint file, or seeded random init (``pretrained='none'``).
    """
    import open_clip

    name = config.model
    check_model_name(name)
    pretrained: str | None = config.pretrained
    checkpoint = config.checkpoint
    if name == BUILTIN_MODEL and pretrained == "builtin" and checkpoint is None:
        from assets import TINY_CHECKPOINT

        checkpoint = str(TINY_CHECKPOINT)
    torch.manual_seed(config.seed)
    if checkpoint is not None:
        _check_checkpoint_file(checkpoint)
        model = _model_from_checkpoint(name, checkpoint)
    else:
        source = None if pretrained in (None, "none") else pretrained
        if source is not None:
            _check_tag(name, source)
        where = require_pretrained_reachable(name, source) if source is not None else None
        try:
            with _hub_offline(where is not None and where.cached is not None):
                model = open_clip.create_model(name, pretrained=source, device="cpu")
        except Exception as exc:  # noqa: BLE001 - hub and config errors come in many types
            if where is not None and where.cached is None:
                raise ModelError(f"cannot download the {source} weights of {name} from {where.host}: "
                                 f"{one_line(exc, 160)}; {_WEIGHTS_ADVICE}") from None
            raise ModelError(f"cannot create {name} (pretrained={pretrained}): {one_line(exc)}") from None
    model.eval()
    model.float()
    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp.get("size", 224)
    size = [size, size] if isinstance(size, int) else list(size)
    preprocess = {
        "image_size": size,
        "mean": [float(v) for v in pp.get("mean", open_clip.OPENAI_DATASET_MEAN)],
        "std": [float(v) for v in pp.get("std", open_clip.OPENAI_DATASET_STD)],
        "interpolation": pp.get("interpolation", "bicubic"),
        "resize_mode": pp.get("resize_mode", "shortest"),
        "fill_color": int(pp.get("fill_color", 0)),
        "mode": pp.get("mode", "RGB"),
    }
    tokenizer = describe_tokenizer(name, model)
    reparameterized = reparameterize_towers(model, lambda: (
        probe_images(preprocess, n=8, seed=config.seed), open_clip.get_tokenizer(name)(probe_texts())))
    embed_dim = int(getattr(model, "embed_dim", 0) or _probe_embed_dim(model, tokenizer))
    return LoadedModel(
        model=model, name=name, pretrained=None if checkpoint else pretrained,
        checkpoint=checkpoint, preprocess=preprocess, tokenizer=tokenizer, embed_dim=embed_dim,
        reparameterized=reparameterized,
    )


# --------------------------------------------------------------------------- pretrained weights, offline
# Offline, open_clip's download of a pretrained tag retried the hub for ~54 s (47 log lines) and then failed
# with a message cut before its advice. The kit decides first: weights already in the local cache load with
# the hub switched off; otherwise one TCP connection (DNS included) must open within HUB_PROBE_TIMEOUT, or
# the conversion stops with one line saying what to do.
HUB_PROBE_TIMEOUT = 3.0
_TRUE = ("1", "ON", "YES", "TRUE")
_WEIGHTS_ADVICE = ("run the same command once on a machine with network access (the weights then stay in the local "
                   "cache), or pass --checkpoint FILE (a local state dict), or --pretrained none (seeded random "
                   "weights)")


@dataclass(frozen=True)
class PretrainedSource:
    """Where open_clip fetches a pretrained tag's weights from, and the local file if it is already cached."""

    url: str
    host: str
    cached: str | None


def hub_offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value, as huggingface_hub reads it."""
    return any(os.environ.get(var, "").strip().upper() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _url_cache_dir() -> str:
    """open_clip's cache for weights given by URL (``download_pretrained_from_url``'s default)."""
    return os.path.expanduser("~/.cache/clip")


def pretrained_source(name: str, tag: str) -> PretrainedSource | None:
    """Mirror ``open_clip.pretrained.download_pretrained``'s choice (the hub when it has an entry and
    huggingface_hub is installed, else the URL) and look for the file in the matching cache, without network.
    None when open_clip has no download for the tag (a local ``file`` entry, or nothing)."""
    from urllib.parse import urlsplit

    from open_clip import get_pretrained_cfg
    from open_clip import pretrained as oc_pretrained

    cfg = get_pretrained_cfg(name, tag) or {}
    if not cfg or "file" in cfg:
        return None
    hub_entry = cfg.get("hf_hub", "") if oc_pretrained.has_hf_hub() else ""
    if hub_entry:
        from huggingface_hub import constants, try_to_load_from_cache

        model_id, filename = os.path.split(hub_entry)
        filename = filename or oc_pretrained.HF_WEIGHTS_NAME
        alternatives = getattr(oc_pretrained, "_get_safe_alternatives", lambda f: ())
        for candidate in (*alternatives(filename), filename):
            hit = try_to_load_from_cache(model_id, candidate)
            if isinstance(hit, str) and os.path.isfile(hit):
                return PretrainedSource(f"{constants.ENDPOINT}/{model_id}", urlsplit(constants.ENDPOINT).hostname or "", hit)
        return PretrainedSource(f"{constants.ENDPOINT}/{model_id}", urlsplit(constants.ENDPOINT).hostname or "", None)
    url = cfg.get("url", "")
    if not url:
        return None
    target = os.path.join(_url_cache_dir(), os.path.basename(url))
    return PretrainedSource(url, urlsplit(url).hostname or "", target if os.path.isfile(target) else None)


def probe_host(url: str, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """None when a TCP connection to ``url``'s host (or to the proxy the environment names for it) opens
    within ``timeout`` seconds, name resolution included; otherwise why not, in a few words."""
    import socket
    import threading
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port}: {exc.strerror or type(exc).__name__}")

    # getaddrinfo has no timeout of its own: the thread bounds DNS and connect together.
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:.0f} s"


def require_pretrained_reachable(name: str, tag: str) -> PretrainedSource | None:
    """Before open_clip downloads anything: the weights are cached, or their host answers, or one
    :class:`ModelError` line says which weights, why they cannot be fetched, and what to do."""
    where = pretrained_source(name, tag)
    if where is None or where.cached is not None:
        return where
    if hub_offline_requested():
        why = "HF_HUB_OFFLINE is set"
    else:
        why = probe_host(where.url)
        if why is None:
            return where
    raise ModelError(f"the {tag} weights of {name} are not in the local cache and {where.host} cannot be reached "
                     f"({why}); {_WEIGHTS_ADVICE}")


@contextlib.contextmanager
def _hub_offline(enabled: bool):
    """huggingface_hub offline while the block runs (cached weights: no HEAD request, no retries)."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def _without_log(prefix: str):
    """Drop root-logger records whose message starts with ``prefix`` while the block runs."""
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(prefix)

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _model_from_checkpoint(name: str, checkpoint: str) -> torch.nn.Module:
    """Read the file first (so a truncated or foreign file is told apart from a wrong architecture),
    then load it into ``name`` with open_clip's own loader (strict, with its key/shape fix-ups)."""
    import open_clip
    from open_clip.factory import load_state_dict

    try:
        state = load_state_dict(checkpoint)
    except Exception as exc:  # noqa: BLE001 - unpickling errors have many types
        raise CheckpointError(
            f"checkpoint {checkpoint} cannot be read (truncated or not a torch checkpoint): {one_line(exc)}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {checkpoint} is not a state dict of tensors")
    del state
    # open_clip logs "No pretrained weights loaded ... initialized randomly" here, which is untrue a line
    # later: the checkpoint is loaded next.
    with _without_log("No pretrained weights loaded"):
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    try:
        open_clip.load_checkpoint(model, checkpoint)
    except Exception as exc:  # noqa: BLE001 - missing keys, shape mismatches, asserts
        raise CheckpointError(f"checkpoint {checkpoint} does not fit {name}: {one_line(exc)}") from None
    return model


def describe_tokenizer(name: str, model: torch.nn.Module) -> dict[str, Any]:
    """Facts about the tokenizer a device must reproduce (only open_clip's CLIP BPE is supported)."""
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer

    tok = open_clip.get_tokenizer(name)
    if not isinstance(tok, SimpleTokenizer):
        raise ModelError(
            f"{name} uses tokenizer {type(tok).__name__}; the kit supports open_clip's CLIP BPE "
            "(SimpleTokenizer) only"
        )
    return {
        "context_length": int(tok.context_length),
        "vocab_size": int(len(tok.encoder)),
        "vocab_file": "bpe_simple_vocab_16e6.txt.gz",
        "vocab_id": f"openai-clip-bpe-{len(tok.encoder)}",
        "sot_token_id": int(tok.sot_token_id),
        "eot_token_id": int(tok.eot_token_id),
        "pad_token_id": 0,
        "clean": getattr(getattr(tok, "clean_fn", None), "__name__", "_clean_lower").replace("_clean_", ""),
    }


def _probe_embed_dim(model: torch.nn.Module, tokenizer: dict[str, Any]) -> int:
    with torch.no_grad():
        tokens = torch.zeros(1, tokenizer["context_length"], dtype=torch.long)
        return int(model.encode_text(tokens).shape[-1])


# Fields of a recorded ConvertConfig that say where the output went, not which model it was.
_OUTPUT_FIELDS = ("out", "force", "install_to", "also_pt", "labels", "bytecode_version", "recipe")


def reference_config(manifest: dict[str, Any], checkpoint: str | None = None) -> ConvertConfig:
    """The ConvertConfig the artifacts were made with (output-only fields dropped).

    A checkpoint recorded by the conversion must still be at its recorded (absolute) path; when it moved,
    ``checkpoint`` names the new place and must have the recorded sha256.
    """
    from .files import path_kind

    cfg = dict(manifest.get("config") or {})
    for key in _OUTPUT_FIELDS:
        cfg.pop(key, None)
    if not cfg:
        cfg = {"model": manifest["model"]["name"], "pretrained": manifest["model"].get("pretrained") or "none"}
    recorded = cfg.get("checkpoint")
    want_sha = (manifest.get("model") or {}).get("checkpoint_sha256")
    if checkpoint:
        _check_checkpoint_file(checkpoint)
        if want_sha:
            from .files import sha256_of

            got = sha256_of(Path(checkpoint))
            if got != want_sha:
                raise CheckpointError(f"--checkpoint {checkpoint} is not the checkpoint these artifacts were converted "
                                      f"from (sha256 {got[:16]}..., the manifest records {want_sha[:16]}...)")
        cfg["checkpoint"] = checkpoint
        cfg["pretrained"] = None
    elif recorded and path_kind(recorded) != "file":
        raise CheckpointError(f"the checkpoint these artifacts were converted from, {recorded}, is not there any "
                              "more; pass --checkpoint PATH (its sha256 is checked against the manifest)")
    return build_config(**cfg)


def reference_from_manifest(manifest: dict[str, Any], checkpoint: str | None = None) -> LoadedModel:
    """The fp32 eager open_clip model (eval) the artifacts of ``manifest`` were converted from."""
    return load_model(reference_config(manifest, checkpoint))
