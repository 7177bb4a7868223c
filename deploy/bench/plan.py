"""Plan and run a benchmark: which configurations, measured how, aggregated into the v1 report.

Every measurement runs in its own subprocess (``deploy.bench.worker``), so the load is cold, the OpenMP
environment is set before torch starts, and memory is not shared between variants; the repetitions are
interleaved: repetition ``r`` runs every configuration once, round-robin, before repetition ``r + 1``
starts, so machine load drifts hit all variants alike. Ratios are to the fp32 eager model at the same
thread count and OpenMP policy, from the same run.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINE_VARIANTS = ("eager-int8", "jit", "lite")  # variants whose speed depends on the quantized engine
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimd", "asimddp", "i8mm")
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    role: str
    variant: str
    engine: str | None
    threads: int
    omp: str
    file: str | None
    size_bytes: int
    size_kind: str

    @property
    def key(self) -> tuple:
        return (self.role, self.variant, self.engine, self.threads, self.omp)


@dataclass
class Settings:
    directory: Path
    roles: tuple[str, ...]
    variants: tuple[str, ...]
    threads: tuple[int, ...]
    engines: tuple[str, ...]
    omp: tuple[str, ...]
    repeats: int
    iters: int
    warmup: int
    timeout: float = 900.0
    notes: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of a non-empty sequence."""
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def stats(values: Sequence[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 4), "p90": round(percentile(values, 90), 4),
            "samples": [round(v, 4) for v in values]}


def cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name and which of the flags that matter for int8 kernels it has."""
    from convert.quantize import cpu_flags

    present = cpu_flags()
    flags = [f for f in INTERESTING_FLAGS if f in present]
    model = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
            return value.strip(), flags
    return model, flags


def environment(settings: Settings) -> dict[str, Any]:
    import torch

    model, flags = cpu_info()
    omp_values = [os.environ.get("OMP_WAIT_POLICY") if o == "default" else o for o in settings.omp]
    return {
        "host": platform.machine(),
        "device": model,
        "torch": torch.__version__,
        "threads": max(settings.threads),
        "engine": settings.engines[0],
        "omp_wait_policy": omp_values[0] if len(set(omp_values)) == 1 else ",".join(str(v) for v in omp_values),
        "cpu_flags": flags,
        # additions to the v1 schema
        "threads_measured": list(settings.threads),
        "engines_measured": list(settings.engines),
        "omp_wait_policies_measured": omp_values,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "parallel_backend": "OpenMP" if "OpenMP" in torch.__config__.parallel_info() else "native",
        "xnnpack": bool(getattr(torch._C, "_is_xnnpack_enabled", lambda: False)()),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS",
                                           "KMP_BLOCKTIME", "GOMP_SPINCOUNT") if k in os.environ},
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _state_dict_bytes(obj) -> int:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj.state_dict(), buf)
    return buf.getbuffer().nbytes


def eager_sizes(loaded, quant, roles: Iterable[str], engines: Iterable[str]) -> dict[tuple, int]:
    """Serialized state-dict bytes of the eager towers: (role, 'eager-fp32', None) and per engine int8."""
    import dataclasses

    from convert.towers import build_image_encoder, build_text_encoder, build_towers

    sizes: dict[tuple, int] = {}
    for role in roles:
        if role == "zero_shot_head":
            continue
        plain = (build_image_encoder(loaded.model, attention=False, patch=False) if role == "image_encoder"
                 else build_text_encoder(loaded.model, attention=False))
        sizes[(role, "eager-fp32", None)] = _state_dict_bytes(plain)  # open_clip's tensors, projection included
        for engine in engines:
            towers = build_towers(loaded.model, dataclasses.replace(quant, engine=engine), (role,))
            sizes[(role, "eager-int8", engine)] = _state_dict_bytes(towers.modules[role])
    return sizes


def reference_check(verified, loaded) -> dict[str, Any]:
    """Confirm the rebuilt fp32 model ``loaded`` is the model the artifacts came from.

    The lite artifacts are compared with it on the conversion's probe inputs; the cosine must match the
    manifest's fidelity figures (a different seed or checkpoint gives ~0).
    """
    import open_clip
    import torch

    from convert.errors import ArtifactError
    from convert.export import load_lite
    from convert.export_pte import load_pte
    from convert.metrics import compare
    from convert.probes import probe_images, probe_texts
    from convert.quantize import set_engine

    manifest = verified.manifest
    set_engine(manifest["engine"])
    labels = (manifest.get("zero_shot") or {}).get("labels")
    seed = (manifest.get("config") or {}).get("seed", 0)
    images = probe_images(loaded.preprocess, n=8, seed=seed)
    tokens = open_clip.get_tokenizer(loaded.name)(probe_texts(labels))
    out: dict[str, Any] = {}
    bad = []
    with torch.no_grad():
        for role, fn, x in (("image_encoder", loaded.model.encode_image, images),
                            ("text_encoder", loaded.model.encode_text, tokens)):
            fmt = "lite" if verified.path(role, "lite") is not None else "pte"
            path, entry = verified.path(role, fmt), verified.entry(role, fmt) or {}
            expected = (entry.get("fidelity") or (manifest.get("fidelity") or {}).get(role, {})).get("cosine_min")
            if path is None or expected is None:
                continue
            module = load_lite(path) if fmt == "lite" else load_pte(path, role, entry.get("work"))
            got = compare(fn(x), module(x))["cosine_min"]
            delta = abs(got - expected)
            out[role] = {"cosine_min": got, "manifest_cosine_min": expected, "abs_diff": round(delta, 7),
                         "ok": delta <= 1e-3}
            if delta > 1e-3:
                bad.append(f"{role}: cosine {got:.6f} vs manifest {expected:.6f}")
    if bad:
        raise ArtifactError("the fp32 model rebuilt from manifest.json is not the one these artifacts came from ("
                            + "; ".join(bad) + "); eager ratios would be meaningless (--skip-reference-check to force)")
    return out


def model_entry(verified, role: str) -> dict[str, Any] | None:
    """The manifest entry that declares ``role``'s inputs and outputs: its ``.ptl``, else its ``.pte``."""
    return verified.entry(role, "lite") or verified.entry(role, "pte")


