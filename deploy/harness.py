"""``python -m deploy bench DIR``: eager vs JIT vs lite (vs ONNX Runtime) benchmark of converted artifacts.

What is measured, per tower (``role``), variant, quantized engine, thread count and OpenMP wait policy:

- ``size_bytes``: the artifact on disk (``.ptl`` / ``.pt`` / ``.onnx``); for eager variants the serialized
  ``state_dict`` of the tower (``size_kind`` says which).
- ``load_ms``: time to load in a *fresh* process, one sample per repetition (``--load-repeats``); for eager
  variants, the time to rebuild the model from the manifest (create + load weights + quantize).
- ``first_ms``: the first call after load (a ``.pt`` pays the profiling executor here; lite does not);
  ``warmup_ms`` keeps the following warm-up calls.
- ``steady_ms``: median / p90 of the timed calls after warm-up, pooled over the repetitions.
- ``peak_rss_bytes``: the process's peak RSS (VmHWM); ``peak_rss_above_baseline_bytes`` subtracts the RSS
  measured right after importing the runtime (``import torch``; plus open_clip for eager variants and
  onnxruntime for ONNX), i.e. what loading and running the model costs.

Every measurement runs in its own subprocess (so the load is cold, the OpenMP environment is set before
torch starts, and memory is not shared between variants), and the repetitions are interleaved: repetition
``r`` runs every configuration once, round-robin, before repetition ``r + 1`` starts, so machine load
drifts hit all variants alike. Ratios are to the fp32 eager model at the same thread count and OpenMP
policy, from the same run.

This module imports only the standard library at the top: the worker (``worker_main``) runs in the
fresh process and must not pay for rich/numpy/open_clip before its baseline.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

SCHEMA = "clip-mobile-kit-bench"
SCHEMA_VERSION = 1
VARIANTS = ("eager-fp32", "eager-int8", "jit", "lite", "onnx-int8")
DEFAULT_VARIANTS = ("eager-fp32", "eager-int8", "jit", "lite")
ROLES = ("image_encoder", "text_encoder", "zero_shot_head")
ENGINE_VARIANTS = ("eager-int8", "jit", "lite")  # variants whose speed depends on the quantized engine
OMP_CHOICES = ("default", "PASSIVE", "ACTIVE")
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimd", "asimddp", "i8mm")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Token ids of "a photo of a dog." in open_clip's CLIP BPE (between sot and eot); any ids time the same.
SAMPLE_TOKENS = (320, 1125, 539, 320, 1929, 269)


# --------------------------------------------------------------------------------------------- worker
def _rss_now() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import psutil

        return int(psutil.Process().memory_info().rss)


def _rss_peak() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _ms(ns: int) -> float:
    return ns / 1e6


def _make_inputs(spec: dict[str, Any], torch):
    gen = torch.Generator().manual_seed(0)
    inputs = []
    for item in spec["inputs"]:
        shape = list(item["shape"])
        if item["dtype"] == "int64":
            tokens = torch.zeros(shape, dtype=torch.int64)
            ids = [spec["sot"], *SAMPLE_TOKENS, spec["eot"]][: shape[-1]]
            tokens[..., : len(ids)] = torch.tensor(ids)
            inputs.append(tokens)
        else:
            inputs.append(torch.randn(shape, generator=gen))
    return inputs


def _build_eager(spec: dict[str, Any], torch):
    """The eager model rebuilt from the manifest; returns a callable taking the input tensors."""
    from convert.config import build_config
    from convert.load import load_model
    from convert.quantize import quantize_tower
    from convert.towers import ZeroShotHead, build_image_encoder, build_text_encoder

    role, variant = spec["role"], spec["variant"]
    if role == "zero_shot_head":
        # The head is fp32 in every variant; a [C, D] matmul times the same whatever its values.
        classes, dim = spec["head_shape"]
        weight = torch.nn.functional.normalize(torch.randn(classes, dim), dim=-1)
        head = ZeroShotHead(weight, spec.get("logit_scale") or 100.0).eval()
        return head
    config = build_config(**spec["config"])
    model = load_model(config).model
    if variant == "eager-fp32":
        return model.encode_image if role == "image_encoder" else model.encode_text
    quant = config.quant
    import dataclasses

    quant = dataclasses.replace(quant, engine=spec["engine"])
    if role == "image_encoder":
        tower = build_image_encoder(model, attention=quant.image and quant.attention == "int8",
                                    patch=quant.image and quant.patch == "int8")
        wanted = quant.image
    else:
        tower = build_text_encoder(model, attention=quant.text and quant.attention == "int8",
                                   truncate=config.truncate_text)
        wanted = quant.text
    if wanted:
        tower, _ = quantize_tower(tower, quant, role)
    del model
    return tower


def worker_main(argv: Sequence[str] | None = None) -> None:
    """Fresh-process measurement of one configuration; prints one JSON line on stdout."""
    spec = json.loads((argv or sys.argv[1:])[0])
    t_import = time.perf_counter_ns()
    import torch

    variant = spec["variant"]
    if variant.startswith("eager"):
        import open_clip  # noqa: F401 - library code, counted in the baseline like torch itself

        import convert.load  # noqa: F401
        import convert.quantize  # noqa: F401
    if variant.startswith("onnx"):
        import numpy as np
        import onnxruntime as ort
    import_ms = _ms(time.perf_counter_ns() - t_import)
    torch.set_num_threads(spec["threads"])
    if spec.get("engine"):
        torch.backends.quantized.engine = spec["engine"]
    inputs = _make_inputs(spec, torch)
    baseline = _rss_now()

    t0 = time.perf_counter_ns()
    if variant in ("eager-fp32", "eager-int8"):
        module = _build_eager(spec, torch)
        fn = module
    elif variant == "jit":
        module = torch.jit.load(spec["path"], map_location="cpu")
        fn = module
    elif variant == "lite":
        from torch.jit.mobile import _load_for_lite_interpreter

        module = _load_for_lite_interpreter(spec["path"])
        fn = module
    elif variant.startswith("onnx"):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = spec["threads"]
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(spec["path"], opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        arrays = {n: t.numpy() for n, t in zip(names, inputs)}

        def fn(*_):
            return session.run(None, arrays)
    else:
        raise SystemExit(f"unknown variant {variant}")
    load_ms = _ms(time.perf_counter_ns() - t0)

    with torch.no_grad():
        t0 = time.perf_counter_ns()
        fn(*inputs)
        first_ms = _ms(time.perf_counter_ns() - t0)
        warmup = []
        for _ in range(spec["warmup"]):
            t0 = time.perf_counter_ns()
            fn(*inputs)
            warmup.append(_ms(time.perf_counter_ns() - t0))
        steady = []
        for _ in range(spec["iters"]):
            t0 = time.perf_counter_ns()
            fn(*inputs)
            steady.append(_ms(time.perf_counter_ns() - t0))
    peak = _rss_peak()
    print(json.dumps({"import_ms": import_ms, "load_ms": load_ms, "first_ms": first_ms, "warmup_ms": warmup,
                      "steady_ms": steady, "rss_baseline_bytes": baseline, "peak_rss_bytes": peak,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "num_threads": torch.get_num_threads(),
                      "engine": torch.backends.quantized.engine}))


# ------------------------------------------------------------------------------------ planning/running
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
    onnx_dir: Path | None = None
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
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            present = set(value.split())
            flags = [f for f in INTERESTING_FLAGS if f in present]
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


def read_manifest(directory: Path) -> dict[str, Any]:
    from convert.errors import ArtifactError

    path = Path(directory) / "manifest.json"
    if not Path(directory).is_dir():
        raise ArtifactError(f"{directory} is not a directory of converted artifacts")
    if not path.is_file():
        raise ArtifactError(f"{directory} has no manifest.json (convert with python -m convert --out {directory})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot be read as JSON ({exc})") from None
    if manifest.get("format") != "clip-mobile-kit-manifest":
        raise ArtifactError(f"{path} is not a clip-mobile-kit manifest")
    return manifest


def _files_by_role(manifest: dict[str, Any], directory: Path) -> dict[str, dict[str, dict[str, Any]]]:
    from convert.errors import ArtifactError

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in manifest.get("files", []):
        if entry.get("format") in ("lite", "torchscript"):
            path = directory / entry["file"]
            if not path.is_file():
                raise ArtifactError(f"{path} is listed in manifest.json but missing")
            if path.stat().st_size != entry.get("bytes"):
                raise ArtifactError(f"{path} has {path.stat().st_size} bytes, manifest.json says {entry.get('bytes')}")
            out.setdefault(entry["role"], {})[entry["format"]] = entry
    return out


def eager_sizes(manifest: dict[str, Any], roles: Iterable[str], engines: Iterable[str]) -> dict[tuple, int]:
    """Serialized state-dict bytes of the eager towers: (role, 'eager-fp32', None) and per engine int8."""
    import dataclasses

    from convert.config import build_config
    from convert.load import load_model
    from convert.quantize import quantize_tower
    from convert.towers import build_image_encoder, build_text_encoder

    config = build_config(**manifest["config"])
    model = load_model(config).model
    sizes: dict[tuple, int] = {}
    for role in roles:
        if role == "zero_shot_head":
            continue
        plain = (build_image_encoder(model, attention=False, patch=False) if role == "image_encoder"
                 else build_text_encoder(model, attention=False))
        fp32 = _state_dict_bytes(plain)  # the same tensors as open_clip's tower, projection included
        sizes[(role, "eager-fp32", None)] = fp32
        for engine in engines:
            quant = dataclasses.replace(config.quant, engine=engine)
            if role == "image_encoder":
                tower = build_image_encoder(model, attention=quant.attention == "int8", patch=quant.patch == "int8")
                wanted = quant.image
            else:
                tower = build_text_encoder(model, attention=quant.attention == "int8")
                wanted = quant.text
            if wanted:
                tower, _ = quantize_tower(tower, quant, role)
            sizes[(role, "eager-int8", engine)] = _state_dict_bytes(tower)
    return sizes


def reference_check(manifest: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Rebuild the fp32 model from the manifest and confirm it is the model the artifacts came from.

    The lite artifacts are compared with the rebuilt fp32 model on the conversion's probe inputs; the
    cosine must match the manifest's fidelity figures (a different seed or checkpoint gives ~0).
    """
    import open_clip
    import torch

    from convert.config import build_config
    from convert.errors import ArtifactError
    from convert.load import load_model
    from convert.pipeline import compare
    from convert.probes import probe_images, probe_texts
    from convert.quantize import set_engine
    from torch.jit.mobile import _load_for_lite_interpreter

    config = build_config(**manifest["config"])
    loaded = load_model(config)
    set_engine(manifest["engine"])
    labels = (manifest.get("zero_shot") or {}).get("labels")
    images = probe_images(loaded.preprocess, n=8, seed=config.seed)
    tokens = open_clip.get_tokenizer(loaded.name)(probe_texts(labels))
    out: dict[str, Any] = {}
    bad = []
    with torch.no_grad():
        for role, fn, x in (("image_encoder", loaded.model.encode_image, images),
                            ("text_encoder", loaded.model.encode_text, tokens)):
            path = directory / f"{role}.ptl"
            expected = (manifest.get("fidelity") or {}).get(role, {}).get("cosine_min")
            if not path.is_file() or expected is None:
                continue
            got = compare(fn(x), _load_for_lite_interpreter(str(path))(x))["cosine_min"]
            delta = abs(got - expected)
            out[role] = {"cosine_min": got, "manifest_cosine_min": expected, "abs_diff": round(delta, 7),
                         "ok": delta <= 1e-3}
            if delta > 1e-3:
                bad.append(f"{role}: cosine {got:.6f} vs manifest {expected:.6f}")
    if bad:
        raise ArtifactError("the fp32 model rebuilt from manifest.json is not the one these artifacts came from ("
                            + "; ".join(bad) + "); eager ratios would be meaningless (--skip-reference-check to force)")
    return out


