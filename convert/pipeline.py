"""The conversion, stage by stage: load -> towers -> quantize -> export -> verify -> manifest.

Everything is written into a staging directory beside the output and renamed into place only when
every artifact has been saved, reloaded in the lite interpreter and found above the fidelity floor.
The output path is locked for the whole conversion (a second conversion into it is refused), free space
is checked before writing, and any failure or interruption (Ctrl-C, SIGTERM via the CLI, a full disk)
removes the staging folder and leaves an existing output untouched: the output is the old one or the
new one, never a mix.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from . import export
from .artifact import build_manifest, file_entry, io_specs, require_target, versions, write_manifest
from .config import BUILTIN_MODEL, ConvertConfig
from .errors import OutputError, one_line
from .files import atomic_write, current_umask, sha256_of
from .head import ZeroShotHead, build_class_embeddings, load_templates
from .load import LoadedModel, load_model
from .metrics import compare, tensor_bytes
from .probes import probe_images, probe_texts
from .quantize import set_engine
from .torchcheck import check_torch
from .towers import build_towers
from .verify import Reference, enforce_floor, verify_lite

Log = Callable[[str], None]
ANDROID_ASSETS = Path("app") / "src" / "main" / "assets" / "clipkit"


@dataclass
class ConversionResult:
    """Where the artifacts went, the manifest written beside them, and the summary rows."""

    out_dir: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    installed_to: Path | None = None


# Free space asked for beside the output before anything is written: int8 artifacts are 0.25-0.6x the
# fp32 weights, an fp32 tower (quantize none) ~1.0x, and a backport rewrites one file beside itself.
SPACE_FACTOR = 1.2
# Tests only: "<stage>:<marker file>" makes a conversion write the marker and sleep at that stage
# (staging, move, moved), so that a test can signal it there (tests/test_bad_inputs.py).
TEST_PAUSE_ENV = "CLIPKIT_TEST_PAUSE"


def prepare_output(config: ConvertConfig) -> Path:
    """Check the output directory can be (re)written; return its real path; raise :class:`OutputError`.

    A symlinked ``--out`` is written through: its target is replaced, never the link itself.
    """
    out = config.out_dir
    try:
        real = out.resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a deleted working directory
        raise OutputError(f"output {out} cannot be resolved ({one_line(exc, 120)})") from None
    if real == cwd or real in cwd.parents:
        raise OutputError(f"output {out} is the current directory or contains it (a conversion replaces its output "
                          f"folder as a whole); choose a new folder, e.g. --out {Path(out, 'artifacts')}")
    if real.exists() and not real.is_dir():
        raise OutputError(f"output {out} exists and is not a directory")
    check_replaceable(out, real, config.force)
    parent = real.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")
    return real


def check_replaceable(out: Path, real: Path, force: bool) -> None:
    """A non-empty output directory is replaced only with ``force``."""
    try:
        busy = real.is_dir() and any(real.iterdir())
    except OSError as exc:
        raise OutputError(f"output directory {out} cannot be read: {exc.strerror or exc}") from None
    if busy and not force:
        raise OutputError(f"output directory {out} is not empty; pass --force to replace it or choose another --out")


def lock_path(real: Path) -> Path:
    """The lock file of an output directory: beside it, named from it."""
    return real.with_name(f".{real.name}.lock")


@contextlib.contextmanager
def output_lock(real: Path, shown: Path | None = None):
    """Hold an exclusive ``flock`` on the output's lock file for the block; a second writer gets an
    :class:`OutputError` at once. The lock file (holding the writer's pid) is removed on exit."""
    import fcntl

    path = lock_path(real)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot lock {shown or real} ({path}: {exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"output {shown or real} is being written by another conversion (pid {holder}); "
                                  "wait for it to finish or choose another --out") from None
            raise OutputError(f"cannot lock {shown or real} ({path}: {exc.strerror or exc})") from None
        try:  # the previous holder unlinks the file before unlocking: a lock on an unlinked file is no lock
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError):  # the pid is for the message only (a full disk may refuse it)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def space_needed(config: ConvertConfig, loaded: LoadedModel) -> tuple[int, int]:
    """``(bytes to ask for, fp32 bytes of the model)``: SPACE_FACTOR x the fp32 weights (x2 with the .pt
    twins), plus the vocabulary and 1 MiB for the manifest and ops.yaml."""
    import open_clip

    fp32 = tensor_bytes(loaded.model)
    vocab = Path(open_clip.__file__).parent / str(loaded.tokenizer.get("vocab_file") or "")
    extra = (vocab.stat().st_size if vocab.is_file() else 0) + (1 << 20)
    return int(SPACE_FACTOR * fp32 * (2 if config.also_pt else 1)) + extra, fp32


def check_free_space(config: ConvertConfig, loaded: LoadedModel, real: Path) -> None:
    """Refuse to start writing when the output's file system cannot hold the artifacts."""
    need, fp32 = space_needed(config, loaded)
    try:
        free = shutil.disk_usage(real.parent).free
    except OSError:
        return
    if free < need:
        twins = " x2 for --also-pt" if config.also_pt else ""
        raise OutputError(f"not enough free space for {config.out_dir}: about {need / 2**20:.1f} MiB needed "
                          f"({SPACE_FACTOR} x the model's {fp32 / 2**20:.1f} MiB of fp32 weights{twins}, plus the "
                          f"vocabulary), {free / 2**20:.1f} MiB free in {real.parent}")


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM wait until the block is done (a folder swap or a cleanup is never half done).

    Python-level handlers only run in the main thread, so elsewhere this does nothing (and is not needed).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        saved[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)


def _pause_for_tests(stage: str) -> None:
    spec = os.environ.get(TEST_PAUSE_ENV, "")
    if spec.partition(":")[0] == stage:
        Path(spec.partition(":")[2]).write_text(str(os.getpid()))
        time.sleep(120)


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
    out = config.out_dir
    real = prepare_output(config)
    with output_lock(real, out):
        check_replaceable(out, real, config.force)  # again under the lock: another conversion may just have finished
        _remove_stale_staging(real, log)
        labels = _resolve_labels(config)
        template_name, templates = load_templates(config.templates) if labels else (None, None)
        log(f"loading {config.model}")
        loaded = load_model(config)
        check_free_space(config, loaded, real)
        staging = None
        try:
            with signals_deferred():  # no interruption between creating the folder and knowing its name
                staging = _make_staging(real)
            _pause_for_tests("staging")
            result = _convert_into(staging, config, loaded, labels, (template_name, templates), log)
            _pause_for_tests("move")
            with signals_deferred():
                _move_into_place(staging, real, config.force, out)
            _pause_for_tests("moved")
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


def _remove_stale_staging(real: Path, log: Log) -> None:
    """Staging folders of this output left by a conversion that was killed outright (SIGKILL, power loss):
    under the lock no other conversion is writing them, and they never hold the only copy of anything."""
    for stale in real.parent.glob(f".{real.name}.staging-*"):
        if stale.is_dir() and not stale.is_symlink():
            log(f"removing {stale.name}, left by a conversion that was killed")
            shutil.rmtree(stale, ignore_errors=True)


def _make_staging(real: Path) -> Path:
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{real.name}.staging-", dir=real.parent))
        os.chmod(staging, 0o777 & ~current_umask())
    except OSError as exc:
        raise OutputError(f"cannot create a staging folder in {real.parent}: {exc.strerror or exc}") from None
    return staging


def _move_into_place(staging: Path, real: Path, force: bool = True, shown: Path | None = None) -> None:
    """Rename ``staging`` to ``real``. A missing or empty ``real`` is replaced by one atomic rename (which
    fails if it has been filled meanwhile: then, without ``force``, nothing is replaced); a non-empty one,
    with ``force``, is swapped out and deleted. Call with signals deferred."""
    shown = shown or real
    try:
        os.rename(staging, real)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise OutputError(f"cannot move the artifacts into {shown}: {exc.strerror or exc}") from None
    if not force:
        raise OutputError(f"output directory {shown} was filled by something else during the conversion; nothing "
                          "was replaced (pass --force to replace it or choose another --out)")
    backup = real.with_name(f".{real.name}.old-{os.getpid()}")
    try:
        os.rename(real, backup)
    except OSError as exc:
        raise OutputError(f"cannot replace {shown}: {exc.strerror or exc}") from None
    try:
        os.rename(staging, real)
    except OSError as exc:
        os.rename(backup, real)
        raise OutputError(f"cannot move the artifacts into {shown}: {exc.strerror or exc}") from None
    shutil.rmtree(backup, ignore_errors=True)


def _convert_into(staging: Path, config: ConvertConfig, loaded: LoadedModel, labels, templates, log: Log
                  ) -> ConversionResult:
    """Stages 2-7 inside ``staging``: reference, towers, head, export, verify, manifest."""
    import open_clip

    tokenizer = open_clip.get_tokenizer(loaded.name)
    reference = make_reference(loaded, tokenizer, labels, config.seed)
    log("building towers")
    set_engine(config.engine)
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
    meta = {
        "model": _model_block(config, loaded),
        "preprocess": loaded.preprocess,
        "tokenizer": loaded.tokenizer,
        "zero_shot": zero_shot,
        "versions": {k: v for k, v in versions(None).items() if k != "bytecode"},
        "target": config.target,
        "engine": config.engine,
    }
    specs = io_specs(loaded.preprocess["image_size"], loaded.tokenizer["context_length"], loaded.embed_dim,
                     len(labels or []))
    files, lite_paths, bytecode, ops = export_towers(staging, modules, config, meta, specs, log)
    log("verifying the lite artifacts against the fp32 reference")
    fidelity = verify_lite(lite_paths, reference, config.min_cosine, head, exactness)
    files += write_side_files(staging, ops, loaded)
    manifest = build_manifest(
        model=meta["model"], target=config.target, engine=config.engine, config=_recorded_config(config),
        preprocess=loaded.preprocess, tokenizer=loaded.tokenizer, zero_shot=zero_shot, files=files,
        fidelity=fidelity, bytecode=bytecode,
        quantized={role: report.to_dict() for role, report in towers.reports.items()},
    )
    write_manifest(staging, manifest)
    enforce_floor(fidelity, config.min_cosine)
    return ConversionResult(out_dir=staging, manifest=manifest, rows=summary_rows(files, fidelity, fp32_bytes))


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
                  specs: dict[str, tuple], log: Log):
    """Script, optimize and save every module (``.ptl``, and ``.pt`` with ``also_pt``) with its metadata.

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
        files.append(file_entry(path, role, "lite", inputs=inputs, outputs=outputs))
        lite_paths[role] = path
        if config.also_pt:
            pt = staging / f"{role}.pt"
            export.save_torchscript(optimized, pt, role_meta)
            files.append(file_entry(pt, role, "torchscript", inputs=inputs, outputs=outputs))
    return files, lite_paths, bytecode, ops


def write_side_files(staging: Path, ops: dict[str, list[str]], loaded: LoadedModel) -> list[dict[str, Any]]:
    """``ops.yaml`` (root operators, for a selective mobile build) and the BPE vocabulary."""
    import open_clip

    ops_path = staging / "ops.yaml"
    all_ops = sorted({op for names in ops.values() for op in names})
    atomic_write(ops_path, lambda tmp: Path(tmp).write_text(
        yaml.safe_dump({"root_operators": all_ops, "per_file": ops}, sort_keys=True), encoding="utf-8"))
    vocab = staging / loaded.tokenizer["vocab_file"]
    vocab_src = Path(open_clip.__file__).parent / loaded.tokenizer["vocab_file"]
    atomic_write(vocab, lambda tmp: shutil.copyfile(vocab_src, tmp))
    return [file_entry(ops_path, "ops", "yaml"), file_entry(vocab, "vocab", "bpe-merges-gz")]


def summary_rows(files: list[dict[str, Any]], fidelity: dict[str, Any], fp32_bytes: dict[str, int]) -> list[dict]:
    """One row per ``.ptl``: size against fp32 and its fidelity figures."""
    rows = []
    for entry in files:
        if entry["format"] != "lite":
            continue
        role = entry["role"]
        fp32 = fp32_bytes[role]
        rows.append({"role": role, "file": entry["file"], "bytes": entry["bytes"], "fp32_bytes": fp32,
                     "ratio": entry["bytes"] / fp32 if fp32 else None, **fidelity.get(role, {})})
    return rows


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
            # Seeded random init converts and verifies like real weights: every reader must be able to say so.
            "random_weights": loaded.checkpoint is None and loaded.pretrained in (None, "none")}


def install_to_app(out: Path, app_dir: Path, manifest: dict[str, Any]) -> Path:
    """Copy the manifest, the ``.ptl`` files and the vocabulary into the Android app's assets."""
    if not (app_dir / "app").is_dir():
        raise OutputError(f"install target {app_dir} is not the android_demo project (no app/ folder)")
    require_target(manifest, "android", f"the Android app ({app_dir})")
    dest = app_dir / ANDROID_ASSETS
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {dest}: {exc.strerror or exc}") from None
    names = ["manifest.json"] + [f["file"] for f in manifest["files"] if f["format"] in ("lite", "bpe-merges-gz")]
    for name in names:
        atomic_write(dest / name, lambda tmp, name=name: shutil.copyfile(out / name, tmp))
    return dest
