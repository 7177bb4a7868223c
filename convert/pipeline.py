"""The conversion, stage by stage: load -> towers -> quantize -> export -> verify -> manifest.

Everything is written into a staging directory beside the output and renamed into place only when
every artifact has been saved, reloaded in the lite interpreter and found above the fidelity floor.
The output path is locked for the whole conversion (a second conversion into it is refused), free space
is checked before writing, and any failure or interruption (Ctrl-C, SIGTERM via the CLI, a full disk)
removes the staging folder and leaves an existing output untouched: the output is the old one or the
new one, never a mix.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from . import export, export_pte
from .artifact import build_manifest, file_entry, io_specs, require_target, versions, write_manifest
from .config import BUILTIN_MODEL, ConvertConfig
from .errors import OutputError
from .export_pte import executorch_version, load_pte, require_executorch
from .files import atomic_write, sha256_of
from .head import ZeroShotHead, build_class_embeddings, load_templates
from .load import LoadedModel, load_model
from .metrics import compare, tensor_bytes
from .output import (
    check_free_space,
    check_replaceable,
    make_staging,
    move_into_place,
    output_lock,
    pause_for_tests,
    prepare_output,
    remove_stale_staging,
    signals_deferred,
)
from .probes import probe_images, probe_texts
from .quantize import PTE_FP32_REASONS, PTL_FP32_REASONS, fp32_share, full_range_requirement, set_engine
from .torchcheck import check_torch
from .towers import Towers, build_towers, work_shape
from .verify import Reference, enforce_floor, verify_lite, verify_towers

Log = Callable[[str], None]
ANDROID_ASSETS = Path("app") / "src" / "main" / "assets" / "clipkit"


@dataclass
class ConversionResult:
    """Where the artifacts went, the manifest written beside them, and the summary rows."""

    out_dir: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    installed_to: Path | None = None


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
    if "pte" in config.formats:
        require_executorch(lowering=True)  # before any work: a missing extra is one line naming the install
    out = config.out_dir
    real = prepare_output(config)
    with output_lock(real, out):
        check_replaceable(out, real, config.force)  # again under the lock: another conversion may just have finished
        remove_stale_staging(real, log)
        labels = _resolve_labels(config)
        template_name, templates = load_templates(config.templates) if labels else (None, None)
        log(f"loading {config.model}")
        loaded = load_model(config)
        check_free_space(config, loaded, real)
        staging = None
        try:
            with signals_deferred():  # no interruption between creating the folder and knowing its name
                staging = make_staging(real)
            pause_for_tests("staging")
            result = _convert_into(staging, config, loaded, labels, (template_name, templates), log)
            pause_for_tests("move")
            with signals_deferred():
                move_into_place(staging, real, config.force, out)
            pause_for_tests("moved")
        except BaseException:
            if staging is not None:
                with signals_deferred():
                    shutil.rmtree(staging, ignore_errors=True)
            raise
    result.out_dir = out
    if config.install_to:
        result.installed_to = install_to_app(out, Path(config.install_to), result.manifest)
        log(f"installed into {result.installed_to}")
    return result


def _convert_into(staging: Path, config: ConvertConfig, loaded: LoadedModel, labels, templates, log: Log
                  ) -> ConversionResult:
    """Stages 2-7 inside ``staging``: reference, towers, head, export, verify, manifest."""
    import open_clip

    tokenizer = open_clip.get_tokenizer(loaded.name)
    reference = make_reference(loaded, tokenizer, labels, config.seed)
    log("building towers")
    set_engine(config.engine)
    # quantized for the .pte too: its int8/fp32 module lists and fp32 shares are the .ptl's (the same selection)
    towers = build_towers(loaded.model, config.quant, truncate_text=config.truncate_text, pack=config.pack)
    modules: dict[str, torch.nn.Module] = dict(towers.modules)
    fp32_bytes = {role: tensor_bytes(t) for role, t in towers.fp32.items()}
    with torch.no_grad():
        exactness = {"image_encoder": compare(reference.image, towers.fp32["image_encoder"](reference.images)),
                     "text_encoder": compare(reference.text, towers.fp32["text_encoder"](reference.tokens))}
    head, zero_shot = None, None
    if labels:
        log(f"zero-shot head: {len(labels)} labels x {len(templates[1])} templates")
        head, zero_shot = build_head(loaded, tokenizer, labels, *templates)
        modules["zero_shot_head"] = head
        fp32_bytes["zero_shot_head"] = tensor_bytes(head)
    executorch = executorch_version() if "pte" in config.formats else None  # checked in convert()
    meta = {
        "model": _model_block(config, loaded),
        "preprocess": loaded.preprocess,
        "tokenizer": loaded.tokenizer,
        "zero_shot": zero_shot,
        "versions": {k: v for k, v in versions(None, executorch).items() if k != "bytecode"},
        "target": config.target,
        "engine": config.engine,
    }
    specs = io_specs(loaded.preprocess["image_size"], loaded.tokenizer["context_length"], loaded.embed_dim,
                     len(labels or []))
    # how much a call computes, for per-call thread sizing at run time (deploy.threads)
    work = {role: work_shape(tower, loaded.tokenizer["context_length"]) for role, tower in towers.fp32.items()}
    files: list[dict[str, Any]] = []
    ops: dict[str, list[str]] = {}
    delegation: dict[str, Any] = {}
    fidelity: dict[str, dict[str, Any]] = {}
    bytecode = None
    pte_reports: dict[str, dict] = {}
    if "ptl" in config.formats:
        ptl_files, lite_paths, bytecode, ops = export_towers(staging, modules, config, meta, specs, work, log)
        log("verifying the lite artifacts against the fp32 reference")
        fidelity["ptl"] = verify_lite(lite_paths, reference, config.min_cosine, head, exactness)
        files += _with_fidelity(ptl_files, fidelity["ptl"], "lite")
    if "pte" in config.formats:
        pte_files, pte_paths, delegation, pte_reports = export_pte_towers(
            staging, towers.fp32, head, config, meta, loaded, specs, work, log)
        log("verifying the ExecuTorch artifacts against the fp32 reference")
        loaded_pte = {e["role"]: load_pte(pte_paths[e["role"]], e["role"], e.get("work")) for e in pte_files}
        fidelity["pte"] = verify_towers(loaded_pte, reference, config.min_cosine, head, exactness)
        files += _with_fidelity(pte_files, fidelity["pte"], "pte")
    files += write_side_files(staging, ops, loaded, delegation)
    manifest = build_manifest(
        model=meta["model"], target=config.target, engine=config.engine,
        config=dict(_recorded_config(config), truncate_text=towers.fp32["text_encoder"].truncate),
        preprocess=loaded.preprocess, tokenizer=loaded.tokenizer, zero_shot=zero_shot, files=files,
        fidelity=fidelity[config.formats[0]], bytecode=bytecode, quantized=quantized_block(towers, files, pte_reports),
        runtime=runtime_requirements(config), executorch=executorch,
    )
    write_manifest(staging, manifest)
    enforce_floor({f"{role} (.{fmt})" if len(fidelity) > 1 else role: figures
                   for fmt, per_role in fidelity.items() for role, figures in per_role.items()}, config.min_cosine)
    return ConversionResult(out_dir=staging, manifest=manifest, rows=summary_rows(files, fp32_bytes))


def _with_fidelity(files: list[dict[str, Any]], fidelity: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """Each model file's entry carries its own fidelity figures (the ``.pt`` twin is the ``.ptl``'s module)."""
    for entry in files:
        if entry["role"] in fidelity and entry["format"] in (fmt, "torchscript"):
            entry["fidelity"] = fidelity[entry["role"]]
    return files


def quantized_block(towers: Towers, files: list[dict[str, Any]], pte_reports: dict[str, dict] | None = None
                    ) -> dict[str, Any]:
    """The manifest's ``quantized`` block: per tower, which modules are int8 and which fp32 (``pte``: the
    ``.pte``'s own lists, where it has files), and ``fp32_share``: per file format, what stayed fp32 in that file,
    by module type, with its share of the file and why (``convert.quantize.fp32_share``). A tower the recipe
    leaves fp32 has no entry (all of it is)."""
    block: dict[str, Any] = {role: report.to_dict() for role, report in towers.reports.items()}
    for role, report in (pte_reports or {}).items():
        if role in block:
            block[role]["pte"] = report
    for entry in files:
        role = entry["role"]
        if entry["format"] in ("lite", "pte") and role in block:
            reasons = PTL_FP32_REASONS if entry["format"] == "lite" else PTE_FP32_REASONS
            block[role].setdefault("fp32_share", {})[entry["format"]] = fp32_share(towers.modules[role], reasons,
                                                                                   entry["bytes"])
    return block


def make_reference(loaded: LoadedModel, tokenizer, labels, seed: int) -> Reference:
    """The converter's fixed probe inputs and the fp32 model's outputs on them."""
    images = probe_images(loaded.preprocess, n=8, seed=seed)
    tokens = tokenizer(probe_texts(labels))
    with torch.no_grad():
        return Reference(images=images, tokens=tokens, image=loaded.model.encode_image(images),
                         text=loaded.model.encode_text(tokens))


def build_head(loaded: LoadedModel, tokenizer, labels, template_name: str, templates) -> tuple[ZeroShotHead, dict]:
    """The fp32 zero-shot head and its manifest block."""
    weights = build_class_embeddings(loaded.model, tokenizer, labels, templates)
    model = loaded.model
    scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
    return ZeroShotHead(weights, scale), {"labels": list(labels), "templates": template_name,
                                          "n_templates": len(templates), "logit_scale": scale}


def export_towers(staging: Path, modules: dict[str, torch.nn.Module], config: ConvertConfig, meta: dict[str, Any],
                  specs: dict[str, tuple], work: dict[str, dict | None], log: Log):
    """Script, optimize and save every module (``.ptl``, and ``.pt`` with ``also_pt``) with its metadata;
    their ``files[]`` entries carry the ``specs`` (inputs, outputs) and the ``work`` shape of each role.

    Returns ``(files entries, {role: .ptl path}, bytecode version, {file: root operators})``.
    """
    files: list[dict[str, Any]] = []
    ops: dict[str, list[str]] = {}
    lite_paths: dict[str, Path] = {}
    bytecode = None
    for role, module in modules.items():
        log(f"scripting and optimizing {role} for {config.target}")
        optimized = export.optimize_tower(export.script_tower(module, role), config.target, role)
        role_meta = dict(meta, role=role)
        path = staging / f"{role}.ptl"
        export.save_lite(optimized, path, role_meta)
        if config.bytecode_version is not None:
            bytecode = export.backport(path, config.bytecode_version)
        else:
            bytecode = export.bytecode_version(path)
        ops[path.name] = export.operator_names(optimized)
        inputs, outputs = specs[role]
        extra = {"inputs": inputs, "outputs": outputs}
        if work.get(role) is not None:
            extra["work"] = work[role]
        files.append(file_entry(path, role, "lite", **extra))
        lite_paths[role] = path
        if config.also_pt:
            pt = staging / f"{role}.pt"
            export.save_torchscript(optimized, pt, role_meta)
            files.append(file_entry(pt, role, "torchscript", **extra))
    return files, lite_paths, bytecode, ops


def export_pte_towers(staging: Path, fp32: dict[str, torch.nn.Module], head: torch.nn.Module | None,
                      config: ConvertConfig, meta: dict[str, Any], loaded: LoadedModel, specs: dict[str, tuple],
                      work: dict[str, dict | None], log: Log):
    """The ``.pte`` of every role from the recipe's fp32 towers (``convert.export_pte``), each with its
    metadata and delegation report; says in the log what the recipe asked that XNNPACK does otherwise.

    Returns ``(files entries, {role: path}, {file: delegation report}, {role: quantization report})``.
    """
    quant = config.quant
    files: list[dict[str, Any]] = []
    paths: dict[str, Path] = {}
    delegation: dict[str, Any] = {}
    reports: dict[str, dict] = {}
    said: set[str] = set()
    modules: dict[str, torch.nn.Module] = dict(fp32)
    if head is not None:
        modules["zero_shot_head"] = head
    for role, tower in modules.items():
        quantize = quant.image if role == "image_encoder" else quant.text if role == "text_encoder" else False
        module, selected, report, notes = export_pte.prepare_tower(tower, quant, role, quantize)
        for note in notes:
            if note not in said:
                log(f"note (.pte): {note}")
                said.add(note)
        role_work = work.get(role)
        if role == "text_encoder" and role_work is not None:
            # the caller cuts each prompt (export_pte.cut_tokens) where the .ptl tower cuts itself
            role_work = dict(role_work, pool=fp32[role].pool_type, eos_id=fp32[role].eos_id)
        log(f"exporting {role} to ExecuTorch (XNNPACK{', dynamic int8' if selected else ', fp32'})")
        inputs, dynamic = export_pte.example_inputs(role, loaded.preprocess["image_size"],
                                                     loaded.tokenizer["context_length"], loaded.embed_dim)
        path = staging / f"{role}.pte"
        delegation[path.name] = export_pte.export_pte(
            module, role, inputs, dynamic, selected, dict(meta, role=role, format="pte"), path,
            allow_undelegated=config.allow_undelegated)
        spec_in, spec_out = specs[role]
        extra: dict[str, Any] = {"inputs": spec_in, "outputs": spec_out, "delegation": delegation[path.name]}
        if role_work is not None:
            extra["work"] = role_work
        files.append(file_entry(path, role, "pte", **extra))
        paths[role] = path
        if role != "zero_shot_head":
            reports[role] = report.to_dict()
    return files, paths, delegation, reports


def write_side_files(staging: Path, ops: dict[str, list[str]], loaded: LoadedModel,
                     delegation: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``ops.yaml`` (root operators of the ``.ptl`` files, for a selective mobile build; for ``.pte`` files what
    runs in XNNPACK and what in portable kernels, which a selective ExecuTorch build needs) and the BPE
    vocabulary."""
    import open_clip

    ops_path = staging / "ops.yaml"
    document: dict[str, Any] = {}
    if ops:
        document.update(root_operators=sorted({op for names in ops.values() for op in names}), per_file=ops)
    if delegation:
        document["executorch"] = {"portable_operators": sorted({op for r in delegation.values() for op in r["portable"]}),
                                  "per_file": delegation}
    atomic_write(ops_path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(document, sort_keys=True), encoding="utf-8"))
    vocab = staging / loaded.tokenizer["vocab_file"]
    vocab_src = Path(open_clip.__file__).parent / loaded.tokenizer["vocab_file"]
    atomic_write(vocab, lambda tmp: shutil.copyfile(vocab_src, tmp))
    return [file_entry(ops_path, "ops", "yaml"), file_entry(vocab, "vocab", "bpe-merges-gz")]


