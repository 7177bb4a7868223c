"""Sensitivity analysis: which module groups does int8 hurt most, and a recipe that keeps them in fp32.

A conversion feature (its output is a ``--recipe``); the one front end is ``python -m convert
--sensitivity K [--sensitivity-target C] [--sensitivity-recipe FILE]``. Everything is measured on eager
int8 towers built and quantized as the converter ships them (:func:`convert.towers.build_towers` with the
config's text truncation, :func:`convert.towers.quantize_encoder` with its engine, weight scheme, packing and
activation range), on the converter's own probe inputs, against the same towers in fp32.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import BUILTIN_MODEL, ConvertConfig, QuantConfig
from .errors import ConfigError, quoted
from .files import atomic_write
from .load import load_model
from .metrics import compare
from .probes import probe_images, probe_texts
from .quantize import EMBEDDING_NAMES, set_engine
from .towers import ENCODER_ROLES, build_towers, quantize_encoder

Log = Callable[[str], None]


@dataclass
class SensitivityResult:
    """``rows``: one per module group, worst first (``kept_fp32`` marks the recipe's); ``summary``: per
    tower, all-int8 and with-recipe figures and, with a target, the keep-until-target ``curve``."""

    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    keep_fp32: tuple[str, ...]
    recipe: Path | None = None
    target: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": str(self.recipe) if self.recipe else None, "target": self.target,
                "keep_fp32": list(self.keep_fp32), "rows": self.rows, "summary": self.summary}


def _group_of(name: str) -> str:
    m = re.search(r"resblocks\.(\d+)\.(attn|mlp)\b", name)
    if m:
        return f"{name[: m.end()]}"
    if "conv1" in name:
        return "visual.conv1" if name.startswith("visual.") else name
    return name


def module_groups(tower: nn.Module) -> dict[str, list[str]]:
    """``{group pattern stem: [module names]}`` of everything a recipe could make int8 in ``tower``."""
    groups: dict[str, list[str]] = {}
    for name, module in tower.named_modules():
        if type(module) is nn.Linear or (name in EMBEDDING_NAMES and isinstance(module, nn.Embedding)):
            groups.setdefault(_group_of(name), []).append(name)
    return groups


def _group_pattern(role: str, stem: str, members: list[str]) -> str:
    if len(members) == 1 and members[0] == stem:
        return f"{role}.{stem}"
    return f"{role}.{stem}.*"


def _keep(quant: QuantConfig, patterns) -> QuantConfig:
    return dataclasses.replace(quant, keep_fp32=tuple(dict.fromkeys(tuple(quant.keep_fp32) + tuple(patterns))))


def rank_groups(config: ConvertConfig, k: int = 3, n_images: int = 8, log: Log = lambda m: None,
                target: float | None = None) -> SensitivityResult:
    """Quantize one module group at a time (everything else fp32) and rank the groups by the cosine drop
    (1 - mean cosine) of the tower output against fp32 on the converter's probe inputs.

    Without ``target`` the worst ``k`` groups overall are kept in fp32 (on top of ``config.keep_fp32``).
    With ``target`` (a cosine), each tower instead keeps groups in fp32 one at a time, those that remove the
    most error per fp32 byte first (cosine drop / parameters), measuring the whole tower after each, until
    its minimum cosine reaches ``target`` or ``k`` groups are kept; the measured curve is in the summary.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(f"--sensitivity {k!r} must be an integer >= 0 (module groups a recipe may keep in fp32)")
    if target is not None and not (isinstance(target, (int, float)) and -1.0 < target < 1.0):
        raise ConfigError(f"--sensitivity-target {target!r} must be a cosine below 1, e.g. 0.9999")
    quant = config.quant
    loaded = load_model(config)
    import open_clip

    inputs = {"image_encoder": probe_images(loaded.preprocess, n=n_images, seed=config.seed),
              "text_encoder": open_clip.get_tokenizer(loaded.name)(probe_texts(config.labels))}
    set_engine(config.engine)
    roles = tuple(r for r in ENCODER_ROLES if (quant.image if r == "image_encoder" else quant.text))
    towers = build_towers(loaded.model, quant, roles, truncate_text=config.truncate_text, quantize=False).fp32

    def quantized(tower: nn.Module, q: QuantConfig, role: str):
        return quantize_encoder(tower, q, role, pack=config.pack)

    rows: list[dict[str, Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    refs: dict[str, torch.Tensor] = {}
    for role, tower in towers.items():
        with torch.no_grad():
            ref = refs[role] = tower(inputs[role])
        groups = module_groups(tower)
        all_names = [n for members in groups.values() for n in members]
        for stem, members in groups.items():
            q = _keep(quant, [f"{role}.{n}" for n in all_names if n not in members])
            qt, report = quantized(tower, q, role)
            if not report.int8:
                continue  # the recipe keeps this group in fp32 anyway
            with torch.no_grad():
                got = qt(inputs[role])
            c = compare(ref, got)
            params = sum(tower.get_submodule(n).weight.numel() for n in report.int8)
            rows.append({"role": role, "group": stem, "pattern": _group_pattern(role, stem, members),
                         "modules": len(report.int8), "params": params,
                         "cosine_mean": c["cosine_mean"], "cosine_min": c["cosine_min"],
                         "drop": float(1.0 - F.cosine_similarity(ref.double(), got.double(), dim=-1).mean()),
                         "sqnr_db": c["sqnr_db"]})
            log(f"{rows[-1]['pattern']}: drop {rows[-1]['drop']:.2e}")
        full, _ = quantized(tower, quant, role)
        with torch.no_grad():
            summary[role] = {"all_int8": compare(ref, full(inputs[role]))}
    rows.sort(key=lambda r: r["drop"], reverse=True)
    if target is None:
        worst = [r["pattern"] for r in rows[:k]]
    else:
        worst = []
        for role, tower in towers.items():
            # Most error removed per fp32 byte first: a 25M-parameter token embedding kept in fp32 costs
            # 72 MiB, an attention block 3 MiB.
            ranked = sorted((r for r in rows if r["role"] == role), key=lambda r: r["drop"] / max(r["params"], 1),
                            reverse=True)
            kept, summary[role]["curve"] = _keep_until(tower, role, inputs[role], refs[role],
                                                       summary[role]["all_int8"], quant, ranked, target, k, log,
                                                       quantized)
            worst += kept
    for i, r in enumerate(rows, 1):
        r["rank"] = i
        r["kept_fp32"] = r["pattern"] in worst
    final = _keep(quant, worst)
    for role, tower in towers.items():
        qt, _ = quantized(tower, final, role)
        with torch.no_grad():
            summary[role]["with_recipe"] = compare(refs[role], qt(inputs[role]))
    return SensitivityResult(rows=rows, summary=summary, keep_fp32=final.keep_fp32, target=target)


def _keep_until(tower, role, inputs, ref, all_int8, quant, ranked, target, limit,
                log, quantized) -> tuple[list[str], list[dict[str, Any]]]:
    """Keep ``ranked`` groups (worst first) in fp32 one by one, starting from the all-int8 figures
    ``all_int8`` against the fp32 output ``ref``, until the tower's minimum cosine reaches ``target`` or
    ``limit`` groups are kept; returns the kept patterns and the measured curve."""
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
        qt, _ = quantized(tower, _keep(quant, kept), role)
        with torch.no_grad():
            curve.append(point(compare(ref, qt(inputs)), row["pattern"]))
    return kept, curve


def check_recipe_path(path: str | Path) -> Path:
    """Where ``--sensitivity-recipe`` will write, checked before the ranking starts (minutes on a ViT)."""
    from .files import not_a_path, path_kind

    why = not_a_path(str(path))
    if why is not None:
        raise ConfigError(f"--sensitivity-recipe {quoted(str(path))} is not a file name ({why})")
    if path_kind(str(path)) == "a directory":
        raise ConfigError(f"--sensitivity-recipe {path} is a directory; give a file name such as {Path(path, 'recipe.yaml')}")
    return Path(path)


def write_recipe(path: str | Path, config: ConvertConfig, result: SensitivityResult) -> Path:
    """Write ``result`` as a YAML recipe (atomically) that ``python -m convert --recipe`` reads back."""
    import yaml

    path = check_recipe_path(path)
    worst_rows = [r for r in result.rows if r["kept_fp32"]]
    lines = [f"{r['pattern']} (cosine drop {r['drop']:.2e})" for r in worst_rows]
    figs = "; ".join(f"{role}: all-int8 cosine min/mean {s['all_int8']['cosine_min']:.6f}/{s['all_int8']['cosine_mean']:.6f}"
                     f" -> {s['with_recipe']['cosine_min']:.6f}/{s['with_recipe']['cosine_mean']:.6f}"
                     for role, s in result.summary.items() if "with_recipe" in s)
    target = result.target
    recipe: dict[str, Any] = {
        "description": f"sensitivity recipe for {config.model}: "
                       + (f"keep the {len(worst_rows)} most sensitive groups in fp32 " if target is None else
                          f"keep {len(worst_rows)} groups in fp32, each tower's most cosine drop per parameter first, "
                          f"until its minimum cosine reaches {target} ")
                       + f"({', '.join(lines) or 'none'}); {figs}",
        "model": config.model,
    }
    if config.checkpoint:
        recipe["checkpoint"] = str(Path(config.checkpoint).resolve())
    elif config.pretrained is not None and not (config.model == BUILTIN_MODEL and config.pretrained == "builtin"):
        recipe["pretrained"] = config.pretrained
    recipe.update({"quantize": config.quantize, "target": config.target, "engine": config.engine,
                   "weights": config.weights, "attention": config.attention, "embedding": config.embedding,
                   "patch": config.patch, "projection": config.projection, "keep_fp32": list(result.keep_fp32)})
    if config.per_tensor:
        recipe["per_tensor"] = list(config.per_tensor)
    if config.truncate_text is not None:  # what was measured is what the recipe converts
        recipe["truncate_text"] = config.truncate_text
    if config.full_range:
        recipe["full_range"] = True
    text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=120)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--sensitivity-recipe {path}: cannot create its folder ({exc.strerror or exc})") from None
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    result.recipe = path
    return path