def export_onnx(manifest: dict[str, Any], roles: Iterable[str], out_dir: Path) -> dict[str, tuple[Path, int]]:
    """fp32 towers -> ONNX (TorchScript-based exporter) -> ``quantize_dynamic`` QInt8. Returns role -> (path, bytes)."""
    from convert.errors import KitError

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise KitError(f"--onnx needs onnx and onnxruntime ({exc.name} is not installed); "
                       "pip install 'clip-mobile-kit[onnx]' (onnx onnxruntime onnxscript)") from None
    import torch

    from convert.config import build_config
    from convert.load import load_model
    from convert.towers import ZeroShotHead, build_image_encoder, build_text_encoder

    config = build_config(**manifest["config"])
    loaded = load_model(config)
    quant = config.quant
    shapes = {e["role"]: e["inputs"] for e in manifest["files"] if e.get("format") == "lite"}
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for role in roles:
        if role == "image_encoder":
            module = build_image_encoder(loaded.model, attention=quant.attention == "int8", patch=quant.patch == "int8")
            x = torch.randn(shapes[role][0]["shape"])
        elif role == "text_encoder":
            # Full length: the ONNX export is traced, so a truncating tower would bake one length in.
            module = build_text_encoder(loaded.model, attention=quant.attention == "int8", truncate=False)
            x = torch.zeros(shapes[role][0]["shape"], dtype=torch.int64)
            x[0, :3] = torch.tensor([49406, 320, 49407])
        else:
            d = shapes[role][0]["shape"][-1]
            classes = len((manifest.get("zero_shot") or {}).get("labels") or [1])
            module = ZeroShotHead(torch.nn.functional.normalize(torch.randn(classes, d), dim=-1), 100.0)
            x = torch.randn(shapes[role][0]["shape"])
        fp32 = out_dir / f"{role}.fp32.onnx"
        int8 = out_dir / f"{role}.int8.onnx"
        with torch.no_grad():
            torch.onnx.export(module.eval(), (x,), str(fp32), dynamo=False, opset_version=17,
                              input_names=[shapes[role][0]["name"]], output_names=["output"])
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        result[role] = (int8, int8.stat().st_size)
    return result


