"""8-bit vs 7-bit activations for the x86 (fbgemm) towers: the accuracy ``reduce_range=False`` would buy.

    PYTHONPATH=. python benchmarks/activation_bits.py ARTIFACT_DIR

Min / mean cosine against fp32 open_clip on the converter's probe inputs, one input at a time (as a device
runs them), of: the artifact's lite towers; the same int8 weights in eager mode with fbgemm at
``reduce_range=True``; every int8 Linear computed exactly (float64, i.e. int32 sums) on 7-bit and on 8-bit
activations (what an ``avx512_vnni`` CPU computes at ``reduce_range=False``); and fbgemm at
``reduce_range=False`` on this CPU (on AVX2 its kernels add product pairs in int16: saturation).
The experiment behind ``convert.quantize.use_full_range`` (results: benchmarks/results/profile/README.md);
nothing here is used by the kit. The towers are the converter's own (``build_towers`` with the recipe,
weights packed on the first call), whose int8 Linears are then computed each way.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from convert.entry import set_openmp_default  # noqa: E402 - no torch in convert.entry

set_openmp_default()  # before torch starts, as the kit's entry points do

import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from convert.artifact import verify_artifacts  # noqa: E402
from convert.export import load_lite  # noqa: E402
from convert.load import load_model, reference_config  # noqa: E402
from convert.packing import FirstCallPackedLinear  # noqa: E402
from convert.probes import probe_images, probe_texts  # noqa: E402
from convert.towers import build_towers  # noqa: E402


class Exact(torch.nn.Module):
    """A dynamic int8 Linear computed exactly on ``bits``-bit activations (per-tensor min/max, as fbgemm)."""

    def __init__(self, lin: FirstCallPackedLinear, bits: int) -> None:
        super().__init__()
        w = lin.weight
        if w.qscheme() == torch.per_channel_affine:
            zero = w.q_per_channel_zero_points().double()[:, None]
            self.w = (w.int_repr().double() - zero) * w.q_per_channel_scales().double()[:, None]
        else:
            self.w = w.dequantize().double()
        self.b = None if lin.bias is None else lin.bias.double()
        self.qmax = 2**bits - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / self.qmax if hi > lo else 1.0
        zero = min(max(round(-lo / scale), 0), self.qmax)
        xq = torch.clamp(torch.round(x.double() / scale) + zero, 0, self.qmax)
        y = ((xq - zero) * scale) @ self.w.t()
        return (y if self.b is None else y + self.b).float()


class Fbgemm(torch.nn.Module):
    def __init__(self, lin: FirstCallPackedLinear, reduce_range: bool) -> None:
        super().__init__()
        self.packed = torch.ops.quantized.linear_prepack(lin.weight, lin.bias)
        self.reduce_range = reduce_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)


def swap(tower: torch.nn.Module, make) -> torch.nn.Module:
    tower = copy.deepcopy(tower)
    for parent in list(tower.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FirstCallPackedLinear):
                setattr(parent, name, make(child))
    return tower


def main(directory: str) -> int:
    torch.set_num_threads(2)
    verified = verify_artifacts(directory, require_image=False)
    manifest = verified.manifest
    config = reference_config(manifest)
    loaded = load_model(config)
    model = loaded.model
    # Every Linear is replaced below, so the recipe's own activation range does not matter here.
    towers = build_towers(model, dataclasses.replace(config.quant, full_range=False),
                          truncate_text=config.truncate_text, pack="first-call")
    torch.backends.quantized.engine = manifest["engine"]
    labels = (manifest.get("zero_shot") or {}).get("labels")
    images = probe_images(loaded.preprocess, n=8, seed=manifest["config"]["seed"])
    tokens = open_clip.get_tokenizer(loaded.name)(probe_texts(labels))

    def each(fn, x):
        return torch.cat([fn(x[i:i + 1]) for i in range(x.shape[0])])

    print(f"{directory} ({manifest['model']['name']}, {manifest['target']}, {manifest['engine']}): cosine min / mean, "
          "one input at a time")
    with torch.no_grad():
        for role, fn, x in (("image_encoder", model.encode_image, images), ("text_encoder", model.encode_text, tokens)):
            ref = each(fn, x)
            tower = towers.modules[role]
            variants = {
                "lite artifact": load_lite(verified.path(role, "lite")),
                "eager, fbgemm reduce_range=True": swap(tower, lambda c: Fbgemm(c, True)),
                "exact, 7-bit activations": swap(tower, lambda c: Exact(c, 7)),
                "exact, 8-bit activations (avx512_vnni at reduce_range=False)": swap(tower, lambda c: Exact(c, 8)),
                "fbgemm reduce_range=False on this CPU": swap(tower, lambda c: Fbgemm(c, False)),
            }
            for label, module in variants.items():
                c = F.cosine_similarity(ref, each(module, x), dim=-1)
                print(f"| {role} | {label} | {float(c.min()):.6f} / {float(c.mean()):.6f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
