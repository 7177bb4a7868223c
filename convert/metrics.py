"""How close a converted output is to its fp32 reference, and how big a module is."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def tensor_bytes(module: torch.nn.Module) -> int:
    """fp32 size of a module: bytes of its parameters and buffers (the baseline for ratios)."""
    seen: set[int] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def compare(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    """Per-row cosine (min, mean), max abs error and SQNR (dB) of ``candidate`` against ``reference``."""
    reference = reference.float()
    candidate = candidate.float()
    cos = F.cosine_similarity(reference, candidate, dim=-1)
    err = candidate - reference
    noise = err.pow(2).sum().clamp_min(1e-30)
    return {
        "cosine_min": round(float(cos.min()), 6),
        "cosine_mean": round(float(cos.mean()), 6),
        "max_abs_err": float(err.abs().max()),
        "sqnr_db": round(float(10 * torch.log10(reference.pow(2).sum() / noise)), 2),
    }
