"""Stage 1b: the inference form of train-time multi-branch blocks, checked equal before it is used.

MobileCLIP's image towers (timm FastViT ``fastvit_mci*``) train with over-parameterized blocks: MobileOne
(k x k conv branches + 1 x 1 branch + BatchNorm identity), RepMixer, large-kernel and positional-encoding
convolutions with parallel branches. Each folds into one convolution for inference (RepVGG-style), which
is where those models get their speed. timm's ``reparameterize_model`` walks a module tree and calls
``fuse()`` / ``reparameterize()`` / ``switch_to_deploy()`` wherever a module has one; ml-mobileclip's own
export code does the same. The kit calls it on each tower of the fp32 model right after it is built, so the
reference, the towers, the artifacts and every reader rebuilding the reference (``deploy verify``) see the
one inference form.

Folding is algebra, but done in fp32 (BatchNorm divided into the kernel): the tower's outputs on the probe
inputs before and after must agree to :data:`TOLERANCE` (max abs difference over the largest output
magnitude), or the conversion stops with :class:`~convert.errors.ReparamError`.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import ReparamError

# Relative to the largest output magnitude. Measured: 2.1e-7 on MobileCLIP2-S0 (random init, the 8 probe images),
# 2.9e-7 on fastvit_t8 with trained-looking BatchNorm statistics (random init leaves them at identity), i.e.
# fp32 rounding; a fold whose kernels are 1 % off fails (both in tests/test_reparam.py).
TOLERANCE = 1e-5
INFERENCE_HOOKS = ("fuse", "reparameterize", "switch_to_deploy")


@dataclass(frozen=True)
class ReparamReport:
    """What reparameterization did to one tower: how many modules (by type) and the measured difference."""

    modules: int
    kinds: dict[str, int] = field(default_factory=dict)
    max_abs_diff: float = 0.0
    relative_diff: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"modules": self.modules}
        if self.modules:
            data.update(kinds=dict(self.kinds), max_abs_diff=self.max_abs_diff, relative_diff=self.relative_diff,
                        tolerance=TOLERANCE)
        return data


def reparameterizable(module: nn.Module) -> Counter:
    """The outermost modules of ``module`` (itself included) that have an inference form, counted by type
    name: the blocks timm's ``reparameterize_model`` folds (a RepMixer folds the MobileOne blocks inside it)."""
    kinds: Counter = Counter()

    def walk(m: nn.Module) -> None:
        if any(callable(getattr(m, hook, None)) for hook in INFERENCE_HOOKS):
            kinds[type(m).__name__] += 1
            return
        for child in m.children():
            walk(child)

    walk(module)
    return kinds


def tower_parts(model: nn.Module) -> dict[str, list[str]]:
    """The model's top-level children per tower role: ``visual`` is the image tower, every other child
    (``text`` in a ``CustomTextCLIP``; ``transformer``, ``token_embedding``, ... in a ``CLIP``) the text tower."""
    names = [name for name, _ in model.named_children()]
    return {"image_encoder": [n for n in names if n == "visual"], "text_encoder": [n for n in names if n != "visual"]}


def reparameterize_towers(model: nn.Module, probes: Callable[[], tuple[torch.Tensor, torch.Tensor]]
                          ) -> dict[str, ReparamReport]:
    """Reparameterize ``model`` (an open_clip CLIP, eval mode) in place, tower by tower, and return a report per
    role. A tower with such modules is run before and after on the probe inputs (``probes()`` gives images and
    tokens; called only then); a difference above :data:`TOLERANCE` raises :class:`ReparamError` naming the
    tower and the figures."""
    from timm.models import reparameterize_model

    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def probe(index: int) -> torch.Tensor:
        if not inputs:
            inputs.append(probes())
        return inputs[0][index]

    runs: dict[str, Callable[[], torch.Tensor]] = {
        "image_encoder": lambda: model.encode_image(probe(0)), "text_encoder": lambda: model.encode_text(probe(1))}
    reports: dict[str, ReparamReport] = {}
    for role, children in tower_parts(model).items():
        kinds: Counter = Counter()
        for child in children:
            kinds.update(reparameterizable(getattr(model, child)))
        count = sum(kinds.values())
        if not count:
            reports[role] = ReparamReport(modules=0)
            continue
        with torch.no_grad():
            before = runs[role]()
            for child in children:
                wrapper = nn.Module()  # timm converts children only: give each part a parent
                wrapper.add_module("part", getattr(model, child))
                setattr(model, child, reparameterize_model(wrapper, inplace=True).part)
            after = runs[role]()
        diff = float((after - before).abs().max())
        scale = float(before.abs().max())
        relative = diff / scale if scale > 0 else diff
        reports[role] = ReparamReport(modules=count, kinds=dict(sorted(kinds.items())), max_abs_diff=diff,
                                      relative_diff=relative)
        if not relative <= TOLERANCE:  # NaN fails too
            raise ReparamError(f"reparameterizing the {role} ({count} modules: "
                               f"{', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) changed its fp32 outputs "
                               f"by {relative:.2e} of their largest magnitude (max abs {diff:.2e}); allowed: "
                               f"{TOLERANCE:.0e}")
    return reports
