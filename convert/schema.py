"""The fields of the kit's JSON documents and their checks: the manifest and the metadata embedded in
every model file. Each check raises :class:`ArtifactError` naming the file, the field and what is valid;
nothing downstream indexes these documents before the check passed (``convert.artifact`` calls it).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import ArtifactError, quoted

FORMAT = "clip-mobile-kit-manifest"
FORMAT_VERSION = 1
KIT_VERSION = "0.1.0"
MANIFEST_NAME = "manifest.json"
EXTRA_FILE = "clip_kit.json"
MODEL_ROLES = ("image_encoder", "text_encoder", "zero_shot_head")
# kind asked for by a loader -> (files[].format, suffix)
KINDS = {"lite": ("lite", ".ptl"), "jit": ("torchscript", ".pt"), "pte": ("pte", ".pte")}
FILE_FORMATS = ("lite", "torchscript", "pte", "bpe-merges-gz", "yaml")
# The phone runs qnnpack weights; fbgemm (x86) weights on a phone are the shipped-the-wrong-file mistake.
TARGET_ENGINES = {"android": ("qnnpack",), "x86": ("fbgemm", "qnnpack")}


class _Check:
    """Type checks of one JSON document, each failure one line naming the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, value: Any, valid: str) -> None:
        raise ArtifactError(f"{self.source}: {field} is {quoted(value)} ({type(value).__name__}); valid: {valid}")

    def get(self, obj: dict, key: str, where: str, kinds: tuple, valid: str, *, optional: bool = False) -> Any:
        field = f"{where}.{key}" if where else key
        if key not in obj:
            if optional:
                return None
            raise ArtifactError(f"{self.source}: required field {field} is missing")
        value = obj[key]
        if optional and value is None:
            return None
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            self.fail(field, value, valid)
        return value

    def integer(self, obj: dict, key: str, where: str, low: int = 0, *, optional: bool = False) -> int | None:
        value = self.get(obj, key, where, (int,), f"an integer >= {low}", optional=optional)
        if value is not None and value < low:
            self.fail(f"{where}.{key}", value, f"an integer >= {low}")
        return value

    def number(self, obj: dict, key: str, where: str) -> float:
        value = self.get(obj, key, where, (int, float), "a finite number")
        if not math.isfinite(value):  # json.loads reads NaN and Infinity
            self.fail(f"{where}.{key}", value, "a finite number")
        return value

    def text(self, obj: dict, key: str, where: str, *, optional: bool = False) -> str | None:
        value = self.get(obj, key, where, (str,), "a non-empty string", optional=optional)
        if value is not None and not value:
            self.fail(f"{where}.{key}" if where else key, value, "a non-empty string")
        return value

    def mapping(self, obj: dict, key: str, where: str = "", *, optional: bool = False) -> dict | None:
        return self.get(obj, key, where, (dict,), "a JSON object", optional=optional)

    def numbers(self, obj: dict, key: str, where: str, n: int, kinds=(int, float)) -> list:
        value = self.get(obj, key, where, (list,), f"a list of {n} numbers")
        if len(value) != n or not all(isinstance(v, kinds) and not isinstance(v, bool) and math.isfinite(v)
                                      for v in value):
            self.fail(f"{where}.{key}", value, f"a list of {n} {'integers' if kinds == (int,) else 'numbers'}")
        return value


