"""When int8 weights are packed for the engine: at load (torch.ao's default) or on the first call.

fbgemm packs every int8 weight into its own blocked layout when a model is loaded, and the loader keeps
every unpacked weight it has read alive until the whole file is loaded. For ViT-B-32's image tower on
this 2-core machine that is ~0.5 s of single-threaded packing inside ``_load_for_lite_interpreter`` and
a peak of ~2.1x the artifact's size in memory (the unpacked and the packed copy of all 85 MiB at once).

:class:`FirstCallPackedLinear` stores the plain int8 weight and packs it on its first call, then drops the
unpacked copy: loading only reads the file, and the peak is one layer's two copies, not the model's. The
packing work itself is unchanged; it moves from the load to the first call (the benchmark harness reports
both). This is how qnnpack behaves natively, so it is offered for the x86 target only: android artifacts
are frozen by ``optimize_for_mobile``, which cannot keep a module that rewrites its own attributes.
"""

from typing import Optional

import torch
from torch import nn


class FirstCallPackedLinear(nn.Module):
    """A dynamic int8 Linear (same op, same numerics as ``torch.ao``'s) that packs its weight lazily.

    The first call packs ``weight`` for the engine selected at that time and replaces ``weight`` by an
    empty tensor. Make that first call from one thread (a warm-up) before serving from several.
    """

    packed: Optional[torch.classes.quantized.LinearPackedParamsBase]

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], reduce_range: bool = True) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias
        self.packed = None
        # 7-bit activations, as torch.ao's dynamic Linear (module version 4) asks for: fbgemm's AVX2 kernels
        # add pairs of uint8 x int8 products in int16 and saturate on 8-bit activations. False only where
        # the CPU sums in int32 (see convert.quantize.use_full_range).
        self.reduce_range = reduce_range

    @classmethod
    def from_dynamic(cls, module: nn.Module) -> "FirstCallPackedLinear":
        weight, bias = module._weight_bias()
        # As torch.ao's forward decides: version 4 passes reduce_range=True, older ones (and drop_reduce_range's
        # version 3) pass nothing, i.e. False.
        reduce_range = module.version is not None and module.version >= 4
        return cls(weight, None if bias is None else bias.detach(), reduce_range=reduce_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.packed
        if packed is None:
            packed = torch.ops.quantized.linear_prepack(self.weight, self.bias)
            self.packed = packed
            self.weight = torch.empty(0)
        return torch.ops.quantized.linear_dynamic(x, packed, self.reduce_range)


def defer_packing(tower: nn.Module) -> int:
    """Replace, in place, every ``torch.ao`` dynamic int8 Linear below ``tower`` by a
    :class:`FirstCallPackedLinear` with the same weight and bias. Returns how many were replaced."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    count = 0
    for parent in list(tower.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DynamicLinear) and child._packed_params.dtype == torch.qint8:
                setattr(parent, name, FirstCallPackedLinear.from_dynamic(child))
                count += 1
    return count
