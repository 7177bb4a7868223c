"""``python -m deploy evaluate``: what quantization cost, reference (fp32 eager open_clip) against artifacts.

The reference is rebuilt from the manifest's ``config`` (model name + pretrained tag / checkpoint / the
built-in checkpoint, and the conversion's seed for ``--pretrained none``), so it is the model the
artifacts were converted from. Both sides see the same preprocessed tensors (:mod:`deploy.preprocess`).

Reported, per template set: zero-shot top-1 / top-5 of fp32 and of the artifacts (class embeddings from
each side's own text encoder), top-1 agreement; per tower: embedding cosine (min, mean) and SQNR; a
linear probe (multinomial logistic regression on frozen, L2-normalised image features, in torch, L-BFGS)
on a fixed 50/50 split of the evaluated images, fitted on fp32 features and on converted features, plus
the fp32-fitted probe applied to converted features (what a deployed probe sees).

Datasets: ``shapes`` (the tiny CLIP's procedural held-out split, always offline), ``imagefolder``
(``--data-root DIR`` with one sub-folder per class), ``cifar10`` / ``cifar100`` (torchvision, test split,
``download=False``: the files must already be under ``--data-root``). The paper's "CIFAR-100" figure
(89.7 % for ViT-B/32) matches open_clip's published CIFAR-10 result, so both are reported, labelled.

``--sensitivity`` quantizes one module group at a time and ranks the groups (see :func:`run_sensitivity`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from convert.errors import ConfigError, KitError

PAPER_NOTE = ("note: the paper's 'CIFAR-100' accuracy (89.7 % top-1, ViT-B/32) matches open_clip's published "
              "CIFAR-10 result (89.8 %); compare it with --dataset cifar10")


class DatasetError(KitError, ValueError):
    """A dataset is absent, empty or unreadable."""


class PlotError(KitError, RuntimeError):
    """Plots were asked for but cannot be drawn (matplotlib missing)."""


# ----------------------------------------------------------------------------------------- datasets
@dataclass
class Dataset:
    name: str
    classes: list[str]
    targets: list[int]
    load: Callable[[int], Any]  # index -> PIL image

    def __len__(self) -> int:
        return len(self.targets)


def load_dataset(name: str, n: int | None = None, data_root: str | None = None) -> Dataset:
    if name == "shapes":
        from assets.tiny_clip import shapes

        count = n or 2000
        images, labels = shapes.make_split(count, shapes.HELDOUT_SEED)
        return Dataset(f"shapes (held-out seed {shapes.HELDOUT_SEED}, n={count})", list(shapes.CLASS_NAMES),
                       labels, images.__getitem__)
    if name == "imagefolder":
        from .preprocess import list_images, open_image

        if not data_root:
            raise DatasetError("--dataset imagefolder needs --data-root DIR (one sub-folder per class)")
        root = Path(data_root)
        if not root.is_dir():
            raise DatasetError(f"image folder {root} does not exist")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        files, targets = [], []
        for i, c in enumerate(classes):
            found = list_images(root / c)
            files += found
            targets += [i] * len(found)
        if not files:
            raise DatasetError(f"image folder {root} has no class sub-folders with images")
        if n:
            step = max(1, len(files) // n)
            files, targets = files[::step][:n], targets[::step][:n]
        return Dataset(f"imagefolder {root}", [c.replace("_", " ") for c in classes], targets,
                       lambda i: open_image(files[i]))
    if name in ("cifar10", "cifar100"):
        try:
            from torchvision import datasets
        except ImportError:
            raise DatasetError("torchvision is not installed (needed for CIFAR)") from None
        if not data_root:
            raise DatasetError(f"--dataset {name} needs --data-root DIR holding the torchvision {name} files")
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        try:
            ds = cls(data_root, train=False, download=False)
        except (RuntimeError, OSError) as exc:
            raise DatasetError(f"{name} is not under {data_root} ({' '.join(str(exc).split())[:120]}); "
                               "download it once with torchvision (download=True) elsewhere") from None
        count = min(n or len(ds), len(ds))
        label = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
        return Dataset(f"{label} test (n={count})", [c.replace("_", " ") for c in ds.classes],
                       [int(t) for t in ds.targets[:count]], lambda i: ds[i][0])
    raise ConfigError(f"dataset {name!r} is not one of: shapes, imagefolder, cifar10, cifar100")


# ---------------------------------------------------------------------------------------- reference
def reference_config(manifest: dict[str, Any], checkpoint: str | None = None):
    """The ConvertConfig the artifacts were made with (output-only fields dropped)."""
    from convert.config import build_config

    cfg = dict(manifest.get("config") or {})
    for key in ("out", "force", "install_to", "also_pt", "labels", "bytecode_version"):
        cfg.pop(key, None)
    if not cfg:
        cfg = {"model": manifest["model"]["name"], "pretrained": manifest["model"].get("pretrained") or "none"}
    if checkpoint:
        cfg["checkpoint"] = checkpoint
        cfg["pretrained"] = None
    return build_config(**cfg)


def reference_model(manifest: dict[str, Any], checkpoint: str | None = None):
    """fp32 eager open_clip model (eval) the artifacts were converted from, and its tokenizer."""
    import open_clip

    from convert.load import load_model

    loaded = load_model(reference_config(manifest, checkpoint))
    return loaded, open_clip.get_tokenizer(loaded.name)


# ------------------------------------------------------------------------------------------ metrics
def accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return float((top == targets.unsqueeze(1)).any(dim=1).float().mean())


def split_indices(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return perm[: n // 2], perm[n // 2:]


def fit_linear_probe(features: torch.Tensor, targets: torch.Tensor, num_classes: int,
                     weight_decay: float = 1e-3, steps: int = 100) -> torch.nn.Linear:
    """Multinomial logistic regression (L2-regularised) on L2-normalised features, L-BFGS, deterministic."""
    x = F.normalize(features.float(), dim=-1)
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(x * 10.0), targets) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def probe_predict(probe: torch.nn.Linear, features: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return probe(F.normalize(features.float(), dim=-1) * 10.0)


@torch.no_grad()
def _fp32_encode_images(model, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([model.encode_image(x[i:i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def _fp32_encode_tokens(model, tokens: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([model.encode_text(tokens[i:i + batch]) for i in range(0, len(tokens), batch)])


def _class_weights(text_embeddings: torch.Tensor, n_classes: int) -> torch.Tensor:
    emb = F.normalize(text_embeddings, dim=-1).reshape(n_classes, -1, text_embeddings.shape[-1])
    return F.normalize(emb.mean(dim=1), dim=-1)


def evaluate(artifacts_dir: str | Path, dataset: str = "shapes", n: int | None = 2000, data_root: str | None = None,
             templates: Sequence[str] = ("openai", "simple"), kind: str = "lite", checkpoint: str | None = None,
             linear_probe: bool = True, plots: str | Path | None = None, log=lambda m: None) -> dict[str, Any]:
    """Run the comparison; returns a JSON-able report (see module docstring)."""
    from convert.pipeline import compare

    from .artifacts import load_artifacts
    from .preprocess import Preprocessor
    from .tokenizer import KitTokenizer
    from .zeroshot import load_templates

    if plots is not None:
        require_matplotlib()
    template_sets = [(spec, *load_templates(spec)) for spec in templates]  # bad names fail before any work
    artifacts = load_artifacts(artifacts_dir, kind, roles=("image_encoder", "text_encoder"))
    if artifacts.text_encoder is None:
        raise ConfigError(f"{artifacts_dir} has no text_encoder; zero-shot evaluation needs one")
    ds = load_dataset(dataset, n, data_root)
    log(f"reference model {artifacts.manifest['model']['name']}")
    loaded, _ = reference_model(artifacts.manifest, checkpoint)
    model = loaded.model
    tok = KitTokenizer.from_artifacts(artifacts)
    pre = Preprocessor(artifacts.preprocess)
    log(f"preprocessing {len(ds)} images of {ds.name}")
    x = torch.stack([pre(ds.load(i)) for i in range(len(ds))])
    y = torch.tensor(ds.targets)
    log("image features: fp32 reference and artifacts")
    from .runtime import encode_images, encode_tokens

    ref_img = _fp32_encode_images(model, x)
    got_img = encode_images(artifacts, x)
    report: dict[str, Any] = {
        "artifacts": str(artifacts_dir), "kind": kind, "model": artifacts.manifest["model"],
        "quantize": (artifacts.manifest.get("config") or {}).get("quantize"),
        "dataset": ds.name, "n": len(ds), "classes": len(ds.classes),
        "image_encoder": compare(ref_img, got_img), "zero_shot": {},
    }
    if "cifar" in dataset:
        report["note"] = PAPER_NOTE
    text_cmp = None
    for spec, name, tmpl in template_sets:
        prompts = [t.format(c) if isinstance(t, str) else t(c) for c in ds.classes for t in tmpl]
        tokens, truncated = tok.encode(prompts)
        log(f"text features: {len(prompts)} prompts ({name})")
        ref_txt = _fp32_encode_tokens(model, tokens)
        got_txt = encode_tokens(artifacts, tokens)
        if text_cmp is None:
            text_cmp = compare(ref_txt, got_txt)
        ref_w, got_w = _class_weights(ref_txt, len(ds.classes)), _class_weights(got_txt, len(ds.classes))
        ref_logits = F.normalize(ref_img, dim=-1) @ ref_w.t()
        got_logits = F.normalize(got_img, dim=-1) @ got_w.t()
        r1, g1 = accuracy(ref_logits, y, 1), accuracy(got_logits, y, 1)
        report["zero_shot"][name] = {
            "fp32_top1": r1, "fp32_top5": accuracy(ref_logits, y, 5),
            "converted_top1": g1, "converted_top5": accuracy(got_logits, y, 5),
            "top1_drop_points": round(100 * (r1 - g1), 4),
            "top1_agreement": float((ref_logits.argmax(-1) == got_logits.argmax(-1)).float().mean()),
            "truncated_prompts": int(sum(truncated)),
        }
        if plots is not None and spec == templates[0]:
            report.setdefault("plots", []).append(
                plot_similarity(plots, ref_img[:8], got_img[:8], ref_w, got_w, ds.classes, y[:8]))
    report["text_encoder"] = text_cmp
    if linear_probe and len(ds) >= 4:
        log("linear probe")
        tr, te = split_indices(len(ds))
        ref_probe = fit_linear_probe(ref_img[tr], y[tr], len(ds.classes))
        got_probe = fit_linear_probe(got_img[tr], y[tr], len(ds.classes))
        report["linear_probe"] = {
            "train": len(tr), "test": len(te),
            "fp32_top1": accuracy(probe_predict(ref_probe, ref_img[te]), y[te]),
            "converted_top1": accuracy(probe_predict(got_probe, got_img[te]), y[te]),
            "fp32_probe_on_converted_top1": accuracy(probe_predict(ref_probe, got_img[te]), y[te]),
        }
    if plots is not None:
        report.setdefault("plots", [])
        report["plots"] += plot_weights_and_errors(plots, reference_config(artifacts.manifest, checkpoint), model)
    return report


# -------------------------------------------------------------------------------------------- plots
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
    from convert.quantize import quantize_tower
    from convert.towers import build_image_encoder, build_text_encoder

    quant = config.quant
    rows = []
    for role, build, wanted in (("image_encoder", lambda: build_image_encoder(model, attention=quant.attention == "int8",
                                                                                patch=quant.patch == "int8"), quant.image),
                                ("text_encoder", lambda: build_text_encoder(model, attention=quant.attention == "int8"), quant.text)):
        if not wanted:
            continue
        tower = build()
        qtower, _ = quantize_tower(tower, quant, role)
        fp = dict(tower.named_modules())
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


# -------------------------------------------------------------------------------------- sensitivity
def _group_of(name: str) -> str:
    m = re.search(r"resblocks\.(\d+)\.(attn|mlp)\b", name)
    if m:
        return f"{name[: m.end()]}"
    if "conv1" in name:
        return "visual.conv1" if name.startswith("visual.") else name
    return name


def module_groups(tower: torch.nn.Module, role: str, quant) -> dict[str, list[str]]:
    """``{group pattern stem: [module names]}`` of everything the recipe could make int8 in ``tower``."""
    from torch import nn

    from convert.quantize import EMBEDDING_NAMES

    groups: dict[str, list[str]] = {}
    for name, module in tower.named_modules():
        if type(module) is nn.Linear or (name in EMBEDDING_NAMES and isinstance(module, nn.Embedding)):
            groups.setdefault(_group_of(name), []).append(name)
    return groups


def _group_pattern(role: str, stem: str, members: list[str]) -> str:
    if len(members) == 1 and members[0] == stem:
        return f"{role}.{stem}"
    return f"{role}.{stem}.*"


def run_sensitivity(config, k: int = 3, out_recipe: str | Path | None = None, n_images: int = 8,
                    log=lambda m: None, target: float | None = None) -> list[dict[str, Any]]:
    """Quantize one module group at a time (everything else fp32) and rank the groups by the cosine drop
    (1 - mean cosine) of the tower output against fp32 on the converter's probe inputs; eager int8 with the
    config's engine and weight scheme. Writes a YAML recipe keeping the worst ``k`` groups in fp32 (on top
    of ``config.keep_fp32``) when ``out_recipe`` is given. Returns one row per group, worst first; the
    rows' ``kept_fp32`` says which ones the recipe keeps.

    With ``target`` (a cosine), each tower instead keeps groups in fp32 one at a time, those that remove
    the most error per fp32 byte first (cosine drop / parameters), measuring the whole tower after each,
    until its minimum cosine reaches ``target`` or ``k`` groups are kept. The measured curve (groups kept,
    cosine, extra MiB over all-int8) is in ``run_sensitivity.summary``.
    """
    import yaml

    from convert.load import load_model
    from convert.pipeline import compare
    from convert.probes import probe_images, probe_texts
    from convert.quantize import QuantConfig, quantize_tower, set_engine
    from convert.towers import build_image_encoder, build_text_encoder

    if k < 0:
        raise ConfigError(f"k={k} must be >= 0")
    if target is not None and not (isinstance(target, (int, float)) and -1.0 < target < 1.0):
        raise ConfigError(f"target={target!r} must be a cosine below 1, e.g. 0.9999")
    quant = config.quant
    loaded = load_model(config)
    model = loaded.model
    import open_clip

    tokenizer = open_clip.get_tokenizer(loaded.name)
    images = probe_images(loaded.preprocess, n=n_images, seed=config.seed)
    tokens = tokenizer(probe_texts(config.labels))
    set_engine(config.engine)
    towers = []
    if quant.image:
        towers.append(("image_encoder", build_image_encoder(model, attention=quant.attention == "int8",
                                                            patch=quant.patch == "int8"), images))
    if quant.text:
        towers.append(("text_encoder", build_text_encoder(model, attention=quant.attention == "int8"), tokens))
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    refs: dict[str, torch.Tensor] = {}
    for role, tower, inputs in towers:
        with torch.no_grad():
            ref = refs[role] = tower(inputs)
        groups = module_groups(tower, role, quant)
        all_names = [n for members in groups.values() for n in members]
        for stem, members in groups.items():
            keep = tuple(f"{role}.{n}" for n in all_names if n not in members) + tuple(quant.keep_fp32)
            q = dataclasses.replace(quant, keep_fp32=keep)
            qt, report = quantize_tower(tower, q, role)
            if not report.int8:
                continue  # the recipe keeps this group in fp32 anyway
            with torch.no_grad():
                got = qt(inputs)
            c = compare(ref, got)
            params = sum(tower.get_submodule(n).weight.numel() for n in report.int8)
            rows.append({"role": role, "group": stem, "pattern": _group_pattern(role, stem, members),
                         "modules": len(report.int8), "params": params,
                         "cosine_mean": c["cosine_mean"], "cosine_min": c["cosine_min"],
                         "drop": float(1.0 - F.cosine_similarity(ref.double(), got.double(), dim=-1).mean()),
                         "sqnr_db": c["sqnr_db"]})
            log(f"{rows[-1]['pattern']}: drop {rows[-1]['drop']:.2e}")
        full, _ = quantize_tower(tower, quant, role)
        with torch.no_grad():
            summary[role] = {"all_int8": compare(ref, full(inputs))}
    rows.sort(key=lambda r: r["drop"], reverse=True)
    if target is None:
        worst = [r["pattern"] for r in rows[:k]]
    else:
        worst = []
        for role, tower, inputs in towers:
            # Most error removed per fp32 byte first: a 25M-parameter token embedding kept in fp32 costs
            # 72 MiB, an attention block 3 MiB.
            ranked = sorted((r for r in rows if r["role"] == role), key=lambda r: r["drop"] / max(r["params"], 1),
                            reverse=True)
            kept, summary[role]["curve"] = _keep_until(tower, role, inputs, refs[role], summary[role]["all_int8"],
                                                       quant, ranked, target, k, log)
            worst += kept
    for i, r in enumerate(rows, 1):
        r["rank"] = i
        r["kept_fp32"] = r["pattern"] in worst
    keep_all = tuple(dict.fromkeys(tuple(quant.keep_fp32) + tuple(worst)))
    q = dataclasses.replace(quant, keep_fp32=keep_all)
    for role, tower, inputs in towers:
        qt, _ = quantize_tower(tower, q, role)
        with torch.no_grad():
            summary[role]["with_recipe"] = compare(refs[role], qt(inputs))
    if out_recipe is not None:
        write_recipe(out_recipe, config, keep_all, [r for r in rows if r["kept_fp32"]], summary, target)
    run_sensitivity.summary = summary  # type: ignore[attr-defined]
    return rows


def print_sensitivity_summary(summary: dict[str, Any], console) -> None:
    """Per tower: all-int8 against the recipe's cosine, and the keep-until-target curve when there is one."""
    from rich.table import Table

    for role, s in summary.items():
        console.print(f"{role}: all int8 cosine min {s['all_int8']['cosine_min']:.6f} (mean "
                      f"{s['all_int8']['cosine_mean']:.6f}); with the recipe {s['with_recipe']['cosine_min']:.6f} "
                      f"({s['with_recipe']['cosine_mean']:.6f})")
        if s.get("curve"):
            t = Table(title=f"{role}: worst groups kept in fp32, one at a time")
            for col in ("fp32 groups", "added", "cosine min", "SQNR dB", "+MiB"):
                t.add_column(col, justify="left" if col == "added" else "right")
            for c in s["curve"]:
                t.add_row(str(c["fp32_groups"]), c["added"] or "(all int8)", f"{c['cosine_min']:.6f}",
                          f"{c['sqnr_db']:.1f}", f"{c['extra_mib']:.2f}")
            console.print(t)