def plan(settings: Settings, manifest: dict[str, Any], sizes: dict[tuple, int],
         onnx: dict[str, tuple[Path, int]]) -> list[Case]:
    files = _files_by_role(manifest, settings.directory)
    cases: list[Case] = []
    for threads in settings.threads:
        for omp in settings.omp:
            for role in settings.roles:
                if role not in files:
                    continue
                for variant in settings.variants:
                    engines = settings.engines if variant in ENGINE_VARIANTS else (None,)
                    for engine in engines:
                        if variant in ("eager-fp32", "eager-int8"):
                            if role == "zero_shot_head" and variant == "eager-int8":
                                continue  # the head is fp32 in every variant
                            if role == "zero_shot_head":
                                size = files[role]["lite"]["bytes"]
                                kind = "lite-file (fp32 head)"
                            else:
                                size = sizes[(role, variant, None if variant == "eager-fp32" else engine)]
                                kind = "state_dict"
                            cases.append(Case(role, variant, engine, threads, omp, None, size, kind))
                        elif variant in ("jit", "lite"):
                            entry = files[role].get("torchscript" if variant == "jit" else "lite")
                            if entry is None:
                                continue
                            cases.append(Case(role, variant, engine, threads, omp, entry["file"], entry["bytes"], "file"))
                        elif variant == "onnx-int8" and role in onnx:
                            path, size = onnx[role]
                            cases.append(Case(role, variant, None, threads, omp, str(path), size, "file"))
    return cases