def validate_manifest(manifest: Any, source: str = MANIFEST_NAME) -> dict[str, Any]:
    """Check every field a reader uses; raise :class:`ArtifactError` naming the file, field and what is valid.

    Nothing downstream indexes the manifest without this check having passed.
    """
    from .config import ENGINES, TARGETS

    c = _Check(source)
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{source} is not a clip-mobile-kit manifest (a {type(manifest).__name__}, not an object)")
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{source} is not a clip-mobile-kit manifest (format {quoted(manifest.get('format'))})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{source}: format_version {quoted(manifest.get('format_version'))} is not supported "
                            f"(this kit reads {FORMAT_VERSION})")
    v = c.mapping(manifest, "versions")
    c.text(v, "torch", "versions")
    c.integer(v, "bytecode", "versions", 1, optional=True)
    c.text(v, "executorch", "versions", optional=True)
    m = c.mapping(manifest, "model")
    c.text(m, "name", "model")
    c.integer(m, "embed_dim", "model", 1)
    for key in ("pretrained", "checkpoint"):
        c.text(m, key, "model", optional=True)
    c.get(m, "random_weights", "model", (bool,), "true or false", optional=True)
    _sha256(c, m, "checkpoint_sha256", "model", optional=True)
    _check_reparameterized(c, m)
    for key, choices in (("target", TARGETS), ("engine", ENGINES)):
        value = c.text(manifest, key, "")
        if value not in choices:
            c.fail(key, value, " or ".join(choices))
    if manifest["engine"] not in TARGET_ENGINES[manifest["target"]]:
        c.fail("engine", manifest["engine"], f"{' or '.join(TARGET_ENGINES[manifest['target']])} for target "
               f"{manifest['target']}")
    cfg = c.mapping(manifest, "config", optional=True)
    if cfg is not None:  # what deploy reads of it (the reference model is rebuilt through build_config)
        for key in ("model", "pretrained", "checkpoint", "quantize"):
            c.text(cfg, key, "config", optional=True)
        c.integer(cfg, "seed", "config", 0, optional=True)
        c.get(cfg, "truncate_text", "config", (bool,), "true or false", optional=True)
    p = c.mapping(manifest, "preprocess")
    size = c.numbers(p, "image_size", "preprocess", 2, kinds=(int,))
    if min(size) < 1:
        c.fail("preprocess.image_size", size, "two positive integers")
    c.numbers(p, "mean", "preprocess", 3)
    std = c.numbers(p, "std", "preprocess", 3)
    if any(s <= 0 for s in std):
        c.fail("preprocess.std", std, "three positive numbers")
    for key in ("interpolation", "resize_mode"):
        c.text(p, key, "preprocess", optional=True)
    c.integer(p, "fill_color", "preprocess", 0, optional=True)
    t = c.mapping(manifest, "tokenizer")
    c.integer(t, "context_length", "tokenizer", 2)
    for key in ("vocab_size", "sot_token_id", "eot_token_id"):
        c.integer(t, key, "tokenizer", 0, optional=True)
    c.text(t, "vocab_id", "tokenizer", optional=True)
    vocab = c.text(t, "vocab_file", "tokenizer", optional=True)
    if vocab is not None and Path(vocab).name != vocab:
        c.fail("tokenizer.vocab_file", vocab, "a plain file name inside the artifact directory")
    zs = c.mapping(manifest, "zero_shot", optional=True)
    if zs is not None:
        labels = c.get(zs, "labels", "zero_shot", (list,), "a list of label strings", optional=True)
        if labels is not None and not all(isinstance(x, str) and x for x in labels):
            c.fail("zero_shot.labels", labels, "a list of non-empty strings")
        if zs.get("logit_scale") is not None:
            c.number(zs, "logit_scale", "zero_shot")
        c.text(zs, "templates", "zero_shot", optional=True)
    files = c.get(manifest, "files", "", (list,), "a list of file entries")
    for i, entry in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(entry, dict):
            c.fail(where, entry, "a JSON object")
        name = c.text(entry, "file", where)
        if Path(name).name != name or name in (".", ".."):
            c.fail(f"{where}.file", name, "a plain file name inside the artifact directory")
        c.text(entry, "role", where)
        fmt = c.text(entry, "format", where)
        if fmt not in FILE_FORMATS:
            c.fail(f"{where}.format", fmt, ", ".join(FILE_FORMATS))
        c.integer(entry, "bytes", where, 0)
        _sha256(c, entry, "sha256", where)
        for key in ("inputs", "outputs"):
            specs = c.get(entry, key, where, (list,), "a list of tensor specs", optional=True)
            for j, spec in enumerate(specs or []):
                if not isinstance(spec, dict):
                    c.fail(f"{where}.{key}[{j}]", spec, "a JSON object")
                c.text(spec, "name", f"{where}.{key}[{j}]")
                shape = c.get(spec, "shape", f"{where}.{key}[{j}]", (list,), "a list of integers")
                if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                    c.fail(f"{where}.{key}[{j}].shape", shape, "a list of non-negative integers")
                c.text(spec, "dtype", f"{where}.{key}[{j}]")
        work = c.mapping(entry, "work", where, optional=True)
        if work is not None:
            c.integer(work, "width", f"{where}.work", 1)
            c.integer(work, "rows_per_input", f"{where}.work", 1)
            c.get(work, "rows_end_at_eot", f"{where}.work", (bool,), "true or false", optional=True)
            pool = c.text(work, "pool", f"{where}.work", optional=True)
            if pool is not None and pool not in ("argmax", "eos", "first", "last"):
                c.fail(f"{where}.work.pool", pool, "argmax, eos, first or last")
            c.integer(work, "eos_id", f"{where}.work", -1, optional=True)
        for key in ("delegation", "fidelity"):
            c.mapping(entry, key, where, optional=True)
        if fmt == "pte" and entry["role"] in MODEL_ROLES and not v.get("executorch"):
            c.fail("versions.executorch", v.get("executorch"), "the executorch version (files[] lists .pte files)")
    _check_file_list(c, manifest)
    _check_fp32_share(c, manifest)
    fidelity = c.mapping(manifest, "fidelity", optional=True)
    for role in MODEL_ROLES if fidelity is not None else ():
        tower = c.mapping(fidelity, role, "fidelity", optional=True)
        if tower is not None and tower.get("cosine_min") is not None:
            c.number(tower, "cosine_min", f"fidelity.{role}")
    runtime = c.mapping(manifest, "runtime", optional=True)
    if runtime is not None:
        flags = c.get(runtime, "requires_cpu_flags_any", "runtime", (list,), "a list of CPU flag names", optional=True)
        if flags is not None and not all(isinstance(f, str) and f for f in flags):
            c.fail("runtime.requires_cpu_flags_any", flags, "a list of CPU flag names such as [\"avx512_vnni\"]")
    return manifest