def _keep_until(tower, role, inputs, ref, all_int8, quant, ranked, target, limit,
                log) -> tuple[list[str], list[dict[str, Any]]]:
    """Keep ``ranked`` groups (worst first) in fp32 one by one, starting from the all-int8 figures
    ``all_int8`` against the fp32 output ``ref``, until the tower's minimum cosine reaches ``target`` or
    ``limit`` groups are kept; returns the kept patterns and the measured curve."""
    from convert.pipeline import compare
    from convert.quantize import quantize_tower

    kept: list[str] = []
    extra = 0.0

    def point(c: dict[str, Any], added: str | None) -> dict[str, Any]:
        log(f"{role}: {len(kept)} fp32 groups -> cosine min {c['cosine_min']:.6f} (+{extra:.2f} MiB)")
        return {"fp32_groups": len(kept), "added": added, "cosine_min": c["cosine_min"],
                "cosine_mean": c["cosine_mean"], "sqnr_db": c["sqnr_db"], "extra_mib": round(extra, 2)}

    curve = [point(all_int8, None)]
    for row in ranked:
        if curve[-1]["cosine_min"] >= target or len(kept) >= limit:
            break
        kept.append(row["pattern"])
        extra += row["params"] * 3 / 2**20  # 4 fp32 bytes instead of 1 int8 byte a weight
        qt, _ = quantize_tower(tower, dataclasses.replace(quant, keep_fp32=tuple(quant.keep_fp32) + tuple(kept)), role)
        with torch.no_grad():
            curve.append(point(compare(ref, qt(inputs)), row["pattern"]))
    return kept, curve


