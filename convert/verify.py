"""Stage 6: reload every saved model file in the runtime that will run it (``.ptl``: the lite interpreter,
``.pte``: ExecuTorch) and compare it with the fp32 model.

Validation is its own stage over the declared roles (as optimum's ``validate_model_outputs`` is), but
stricter: a tower below the recipe's floor is a :class:`FidelityError`, never a warning, and the
conversion then leaves nothing behind.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import FidelityError
from .export import load_lite
from .metrics import compare


@dataclass(frozen=True)
class Reference:
    """Fixed probe inputs and the fp32 open_clip model's outputs on them."""

    images: torch.Tensor
    tokens: torch.Tensor
    image: torch.Tensor
    text: torch.Tensor


@torch.no_grad()
def verify_towers(modules: dict[str, Callable], reference: Reference, floor: float,
                  head: torch.nn.Module | None = None,
                  tower_exactness: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Per role: cosine/SQNR/max-abs of reloaded model files (``modules``: role -> a loaded file, called like
    a module) against fp32; the head's top-1 agreement. The same inputs and figures for every format."""
    fidelity: dict[str, Any] = {}
    image = modules["image_encoder"](reference.images)
    text = modules["text_encoder"](reference.tokens)
    # One prompt at a time too, as the phone runs it: a text tower computed up to each prompt's own end-of-text
    # token (the default) sees other activation ranges than the padded batch (measured: ViT-B-32
    # android-compact batch 0.998988, per prompt 0.999159).
    one_by_one = torch.cat([modules["text_encoder"](reference.tokens[i:i + 1]) for i in range(len(reference.tokens))])
    for role, ref, got in (("image_encoder", reference.image, image), ("text_encoder", reference.text, text)):
        fidelity[role] = dict(compare(ref, got), floor=floor)
        if role == "text_encoder":
            fidelity[role]["per_prompt"] = compare(ref, one_by_one)
        if tower_exactness:
            fidelity[role]["fp32_tower_max_abs_err"] = tower_exactness[role]["max_abs_err"]
    if head is not None and "zero_shot_head" in modules:
        ref_logits = head(reference.image)
        logits = modules["zero_shot_head"](image)
        agree = (ref_logits.argmax(-1) == logits.argmax(-1)).float().mean()
        fidelity["zero_shot_head"] = dict(compare(ref_logits, logits), top1_agreement=float(agree))
    return fidelity


def verify_lite(paths: dict[str, Path], reference: Reference, floor: float, head: torch.nn.Module | None = None,
                tower_exactness: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """:func:`verify_towers` over ``.ptl`` files reloaded in the lite interpreter."""
    return verify_towers({role: load_lite(path) for role, path in paths.items()}, reference, floor, head,
                         tower_exactness)


def enforce_floor(fidelity: dict[str, Any], floor: float) -> None:
    """Raise :class:`FidelityError` naming every tower whose minimum cosine is below ``floor``."""
    failures = [
        f"{role} cosine {fig['cosine_min']:.6f} < floor {floor} (short by {floor - fig['cosine_min']:.6f})"
        for role, fig in fidelity.items() if "floor" in fig and fig["cosine_min"] < floor
    ]
    if failures:
        raise FidelityError("fidelity below the recipe's floor: " + "; ".join(failures)
                            + " (keep modules in fp32 with --keep-fp32, use --weights per-channel, or lower --min-cosine)")
