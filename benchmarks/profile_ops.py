"""Where a tower's time goes, and interleaved comparisons: thin tools over ``deploy.bench``.

    PYTHONPATH=. python benchmarks/profile_ops.py DIR [--roles image_encoder text_encoder] [--threads 2]
        [--iters 10] [--warmup 3] [--also-pt] [--engine ENGINE] [--onnx] [--top 12] [--markdown FILE] [--json FILE]

    PYTHONPATH=. python benchmarks/profile_ops.py --compare LABEL=DIR [LABEL=DIR ...] [--engines fbgemm x86]
        [--env "LABEL:VAR=VALUE ..."] [--onnx] [--roles ...] [--threads 2] [--repeats 5] [--iters 20]

Profile (``DIR``): the artifact directory is verified by the kit's one reader (``convert.artifact``) and
each tower runs in this process on the bench's input (``deploy.bench.worker.manifest_inputs``), under
``torch.profiler``: the lite interpreter calls its operators through the dispatcher, so the profiler sees
each one (``--also-pt``: the ``.pt`` twin too). ``--onnx`` adds the bench's ONNX Runtime peer
(``deploy.bench.peers``: the same export, ``reduce_range`` rule, text length and session options as
``deploy bench --onnx``) with ORT's own profiler. Per tower: the top operators of the lite tower by self
time beside the ORT operators of the same kind, and the work grouped by kind (int8 linear, attention
matmuls, softmax, layer norm, GELU, element-wise, layout, gather, and the time in no operator: interpreter
and glue). Shares are of the profiled call's wall time.

``--compare`` times instead: the lite towers of several artifact directories, per engine and per
environment variant (``--env 'off:CLIPKIT_HEAP_PHASE=0'``; ``VAR=unset`` removes VAR), with ``--onnx`` the
peer of the first directory, each sample a fresh ``deploy.bench`` worker process, all variants interleaved
in a shuffled round-robin. It prints the median steady latency and the process CPU time per call (robust
to a busy machine) with their ratios to the first variant, the first call, the load, and memory above the
runtime's baseline as a multiple of the file size (peak, and anonymous after the first call).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convert.entry import check_thread_count, run_command, set_openmp_default  # noqa: E402 - no torch in convert.entry
from convert.errors import ConfigError  # noqa: E402

set_openmp_default()  # before torch starts, as the kit's entry points do

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
    lat = [f"lite `.ptl` {lite['profiled_ms']:.2f} ms"]
    if result.get("jit"):
        lat.append(f"`.pt` {result['jit']['profiled_ms']:.2f} ms")
    if ort:
        lat.append(f"ONNX Runtime int8 {ort['profiled_ms']:.2f} ms (model_run {ort['model_run_ms']:.2f}); "
                   f"ORT / lite {ort['profiled_ms'] / lite['profiled_ms']:.2f}x")
    lines += ["Profiled wall time per call: " + "; ".join(lat) + " (latency: `--compare` or `python -m deploy bench`).", ""]
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


def profile_torch(module, x, iters: int, warmup: int) -> dict:
    """``iters`` profiled calls after ``warmup``: wall time and self time per operator, per call."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        for _ in range(max(warmup, 1)):
            module(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter_ns()
            for _ in range(iters):
                module(x)
            wall = (time.perf_counter_ns() - t0) / 1e6 / iters
    ops = {evt.key: {"ms": evt.self_cpu_time_total / 1e3 / iters, "calls": evt.count / iters}
           for evt in prof.key_averages() if evt.self_cpu_time_total > 0}
    return {"profiled_ms": wall, "ops": ops}


def profile_ort(path: Path, feed_tokens, threads: int, iters: int, warmup: int, tmp: Path) -> dict:
    """The bench's ONNX Runtime session with ORT's profiler on: wall time and kernel time per operator type."""
    from deploy.bench.peers import ort_session

    session, options = ort_session(str(path), threads, profile_prefix=str(tmp / "ort"))
    feed = {session.get_inputs()[0].name: feed_tokens.numpy()}
    for _ in range(max(warmup, 1)):
        session.run(None, feed)
    t0 = time.perf_counter_ns()
    for _ in range(iters):
        session.run(None, feed)
    wall = (time.perf_counter_ns() - t0) / 1e6 / iters
    trace = json.loads(Path(session.end_profiling()).read_text())
    timed = [e for e in trace if e.get("name") == "model_run"][-iters:]
    ops: dict[str, dict] = {}
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < timed[0]["ts"]:
            continue
        slot = ops.setdefault(e.get("args", {}).get("op_name", "?"), {"ms": 0.0, "calls": 0})
        slot["ms"] += e["dur"] / 1e3 / iters
        slot["calls"] += 1 / iters
    model_run = sorted(e["dur"] / 1e3 for e in timed)[len(timed) // 2]
    return {"profiled_ms": wall, "model_run_ms": model_run, "ops": ops, "session_options": options}


def onnx_peer(verified, roles, out_dir: Path) -> dict[str, tuple[Path, int]]:
    """``deploy bench --onnx``'s peer: the fp32 reference rebuilt (and checked against the artifacts), exported."""
    from convert.load import load_model, reference_config
    from deploy.bench.peers import export_onnx
    from deploy.bench.plan import reference_check

    config = reference_config(verified.manifest)
    loaded = load_model(config)
    reference_check(verified, loaded)
    return export_onnx(verified.manifest, loaded, config.quant, roles, out_dir)


def peer_input(manifest: dict, role: str, x):
    """What the worker feeds the ONNX peer: a truncating text tower's positions only (``deploy.threads``)."""
    from deploy.threads import text_length

    if role == "text_encoder" and (manifest.get("config") or {}).get("truncate_text"):
        return x[:, :text_length(x)]
    return x


def profile(args, command: str) -> str:
    import torch

    from convert.artifact import verify_artifacts
    from convert.export import load_lite
    from deploy.bench.worker import manifest_inputs

    formats = ("lite", "torchscript") if args.also_pt else ("lite",)
    verified = verify_artifacts(args.directory, tuple(args.roles), formats, require_image=False)
    manifest = verified.manifest
    engine = args.engine or manifest["engine"]
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = engine
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="clipkit-profile-"))
    peers = onnx_peer(verified, args.roles, tmp) if args.onnx else {}
    results: dict[str, dict] = {}
    for role in args.roles:
        x = manifest_inputs(manifest, role, torch)[0]
        res = {"lite": profile_torch(load_lite(verified.path(role, "lite")), x, args.iters, args.warmup)}
        if args.also_pt and verified.path(role, "torchscript"):
            res["jit"] = profile_torch(torch.jit.load(str(verified.path(role, "torchscript"))), x, args.iters,
                                       args.warmup)
        if role in peers:
            res["onnx"] = profile_ort(peers[role][0], peer_input(manifest, role, x), args.threads, args.iters,
                                      args.warmup, tmp)
        results[role] = res
    load1 = os.getloadavg()
    env = (f"torch {torch.__version__}, engine {engine}, {args.threads} threads, OMP_WAIT_POLICY="
           f"{os.environ.get('OMP_WAIT_POLICY')}, {args.iters} profiled calls after {args.warmup} warm-up; "
           f"load average {load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} CPUs")
    text = [f"## Profile: {manifest['model']['name']} ({manifest['target']}, {manifest['engine']} artifacts)", "",
            f"Command: `{command}`", "", env, ""]
    text += [render(role, res, args.top) for role, res in results.items()]
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "environment": env, "results": results},
                                              indent=1) + "\n", encoding="utf-8")
    return "\n".join(text)


