"""Where a tower's time goes: torch profiler over the lite (``.ptl``) towers against ONNX Runtime's profiler.

    PYTHONPATH=. python benchmarks/profile_ops.py DIR [--convert "--recipe x86 --model ViT-B-32 --pretrained none"]
        [--roles image_encoder text_encoder] [--threads 2] [--iters 10] [--warmup 3] [--also-pt]
        [--engine ENGINE] [--no-onnx] [--ort-spinning] [--top 12] [--markdown FILE] [--json FILE]

    PYTHONPATH=. python benchmarks/profile_ops.py --compare LABEL=DIR [LABEL=DIR ...] [--engines fbgemm x86]
        [--env "LABEL:VAR=VALUE ..."] [--onnx-models LABEL=DIR] [--roles ...] [--repeats 5] [--iters 20]

    PYTHONPATH=. python benchmarks/profile_ops.py --fidelity LABEL=DIR [LABEL=DIR ...] [--onnx-models LABEL=ONNXDIR@DIR]

``DIR`` is an artifact directory (``python -m convert ... --out DIR``); with ``--convert ARGS`` and no
manifest in ``DIR`` the conversion is run first (``python -m convert ARGS --out DIR``).

Every tower runs on the bench's inputs (``deploy bench``: a seeded random image, the 8-token prompt
"a photo of a dog." padded to the context length) in this process, ``OMP_WAIT_POLICY=PASSIVE`` unless set,
``--threads`` threads:

- ``lite``: ``_load_for_lite_interpreter`` of ``ROLE.ptl``. The lite interpreter calls its operators
  through the dispatcher, so ``torch.profiler`` sees each one (measured: the same operator list and
  counts as the ``.pt`` twin); ``--also-pt`` profiles the ``torch.jit.load``-ed ``.pt`` twin too.
- ``onnx``: the fp32 tower (rebuilt from the manifest, as ``deploy bench --onnx`` builds it) exported to
  ONNX (TorchScript exporter, opset 17) and ``onnxruntime.quantization.quantize_dynamic`` (QInt8), run
  with ``SessionOptions.enable_profiling`` at the same thread count, and with ORT's spin-waiting off
  (``session.intra_op.allow_spinning=0``) like torch's PASSIVE OpenMP threads unless ``--ort-spinning``.

Per tower it prints the unprofiled median latency of each runtime, then the top operators of the lite
tower by self time (ms per call and share of the profiled call) beside the ONNX Runtime operators that
do the same work, and a table of the same work grouped by kind (int8 linear, attention matmuls, softmax,
layer norm, GELU, element-wise, layout, gather, and the time in no operator: interpreter and glue).
Shares are of the profiled call's wall time; the profiler itself adds a few percent (both latencies are
printed). Timings on a shared machine are noisy: compare shares and the two runtimes of one run.

``--compare`` times instead of profiling, to measure a change: the lite towers of several artifact
directories (and engines, environment variants, ONNX Runtime models: a folder of ``ROLE.int8.onnx``), each
sample a fresh process, all variants interleaved round-robin, ``--repeats`` processes x ``--iters`` calls.
It prints the median steady latency with its ratio to the first variant, the process CPU time per call (the
work done, robust to a busy machine where wall time includes waiting for a core), the first call, and memory: the
peak RSS (VmHWM) above the RSS right after importing the runtime, as a multiple of the file's size, plus
the RSS left after the calls and after ``malloc_trim(0)``.

``--fidelity`` reports each lite tower's cosine (min / mean) against the fp32 open_clip model rebuilt from the
manifest, on the converter's probe inputs, batched (as ``python -m convert`` verifies) and one input at a
time (as a device runs them); ONNX models of the same artifacts can be added.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess

# Not named profile.py: a script run from this folder puts it first on sys.path, and a profile.py here
# shadowed the standard library's (cProfile, imported by torch._dynamo) for every benchmark script.
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convert.artifact import read_manifest  # noqa: E402 - validated: a bad manifest is one line
from convert.cli import check_thread_count, set_openmp_default  # noqa: E402 - no torch in convert.cli
from convert.errors import ConfigError, KitError  # noqa: E402

set_openmp_default()  # before torch starts, as the kit's entry points do

import torch  # noqa: E402

from deploy.bench.worker import SAMPLE_TOKENS  # noqa: E402 - the bench's prompt ("a photo of a dog.")

# Kind of work -> (torch operators, ONNX Runtime op types). Operators not listed fall into "other".
KINDS = {
    "int8 linear": (("quantized::linear_dynamic", "quantized::linear_prepack", "quantized::linear_prepack_fp16",
                     "aten::quantize_per_tensor_dynamic"),
                    ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear",
                     "QAttention", "DynamicQuantizeLSTM")),
    "attention matmul": (("aten::bmm", "aten::matmul", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
                          "aten::scaled_dot_product_attention", "aten::_scaled_dot_product_attention_math",
                          "aten::_scaled_dot_product_flash_attention"),
                         ("MatMul", "FusedMatMul", "Attention", "MultiHeadAttention")),
    "softmax": (("aten::_softmax", "aten::softmax"), ("Softmax",)),
    "layer norm": (("aten::native_layer_norm", "aten::layer_norm"),
                   ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization")),
    "GELU": (("aten::gelu",), ("Gelu", "BiasGelu", "FastGelu", "Erf", "QuickGelu")),
    "element-wise": (("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::div", "aten::sub", "aten::rsub",
                      "aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous"),
                     ("Add", "Mul", "Div", "Sub", "Sqrt", "Pow", "ReduceMean", "Cast", "Where", "Equal")),
    "layout (reshape/permute/slice)": (("aten::reshape", "aten::view", "aten::permute", "aten::transpose",
                                        "aten::select", "aten::slice", "aten::expand", "aten::_reshape_alias",
                                        "aten::_unsafe_view", "aten::as_strided", "aten::t", "aten::flatten",
                                        "aten::unsqueeze", "aten::squeeze", "aten::cat", "aten::unbind",
                                        "aten::split", "aten::chunk", "aten::numpy_T", "aten::unflatten"),
                                       ("Reshape", "Transpose", "Slice", "Concat", "Unsqueeze", "Squeeze",
                                        "Gather", "Shape", "Expand", "Split", "Flatten", "ConstantOfShape")),
    "token gather": (("aten::index_select", "aten::embedding", "aten::index", "aten::argmax", "aten::arange",
                      "aten::eq", "aten::max", "aten::item", "aten::_local_scalar_dense"),
                     ("ArgMax", "GatherElements", "GatherND", "Range")),
    "allocation": (("aten::empty", "aten::empty_like", "aten::zeros", "aten::empty_strided", "aten::resize_",
                    "aten::fill_", "aten::zero_"), ()),
}
TORCH_KIND = {op: kind for kind, (ops, _) in KINDS.items() for op in ops}
ORT_KIND = {op: kind for kind, (_, ops) in KINDS.items() for op in ops}


def bench_inputs(manifest: dict, role: str) -> torch.Tensor:
    entry = next(e for e in manifest["files"] if e["role"] == role and e["format"] == "lite")
    shape = entry["inputs"][0]["shape"]
    if role == "text_encoder":
        tok = manifest["tokenizer"]
        x = torch.zeros(shape, dtype=torch.int64)
        ids = [tok["sot_token_id"], *SAMPLE_TOKENS, tok["eot_token_id"]][: shape[-1]]
        x[..., : len(ids)] = torch.tensor(ids)
        return x
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def median_ms(fn, x, iters: int) -> float:
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn(x)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def profile_torch(module, x, iters: int, warmup: int) -> dict:
    """Unprofiled median, then ``iters`` profiled calls: self time per operator, per call."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        for _ in range(max(warmup, 1)):
            module(x)
        plain = median_ms(module, x, iters)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter_ns()
            for _ in range(iters):
                module(x)
            wall = (time.perf_counter_ns() - t0) / 1e6 / iters
    ops = {}
    for evt in prof.key_averages():
        if evt.self_cpu_time_total <= 0:
            continue
        ops[evt.key] = {"ms": evt.self_cpu_time_total / 1e3 / iters, "calls": evt.count / iters}
    return {"median_ms": plain, "profiled_ms": wall, "ops": ops}