def _sha256(c: _Check, obj: dict, key: str, where: str, *, optional: bool = False) -> str | None:
    digest = c.text(obj, key, where, optional=optional)
    if digest is not None and (len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest)):
        c.fail(f"{where}.{key}", digest, "64 lower-case hex digits")
    return digest


def _check_reparameterized(c: _Check, model: dict[str, Any]) -> None:
    """``model.reparameterized`` (optional; older manifests lack it): per encoder, the folded modules and,
    when there were any, the measured fp32 difference and its tolerance."""
    block = c.mapping(model, "reparameterized", "model", optional=True)
    for role, rep in (block or {}).items():
        where = f"model.reparameterized.{role}"
        if role not in MODEL_ROLES[:2] or not isinstance(rep, dict):  # the encoders
            c.fail(where, rep, "an encoder role mapped to a JSON object")
        if c.integer(rep, "modules", where, 0):
            c.mapping(rep, "kinds", where)
            for key in ("max_abs_diff", "relative_diff", "tolerance"):
                if c.number(rep, key, where) < 0:
                    c.fail(f"{where}.{key}", rep[key], "a number >= 0")


def _check_fp32_share(c: _Check, manifest: dict[str, Any]) -> None:
    """``quantized.<role>.fp32_share.<files[].format>`` (optional): what stayed fp32 in that file, by module."""
    quantized = c.mapping(manifest, "quantized", optional=True)
    for role, block in (quantized or {}).items():
        if not isinstance(block, dict):
            c.fail(f"quantized.{role}", block, "a JSON object")
        shares = c.mapping(block, "fp32_share", f"quantized.{role}", optional=True)
        for fmt, rows in (shares or {}).items():
            where = f"quantized.{role}.fp32_share.{fmt}"
            if fmt not in FILE_FORMATS or not isinstance(rows, list):
                c.fail(where, rows, f"a file format ({', '.join(FILE_FORMATS)}) mapped to a list")
            for i, row in enumerate(rows):
                if not isinstance(row, dict):
                    c.fail(f"{where}[{i}]", row, "a JSON object")
                c.text(row, "module", f"{where}[{i}]")
                c.text(row, "reason", f"{where}[{i}]")
                c.integer(row, "bytes", f"{where}[{i}]", 0)
                c.integer(row, "count", f"{where}[{i}]", 1, optional=True)
                if row.get("share") is not None and not 0 <= c.number(row, "share", f"{where}[{i}]"):
                    c.fail(f"{where}[{i}].share", row["share"], "a number >= 0")