# ------------------------------------------------------------------------------------ --compare (timing)
def compare(args, command: str) -> str:
    """Fresh ``deploy.bench`` worker processes, every variant interleaved (shuffled round-robin)."""
    import random

    from convert.artifact import verify_artifacts
    from deploy.bench import plan as bench

    envs: list[tuple[str, dict[str, str | None]]] = [("", {})]
    for item in args.env or []:
        label, _, assigns = item.partition(":")
        pairs = (a.split("=", 1) for a in shlex.split(assigns))
        envs.append((label, {k: None if v == "unset" else v for k, v in pairs}))
    engines = tuple(args.engines or ())
    variants = []  # (name, case, worker spec, manifest, extra env, settings)
    tmp = Path(tempfile.mkdtemp(prefix="clipkit-compare-"))
    for i, item in enumerate(args.compare):
        label, _, directory = item.rpartition("=")
        verified = verify_artifacts(directory, tuple(args.roles), require_image=False)
        onnx = onnx_peer(verified, args.roles, tmp) if args.onnx and i == 0 else {}
        settings = bench.Settings(directory=verified.directory, roles=tuple(args.roles),
                                  variants=("lite", "onnx-int8") if onnx else ("lite",), threads=(args.threads,),
                                  engines=engines or (verified.manifest["engine"],), omp=("default",),
                                  repeats=args.repeats, iters=args.iters, warmup=args.warmup)
        for case in bench.plan(settings, verified, {}, onnx):
            spec = bench.worker_spec(case, settings, verified, None)
            for env_label, env in envs:
                what = "ONNX Runtime int8" if case.variant == "onnx-int8" else (case.engine if engines else "")
                name = " ".join(p for p in (label or directory, what, env_label) if p)
                variants.append((name, case, spec, verified.manifest, env, settings))
    samples: dict[tuple[str, str], list[dict]] = {}
    load0 = os.getloadavg()
    for rep in range(args.repeats):
        order = list(variants)
        random.Random(rep).shuffle(order)  # no variant always runs after the same one
        for name, case, spec, _, env, settings in order:
            samples.setdefault((case.role, name), []).append(bench.run_case(case, settings, spec, env))
    load1 = os.getloadavg()
    lines = [f"Command: `{command}`", "",
             f"Interleaved fresh processes (deploy.bench's worker): {args.repeats} per variant x {args.iters} timed "
             f"calls after {args.warmup + 1} warm-up; {args.threads} threads, OMP_WAIT_POLICY="
             f"{os.environ.get('OMP_WAIT_POLICY')}; load average {load0[0]:.2f} -> {load1[0]:.2f} on "
             f"{os.cpu_count()} CPUs.", ""]
    for role in args.roles:
        lines += [f"#### {role}", "",
                  "| variant | median ms | x first | CPU ms/call | x first | first call ms | load ms | MiB | "
                  "peak RSS+ / size | anon+ / size after first call |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ref = None
        for name, case, _, manifest, _, _ in variants:
            if case.role != role:
                continue
            r = bench.aggregate(case, samples[(role, name)], manifest)
            med, cpu, size = r["steady_ms"]["median"], r["cpu_ms"], r["size_bytes"]
            ref = ref or (med, cpu)
            anon = r.get("anon_after_first_call_bytes")
            lines.append(f"| {name} | {med:.2f} | {med / ref[0]:.3f} | {cpu:.2f} | {cpu / ref[1]:.3f} | "
                         f"{r['first_ms']:.1f} | {r['load_ms']['median']:.1f} | {size / 2**20:.2f} | "
                         f"{r['peak_rss_above_baseline_bytes'] / size:.3f} | "
                         f"{'-' if anon is None else f'{anon / size:.3f}'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory", nargs="?", help="artifact directory to profile (python -m convert ... --out DIR)")
    p.add_argument("--roles", nargs="+", default=["image_encoder", "text_encoder"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--engine", help="quantized engine at run time (default: the manifest's; x86 artifacts pack on "
                                    "the first call, so fbgemm / x86 / onednn can be compared on one file)")
    p.add_argument("--also-pt", action="store_true", help="also profile the .pt twin (torch.jit.load)")
    p.add_argument("--onnx", action="store_true", help="add deploy bench's ONNX Runtime int8 peer")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--compare", nargs="+", metavar="LABEL=DIR", help="time these artifact directories instead of profiling")
    p.add_argument("--engines", nargs="+", help="with --compare: quantized engines to run each directory with")
    p.add_argument("--env", nargs="+", metavar="LABEL:VAR=VALUE ...", help=(
        "with --compare: extra variants with these environment variables (VAR=unset removes VAR; "
        "CLIPKIT_HEAP_PHASE=0 and CLIPKIT_THREAD_POLICY=off turn off what deploy.heap and deploy.threads do)"))
    p.add_argument("--repeats", type=int, default=5, help="with --compare: fresh processes per variant")
    p.add_argument("--markdown", metavar="FILE")
    p.add_argument("--json", metavar="FILE", help="profile: the per-operator figures")
    args = p.parse_args(argv)
    if not (args.compare or args.directory):
        p.error("give an artifact directory (or --compare LABEL=DIR ...)")
    try:
        check_thread_count(args.threads, "--threads")
    except ConfigError as exc:
        p.error(str(exc))
    command = "PYTHONPATH=. python benchmarks/profile_ops.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    def run() -> int:
        out = compare(args, command) if args.compare else profile(args, command)
        print(out)
        if args.markdown:
            Path(args.markdown).write_text(out + "\n", encoding="utf-8")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
