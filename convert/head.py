"""The zero-shot head: class names x prompt templates -> fp32 class embeddings -> a tiny module.

``ZeroShotHead`` is what ships (``zero_shot_head.ptl``); :func:`load_templates` is the one reader of
template sets and template files (the converter, ``deploy classify`` and ``deploy evaluate`` use it);
:func:`build_class_embeddings` is open_clip's own ``build_zero_shot_classifier`` on the fp32 model.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from .config import TEMPLATE_SETS
from .errors import ConfigError, close_matches, quoted

Template = Union[str, Callable[[str], str]]


class ZeroShotHead(nn.Module):
    """``image embedding [B, D] -> logits [B, C]``: ``scale * normalize(x) @ W.T``.

    ``W`` holds one normalised fp32 text embedding per label, so a phone that only classifies
    needs no text encoder at all.
    """

    def __init__(self, class_embeddings: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.register_buffer("weight", class_embeddings.detach().float().contiguous())
        self.logit_scale = float(logit_scale)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        # a Linear, not ``x @ W.t()``: XNNPACK takes a matmul only with a constant right-hand side, and a
        # transposed buffer is not one (the .pte head's mm fell to portable kernels)
        return self.logit_scale * F.linear(F.normalize(embedding, dim=-1), self.weight)


def _named_templates(name: str) -> list[Template]:
    if name == "plain":
        return ["a photo of a {}."]
    from .load import open_clip_submodule  # open_clip's templates without importing the whole package

    meta = open_clip_submodule("zero_shot_metadata")
    return list(meta.OPENAI_IMAGENET_TEMPLATES if name == "openai" else meta.SIMPLE_IMAGENET_TEMPLATES)


def load_templates(spec: str) -> tuple[str, list[Template]]:
    """A named template set (``openai``, ``simple``, ``plain``) or a file with one ``{}`` template a line.

    Returns ``(name, templates)``; ``name`` (e.g. ``openai-80``) is what goes into the manifest.
    Raises :class:`ConfigError` naming the file and line when a template cannot be used.
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"templates={quoted(spec)} must be one of {', '.join(TEMPLATE_SETS)} or a file")
    if spec in TEMPLATE_SETS:
        named = _named_templates(spec)
        return f"{spec}-{len(named)}", named
    from .files import path_kind, read_user_text

    kind = path_kind(spec)
    if kind == "missing" or kind.startswith("not a file name"):
        raise ConfigError(f"templates={quoted(spec)} is neither a file nor one of: {', '.join(TEMPLATE_SETS)}"
                          f"{close_matches(spec, TEMPLATE_SETS)}")
    text = read_user_text(spec, "templates file", ConfigError)  # a directory, a pipe, a device: one line
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.replace("{c}", "{}")
        try:  # exactly one positional placeholder: '{}' twice, '{0}{1}' or '{name}' all fail here
            ok = line.count("{}") == 1 and line.format("\0").count("\0") == 1
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"templates file {spec}, line {number}: {quoted(line)} needs exactly one '{{}}' "
                              "placeholder for the class name (and no other braces)")
        lines.append(line)
    if not lines:
        raise ConfigError(f"templates file {spec}: the file has no templates (one '{{}}' template a line)")
    return f"file:{Path(spec).name}-{len(lines)}", lines


def format_prompts(labels: Sequence[str], templates: Sequence[Template]) -> list[str]:
    """Every template applied to every label, label-major (the layout class embeddings average over)."""
    return [t.format(label) if isinstance(t, str) else t(label) for label in labels for t in templates]


@torch.no_grad()
def build_class_embeddings(model, tokenizer, labels: Sequence[str], templates: Sequence[Template]) -> torch.Tensor:
    """``[C, D]`` normalised class embeddings (mean of normalised template embeddings, renormalised),
    computed with open_clip's ``build_zero_shot_classifier`` on the fp32 reference model."""
    from open_clip import build_zero_shot_classifier

    weights = build_zero_shot_classifier(model, tokenizer, list(labels), list(templates), num_classes_per_batch=16)
    return weights.t().contiguous().float()
