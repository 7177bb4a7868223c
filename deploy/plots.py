"""Plots for ``deploy evaluate --plots``: the paper's Fig. 1 (weight distributions fp32 vs int8), Fig. 3
(image-text similarity fp32 vs converted) and per-layer weight quantization error. Needs matplotlib."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from convert.errors import PlotError


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: F401
    except ImportError:
        raise PlotError("--plots needs matplotlib: pip install 'clip-mobile-kit[plots]'") from None
    return plt


def plot_similarity(out_dir, ref_img, got_img, ref_w, got_w, classes, targets) -> str:
    """Paper Fig. 3: image x class-text cosine similarity, fp32 and converted side by side."""
    plt = require_matplotlib()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cls_idx = list(dict.fromkeys(int(t) for t in targets))
    cls_idx += [i for i in range(len(classes)) if i not in cls_idx][: max(0, 8 - len(cls_idx))]
    mats = [F.normalize(a, dim=-1) @ w[cls_idx].t() for a, w in ((ref_img, ref_w), (got_img, got_w))]
    vmin, vmax = float(min(m.min() for m in mats)), float(max(m.max() for m in mats))
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [1, 1, 1]})
    titles = ["fp32 reference", "converted (int8)", "difference (converted - fp32)"]
    diff = mats[1] - mats[0]
    for ax, mat, title in zip(axes, [mats[0], mats[1], diff], titles):
        if title.startswith("difference"):
            lim = float(diff.abs().max()) or 1e-6
            im = ax.imshow(mat.numpy(), cmap="coolwarm", vmin=-lim, vmax=lim)
        else:
            im = ax.imshow(mat.numpy(), cmap="viridis", vmin=vmin, vmax=vmax)
        for (i, j), v in _enum(mat):
            ax.text(j, i, f"{v:.2f}" if not title.startswith("diff") else f"{v:+.3f}", ha="center", va="center",
                    fontsize=7, color="white" if not title.startswith("diff") else "black")
        ax.set_xticks(range(len(cls_idx)), [classes[i] for i in cls_idx], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(mat.shape[0]), [f"img {i} ({classes[int(t)]})" for i, t in enumerate(targets)], fontsize=8)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle("image-text cosine similarity (cf. paper Fig. 3)")
    return _save_figure(fig, out / "similarity_fp32_vs_int8.png", dpi=110)


def _save_figure(fig, path: Path, dpi: int) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def _enum(mat: torch.Tensor):
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            yield (i, j), float(mat[i, j])


def _quantized_weights(tower: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Dequantized weights of each int8 module of an eager quantized tower (Linear + Int8Embedding)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from convert.quantize import Int8Embedding

    out = {}
    for name, m in tower.named_modules():
        if isinstance(m, DynamicLinear):
            out[name] = m.weight().dequantize()
        elif isinstance(m, Int8Embedding):
            out[name] = m.dequantize()
    return out


def weight_errors(config, model) -> list[dict[str, Any]]:
    """Per-module weight quantization error (relative RMS, SQNR dB) for the config's recipe."""
    from convert.towers import build_towers

    towers = build_towers(model, config.quant)
    rows = []
    for role, qtower in towers.modules.items():
        if role not in towers.reports:
            continue  # the recipe keeps this tower in fp32
        fp = dict(towers.fp32[role].named_modules())
        for name, wq in _quantized_weights(qtower).items():
            w = fp[name].weight.detach().float()
            err = (wq - w).pow(2).mean().sqrt()
            rows.append({"role": role, "module": name, "numel": w.numel(), "rms": float(w.pow(2).mean().sqrt()),
                         "rel_rms_err": float(err / w.pow(2).mean().sqrt().clamp_min(1e-12)),
                         "sqnr_db": float(10 * torch.log10(w.pow(2).sum() / (wq - w).pow(2).sum().clamp_min(1e-30))),
                         "_w": w, "_wq": wq})
    return rows


def plot_weights_and_errors(out_dir, config, model) -> list[str]:
    """Paper Fig. 1 (per-module weight distributions, fp32 vs int8) and per-layer quantization error."""
    plt = require_matplotlib()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = weight_errors(config, model)
    paths = []
    if not rows:
        return paths
    pick = []
    for role in ("image_encoder", "text_encoder"):
        mine = [r for r in rows if r["role"] == role]
        if mine:
            seen = set()
            for r in mine:  # one module of each kind: first block's attn/mlp, embedding, patch, projection
                kind = re.sub(r"\d+", "N", r["module"])
                if kind not in seen and len(pick) < 12:
                    seen.add(kind)
                    pick.append(r)
    cols = 4
    rws = math.ceil(len(pick) / cols)
    fig, axes = plt.subplots(rws, cols, figsize=(4.2 * cols, 3.2 * rws), squeeze=False)
    for ax, r in zip(axes.flat, pick):
        w, wq = r["_w"].flatten().numpy(), r["_wq"].flatten().numpy()
        lim = float(abs(w).max())
        bins = 80
        ax.hist(w, bins=bins, range=(-lim, lim), alpha=0.6, label="fp32", color="tab:blue")
        ax.hist(wq, bins=bins, range=(-lim, lim), alpha=0.6, label="int8 (dequantized)", color="tab:orange",
                histtype="step")
        ax.set_yscale("log")
        ax.set_title(f"{r['role'].split('_')[0]}.{r['module']}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(pick):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("weight distributions per module, fp32 vs int8 (cf. paper Fig. 1)")
    paths.append(_save_figure(fig, out / "weight_distributions.png", dpi=100))

    fig, ax = plt.subplots(figsize=(max(8, 0.3 * len(rows)), 6.5))
    colours = ["tab:blue" if r["role"] == "image_encoder" else "tab:green" for r in rows]
    ax.bar(range(len(rows)), [r["sqnr_db"] for r in rows], color=colours)
    ax.set_xticks(range(len(rows)), [f"{r['role'][0]}:{r['module']}" for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("weight SQNR (dB), higher = less error")
    ax.set_title("per-layer weight quantization error (blue: image tower, green: text tower)")
    paths.append(_save_figure(fig, out / "per_layer_error.png", dpi=120))
    return paths
