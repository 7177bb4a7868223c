"""Class names x prompt templates -> a zero-shot text-embedding head, and top-k over its logits."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, Union

import torch

from convert.errors import ConfigError, close_matches

Template = Union[str, Callable[[str], str]]
TEMPLATE_SETS = {
    "openai": "open_clip OPENAI_IMAGENET_TEMPLATES (80 prompts, the paper's 80-prompt set)",
    "simple": "open_clip SIMPLE_IMAGENET_TEMPLATES (7 prompts, the paper's 7-prompt set)",
    "plain": "'a photo of a {}.' (1 prompt)",
}


def load_templates(spec: str) -> tuple[str, list[Template]]:
    """A named template set (``openai``, ``simple``, ``plain``) or a file with one ``{}`` template a line.

    Returns ``(name, templates)``; ``name`` is what goes into the manifest.
    """
    from open_clip import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    named = {
        "openai": list(OPENAI_IMAGENET_TEMPLATES),
        "simple": list(SIMPLE_IMAGENET_TEMPLATES),
        "plain": ["a photo of a {}."],
    }
    if spec in named:
        return f"{spec}-{len(named[spec])}", named[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"templates={spec!r} is neither a file nor one of: {', '.join(named)}"
            f"{close_matches(spec, list(named))}"
        )
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln.replace("{c}", "{}") for ln in lines if ln and not ln.startswith("#")]
    bad = [ln for ln in lines if ln.count("{}") != 1]
    if not lines or bad:
        raise ConfigError(
            f"templates file {spec}: every line needs exactly one '{{}}' placeholder"
            + (f" (bad: {bad[0]!r})" if bad else " (file has no templates)")
        )
    return f"file:{path.name}-{len(lines)}", lines


@torch.no_grad()
def build_class_embeddings(model, tokenizer, labels: Sequence[str], templates: Sequence[Template]) -> torch.Tensor:
    """``[C, D]`` normalised class embeddings (mean of normalised template embeddings, renormalised),
    computed with open_clip's ``build_zero_shot_classifier`` on the fp32 reference model."""
    from open_clip import build_zero_shot_classifier

    weights = build_zero_shot_classifier(model, tokenizer, list(labels), list(templates), num_classes_per_batch=16)
    return weights.t().contiguous().float()


def topk(logits: torch.Tensor, labels: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Softmax probabilities and the ``k`` best labels for each row of ``logits``."""
    probs = logits.float().softmax(dim=-1)
    k = min(k, probs.shape[-1])
    values, indices = probs.topk(k, dim=-1)
    return [
        [(labels[int(i)], float(v)) for v, i in zip(row_v, row_i)]
        for row_v, row_i in zip(values, indices)
    ]