def write_recipe(path, config, keep_fp32, worst_rows, summary, target: float | None = None) -> Path:
    import yaml

    from convert.config import BUILTIN_MODEL

    path = Path(path)
    lines = [f"{r['pattern']} (cosine drop {r['drop']:.2e})" for r in worst_rows]
    figs = "; ".join(f"{role}: all-int8 cosine min/mean {s['all_int8']['cosine_min']:.6f}/{s['all_int8']['cosine_mean']:.6f}"
                     f" -> {s['with_recipe']['cosine_min']:.6f}/{s['with_recipe']['cosine_mean']:.6f}"
                     for role, s in summary.items() if "with_recipe" in s)
    recipe: dict[str, Any] = {
        "description": f"sensitivity recipe for {config.model}: "
                       + (f"keep the {len(worst_rows)} most sensitive groups in fp32 " if target is None else
                          f"keep {len(worst_rows)} groups in fp32, each tower's most cosine drop per parameter first, "
                          f"until its minimum cosine reaches {target} ")
                       + f"({', '.join(lines) or 'none'}); {figs}",
        "model": config.model,
    }
    if config.checkpoint:
        recipe["checkpoint"] = config.checkpoint
    elif config.pretrained is not None and not (config.model == BUILTIN_MODEL and config.pretrained == "builtin"):
        recipe["pretrained"] = config.pretrained
    recipe.update({"quantize": config.quantize, "target": config.target, "engine": config.engine,
                   "weights": config.weights, "attention": config.attention, "embedding": config.embedding,
                   "patch": config.patch, "projection": config.projection, "keep_fp32": list(keep_fp32)})
    if config.per_tensor:
        recipe["per_tensor"] = list(config.per_tensor)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- CLI