def _check_file_list(c: _Check, manifest: dict[str, Any]) -> None:
    """Cross-checks of ``files[]``: one entry per file name and per (model role, format); the tokenizer's
    vocabulary is a listed (hence hash-checked) file; the declared output widths agree with
    ``model.embed_dim`` and the number of labels (a reader indexes labels by the head's logits)."""
    names: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for i, entry in enumerate(manifest["files"]):
        if entry["file"] in names:
            c.fail(f"files[{i}].file", entry["file"], "a file listed once")
        names.add(entry["file"])
        if entry["role"] in MODEL_ROLES:
            if (entry["role"], entry["format"]) in pairs:
                c.fail(f"files[{i}]", f"{entry['role']} ({entry['format']})", "one file per role and format")
            pairs.add((entry["role"], entry["format"]))
    vocab = manifest["tokenizer"].get("vocab_file")
    if vocab is not None and not any(e["file"] == vocab and e["role"] == "vocab" for e in manifest["files"]):
        c.fail("tokenizer.vocab_file", vocab, "a file listed in files[] with role vocab (so that it is hash-checked)")
    dim = manifest["model"]["embed_dim"]
    labels = (manifest.get("zero_shot") or {}).get("labels")
    for i, entry in enumerate(manifest["files"]):
        outputs = entry.get("outputs") or []
        width = outputs[0]["shape"][-1] if outputs and outputs[0]["shape"] else None
        if width is None:
            continue
        if entry["role"] in ("image_encoder", "text_encoder") and width != dim:
            c.fail(f"files[{i}].outputs[0].shape", outputs[0]["shape"], f"[..., {dim}] (model.embed_dim)")
        if entry["role"] == "zero_shot_head" and labels is not None and width != len(labels):
            c.fail(f"files[{i}].outputs[0].shape", outputs[0]["shape"], f"[..., {len(labels)}] (one logit per label)")
    if labels is None and any(e["role"] == "zero_shot_head" for e in manifest["files"]):
        c.fail("zero_shot.labels", labels, "the head's labels (files[] lists a zero_shot_head)")


def validate_metadata(meta: Any, source: str = EXTRA_FILE) -> dict[str, Any]:
    """The types of the embedded metadata's fields (the Android app reads the same ones)."""
    from .config import ENGINES, TARGETS

    c = _Check(source)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{source} is not a JSON object")
    role = c.text(meta, "role", "")
    if role not in MODEL_ROLES:
        c.fail("role", role, ", ".join(MODEL_ROLES))
    model = c.mapping(meta, "model")
    c.text(model, "name", "model")
    c.integer(model, "embed_dim", "model", 1, optional=True)
    for key, choices in (("target", TARGETS), ("engine", ENGINES)):
        value = c.text(meta, key, "", optional=True)
        if value is not None and value not in choices:
            c.fail(key, value, " or ".join(choices))
    for key in ("preprocess", "tokenizer", "zero_shot", "versions"):
        c.mapping(meta, key, optional=True)
    return meta