def _worker_env(omp: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if omp != "default":
        env["OMP_WAIT_POLICY"] = omp
    env.pop("OMP_NUM_THREADS", None)  # torch.set_num_threads decides
    return env


def _spec(case: Case, settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    inputs = next(e["inputs"] for e in manifest["files"] if e["role"] == case.role and e.get("format") == "lite")
    outputs = next(e["outputs"] for e in manifest["files"] if e["role"] == case.role and e.get("format") == "lite")
    tok = manifest.get("tokenizer") or {}
    path = None
    if case.file:
        path = case.file if os.path.isabs(case.file) else str(settings.directory / case.file)
    return {"role": case.role, "variant": case.variant, "engine": case.engine, "threads": case.threads,
            "iters": settings.iters, "warmup": settings.warmup, "path": path, "inputs": inputs,
            "sot": tok.get("sot_token_id", 49406), "eot": tok.get("eot_token_id", 49407),
            "config": manifest["config"],
            "head_shape": [outputs[0]["shape"][-1], inputs[0]["shape"][-1]],
            "logit_scale": (manifest.get("zero_shot") or {}).get("logit_scale")}


def run_case(case: Case, settings: Settings, manifest: dict[str, Any]) -> dict[str, Any]:
    from convert.errors import KitError

    code = "import sys; from deploy.harness import worker_main; worker_main(sys.argv[1:])"
    cmd = [sys.executable, "-c", code, json.dumps(_spec(case, settings, manifest))]
    try:
        proc = subprocess.run(cmd, env=_worker_env(case.omp), capture_output=True, text=True,
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
    return {
        "role": case.role, "variant": case.variant,
        "file": Path(case.file).name if case.file else None,
        "threads": case.threads, "engine": case.engine, "size_bytes": case.size_bytes,
        "load_ms": stats([s["load_ms"] for s in samples]),
        "first_ms": round(statistics.median(firsts), 4),
        "steady_ms": stats(steady),
        "peak_rss_bytes": int(statistics.median(peaks)),
        # additions to the v1 schema
        "omp_wait_policy": omp,
        "size_kind": case.size_kind,
        "first_ms_samples": [round(v, 4) for v in firsts],
        "warmup_ms": [[round(v, 4) for v in s["warmup_ms"]] for s in samples],
        "import_ms": round(statistics.median(s["import_ms"] for s in samples), 2),
        "rss_baseline_bytes": int(statistics.median(s["rss_baseline_bytes"] for s in samples)),
        "peak_rss_above_baseline_bytes": int(statistics.median(above)),
        "target": manifest.get("target"),
        "model": (manifest.get("model") or {}).get("name"),
    }


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Latency / size / load ratios to the fp32 eager row of the same role, threads and OMP policy."""
    base = {(r["role"], r["threads"], r.get("omp_wait_policy")): r for r in results if r["variant"] == "eager-fp32"}
    for r in results:
        ref = base.get((r["role"], r["threads"], r.get("omp_wait_policy")))
        if ref is not None and ref["steady_ms"]["median"] > 0:
            r["latency_ratio_to_eager_fp32"] = round(r["steady_ms"]["median"] / ref["steady_ms"]["median"], 4)
            r["size_ratio_to_eager_fp32"] = round(r["size_bytes"] / ref["size_bytes"], 4) if ref["size_bytes"] else None
        above = r.get("peak_rss_above_baseline_bytes")
        if above is not None and r.get("size_bytes"):
            r["rss_above_baseline_to_size"] = round(above / r["size_bytes"], 3)


def diagnose(report: dict[str, Any]) -> list[str]:
    """Facts worth a line under the table (measured, not assumed)."""
    notes = []
    results = report["results"]
    by = {}
    for r in results:
        by.setdefault((r["role"], r["variant"], r["engine"], r["threads"]), {})[r.get("omp_wait_policy")] = r
    for (role, variant, engine, threads), per_omp in sorted(by.items(), key=lambda kv: str(kv[0])):
        if len(per_omp) > 1 and "PASSIVE" in per_omp:
            other = [k for k in per_omp if k != "PASSIVE"]
            for k in other:
                a, p = per_omp[k]["steady_ms"]["median"], per_omp["PASSIVE"]["steady_ms"]["median"]
                if p > 0 and a / p > 1.5:
                    notes.append(f"{role} {variant} ({engine or 'fp32'}, {threads} threads): OMP_WAIT_POLICY={k or 'unset'} "
                                 f"{a:.1f} ms vs PASSIVE {p:.1f} ms ({a / p:.1f}x)")
    for r in results:
        if r["variant"] == "jit" and r["steady_ms"]["median"] > 0 and r["first_ms"] > 3 * r["steady_ms"]["median"]:
            warm = [w[0] for w in r.get("warmup_ms") or [] if w]
            second = f", second call {statistics.median(warm):.1f} ms" if warm else ""
            notes.append(f"{r['role']} jit ({r['engine']}, {r['threads']} threads): first call {r['first_ms']:.1f} ms"
                         f"{second} vs steady {r['steady_ms']['median']:.1f} ms (profiling executor)")
    env = report["environment"]
    if report.get("target") == "android" and env.get("host") in ("x86_64", "AMD64") and not any(
            r.get("omp_wait_policy") == "PASSIVE" for r in results):
        notes.append("android (XNNPACK-optimized) artifacts on x86 with OpenMP threads spinning: measure with "
                     "--omp-wait-policy PASSIVE default to see the difference")
    la0, la1 = env.get("load_average_start"), env.get("load_average_end")
    if la1 and env.get("cpu_count") and max(la0[0], la1[0]) > 0.5 * env["cpu_count"] + 0.5:
        notes.append(f"machine was busy (1-min load average {la0[0]:.2f} -> {la1[0]:.2f} on {env['cpu_count']} CPUs): "
                     "absolute times are inflated; the interleaved ratios are the robust figures")
    return notes


def run(settings: Settings, manifest: dict[str, Any], progress=None, check_reference: bool = True,
        log=lambda message: None) -> dict[str, Any]:
    import shutil
    import tempfile

    directory = settings.directory
    env = environment(settings)
    ref = None
    if check_reference and any(v.startswith("eager") for v in settings.variants):
        log("checking the rebuilt fp32 model against the artifacts")
        ref = reference_check(manifest, directory)
    log("sizing the eager towers")
    sizes = eager_sizes(manifest, settings.roles, settings.engines) if any(
        v.startswith("eager") for v in settings.variants) else {}
    onnx: dict[str, tuple[Path, int]] = {}
    tmp = None
    try:
        if "onnx-int8" in settings.variants:
            tmp = Path(tempfile.mkdtemp(prefix="clipkit-onnx-")) if settings.onnx_dir is None else settings.onnx_dir
            log(f"exporting ONNX towers to {tmp}")
            onnx = export_onnx(manifest, [r for r in settings.roles], tmp)
        cases = plan(settings, manifest, sizes, onnx)
        samples: dict[tuple, list[dict[str, Any]]] = {c.key: [] for c in cases}
        task = progress.add_task("benchmarking", total=len(cases) * settings.repeats) if progress else None
        for rep in range(settings.repeats):
            for case in cases:  # round-robin: every variant once per repetition
                if progress:
                    progress.update(task, description=f"rep {rep + 1}/{settings.repeats} {case.role} {case.variant} "
                                                      f"{case.engine or ''} {case.threads}t {case.omp}")
                samples[case.key].append(run_case(case, settings, manifest))
                if progress:
                    progress.advance(task)
        results = [aggregate(c, samples[c.key], manifest) for c in cases]
    finally:
        if tmp is not None and settings.onnx_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    add_ratios(results)
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    from datetime import datetime, timezone

    report = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": env,
        "results": results,
        # additions to the v1 schema
        "model": manifest.get("model"), "target": manifest.get("target"), "artifact_engine": manifest.get("engine"),
        "artifacts": str(directory),
        "settings": {"repeats": settings.repeats, "iters": settings.iters, "warmup": settings.warmup,
                     "interleaved": True, "fresh_process_per_sample": True,
                     "rss_baseline": "RSS after importing the runtime (torch; + open_clip for eager, + onnxruntime for onnx)",
                     "eager_load": "rebuild from manifest (create model, load weights, build tower, quantize)",
                     "zero_shot_head_eager": "fp32 head with random weights of the artifact's shape (timing only)",
                     "onnx": "torch.onnx.export(dynamo=False, opset 17) of the fp32 towers + "
                             "onnxruntime.quantization.quantize_dynamic(QInt8)" if onnx else None},
        "reference_check": ref,
        "command": " ".join(["python -m deploy bench"] + sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
    }
    report["notes"] = settings.notes + diagnose(report)
    return report


# ------------------------------------------------------------------------------------------- reporting
def _mib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**20:.2f}"


def _f(v: float | None, digits: int = 1) -> str:
    return "" if v is None else f"{v:.{digits}f}"


COLUMNS = ("role", "variant", "engine", "thr", "OMP", "size MiB", "x size", "load ms", "first ms",
           "median ms", "p90 ms", "x fp32", "RSS+ MiB", "RSS+/size")


def rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in report["results"]:
        out.append([
            r["role"], r["variant"], r.get("engine") or "-", str(r.get("threads", "")),
            str(r.get("omp_wait_policy") or "unset"), _mib(r.get("size_bytes")),
            _f(r.get("size_ratio_to_eager_fp32"), 3), _f((r.get("load_ms") or {}).get("median")),
            _f(r.get("first_ms")), _f((r.get("steady_ms") or {}).get("median"), 2),
            _f((r.get("steady_ms") or {}).get("p90"), 2), _f(r.get("latency_ratio_to_eager_fp32"), 3),
            _mib(r.get("peak_rss_above_baseline_bytes")), _f(r.get("rss_above_baseline_to_size"), 2),
        ])
    return out


def env_line(env: dict[str, Any]) -> str:
    return (f"{env.get('host')} {env.get('device')}; torch {env.get('torch')}; threads {env.get('threads_measured', env.get('threads'))}; "
            f"engine {env.get('engines_measured', env.get('engine'))}; OMP_WAIT_POLICY {env.get('omp_wait_policies_measured', env.get('omp_wait_policy'))}; "
            f"CPU flags {' '.join(env.get('cpu_flags') or []) or '-'}"
            + (f"; load avg {env['load_average_start'][0]:.2f} -> {env['load_average_end'][0]:.2f}"
               if env.get("load_average_start") and env.get("load_average_end") else ""))


def render_table(report: dict[str, Any], console, title: str | None = None) -> None:
    from rich.table import Table

    model = (report.get("model") or {}).get("name") if isinstance(report.get("model"), dict) else None
    table = Table(title=title or f"{model or 'artifacts'} ({report.get('target') or report['environment'].get('host')})",
                  caption=env_line(report["environment"]))
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("role", "variant", "engine", "OMP") else "right")
    for row in rows(report):
        table.add_row(*row)
    console.print(table)
    for note in report.get("notes") or []:
        console.print(f"- {note}")


def to_markdown(reports: list[dict[str, Any]]) -> str:
    parts = []
    for report in reports:
        model = report.get("model") or {}
        parts.append(f"## {model.get('name', 'benchmark')} ({report.get('target') or report['environment'].get('host')}), "
                     f"{report.get('created_utc', '')}\n")
        parts.append(f"Environment: {env_line(report['environment'])}\n")
        if report.get("command"):
            parts.append(f"Command: `{report['command']}`\n")
        s = report.get("settings")
        if s:
            parts.append(f"Settings: {s['repeats']} fresh processes per configuration (interleaved), {s['warmup']} warm-up "
                         f"+ {s['iters']} timed calls each. Ratios are to fp32 eager, same threads and OMP policy.\n")
        parts.append("| " + " | ".join(COLUMNS) + " |")
        parts.append("|" + "|".join("---" if c in ("role", "variant", "engine", "OMP") else "---:" for c in COLUMNS) + "|")
        for row in rows(report):
            parts.append("| " + " | ".join(row) + " |")
        notes = report.get("notes") or []
        if notes:
            parts.append("")
            parts.extend(f"- {n}" for n in notes)
        parts.append("")
    return "\n".join(parts) + "\n"


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    from convert.errors import KitError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise KitError("--plot needs matplotlib (pip install 'clip-mobile-kit[plots]')") from None
    results = [r for rep in reports for r in rep["results"]]
    roles = [r for r in ROLES if any(x["role"] == r for x in results)]
    fig, axes = plt.subplots(len(roles), 2, figsize=(13, 3.2 * len(roles)), squeeze=False)
    for i, role in enumerate(roles):
        rs = [r for r in results if r["role"] == role]
        sizes = {}
        for r in rs:
            sizes.setdefault(f"{r['variant']}" + (f"\n{r['engine']}" if r.get("engine") else ""), r["size_bytes"])
        ax = axes[i][0]
        ax.barh(list(sizes), [v / 2**20 for v in sizes.values()], color="tab:blue")
        ax.set_title(f"{role}: size (MiB)")
        ax.invert_yaxis()
        ax = axes[i][1]
        labels = [f"{r['variant']} {r.get('engine') or ''} {r['threads']}t {r.get('omp_wait_policy') or ''}".strip() for r in rs]
        med = [r["steady_ms"]["median"] for r in rs]
        p90 = [r["steady_ms"]["p90"] - r["steady_ms"]["median"] for r in rs]
        ax.barh(labels, med, xerr=[[0] * len(p90), p90], color="tab:orange")
        ax.set_title(f"{role}: steady latency (ms, median, bar to p90)")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(env_line(reports[0]["environment"])[:160], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_reports(paths: Sequence[str]) -> list[dict[str, Any]]:
    from convert.errors import ArtifactError

    reports = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{p}: cannot be read as JSON ({exc})") from None
        if data.get("schema") != SCHEMA:
            raise ArtifactError(f"{p}: not a {SCHEMA} report (schema={data.get('schema')!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ArtifactError(f"{p}: schema_version {data.get('schema_version')} is not {SCHEMA_VERSION}")
        for r in data.get("results", []):
            for key in ("role", "variant", "size_bytes", "load_ms", "first_ms", "steady_ms"):
                if key not in r:
                    raise ArtifactError(f"{p}: a result lacks {key!r}")
        add_ratios(data["results"])
        reports.append(data)
    return reports


def validate_report(report: dict[str, Any]) -> None:
    """Raise ValueError unless ``report`` follows the v1 schema of docs/formats.md (extra fields allowed)."""
    for key in ("schema", "schema_version", "created_utc", "environment", "results"):
        if key not in report:
            raise ValueError(f"missing {key}")
    if report["schema"] != SCHEMA or report["schema_version"] != SCHEMA_VERSION:
        raise ValueError("wrong schema")
    for key in ("host", "device", "torch", "threads", "engine", "omp_wait_policy", "cpu_flags"):
        if key not in report["environment"]:
            raise ValueError(f"environment lacks {key}")
    for r in report["results"]:
        for key in ("role", "variant", "file", "threads", "engine", "size_bytes", "load_ms", "first_ms",
                    "steady_ms", "peak_rss_bytes"):
            if key not in r:
                raise ValueError(f"result lacks {key}")
        if r["variant"] not in VARIANTS:
            raise ValueError(f"unknown variant {r['variant']}")
        for key in ("load_ms", "steady_ms"):
            if set(r[key]) < {"median", "p90", "samples"}:
                raise ValueError(f"{key} lacks median/p90/samples")


# ------------------------------------------------------------------------------------------------- CLI
def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="eager vs JIT vs lite benchmark of converted artifacts (fresh process per sample)",
        description="Benchmark the artifacts in DIR against the fp32 and int8 eager models rebuilt from its "
                    "manifest: size, fresh-process load, first call, steady latency, peak RSS; per thread count, "
                    "quantized engine and OpenMP wait policy, interleaved, as ratios to fp32 eager.")
    p.add_argument("directory", nargs="?", metavar="DIR", help="artifact directory (with manifest.json)")
    p.add_argument("--from-json", nargs="+", metavar="FILE", help="render existing bench JSON files (desktop or app) instead of measuring")
    p.add_argument("--roles", nargs="+", choices=ROLES, help="towers to measure (default: all in the manifest)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, help=f"default: {' '.join(DEFAULT_VARIANTS)} (+ onnx-int8 with --onnx)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts (default 1 2)")
    p.add_argument("--engines", nargs="+", help="quantized engines (default: qnnpack fbgemm, those this torch has)")
    p.add_argument("--omp-wait-policy", nargs="+", choices=OMP_CHOICES, default=["default"],
                   help="OMP_WAIT_POLICY for the measured processes; several values are measured side by side "
                        "(default: inherit the environment)")
    p.add_argument("--load-repeats", "--repeats", dest="repeats", type=int, default=3,
                   help="fresh processes per configuration (load-time samples; default 3)")
    p.add_argument("--iters", type=int, default=10, help="timed calls per process after warm-up (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls after the first call (default 3)")
    p.add_argument("--onnx", action="store_true", help="add ONNX Runtime int8 (quantize_dynamic) as a peer column")
    p.add_argument("--skip-reference-check", action="store_true",
                   help="do not verify that the rebuilt fp32 model matches the artifacts")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement process")
    p.add_argument("--json", metavar="FILE", help="write the clip-mobile-kit-bench report")
    p.add_argument("--markdown", metavar="FILE", help="write a markdown table")
    p.add_argument("--plot", metavar="FILE.png", help="size and latency bar charts (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no table or progress bar")
    p.set_defaults(func=main)


def settings_from_args(args) -> Settings:
    import torch

    from convert.errors import ConfigError

    supported = torch.backends.quantized.supported_engines
    engines = tuple(args.engines) if args.engines else tuple(e for e in ("qnnpack", "fbgemm") if e in supported)
    unknown = [e for e in engines if e not in supported]
    if unknown:
        raise ConfigError(f"quantized engine(s) {', '.join(unknown)} not in this torch ({', '.join(supported)})")
    if not engines:
        raise ConfigError("no quantized engine to measure")
    variants = tuple(args.variants) if args.variants else DEFAULT_VARIANTS + (("onnx-int8",) if args.onnx else ())
    if args.onnx and "onnx-int8" not in variants:
        variants += ("onnx-int8",)
    for name in ("repeats", "iters"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('repeats', 'load-repeats')} must be at least 1")
    if args.warmup < 0 or any(t < 1 for t in args.threads):
        raise ConfigError("--warmup must be >= 0 and --threads >= 1")
    return Settings(directory=Path(args.directory), roles=tuple(args.roles or ROLES), variants=variants,
                    threads=tuple(dict.fromkeys(args.threads)), engines=engines,
                    omp=tuple(dict.fromkeys(args.omp_wait_policy)), repeats=args.repeats, iters=args.iters,
                    warmup=args.warmup, timeout=args.timeout)


def write_outputs(reports: list[dict[str, Any]], args) -> None:
    if args.json:
        data = reports[0] if len(reports) == 1 else {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                                                      "reports": reports}
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(reports), encoding="utf-8")
    if args.plot:
        plot(reports, Path(args.plot))


def main(args) -> int:
    from rich.console import Console

    from convert.errors import ConfigError

    console = Console(stderr=False, width=None if sys.stdout.isatty() else 200)
    if args.from_json:
        if args.directory:
            raise ConfigError("give either DIR or --from-json, not both")
        reports = load_reports(args.from_json)
        if not args.quiet:
            for report in reports:
                render_table(report, console)
        write_outputs(reports, args)
        return 0
    if not args.directory:
        raise ConfigError("give an artifact directory DIR (or --from-json FILE...)")
    settings = settings_from_args(args)
    manifest = read_manifest(settings.directory)
    if "onnx-int8" in settings.variants:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            from convert.errors import KitError

            raise KitError("--onnx needs onnxruntime, which is not installed: pip install onnx onnxruntime onnxscript "
                           "(or pip install 'clip-mobile-kit[onnx]')") from None
    if args.quiet:
        report = run(settings, manifest, None, not args.skip_reference_check)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        err = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as progress:
            report = run(settings, manifest, progress, not args.skip_reference_check,
                         log=lambda m: progress.console.log(m))
    validate_report(report)
    if not args.quiet:
        render_table(report, console)
    write_outputs([report], args)
    return 0
