"""Stage 4: dynamic int8 quantization of a tower, per the recipe.

Linear layers get ``torch.ao`` dynamic int8 (weights int8 per tensor or per output channel,
activations quantized on the fly) for the chosen engine. The token embedding gets weight-only int8
(:class:`Int8Embedding`), stored as plain tensors: ``torch.ao``'s quantized ``Embedding`` keeps its
weight in packed params whose unpacking makes a fresh tensor each time, so a frozen lite artifact
saves it twice (24 MiB extra for ViT-B-32).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import QuantConfig

EMBEDDING_NAMES = ("token_embedding",)


class Int8Embedding(nn.Module):
    """Weight-only int8 embedding: per-row asymmetric uint8 codes with fp16 scale and offset.

    ``row = codes * scale + offset``: one byte per weight plus 4 bytes a row, dequantized (in fp32)
    only for the rows a batch gathers. fp16 is ample for the row constants: its relative error (5e-4)
    moves a value by under a seventh of one quantization step. Plain tensors, so the artifact stores
    them once and any runtime can run it.
    """

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("codes", codes)
        self.register_buffer("scale", scale)
        self.register_buffer("offset", offset)

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> Int8Embedding:
        weight = embedding.weight.detach().float()
        low = weight.min(dim=1, keepdim=True).values
        high = weight.max(dim=1, keepdim=True).values
        # Round the row constants to fp16 first, so the codes are chosen for the stored constants.
        low = low.half().float()
        scale = ((high - low) / 255.0).clamp_min(1e-7).half().float()
        codes = torch.round((weight - low) / scale).clamp_(0, 255).to(torch.uint8)
        return cls(codes, scale.squeeze(1).half().contiguous(), low.squeeze(1).half().contiguous())

    def dequantize(self) -> torch.Tensor:
        return self.codes.float() * self.scale.float().unsqueeze(1) + self.offset.float().unsqueeze(1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        flat = tokens.reshape(-1)
        rows = torch.index_select(self.codes, 0, flat).float()
        rows = rows * torch.index_select(self.scale, 0, flat).float().unsqueeze(1)
        rows = rows + torch.index_select(self.offset, 0, flat).float().unsqueeze(1)
        return rows.reshape(tokens.shape[0], tokens.shape[1], -1)


@dataclass
class QuantReport:
    """Which modules of a tower became int8 and which stayed fp32 (names relative to the tower)."""

    int8: list[str] = field(default_factory=list)
    fp32: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"int8": self.int8, "fp32": self.fp32}


# Why a module type stays fp32 in a `.ptl`: torch.ao's dynamic quantization (the only int8 that needs no
# calibration data) has kernels for Linear (and the kit's own weight-only embedding) only.
PTL_FP32_REASONS: dict[type[nn.Module], str | None] = {
    nn.Conv1d: "torch dynamic quantization has no conv",
    nn.Conv2d: "torch dynamic quantization has no conv",
    nn.Linear: "kept fp32 by the recipe (keep_fp32, attention, projection or patch)",
    nn.MultiheadAttention: "attention kept fp32 by the recipe (not unfolded)",
    nn.Embedding: "kept fp32 by the recipe (embedding fp32)",
}
# The .pte quantizes the same modules (convert.export_pte): its convolutions stay fp32 too, for another reason.
PTE_FP32_REASONS: dict[type[nn.Module], str | None] = {
    **PTL_FP32_REASONS,
    nn.Conv1d: "the .pte quantizes Linears only, as the .ptl (docs/executorch.md)",
    nn.Conv2d: "the .pte quantizes Linears only, as the .ptl (docs/executorch.md)",
}
OTHER_FP32 = "other fp32 parameters"
OTHER_FP32_REASON = "normalization, position, scale and bias tensors: small, and no int8 kernel takes them"


def fp32_share(tower: nn.Module, reasons: dict[type[nn.Module], str | None], file_bytes: int | None = None
               ) -> list[dict[str, Any]]:
    """What stays fp32 in a file made from ``tower``, grouped by module type: one entry per type of ``reasons``
    found in the tower (``{"module", "count", "bytes", "share", "reason"}``), then every other fp32 parameter
    and buffer lumped as :data:`OTHER_FP32`; types first, largest first.

    A module belongs to the first type of ``reasons`` it is an instance of, with the fp32 tensors it holds
    itself (children count on their own). A type mapped to ``None`` is int8 in that format: its modules are
    not listed (a format that quantizes convolutions passes ``{**PTL_FP32_REASONS, nn.Conv2d: None}`` with the
    eager tower). ``share`` is ``bytes / file_bytes`` (``None`` without a file): tensor bytes as the eager
    tower holds them, an estimate of their part of the saved file. :data:`PTL_FP32_REASONS` are the `.ptl`'s.
    """
    groups: dict[str, dict[str, Any]] = {}
    seen: set[int] = set()
    for module in tower.modules():
        kind = next((k for k in reasons if isinstance(module, k)), None)
        if kind is not None and reasons[kind] is None:
            continue
        tensors = [t for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))
                   if t is not None and t.dtype == torch.float32 and id(t) not in seen]
        seen.update(id(t) for t in tensors)
        size = sum(t.numel() * t.element_size() for t in tensors)
        if not size:
            continue
        name = kind.__name__ if kind is not None else OTHER_FP32
        group = groups.setdefault(name, {"module": name, "count": 0, "bytes": 0,
                                         "reason": reasons[kind] if kind is not None else OTHER_FP32_REASON})
        group["count"] += 1
        group["bytes"] += size
    rows = sorted(groups.values(), key=lambda g: (g["module"] == OTHER_FP32, -g["bytes"]))
    for row in rows:
        if row["module"] == OTHER_FP32:
            row.pop("count")
        row["share"] = round(row["bytes"] / file_bytes, 4) if file_bytes else None
    return rows


def _matches(qualified: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(qualified, pattern) for pattern in patterns)


def check_patterns(quant: QuantConfig, names: list[str]) -> None:
    """Every ``keep_fp32`` / ``per_tensor`` pattern must match at least one of ``names`` (``<role>.<module>``):
    a typo would otherwise be accepted silently and change nothing."""
    from .errors import ConfigError, close_matches, quoted

    for option, patterns in (("--keep-fp32", quant.keep_fp32), ("--per-tensor", quant.per_tensor)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                hint = close_matches(pattern, names) or f" (module names look like {names[len(names) // 2]})"
                raise ConfigError(f"{option} {quoted(pattern)} matches no module{hint}")


def _kept(name: str, quant: QuantConfig, role: str) -> bool:
    if _matches(f"{role}.{name}", quant.keep_fp32):
        return True
    leaf = name.rsplit(".", 1)[-1]
    if quant.attention == "fp32" and leaf in ("in_proj", "out_proj") and ".attn." in f".{name}":
        return True
    if quant.projection == "fp32" and name in ("proj", "projection"):
        return True
    if quant.patch == "fp32" and (name.endswith("conv1.linear") or name == "visual.conv1"):
        return True
    return False


def select_modules(tower: nn.Module, quant: QuantConfig, role: str,
                   types: tuple[type, ...] = (nn.Linear,)) -> tuple[dict[str, bool], QuantReport]:
    """The recipe's choice, format-free: ``{module name: per-channel?}`` for the modules of exact ``types``
    that become int8, and the report of int8 / fp32 names. Both export formats quantize what this returns
    (``.ptl`` through ``torch.ao``'s dynamic Linear, ``.pte`` through the XNNPACK quantizer)."""
    report = QuantReport()
    selected: dict[str, bool] = {}
    for name, module in tower.named_modules():
        if type(module) in types:
            if _kept(name, quant, role):
                report.fp32.append(name)
                continue
            selected[name] = quant.weights == "per-channel" and not _matches(f"{role}.{name}", quant.per_tensor)
            report.int8.append(name)
    return selected, report


def set_engine(engine: str) -> None:
    """Select the quantized engine; weights are packed for it when quantized and when loaded."""
    torch.backends.quantized.engine = engine


def quantize_tower(tower: nn.Module, quant: QuantConfig, role: str) -> tuple[nn.Module, QuantReport]:
    """Return a quantized copy of ``tower`` (fp32 tower untouched) and what was quantized.

    ``role`` (``image_encoder`` / ``text_encoder``) prefixes module names for the ``keep_fp32`` and
    ``per_tensor`` patterns, so ``image_encoder.*`` names one tower and ``*.mlp.c_fc`` both.

    Only modules of exact type ``nn.Linear`` are candidates: ``nn.MultiheadAttention.out_proj`` is a
    ``NonDynamicallyQuantizableLinear`` whose weight MHA reads directly, which is why attention must be
    unfolded (``convert.attention``) before it can be quantized.
    """
    import copy

    from torch.ao.quantization import (
        default_dynamic_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    set_engine(quant.engine)
    selected, report = select_modules(tower, quant, role)
    spec = {name: per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
            for name, per_channel in selected.items()}
    tower = copy.deepcopy(tower)
    if spec:
        tower = quantize_dynamic(tower, spec, dtype=torch.qint8)
        share_zero_points(tower)
        if quant.engine == "qnnpack":
            drop_reduce_range(tower)
    quantize_embeddings(tower, quant, role, report)
    return tower.eval(), report


def quantize_embeddings(tower: nn.Module, quant: QuantConfig, role: str, report: QuantReport) -> bool:
    """Make ``tower``'s token embedding weight-only int8 (:class:`Int8Embedding`, in place) where the recipe says
    so, recording it in ``report``; returns whether one became int8. The same module in both formats."""
    changed = False
    for name in EMBEDDING_NAMES:
        emb = getattr(tower, name, None)
        if isinstance(emb, nn.Embedding):
            if quant.embedding == "int8" and not _kept(name, quant, role):
                setattr(tower, name, Int8Embedding.from_float(emb))
                report.int8.append(name)
                changed = True
            else:
                report.fp32.append(name)
    return changed


def drop_reduce_range(tower: nn.Module) -> int:
    """Make qnnpack dynamic Linears call ``linear_dynamic`` without ``reduce_range=True``.

    (fbgemm takes the missing flag as ``reduce_range=False``: use :func:`use_full_range` for it, which checks
    the CPU.)

    ``torch.ao``'s dynamic Linear (module version 4) always passes ``reduce_range=True``; qnnpack ignores
    it (its activations are 8-bit either way) but prints a C++ warning on every process's first call,
    on the phone too. Version 3 modules take the call without the flag: same kernels, same numbers.
    Returns how many modules were changed.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    count = 0
    for module in tower.modules():
        if isinstance(module, DynamicLinear) and module.version == 4:
            module.version = 3
            count += 1
    return count


# fbgemm multiplies uint8 activations by int8 weights. Only its AVX512-VNNI kernels (vpdpbusd) sum the
# products in int32; its AVX2 and AVX512 kernels add neighbouring pairs in int16 (vpmaddubsw), which
# saturates unless activations are 7-bit (reduce_range). fbgemm has no AVX-VNNI (VEX) kernels, so
# ``avx_vnni`` alone does not help. Measured on an AVX2 EPYC with reduce_range=False: the ViT-B-32 x86
# image tower's cosine falls from 0.9996 to 0.9600 (text 0.9980 -> 0.9970).
FULL_RANGE_CPU_FLAGS = {"fbgemm": ("avx512_vnni",), "x86": ("avx512_vnni",)}


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def full_range_requirement(engine: str) -> list[str] | None:
    """CPU flags (any one of them) a CPU needs to run ``engine``'s int8 Linears on 8-bit activations
    without saturating; ``[]`` when any CPU can (qnnpack), ``None`` when no CPU can."""
    if engine == "qnnpack":
        return []
    return list(FULL_RANGE_CPU_FLAGS.get(engine, ())) or None


def use_full_range(tower: nn.Module, engine: str, flags: set[str] | None = None) -> int:
    """Make every dynamic int8 Linear of ``tower`` quantize activations to 8 bits (``reduce_range=False``).

    An 8-bit activation grid halves the rounding step of the default 7-bit one (measured gain:
    docs/performance.md, ``--full-range``; the experiment: benchmarks/activation_bits.py).
    Refused (:class:`ConfigError`) unless this CPU has one of :func:`full_range_requirement`'s flags: the
    artifact then needs them wherever it runs, so record that requirement beside it. Returns how many
    modules were changed.
    """
    from .errors import ConfigError
    from .packing import FirstCallPackedLinear

    needed = full_range_requirement(engine)
    have = cpu_flags() if flags is None else flags
    if needed is None or (needed and not have.intersection(needed)):
        raise ConfigError(
            f"8-bit activations (reduce_range off) with engine {engine} need a CPU with "
            f"{' or '.join(needed or ['(none: not supported)'])}; this one has none, so its int8 sums would "
            "saturate (measured: image cosine 0.9996 -> 0.96)")
    count = drop_reduce_range(tower)
    for module in tower.modules():
        if isinstance(module, FirstCallPackedLinear) and module.reduce_range:
            module.reduce_range = False
            count += 1
    return count


def share_zero_points(tower: nn.Module) -> int:
    """Make every per-channel int8 weight with all-zero zero points use one shared zero-point tensor.

    Symmetric int8 weights have zero points of 0, yet each layer stores its own int64 vector of them
    (8 bytes a channel: 1.1 MiB in ViT-B-32). Serialization de-duplicates tensors by storage, so a
    shared tensor is written once. Returns how many layers were rewritten.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    shared: dict[int, torch.Tensor] = {}
    count = 0
    for module in tower.modules():
        if not isinstance(module, DynamicLinear):
            continue
        weight, bias = module._weight_bias()
        if weight.qscheme() != torch.per_channel_affine:
            continue
        zero_points = weight.q_per_channel_zero_points()
        if bool(zero_points.any()):
            continue
        channels = zero_points.numel()
        zeros = shared.setdefault(channels, torch.zeros(channels, dtype=torch.int64))
        rebuilt = torch._make_per_channel_quantized_tensor(
            weight.int_repr(), weight.q_per_channel_scales(), zeros, weight.q_per_channel_axis()
        )
        module.set_weight_bias(rebuilt, bias)
        count += 1
    return count


def paper_state_dict_mib(model: nn.Module) -> tuple[float, float]:
    """The paper's measurement: fp32 and ``quantize_dynamic({nn.Linear})`` state-dict sizes in MiB."""
    import io

    from torch.ao.quantization import quantize_dynamic

    def size(m: nn.Module) -> float:
        buf = io.BytesIO()
        torch.save(m.state_dict(), buf)
        return buf.getbuffer().nbytes / 2**20

    return size(model), size(quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8))