def export_ort(manifest: dict, role: str, x: torch.Tensor, out_dir: Path) -> Path:
    """fp32 tower -> ONNX -> dynamic QInt8, the way ``deploy bench --onnx`` builds its peer."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from convert.load import reference_from_manifest
    from convert.towers import build_image_encoder, build_text_encoder

    int8 = out_dir / f"{role}.int8.onnx"
    if int8.is_file():
        return int8
    loaded = reference_from_manifest(manifest)
    cfg = manifest["config"]
    if role == "image_encoder":
        module = build_image_encoder(loaded.model, attention=cfg.get("attention", "int8") == "int8",
                                     patch=cfg.get("patch", "int8") == "int8")
    else:  # full length: the exporter traces, a truncating tower would bake one length in
        module = build_text_encoder(loaded.model, attention=cfg.get("attention", "int8") == "int8", truncate=False)
    fp32 = out_dir / f"{role}.fp32.onnx"
    name = next(e for e in manifest["files"] if e["role"] == role and e["format"] == "lite")["inputs"][0]["name"]
    with torch.no_grad():
        torch.onnx.export(module.eval(), (x,), str(fp32), dynamo=False, opset_version=17,
                          input_names=[name], output_names=["output"])
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return int8


def ort_session_options(threads: int, spinning: bool, profile_prefix: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def profile_ort(path: Path, x: torch.Tensor, threads: int, iters: int, warmup: int, spinning: bool,
                tmp: Path) -> dict:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    plain_sess = ort.InferenceSession(str(path), ort_session_options(threads, spinning), providers=providers)
    feed = {plain_sess.get_inputs()[0].name: x.numpy()}
    run = lambda _x: plain_sess.run(None, feed)  # noqa: E731
    for _ in range(max(warmup, 1)):
        run(x)
    plain = median_ms(run, x, iters)
    sess = ort.InferenceSession(str(path), ort_session_options(threads, spinning, str(tmp / "ort")),
                                providers=providers)
    for _ in range(max(warmup, 1)):
        sess.run(None, feed)
    t0 = time.perf_counter_ns()
    for _ in range(iters):
        sess.run(None, feed)
    wall = (time.perf_counter_ns() - t0) / 1e6 / iters
    trace = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in trace if e.get("name") == "model_run"]
    timed = runs[-iters:]
    start = timed[0]["ts"]
    ops: dict[str, dict] = {}
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        op = e.get("args", {}).get("op_name", "?")
        slot = ops.setdefault(op, {"ms": 0.0, "calls": 0})
        slot["ms"] += e["dur"] / 1e3 / iters
        slot["calls"] += 1 / iters
    return {"median_ms": plain, "profiled_ms": wall,
            "model_run_ms": statistics.median(e["dur"] / 1e3 for e in timed), "ops": ops,
            "session_options": {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
                                "session.intra_op.allow_spinning": "1" if spinning else "0",
                                "graph_optimization_level": str(sess.get_session_options().graph_optimization_level),
                                "execution_mode": str(sess.get_session_options().execution_mode)}}


def by_kind(ops: dict, table: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for op, v in ops.items():
        kind = table.get(op, "other")
        out[kind] = out.get(kind, 0.0) + v["ms"]
    return out


def render(role: str, result: dict, top: int) -> str:
    lite = result["lite"]
    ort = result.get("onnx")
    lines = [f"### {role}", ""]
    lat = [f"lite `.ptl` {lite['median_ms']:.2f} ms (profiled {lite['profiled_ms']:.2f})"]
    if result.get("jit"):
        lat.append(f"`.pt` {result['jit']['median_ms']:.2f} ms (profiled {result['jit']['profiled_ms']:.2f})")
    if ort:
        lat.append(f"ONNX Runtime int8 {ort['median_ms']:.2f} ms (profiled {ort['profiled_ms']:.2f}, "
                   f"model_run {ort['model_run_ms']:.2f}); ORT / lite {ort['median_ms'] / lite['median_ms']:.2f}x")
    lines += ["Unprofiled median per call: " + "; ".join(lat) + ".", ""]
    total = lite["profiled_ms"]
    ort_total = ort["profiled_ms"] if ort else None
    ort_kind_ops: dict[str, list[str]] = {}
    if ort:
        for op, v in sorted(ort["ops"].items(), key=lambda kv: -kv[1]["ms"]):
            ort_kind_ops.setdefault(ORT_KIND.get(op, "other"), []).append(f"{op} {v['ms']:.2f}")
    lines += ["| lite operator | calls | ms/call | share | kind | ONNX Runtime ops of that kind (ms/call) |",
              "|---|---:|---:|---:|---|---|"]
    for op, v in sorted(lite["ops"].items(), key=lambda kv: -kv[1]["ms"])[:top]:
        kind = TORCH_KIND.get(op, "other")
        lines.append(f"| `{op}` | {v['calls']:.0f} | {v['ms']:.2f} | {100 * v['ms'] / total:.1f} % | {kind} | "
                     f"{', '.join(ort_kind_ops.get(kind, [])) or '-'} |")
    lines.append("")
    lk = by_kind(lite["ops"], TORCH_KIND)
    lk["no operator (interpreter, glue, profiler)"] = max(total - sum(lk.values()), 0.0)
    ok = by_kind(ort["ops"], ORT_KIND) if ort else {}
    if ort:
        ok["no operator (interpreter, glue, profiler)"] = max(ort_total - sum(ok.values()), 0.0)
    head = "| kind | lite ms/call | lite share |" + (" ORT ms/call | ORT share | lite - ORT ms |" if ort else "")
    lines += [head, "|---|---:|---:|" + ("---:|---:|---:|" if ort else "")]
    for kind in sorted(set(lk) | set(ok), key=lambda k: -lk.get(k, 0.0)):
        a = lk.get(kind, 0.0)
        row = f"| {kind} | {a:.2f} | {100 * a / total:.1f} % |"
        if ort:
            b = ok.get(kind, 0.0)
            row += f" {b:.2f} | {100 * b / ort_total:.1f} % | {a - b:+.2f} |"
        lines.append(row)
    lines += [f"| **profiled call** | **{total:.2f}** | 100 % |"
              + (f" **{ort_total:.2f}** | 100 % | {total - ort_total:+.2f} |" if ort else ""), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ --fidelity
def fidelity(directories: list[str], onnx_models: list[str] | None = None) -> str:
    """Min / mean cosine of each lite tower against fp32 open_clip on the converter's probe inputs, batched
    (as ``python -m convert`` verifies) and one input at a time (as the phone runs)."""
    import open_clip
    import torch.nn.functional as F
    from torch.jit.mobile import _load_for_lite_interpreter

    from convert.load import reference_from_manifest
    from convert.probes import probe_images, probe_texts

    def cos(ref, got):
        c = F.cosine_similarity(ref, got, dim=-1)
        return f"{float(c.min()):.6f} / {float(c.mean()):.6f}"

    lines = ["| artifacts | model | target, engine | truncate_text | role | batched: cos min / mean | "
             "one at a time: cos min / mean |", "|---|---|---|---|---|---:|---:|"]
    cache: dict[str, tuple] = {}
    entries = [(d, "lite") for d in directories] + [(d, "onnx") for d in (onnx_models or [])]
    for directory, kind in entries:
        label, _, directory = directory.rpartition("=")
        if kind == "onnx":  # LABEL=ONNXDIR@ARTIFACTDIR: the ONNX models of the artifacts' model
            directory, _, artifact_dir = directory.partition("@")
        manifest = read_manifest(Path(artifact_dir if kind == "onnx" else directory), check_versions=False)
        key = json.dumps({k: v for k, v in manifest["config"].items() if k in ("model", "pretrained", "checkpoint", "seed")},
                         sort_keys=True) + json.dumps((manifest.get("zero_shot") or {}).get("labels"))
        if key not in cache:
            loaded = reference_from_manifest(manifest)
            images = probe_images(loaded.preprocess, n=8, seed=manifest["config"]["seed"])
            tokens = open_clip.get_tokenizer(loaded.name)(probe_texts((manifest.get("zero_shot") or {}).get("labels")))
            with torch.no_grad():
                refs = {"image_encoder": (images, loaded.model.encode_image(images)),
                        "text_encoder": (tokens, loaded.model.encode_text(tokens))}
            cache[key] = refs
        refs = cache[key]
        torch.backends.quantized.engine = manifest["engine"]
        for role, (x, ref) in refs.items():
            if kind == "lite":
                module = _load_for_lite_interpreter(str(Path(directory) / f"{role}.ptl"))
                fn = module
            else:
                import onnxruntime as ort

                session = ort.InferenceSession(str(Path(directory) / f"{role}.int8.onnx"), ort_session_options(2, False),
                                               providers=["CPUExecutionProvider"])
                name = session.get_inputs()[0].name
                fn = lambda t: torch.from_numpy(session.run(None, {name: t.numpy()})[0])  # noqa: E731
            with torch.no_grad():
                batched = cos(ref, fn(x)) if kind == "lite" else "-"
                single = cos(ref, torch.cat([fn(x[i:i + 1]) for i in range(x.shape[0])]))
            cfg = manifest["config"]
            lines.append(f"| {label or directory} | {manifest['model']['name']} ({cfg.get('pretrained') or 'checkpoint'}) | "
                         f"{manifest['target']}, {manifest['engine']} | {cfg.get('truncate_text')} | {role} | {batched} | "
                         f"{single} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ --compare (timing)
def _status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process in bytes (the bench worker's reader)."""
    from deploy.bench.worker import _proc_status

    return _proc_status("VmRSS", "VmHWM", "RssAnon", "RssFile")