def summary_rows(files: list[dict[str, Any]], fp32_bytes: dict[str, int]) -> list[dict]:
    """One row per model file the device runs (``.ptl``, ``.pte``): size against fp32 and its fidelity figures."""
    rows = []
    for entry in files:
        if entry["format"] not in ("lite", "pte"):
            continue
        role = entry["role"]
        fp32 = fp32_bytes[role]
        rows.append({"role": role, "file": entry["file"], "format": entry["format"], "bytes": entry["bytes"],
                     "fp32_bytes": fp32, "ratio": entry["bytes"] / fp32 if fp32 else None,
                     **entry.get("fidelity", {})})
    return rows


def runtime_requirements(config: ConvertConfig) -> dict[str, Any] | None:
    """What a machine needs to run the artifacts, beyond torch: 8-bit fbgemm activations need one of these
    CPU flags (the loaders refuse elsewhere: the int16 sums would saturate silently)."""
    if not config.full_range:
        return None
    return {"requires_cpu_flags_any": full_range_requirement(config.engine)}


def _recorded_config(config: ConvertConfig) -> dict[str, Any]:
    """The config as the manifest records it: a checkpoint by its absolute path (portable manifests)."""
    data = config.to_dict()
    if config.checkpoint:
        data["checkpoint"] = str(Path(config.checkpoint).resolve())
    return data


