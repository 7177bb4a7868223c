"""Where a random-init tower's int8 error comes from: the experiments behind docs/performance.md, "Per-tower fidelity".

``PYTHONPATH=. python benchmarks/ablations.py --model ViT-B-32 [--json FILE]`` prints, per tower, the
minimum cosine against fp32 on the converter's probe inputs (eager, qnnpack, per-channel) of:

- ``all int8``: the android recipe as converted;
- ``int8 weights, fp32 activations``: every Linear's weight (and the token embedding) rounded to the
  recipe's int8 grid, activations never quantized: the ceiling for any activation-side method;
- ``per-token activation scaling``: each Linear's input rows divided by their max before the dynamic
  int8 Linear and multiplied back after (the same function in exact arithmetic);
- ``only block i int8``: everything else fp32, to show where the error is born;
- text tower only: ``truncated text`` (``--truncate-text``: computed up to the last end-of-text token),
  and both the full and the truncated tower run one prompt at a time (``batch 1``), as the phone runs.

Experiments, not features: nothing here is used by the converter.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from convert.entry import set_openmp_default  # noqa: E402 - no torch in convert.entry

set_openmp_default()  # before torch starts, as the kit's entry points do

import torch  # noqa: E402
from torch import nn  # noqa: E402


class _TokenScaled(nn.Module):
    def __init__(self, linear: nn.Module, bias):
        super().__init__()
        self.linear = linear
        self.bias = bias

    def forward(self, x):
        s = x.abs().amax(-1, keepdim=True).clamp_min(1e-12)
        y = self.linear(x / s) * s
        return y if self.bias is None else y + self.bias


def _token_scaled(tower: nn.Module) -> nn.Module:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    tower = copy.deepcopy(tower)
    for parent in list(tower.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DynamicLinear):
                weight, bias = child._weight_bias()
                child.set_weight_bias(weight, None)
                setattr(parent, name, _TokenScaled(child, bias))
    return tower


def _weights_only(tower: nn.Module) -> nn.Module:
    from convert.quantize import Int8Embedding

    tower = copy.deepcopy(tower)
    with torch.no_grad():
        for m in tower.modules():
            if type(m) is nn.Linear:
                # torch.ao's per-channel symmetric qint8 grid (MinMax observer, scale = max|w| / 127.5).
                scale = (m.weight.abs().amax(1, keepdim=True) / 127.5).clamp_min(1e-12)
                m.weight.copy_(torch.round(m.weight / scale).clamp(-128, 127) * scale)
            elif isinstance(m, nn.Embedding):
                m.weight.copy_(Int8Embedding.from_float(m).dequantize())
    return tower


def run(model_name: str, log=print) -> dict:
    import dataclasses

    import open_clip

    from convert import build_config
    from convert.load import load_model
    from convert.metrics import compare
    from convert.probes import probe_images, probe_texts
    from convert.quantize import quantize_tower, set_engine
    from convert.towers import build_towers

    config = build_config(model=model_name, pretrained="none")
    loaded = load_model(config)
    images = probe_images(loaded.preprocess, n=8, seed=config.seed)
    tokens = open_clip.get_tokenizer(model_name)(probe_texts(config.labels))
    set_engine(config.engine)
    quant = config.quant
    out: dict = {"model": model_name, "engine": config.engine, "weights": quant.weights, "towers": {}}
    fp32 = build_towers(loaded.model, quant, quantize=False).fp32
    for role, tower, x in (("image_encoder", fp32["image_encoder"], images), ("text_encoder", fp32["text_encoder"], tokens)):
        rows = {}
        with torch.no_grad():
            ref = tower(x)
            q, _ = quantize_tower(tower, quant, role)
            rows["all int8"] = compare(ref, q(x))
            rows["int8 weights, fp32 activations"] = compare(ref, _weights_only(tower)(x))
            rows["per-token activation scaling"] = compare(ref, _token_scaled(q)(x))
            if role == "text_encoder":
                qt, _ = quantize_tower(build_towers(loaded.model, quant, (role,), truncate_text=True, quantize=False).fp32[role], quant, role)
                rows["truncated text"] = compare(ref, qt(x))
                for name, module in (("all int8, batch 1", q), ("truncated text, batch 1", qt)):
                    got = torch.cat([module(x[i:i + 1]) for i in range(len(x))])
                    rows[name] = compare(ref, got)
            names = [n for n, m in tower.named_modules() if type(m) is nn.Linear] + ["token_embedding"]
            blocks = sorted({int(n.split("resblocks.")[1].split(".")[0]) for n in names if "resblocks." in n})
            for i in blocks:
                keep = tuple(f"{role}.{n}" for n in names if f"resblocks.{i}." not in n)
                qb, _ = quantize_tower(tower, dataclasses.replace(quant, keep_fp32=keep), role)
                rows[f"only block {i} int8"] = compare(ref, qb(x))
        for name, c in rows.items():
            c["sqnr_from_cosine_db"] = round(-10 * math.log10(max(2 * (1 - c["cosine_min"]), 1e-12)), 2)
            log(f"{model_name} {role}: {name:32s} cosine min {c['cosine_min']:.6f}  SQNR {c['sqnr_db']:.1f} dB")
        out["towers"][role] = rows
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    result = run(args.model)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