def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="fp32 reference vs converted artifacts: accuracy, fidelity, plots",
                              description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", help="artifact directory (required unless --sensitivity with --model)")
    p.add_argument("--dataset", default="shapes", choices=("shapes", "imagefolder", "cifar10", "cifar100"))
    p.add_argument("--data-root", help="dataset directory (imagefolder / CIFAR)")
    p.add_argument("--n", type=int, default=2000, help="number of images (default 2000; CIFAR: first n test images)")
    p.add_argument("--templates", default="openai,simple", help="comma-separated template sets (openai, simple, plain, file)")
    p.add_argument("--no-linear-probe", action="store_true")
    p.add_argument("--checkpoint", help="reference checkpoint when the manifest's is not at its recorded path")
    p.add_argument("--jit", action="store_true", help="evaluate the .pt twins instead of the .ptl files")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots (needs matplotlib: the 'plots' extra)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the report as JSON (to FILE or stdout)")
    p.add_argument("--sensitivity", action="store_true", help="rank module groups by the error their int8 adds")
    p.add_argument("--k", type=int, default=3, help="--sensitivity: groups kept in fp32 by the written recipe")
    p.add_argument("--recipe-out", default="sensitivity-recipe.yaml", help="--sensitivity: recipe file to write")
    p.add_argument("--target-cosine", type=float, metavar="C", help=(
        "--sensitivity: instead of the worst K overall, keep each tower's worst groups in fp32 until its "
        "minimum cosine reaches C (at most K a tower)"))
    p.add_argument("--model", help="--sensitivity without --artifacts: open_clip model name")
    p.add_argument("--pretrained", help="--sensitivity without --artifacts: pretrained tag or 'none'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=args.json == "-")
    if args.sensitivity:
        return _run_sensitivity_cli(args, console)
    if not args.artifacts:
        raise ConfigError("--artifacts DIR is required")
    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n {args.n} must be at least 1")
    templates = [t.strip() for t in args.templates.split(",") if t.strip()]
    if not templates:
        raise ConfigError("--templates is empty")
    report = evaluate(args.artifacts, args.dataset, args.n, args.data_root, templates, "jit" if args.jit else "lite",
                      args.checkpoint, not args.no_linear_probe, args.plots, log=lambda m: console.log(m))
    if args.json:
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    if args.json != "-":
        print_report(report, console)
    return 0


def print_report(report: dict[str, Any], console) -> None:
    from rich.table import Table

    t = Table(title=f"zero-shot, {report['model']['name']} ({report['quantize']}, {report['kind']}) on {report['dataset']}")
    for col in ("templates", "fp32 top-1", "int8 top-1", "drop (points)", "fp32 top-5", "int8 top-5", "top-1 agreement"):
        t.add_column(col, justify="right")
    for name, z in report["zero_shot"].items():
        t.add_row(name, f"{100 * z['fp32_top1']:.2f}", f"{100 * z['converted_top1']:.2f}", f"{z['top1_drop_points']:.2f}",
                  f"{100 * z['fp32_top5']:.2f}", f"{100 * z['converted_top5']:.2f}", f"{100 * z['top1_agreement']:.2f} %")
    console.print(t)
    f = Table(title="embedding fidelity (converted vs fp32)")
    for col in ("tower", "cosine min", "cosine mean", "SQNR dB", "max abs err"):
        f.add_column(col, justify="right")
    for role in ("image_encoder", "text_encoder"):
        c = report.get(role)
        if c:
            f.add_row(role, f"{c['cosine_min']:.6f}", f"{c['cosine_mean']:.6f}", f"{c['sqnr_db']:.1f}", f"{c['max_abs_err']:.2e}")
    console.print(f)
    lp = report.get("linear_probe")
    if lp:
        console.print(f"linear probe (train {lp['train']} / test {lp['test']}): fp32 {100 * lp['fp32_top1']:.2f} %, "
                      f"converted {100 * lp['converted_top1']:.2f} %, fp32 probe on converted features "
                      f"{100 * lp['fp32_probe_on_converted_top1']:.2f} %")
    if report.get("note"):
        console.print(report["note"])
    for p in report.get("plots", []):
        console.print(f"plot: {p}")


def _run_sensitivity_cli(args, console) -> int:
    from convert.config import build_config

    if args.artifacts:
        from .artifacts import read_manifest

        config = reference_config(read_manifest(args.artifacts), args.checkpoint)
    elif args.model:
        config = build_config(model=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint)
    else:
        raise ConfigError("--sensitivity needs --artifacts DIR or --model NAME")
    rows = run_sensitivity(config, args.k, args.recipe_out, log=lambda m: console.log(m), target=args.target_cosine)
    if args.json:
        text = json.dumps({"rows": rows, "summary": getattr(run_sensitivity, "summary", {}),
                           "recipe": args.recipe_out}, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    if args.json != "-":
        from rich.table import Table

        t = Table(title=f"sensitivity of {config.model}: one module group int8 at a time (eager, {config.engine})")
        for col in ("rank", "group", "modules", "cosine mean", "cosine drop", "SQNR dB", "fp32 in recipe"):
            t.add_column(col, justify="right" if col != "group" else "left", no_wrap=col == "group")
        for r in rows:
            t.add_row(str(r["rank"]), r["pattern"], str(r["modules"]), f"{r['cosine_mean']:.6f}", f"{r['drop']:.2e}",
                      f"{r['sqnr_db']:.1f}", "yes" if r["kept_fp32"] else "")
        console.print(t)
        print_sensitivity_summary(getattr(run_sensitivity, "summary", {}), console)
        console.print(f"recipe written to {args.recipe_out} (use: python -m convert --recipe {args.recipe_out})")
    return 0