def _model_block(config: ConvertConfig, loaded: LoadedModel) -> dict[str, Any]:
    return {"name": loaded.name, "pretrained": loaded.pretrained,
            "checkpoint": Path(loaded.checkpoint).name if loaded.checkpoint else None,
            "checkpoint_sha256": sha256_of(Path(loaded.checkpoint)) if loaded.checkpoint else None,
            "seed": config.seed, "embed_dim": loaded.embed_dim,
            "reparameterized": {role: report.to_dict() for role, report in loaded.reparameterized.items()},
            # Seeded random init converts and verifies like real weights: every reader must be able to say so.
            "random_weights": loaded.checkpoint is None and loaded.pretrained in (None, "none")}


def install_to_app(out: Path, app_dir: Path, manifest: dict[str, Any]) -> Path:
    """Copy the manifest, the ``.ptl`` / ``.pte`` files and the vocabulary into the Android app's assets."""
    if not (app_dir / "app").is_dir():
        raise OutputError(f"install target {app_dir} is not the android_demo project (no app/ folder)")
    require_target(manifest, "android", f"the Android app ({app_dir})")
    dest = app_dir / ANDROID_ASSETS
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {dest}: {exc.strerror or exc}") from None
    names = ["manifest.json"] + [f["file"] for f in manifest["files"] if f["format"] in ("lite", "pte", "bpe-merges-gz")]
    for name in names:
        atomic_write(dest / name, lambda tmp, name=name: shutil.copyfile(out / name, tmp))
    return dest