def plan(settings: Settings, verified, sizes: dict[tuple, int], onnx: dict[str, tuple[Path, int]]) -> list[Case]:
    """Every configuration to measure, in the order one repetition runs them."""
    cases: list[Case] = []
    for threads in settings.threads:
        for omp in settings.omp:
            for role in settings.roles:
                lite = model_entry(verified, role)
                if lite is None:
                    continue
                for variant in settings.variants:
                    engines = settings.engines if variant in ENGINE_VARIANTS else (None,)
                    for engine in engines:
                        if variant in ("eager-fp32", "eager-int8"):
                            if role == "zero_shot_head" and variant == "eager-int8":
                                continue  # the head is fp32 in every variant
                            if role == "zero_shot_head":
                                size, kind = lite["bytes"], "lite-file (fp32 head)"
                            else:
                                size = sizes[(role, variant, None if variant == "eager-fp32" else engine)]
                                kind = "state_dict"
                            cases.append(Case(role, variant, engine, threads, omp, None, size, kind))
                        elif variant in ("jit", "lite", "pte"):
                            fmt = {"jit": "torchscript", "lite": "lite", "pte": "pte"}[variant]
                            entry, path = verified.entry(role, fmt), verified.path(role, fmt)
                            if entry is None or path is None:
                                continue
                            cases.append(Case(role, variant, engine, threads, omp, str(path), entry["bytes"], "file"))
                        elif variant == "onnx-int8" and role in onnx:
                            path, size = onnx[role]
                            cases.append(Case(role, variant, None, threads, omp, str(path), size, "file"))
    return cases


