"""The conversion, stage by stage: load -> towers -> quantize -> export -> verify -> manifest.

Everything is written into a staging directory beside the output and renamed into place only when
every artifact has been saved, reloaded in the lite interpreter and found above the fidelity floor.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import yaml

from . import export
from .config import BUILTIN_MODEL, ConvertConfig
from .errors import FidelityError, OutputError
from .load import LoadedModel, load_model
from .manifest import build_manifest, file_entry, versions, write_manifest
from .probes import probe_images, probe_texts
from .packing import defer_packing
from .quantize import QuantReport, quantize_tower, set_engine
from .torchcheck import check_torch
from .towers import ZeroShotHead, build_image_encoder, build_text_encoder

Log = Callable[[str], None]
ANDROID_ASSETS = Path("app") / "src" / "main" / "assets" / "clipkit"


@dataclass
class ConversionResult:
    """Where the artifacts went, the manifest written beside them, and the summary rows."""

    out_dir: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    installed_to: Path | None = None


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


def prepare_output(config: ConvertConfig) -> Path:
    """Check the output directory can be (re)written; raise :class:`OutputError` otherwise."""
    out = config.out_dir
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not config.force:
        raise OutputError(f"output directory {out} is not empty; pass --force to replace it or choose another --out")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")
    return out


def _resolve_labels(config: ConvertConfig) -> tuple[str, ...] | None:
    if config.labels is not None:
        return config.labels
    if config.model == BUILTIN_MODEL and config.pretrained == "builtin":
        from assets import TINY_LABELS

        from .config import read_labels

        return read_labels(str(TINY_LABELS))
    return None


def convert(config: ConvertConfig, log: Log = lambda message: None) -> ConversionResult:
    """Run the whole conversion described by ``config`` and return where it went and how it did.

    Raises a :class:`~convert.errors.KitError` subclass on bad input, a failed export or a result
    below the fidelity floor; no partial output is left behind in any of those cases.
    """
    check_torch(config.engine, needs_xnnpack=config.needs_xnnpack)
    out = prepare_output(config)
    labels = _resolve_labels(config)
    from deploy.zeroshot import load_templates

    template_name, templates = load_templates(config.templates) if labels else (None, None)

    log(f"loading {config.model}")
    loaded = load_model(config)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.resolve().parent))
    os.chmod(staging, 0o777 & ~export.current_umask())
    try:
        result = _convert_into(staging, config, loaded, labels, template_name, templates, log)
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out_dir = out
    if config.install_to:
        result.installed_to = install_to_app(out, Path(config.install_to), result.manifest)
        log(f"installed into {result.installed_to}")
    return result


def _move_into_place(staging: Path, out: Path) -> None:
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
        os.replace(staging, out)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, out)


def _convert_into(staging: Path, config: ConvertConfig, loaded: LoadedModel, labels, template_name,
                  templates, log: Log) -> ConversionResult:
    import open_clip

    from deploy.zeroshot import build_class_embeddings

    model = loaded.model
    quant = config.quant
    tokenizer = open_clip.get_tokenizer(loaded.name)
    images = probe_images(loaded.preprocess, n=8, seed=config.seed)
    tokens = tokenizer(probe_texts(labels))
    with torch.no_grad():
        ref_image = model.encode_image(images)
        ref_text = model.encode_text(tokens)

    log("building towers")
    unfold_image = quant.image and quant.attention == "int8"
    unfold_text = quant.text and quant.attention == "int8"
    towers: dict[str, torch.nn.Module] = {
        "image_encoder": build_image_encoder(model, attention=unfold_image, patch=quant.image and quant.patch == "int8"),
        "text_encoder": build_text_encoder(model, attention=unfold_text, truncate=config.truncate_text),
    }
    fp32_bytes = {role: tensor_bytes(t) for role, t in towers.items()}
    with torch.no_grad():
        tower_exactness = {
            "image_encoder": compare(ref_image, towers["image_encoder"](images)),
            "text_encoder": compare(ref_text, towers["text_encoder"](tokens)),
        }
    reports: dict[str, QuantReport] = {}
    set_engine(config.engine)
    for role, wanted in (("image_encoder", quant.image), ("text_encoder", quant.text)):
        if wanted:
            log(f"quantizing {role} ({quant.weights}, {config.engine})")
            towers[role], reports[role] = quantize_tower(towers[role], quant, role)
            if config.pack == "first-call":
                defer_packing(towers[role])
    head = None
    zero_shot = None
    if labels:
        log(f"zero-shot head: {len(labels)} labels x {len(templates)} templates")
        weights = build_class_embeddings(model, tokenizer, labels, templates)  # fp32 reference
        scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
        head = ZeroShotHead(weights, scale)
        towers["zero_shot_head"] = head
        fp32_bytes["zero_shot_head"] = tensor_bytes(head)
        zero_shot = {"labels": list(labels), "templates": template_name, "n_templates": len(templates),
                     "logit_scale": scale}

    common_meta = {
        "model": _model_block(config, loaded),
        "preprocess": loaded.preprocess,
        "tokenizer": loaded.tokenizer,
        "zero_shot": zero_shot,
        "versions": {k: v for k, v in versions(None).items() if k != "bytecode"},
        "target": config.target,
        "engine": config.engine,
    }
    d = loaded.embed_dim
    shapes = {
        "image_encoder": ([{"name": "image", "shape": [1, 3, *loaded.preprocess["image_size"]], "dtype": "float32"}],
                          [{"name": "embedding", "shape": [1, d], "dtype": "float32"}]),
        "text_encoder": ([{"name": "tokens", "shape": [1, loaded.tokenizer["context_length"]], "dtype": "int64"}],
                         [{"name": "embedding", "shape": [1, d], "dtype": "float32"}]),
        "zero_shot_head": ([{"name": "embedding", "shape": [1, d], "dtype": "float32"}],
                           [{"name": "logits", "shape": [1, len(labels or [])], "dtype": "float32"}]),
    }
    files: list[dict[str, Any]] = []
    ops: dict[str, list[str]] = {}
    lite_paths: dict[str, Path] = {}
    bytecode = None
    for role, module in towers.items():
        log(f"scripting and optimizing {role} for {config.target}")
        optimized = export.optimize_tower(export.script_tower(module, role), config.target, role)
        meta = dict(common_meta, role=role)
        path = staging / f"{role}.ptl"
        export.save_lite(optimized, path, meta)
        if config.bytecode_version is not None:
            bytecode = export.backport(path, config.bytecode_version)
        else:
            bytecode = export.bytecode_version(path)
        ops[path.name] = export.operator_names(optimized)
        inputs, outputs = shapes[role]
        files.append(file_entry(path, role, "lite", inputs=inputs, outputs=outputs))
        lite_paths[role] = path
        if config.also_pt:
            pt = staging / f"{role}.pt"
            export.save_torchscript(optimized, pt, meta)
            files.append(file_entry(pt, role, "torchscript", inputs=inputs, outputs=outputs))

    log("verifying the lite artifacts against the fp32 reference")
    fidelity = _verify(lite_paths, images, tokens, ref_image, ref_text, head, config, tower_exactness)

    ops_path = staging / "ops.yaml"
    all_ops = sorted({op for names in ops.values() for op in names})
    export.atomic_write(ops_path, lambda tmp: Path(tmp).write_text(
        yaml.safe_dump({"root_operators": all_ops, "per_file": ops}, sort_keys=True), encoding="utf-8"))
    files.append(file_entry(ops_path, "ops", "yaml"))
    vocab = staging / loaded.tokenizer["vocab_file"]
    vocab_src = Path(open_clip.__file__).parent / loaded.tokenizer["vocab_file"]
    export.atomic_write(vocab, lambda tmp: shutil.copyfile(vocab_src, tmp))
    files.append(file_entry(vocab, "vocab", "bpe-merges-gz"))

    manifest = build_manifest(
        model=common_meta["model"], target=config.target, engine=config.engine, config=config.to_dict(),
        preprocess=loaded.preprocess, tokenizer=loaded.tokenizer, zero_shot=zero_shot, files=files,
        fidelity=fidelity, bytecode=bytecode,
        quantized={role: report.to_dict() for role, report in reports.items()},
    )
    write_manifest(staging, manifest)
    _enforce_floor(fidelity, config.min_cosine)
    rows = []
    for entry in files:
        if entry["format"] != "lite":
            continue
        role = entry["role"]
        fp32 = fp32_bytes[role]
        rows.append({"role": role, "file": entry["file"], "bytes": entry["bytes"], "fp32_bytes": fp32,
                     "ratio": entry["bytes"] / fp32 if fp32 else None, **fidelity.get(role, {})})
    return ConversionResult(out_dir=staging, manifest=manifest, rows=rows)


def _model_block(config: ConvertConfig, loaded: LoadedModel) -> dict[str, Any]:
    from .manifest import sha256_of

    return {"name": loaded.name, "pretrained": loaded.pretrained,
            "checkpoint": Path(loaded.checkpoint).name if loaded.checkpoint else None,
            "checkpoint_sha256": sha256_of(Path(loaded.checkpoint)) if loaded.checkpoint else None,
            "seed": config.seed, "embed_dim": loaded.embed_dim}


@torch.no_grad()
def _verify(paths, images, tokens, ref_image, ref_text, head, config, tower_exactness) -> dict[str, Any]:
    fidelity: dict[str, Any] = {}
    lite_image = export.load_lite(paths["image_encoder"])(images)
    lite_text = export.load_lite(paths["text_encoder"])(tokens)
    for role, ref, got in (("image_encoder", ref_image, lite_image), ("text_encoder", ref_text, lite_text)):
        fidelity[role] = dict(compare(ref, got), floor=config.min_cosine,
                              fp32_tower_max_abs_err=tower_exactness[role]["max_abs_err"])
    if head is not None:
        ref_logits = head(ref_image)
        lite_logits = export.load_lite(paths["zero_shot_head"])(lite_image)
        agree = (ref_logits.argmax(-1) == lite_logits.argmax(-1)).float().mean()
        fidelity["zero_shot_head"] = dict(compare(ref_logits, lite_logits), top1_agreement=float(agree))
    return fidelity


def _enforce_floor(fidelity: dict[str, Any], floor: float) -> None:
    failures = [
        f"{role} cosine {fig['cosine_min']:.6f} < floor {floor} (short by {floor - fig['cosine_min']:.6f})"
        for role, fig in fidelity.items() if "floor" in fig and fig["cosine_min"] < floor
    ]
    if failures:
        raise FidelityError("fidelity below the recipe's floor: " + "; ".join(failures)
                            + " (keep modules in fp32 with --keep-fp32, use --weights per-channel, or lower --min-cosine)")


def install_to_app(out: Path, app_dir: Path, manifest: dict[str, Any]) -> Path:
    """Copy the manifest, the ``.ptl`` files and the vocabulary into the Android app's assets."""
    if not (app_dir / "app").is_dir():
        raise OutputError(f"install target {app_dir} is not the android_demo project (no app/ folder)")
    dest = app_dir / ANDROID_ASSETS
    dest.mkdir(parents=True, exist_ok=True)
    names = ["manifest.json"] + [f["file"] for f in manifest["files"] if f["format"] in ("lite", "bpe-merges-gz")]
    for name in names:
        export.atomic_write(dest / name, lambda tmp, name=name: shutil.copyfile(out / name, tmp))
    return dest