def worker(spec: dict) -> dict:
    """One fresh-process sample: load, first call, steady calls, memory (run by ``--worker``). ``.ptl`` files
    load and run as ``deploy.runtime`` runs them: ``deploy.heap`` around the load and the first call,
    ``deploy.threads`` sizing each call (``CLIPKIT_HEAP_PHASE=0`` / ``CLIPKIT_THREAD_POLICY=off`` in an
    ``--env`` variant turn either off)."""
    import ctypes

    from deploy import heap, threads

    torch.set_num_threads(spec["threads"])
    if spec.get("engine"):
        torch.backends.quantized.engine = spec["engine"]
    x = torch.tensor(spec["input"]["data"], dtype=getattr(torch, spec["input"]["dtype"])).reshape(spec["input"]["shape"])
    if spec["kind"] == "onnx":
        import onnxruntime  # noqa: F401 - in the baseline, as torch is
    base = _status()
    t0 = time.perf_counter_ns()
    if spec["kind"] == "lite":
        from torch.jit.mobile import _load_for_lite_interpreter

        module = heap.load(_load_for_lite_interpreter, spec["path"])

        def fn(x):
            with threads.sized(torch, spec.get("work"), x), heap.first_call(module):
                return module(x)
    else:
        session = __import__("onnxruntime").InferenceSession(
            spec["path"], ort_session_options(spec["threads"], os.environ.get("OMP_WAIT_POLICY") != "PASSIVE"),
            providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        fn = lambda _x: session.run(None, feed)  # noqa: E731
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    after_load = _status()
    with torch.no_grad():
        t0 = time.perf_counter_ns()
        fn(x)
        first_ms = (time.perf_counter_ns() - t0) / 1e6
        after_first = _status()
        for _ in range(spec["warmup"]):
            fn(x)
        times = []
        cpu0 = time.process_time_ns()
        for _ in range(spec["iters"]):
            t0 = time.perf_counter_ns()
            fn(x)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        cpu_ms = (time.process_time_ns() - cpu0) / 1e6 / spec["iters"]
    end = _status()
    ctypes.CDLL(None).malloc_trim(0)
    trimmed = _status()
    return {"load_ms": load_ms, "first_ms": first_ms, "steady_ms": times, "cpu_ms": cpu_ms, "base": base, "after_load": after_load,
            "after_first": after_first, "end": end, "trimmed": trimmed}


def compare(args) -> str:
    import random

    variants = []  # (label, kind, path per role, engine, env)
    envs = [("", {})]
    for item in args.env or []:
        label, _, assigns = item.partition(":")
        envs.append((label, dict(a.split("=", 1) for a in assigns.split())))
    for item in args.compare:
        label, _, directory = item.rpartition("=")
        for engine in args.engines or [None]:
            for env_label, env in envs:
                name = " ".join(p for p in (label or directory, engine, env_label) if p)
                variants.append((name, "lite", Path(directory), engine, env))
    for item in args.onnx_models or []:
        label, _, directory = item.rpartition("=")
        for env_label, env in envs if args.env_onnx else envs[:1]:
            name = " ".join(p for p in (label or directory, env_label) if p)
            variants.append((name, "onnx", Path(directory), None, env))
    first_dir = Path(args.compare[0].rpartition("=")[2])
    manifest = read_manifest(first_dir, check_versions=False)
    samples: dict[tuple, list] = {}
    load0 = os.getloadavg()
    for rep in range(args.repeats):
        order = [(role, v) for role in args.roles for v in variants]
        random.Random(rep).shuffle(order)  # no variant always runs after the same one
        for role, (name, kind, directory, engine, env) in order:
            x = bench_inputs(manifest, role)
            path = directory / (f"{role}.ptl" if kind == "lite" else f"{role}.int8.onnx")
            spec = {"kind": kind, "path": str(path), "threads": args.threads, "engine": engine or (
                        manifest["engine"] if kind == "lite" else None),
                    "warmup": args.warmup, "iters": args.iters,
                    "input": {"data": x.flatten().tolist(), "shape": list(x.shape), "dtype": str(x.dtype).split(".")[1]}}
            if kind == "lite":
                spec["work"] = next((e.get("work") for e in manifest["files"]
                                     if e["role"] == role and e["format"] == "lite"), None)
            penv = {k: v for k, v in dict(os.environ, **env).items() if v != "unset"}
            penv["PYTHONPATH"] = os.pathsep.join([str(REPO), penv.get("PYTHONPATH", "")])
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump(spec, handle)
            proc = subprocess.run([sys.executable, __file__, "--worker", handle.name], env=penv, capture_output=True,
                                  text=True, timeout=900)
            os.unlink(handle.name)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                raise SystemExit(f"{name} {role} failed: {proc.stderr[-800:]}")
            sample = json.loads(lines[-1])
            sample["size"] = path.stat().st_size
            samples.setdefault((role, name), []).append(sample)
    load1 = os.getloadavg()
    lines = [f"Interleaved fresh processes: {args.repeats} per variant x {args.iters} timed calls after "
             f"{args.warmup + 1} warm-up; {args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
             f"load average {load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} CPUs.", ""]
    mib = 2 ** 20
    for role in args.roles:
        lines += [f"#### {role}", "",
                  "| variant | median ms | x first | CPU ms/call | x first | first call ms | load ms | MiB | peak RSS+ / size "
                  "| RSS+ after / size | after malloc_trim / size | anon+ / size after first call |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ref = ref_cpu = None
        for name, *_ in variants:
            ss = samples[(role, name)]
            med = statistics.median(t for s in ss for t in s["steady_ms"])
            cpu = statistics.median(s["cpu_ms"] for s in ss)
            ref = ref or med
            ref_cpu = ref_cpu or cpu
            size = ss[0]["size"]
            m = lambda key, field: statistics.median((s[key][field] - s["base"]["VmRSS" if field == "VmHWM" else field])  # noqa: E731
                                                      / size for s in ss)
            lines.append(f"| {name} | {med:.2f} | {med / ref:.3f} | {cpu:.2f} | {cpu / ref_cpu:.3f} | "
                         f"{statistics.median(s['first_ms'] for s in ss):.1f} | "
                         f"{statistics.median(s['load_ms'] for s in ss):.1f} | {size / mib:.2f} | {m('end', 'VmHWM'):.3f} | "
                         f"{m('end', 'VmRSS'):.3f} | {m('trimmed', 'VmRSS'):.3f} | {m('after_first', 'RssAnon'):.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", nargs="?", help="artifact directory (manifest.json, ROLE.ptl)")
    p.add_argument("--convert", metavar="ARGS", help="python -m convert arguments, run first when DIR has no manifest")
    p.add_argument("--roles", nargs="+", default=["image_encoder", "text_encoder"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--engine", help="quantized engine at run time (default: the manifest's; x86 artifacts pack on "
                                    "the first call, so fbgemm / x86 / onednn can be compared on one file)")
    p.add_argument("--also-pt", action="store_true", help="also profile the .pt twin (torch.jit.load)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime peer")
    p.add_argument("--ort-spinning", action="store_true", help="let ORT's threads spin (its default); off by default "
                                                               "to match OMP_WAIT_POLICY=PASSIVE")
    p.add_argument("--onnx-dir", help="keep/reuse the exported ONNX files here (default: a temporary folder)")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--compare", nargs="+", metavar="LABEL=DIR", help="time these artifact directories instead of profiling")
    p.add_argument("--engines", nargs="+", help="with --compare: quantized engines to run each directory with")
    p.add_argument("--env", nargs="+", metavar="LABEL:VAR=VALUE ...", help="with --compare: extra variants with these "
                                                                            "environment variables (VAR=unset removes VAR; CLIPKIT_HEAP_PHASE=0 and "
                                                                            "CLIPKIT_THREAD_POLICY=off turn off what deploy.heap "
                                                                            "and deploy.threads do)")
    p.add_argument("--onnx-models", nargs="+", metavar="LABEL=DIR", help="with --compare: folders of ROLE.int8.onnx; "
                                                                         "with --fidelity: LABEL=ONNXDIR@ARTIFACTDIR")
    p.add_argument("--env-onnx", action="store_true", help="with --compare: run the ONNX models under every --env too")
    p.add_argument("--repeats", type=int, default=5, help="with --compare: fresh processes per variant")
    p.add_argument("--fidelity", nargs="+", metavar="LABEL=DIR", help="instead of profiling: cosine of each lite tower "
                                                                      "against fp32 on the probe inputs, batched and one at a time")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--markdown", metavar="FILE")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    try:
        check_thread_count(args.threads, "--threads")
    except ConfigError as exc:
        p.error(str(exc))
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    command = "PYTHONPATH=. python benchmarks/profile_ops.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.fidelity:
        out = f"Command: `{command}`\n\n" + fidelity(args.fidelity, args.onnx_models)
        print(out)
        if args.markdown:
            Path(args.markdown).write_text(out + "\n", encoding="utf-8")
        return 0
    if args.compare:
        out = f"Command: `{command}`\n\n" + compare(args)
        print(out)
        if args.markdown:
            Path(args.markdown).write_text(out + "\n", encoding="utf-8")
        return 0
    if not args.directory:
        p.error("give an artifact directory (or --compare)")
    directory = Path(args.directory)
    if not (directory / "manifest.json").is_file():
        if not args.convert:
            p.error(f"{directory} has no manifest.json (give --convert ARGS to convert first)")
        cmd = [sys.executable, "-m", "convert", *shlex.split(args.convert), "--out", str(directory)]
        subprocess.run(cmd, check=True, cwd=REPO)
    manifest = read_manifest(directory, check_versions=False)
    engine = args.engine or manifest["engine"]
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = engine
    from torch.jit.mobile import _load_for_lite_interpreter

    load0 = os.getloadavg()
    results: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="clipkit-profile-"))
    onnx_dir = Path(args.onnx_dir) if args.onnx_dir else tmp
    onnx_dir.mkdir(parents=True, exist_ok=True)
    for role in args.roles:
        x = bench_inputs(manifest, role)
        res = {"lite": profile_torch(_load_for_lite_interpreter(str(directory / f"{role}.ptl")), x,
                                     args.iters, args.warmup)}
        if args.also_pt and (directory / f"{role}.pt").is_file():
            res["jit"] = profile_torch(torch.jit.load(str(directory / f"{role}.pt")), x, args.iters, args.warmup)
        if not args.no_onnx:
            path = export_ort(manifest, role, x, onnx_dir)
            res["onnx"] = profile_ort(path, x, args.threads, args.iters, args.warmup, args.ort_spinning, tmp)
        results[role] = res
    load1 = os.getloadavg()
    env = (f"torch {torch.__version__}, engine {engine}, {args.threads} threads, OMP_WAIT_POLICY="
           f"{os.environ.get('OMP_WAIT_POLICY')}, {args.iters} profiled calls after {args.warmup} warm-up; "
           f"load average {load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} CPUs")
    if not args.no_onnx:
        import onnxruntime

        spin = "on" if args.ort_spinning else "off"
        env += f"; onnxruntime {onnxruntime.__version__} (intra_op_num_threads {args.threads}, spinning {spin})"
    model = (manifest.get("model") or {}).get("name")
    text = [f"## Profile: {model} ({manifest.get('target')}, {manifest.get('engine')} artifacts)", "",
            f"Command: `{command}`", "", env, ""]
    text += [render(role, res, args.top) for role, res in results.items()]
    out = "\n".join(text)
    print(out)
    if args.markdown:
        Path(args.markdown).write_text(out + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "environment": env, "results": results},
                                              indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KitError as exc:  # a bad artifact directory: one line, as the kit's commands say it
        sys.exit(f"error: {exc}")