def _worker_env(omp: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if omp != "default":
        env["OMP_WAIT_POLICY"] = omp
    from convert.entry import openmp_set_by_kit

    if env.get("OMP_WAIT_POLICY") != "PASSIVE" and "GOMP_SPINCOUNT" in openmp_set_by_kit():
        env.pop("GOMP_SPINCOUNT")  # the kit's short spin goes with its PASSIVE, not with a policy measured against it
    env.pop("OMP_NUM_THREADS", None)  # torch.set_num_threads decides
    return env


def worker_spec(case: Case, settings: Settings, verified, config: dict[str, Any] | None) -> dict[str, Any]:
    """What the worker measures for ``case`` (JSON); ``config``: the reference config, for eager variants."""
    manifest = verified.manifest
    lite = model_entry(verified, case.role)
    inputs, outputs = lite.get("inputs") or [], lite.get("outputs") or []
    if not inputs or not outputs:
        from convert.errors import ArtifactError

        raise ArtifactError(f"manifest.json declares no inputs/outputs for {lite['file']}; reconvert it")
    tok = manifest["tokenizer"]
    return {"role": case.role, "variant": case.variant, "engine": case.engine, "threads": case.threads,
            "iters": settings.iters, "warmup": settings.warmup, "path": case.file, "inputs": inputs,
            "sot": tok.get("sot_token_id", 49406), "eot": tok.get("eot_token_id", 49407),
            "config": config,
            "head_shape": [outputs[0]["shape"][-1], inputs[0]["shape"][-1]],
            "logit_scale": (manifest.get("zero_shot") or {}).get("logit_scale"),
            "work": (verified.entry(case.role, "pte") if case.variant == "pte" else lite).get("work"),
            "truncate_text": bool((manifest.get("config") or {}).get("truncate_text"))}


def run_case(case: Case, settings: Settings, spec: dict[str, Any],
             extra_env: dict[str, str | None] | None = None) -> dict[str, Any]:
    """One sample of ``case`` in a fresh worker process; ``extra_env`` sets (or, with None, removes)
    environment variables for it (``benchmarks/profile_ops.py --compare --env``)."""
    from convert.errors import KitError

    code = "import sys; from deploy.bench.worker import worker_main; worker_main(sys.argv[1:])"
    cmd = [sys.executable, "-c", code, json.dumps(spec)]
    env = _worker_env(case.omp)
    for key, value in (extra_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=settings.timeout, cwd=str(REPO_ROOT))
    except subprocess.TimeoutExpired:
        raise KitError(f"{case.role} {case.variant}: measurement timed out after {settings.timeout:.0f} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise KitError(f"{case.role} {case.variant} ({case.engine}, {case.threads} threads) failed "
                       f"(exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])


def aggregate(case: Case, samples: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Any]:
    steady = [v for s in samples for v in s["steady_ms"]]
    firsts = [s["first_ms"] for s in samples]
    peaks = [s["peak_rss_bytes"] for s in samples]
    above = [s["peak_rss_bytes"] - s["rss_baseline_bytes"] for s in samples]
    omp = samples[0].get("omp_wait_policy")
    result = {
        "role": case.role, "variant": case.variant,
        "file": Path(case.file).name if case.file else None,
        "threads": case.threads, "engine": case.engine, "size_bytes": case.size_bytes,
        "load_ms": stats([s["load_ms"] for s in samples]),
        "first_ms": round(statistics.median(firsts), 4),
        "steady_ms": stats(steady),
        "peak_rss_bytes": int(statistics.median(peaks)),
        # additions to the v1 schema
        "omp_wait_policy": omp,
        "gomp_spincount": samples[0].get("gomp_spincount"),
        "size_kind": case.size_kind,
        "first_ms_samples": [round(v, 4) for v in firsts],
        "warmup_ms": [[round(v, 4) for v in s["warmup_ms"]] for s in samples],
        "import_ms": round(statistics.median(s["import_ms"] for s in samples), 2),
        "cpu_ms": round(statistics.median(s["cpu_ms"] for s in samples), 4) if "cpu_ms" in samples[0] else None,
        "rss_baseline_bytes": int(statistics.median(s["rss_baseline_bytes"] for s in samples)),
        "peak_rss_above_baseline_bytes": int(statistics.median(above)),
        "target": manifest.get("target"),
        "model": (manifest.get("model") or {}).get("name"),
    }
    if samples[0].get("session_options"):
        result["session_options"] = samples[0]["session_options"]
    for key in ("anon_after_first_call_bytes", "file_after_first_call_bytes"):
        values = [s[key] for s in samples if s.get(key) is not None]
        if values:
            result[key] = int(statistics.median(values))
    result["heap_phase"] = bool(samples[0].get("heap_phase"))
    used = sorted({n for s in samples for n in s.get("threads_used") or []})
    if used:
        result["threads_used"] = used
    return result


def run(settings: Settings, verified, progress=None, check_reference: bool = True, checkpoint: str | None = None,
        log=lambda message: None) -> dict[str, Any]:
    """Measure every planned configuration (``verified``: the artifact directory, checked by the one
    reader); the fp32 reference is rebuilt once and serves the reference check, sizes and the ONNX peer.
    ``progress(total, what)``: a :class:`deploy.runtime.Progress`-like context manager for the
    measurements (``advance``, ``describe``), or None."""
    import contextlib
    import shutil
    import tempfile
    from datetime import datetime, timezone

    from convert.load import load_model, reference_config

    from .peers import ONNX_EXPORT, export_onnx
    from .report import SCHEMA, SCHEMA_VERSION, add_ratios, diagnose
    from .worker import SAMPLE_TEXT, SAMPLE_TOKENS

    manifest = verified.manifest
    env = environment(settings)
    needs_model = any(v.startswith("eager") or v.startswith("onnx") for v in settings.variants)
    config = reference_config(manifest, checkpoint) if needs_model else None
    loaded = None
    if needs_model:
        log("rebuilding the fp32 reference model")
        loaded = load_model(config)
    ref = None
    if check_reference and loaded is not None:
        log("checking the rebuilt fp32 model against the artifacts")
        ref = reference_check(verified, loaded)
    sizes = {}
    if any(v.startswith("eager") for v in settings.variants):
        log("sizing the eager towers")
        sizes = eager_sizes(loaded, config.quant, settings.roles, settings.engines)
    onnx: dict[str, tuple[Path, int]] = {}
    tmp = None
    try:
        if "onnx-int8" in settings.variants:
            tmp = Path(tempfile.mkdtemp(prefix="clipkit-onnx-"))
            log(f"exporting ONNX towers to {tmp}")
            onnx = export_onnx(manifest, loaded, config.quant, settings.roles, tmp)
        del loaded  # the workers rebuild their own; the parent should not hold ~600 MB while they run
        cases = plan(settings, verified, sizes, onnx)
        worker_config = dict(config.to_dict(), out=None, install_to=None, recipe=None) if config else None
        samples: dict[tuple, list[dict[str, Any]]] = {c.key: [] for c in cases}
        total = len(cases) * settings.repeats
        bar = progress(total, f"benchmarking: {total} fresh processes") if progress else contextlib.nullcontext()
        with bar:
            for rep in range(settings.repeats):
                for case in cases:  # round-robin: every variant once per repetition
                    if progress:
                        bar.describe(f"rep {rep + 1}/{settings.repeats} {case.role} {case.variant} "
                                     f"{case.engine or ''} {case.threads}t {case.omp}".replace("  ", " "))
                    samples[case.key].append(run_case(case, settings, worker_spec(case, settings, verified, worker_config)))
                    if progress:
                        bar.advance()
        results = [aggregate(c, samples[c.key], manifest) for c in cases]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    add_ratios(results)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": env,
        "results": results,
        # additions to the v1 schema
        "model": manifest.get("model"), "target": manifest.get("target"), "artifact_engine": manifest.get("engine"),
        "artifacts": str(verified.directory),
        "settings": {"repeats": settings.repeats, "iters": settings.iters, "warmup": settings.warmup,
                     "interleaved": True, "fresh_process_per_sample": True,
                     "rss_baseline": "RSS after importing the runtime (torch; + open_clip for eager, + onnxruntime for onnx)",
                     "eager_load": "rebuild from manifest (create model, load weights, build tower, quantize)",
                     "zero_shot_head_eager": "fp32 head with random weights of the artifact's shape (timing only)",
                     "onnx": ONNX_EXPORT if onnx else None,
                     # what one call computes (the inputs the worker builds from these declarations)
                     "inputs": {role: [{"shape": list(i["shape"]), "dtype": i["dtype"]}
                                       for i in verified.entry(role, "lite").get("inputs") or []]
                                for role in settings.roles if verified.entry(role, "lite")},
                     "prompt_tokens": len(SAMPLE_TOKENS) + 2, "prompt_text": SAMPLE_TEXT,
                     "truncate_text": bool((manifest.get("config") or {}).get("truncate_text"))},
        "reference_check": ref,
        "command": " ".join(["python -m deploy bench"] + sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
    }
    report["notes"] = settings.notes + diagnose(report)
    return report
