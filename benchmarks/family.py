"""Which model should I ship? The MobileCLIP family against ViT-B-32, converted, verified and benchmarked.

    python benchmarks/family.py --models MobileCLIP2-S0 ViT-B-32 --pretrained none \
        --variants lite onnx-int8 --threads 1 --load-repeats 3 --iters 10 --warmup 2 \
        --out benchmarks/results/family [--reparam-latency MobileCLIP2-S0]

Per model, one after the other: a real conversion (``convert.pipeline.convert`` with the default android
recipe: the `.ptl` a phone loads, verified in the lite interpreter), then one interleaved ``deploy bench`` run
over the towers and ``--variants`` (fresh process per sample; add ``pte`` once the bench has it). Each model's
figures go to ``<out>/<model>.json`` as soon as it is done (conversion facts + the bench report); ``<out>/family.md``
is rebuilt from every JSON in ``<out>`` after each model, with the command. Ratios between models are only
printed for models measured in the same invocation (``session``).

``--reparam-latency MODEL`` times the int8 `.ptl` image tower built from the reparameterized model against the
one built from the training form (same weights), interleaved call by call in one process. ``--head-to-head``
times the image `.ptl` of every model of the run against each other the same way (``--no-bench
--head-to-head`` adds that to models already measured without replacing their entries).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 2**20
DEFAULT_MODELS = ("MobileCLIP2-S0", "ViT-B-32", "MobileCLIP2-S2", "MobileCLIP-S1", "MobileCLIP2-B")
ENCODERS = ("image_encoder", "text_encoder")


def convert_model(model: str, pretrained: str, seed: int, out: Path) -> dict[str, Any]:
    """Convert ``model`` (android recipe) into ``out``; the facts of the family table from its manifest."""
    from convert import build_config
    from convert.pipeline import convert

    started = time.perf_counter()
    result = convert(build_config(model=model, pretrained=pretrained, seed=seed, out=str(out), force=True))
    seconds = time.perf_counter() - started
    m = result.manifest
    rows = {row["role"]: row for row in result.rows}
    towers = {}
    for role in ENCODERS:
        fid = m["fidelity"][role]
        towers[role] = {"int8_bytes": rows[role]["bytes"], "fp32_bytes": rows[role]["fp32_bytes"],
                        "cosine_min": fid["cosine_min"],
                        "cosine_min_per_prompt": (fid.get("per_prompt") or {}).get("cosine_min"),
                        "reparameterized": m["model"]["reparameterized"][role],
                        "fp32_share": (m["quantized"].get(role) or {}).get("fp32_share", {}).get("lite")}
    return {"model": model, "pretrained": pretrained, "random_weights": m["model"]["random_weights"],
            "convert_seconds": round(seconds, 1), "versions": m["versions"], "towers": towers}


def bench_model(directory: Path, args) -> dict[str, Any]:
    """One interleaved ``python -m deploy bench`` run over the encoders (its own parser and code path)."""
    from deploy.__main__ import main as deploy_main

    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "bench.json"
        argv = ["bench", str(directory), "--roles", *ENCODERS, "--variants", *args.variants,
                "--threads", *map(str, args.threads), "--engines", "qnnpack", "--load-repeats", str(args.load_repeats),
                "--iters", str(args.iters), "--warmup", str(args.warmup), "--json", str(report_path), "--quiet"]
        code = deploy_main(argv)
        if code:
            raise SystemExit(f"deploy bench {directory} exited {code}")
        return json.loads(report_path.read_text(encoding="utf-8"))


def reparam_latency(model: str, seed: int, iters: int, threads: int) -> dict[str, Any]:
    """The int8 image `.ptl` from the reparameterized model against the one from the training form (same seeded
    weights), each loaded in the lite interpreter, timed call by call interleaved on the first probe image."""
    import open_clip
    import torch
    from torch.jit.mobile import _load_for_lite_interpreter

    from convert import build_config
    from convert.export import optimize_tower, save_lite, script_tower
    from convert.load import load_model
    from convert.probes import probe_images
    from convert.quantize import set_engine
    from convert.towers import build_towers

    config = build_config(model=model, pretrained="none", seed=seed)
    loaded = load_model(config)  # reparameterized (convert.reparam)
    torch.manual_seed(seed)
    training = open_clip.create_model(model, pretrained=None, device="cpu").eval()
    image = probe_images(loaded.preprocess, n=1, seed=seed)
    set_engine(config.engine)
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in (("reparameterized", loaded.model), ("training form", training)):
            tower = build_towers(source, config.quant, ("image_encoder",)).modules["image_encoder"]
            path = Path(tmp) / f"{name.replace(' ', '_')}.ptl"
            save_lite(optimize_tower(script_tower(tower, "image_encoder"), config.target, "image_encoder"), path,
                      {"role": "image_encoder", "model": {"name": model}})
            files[name] = {"bytes": path.stat().st_size, "module": _load_for_lite_interpreter(str(path))}
        with torch.no_grad():
            outputs = {name: f["module"](image) for name, f in files.items()}
        med = interleaved_ms({name: f["module"] for name, f in files.items()}, {name: image for name in files}, iters)
    cos = float(torch.nn.functional.cosine_similarity(outputs["reparameterized"], outputs["training form"]).min())
    return {"model": model, "threads": threads, "iters": iters, "engine": config.engine,
            "steady_ms_median": {k: round(v, 2) for k, v in med.items()},
            "bytes": {k: f["bytes"] for k, f in files.items()},
            "ratio_reparameterized_to_training": round(med["reparameterized"] / med["training form"], 3),
            "int8_outputs_cosine_min": round(cos, 6),
            "reparameterized_modules": loaded.reparameterized["image_encoder"].modules}


def interleaved_ms(modules: dict[str, Any], inputs: dict[str, Any], iters: int, warmup: int = 2) -> dict[str, float]:
    """Median ms per call of each module on its input, timed call by call in turn (one process, no grad), so
    that a change in the machine's load hits every module alike."""
    import torch

    times: dict[str, list[float]] = {name: [] for name in modules}
    with torch.no_grad():
        for name, module in modules.items():
            for _ in range(1 + warmup):
                module(inputs[name])
        for _ in range(iters):
            for name, module in modules.items():
                started = time.perf_counter()
                module(inputs[name])
                times[name].append((time.perf_counter() - started) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def head_to_head(directories: list[Path], iters: int, threads: int) -> dict[str, Any]:
    """The image `.ptl` of each artifact directory, loaded through the kit's one reader, timed interleaved in
    one process on the first probe image at each model's own input size."""

    from convert.probes import probe_images
    from deploy.artifacts import load_artifacts

    modules, inputs = {}, {}
    for directory in directories:
        artifacts = load_artifacts(directory, kind="lite", roles=("image_encoder",))
        name = artifacts.manifest["model"]["name"]
        modules[name] = artifacts.modules["image_encoder"]
        inputs[name] = probe_images(artifacts.manifest["preprocess"], n=1)
    med = interleaved_ms(modules, inputs, iters)
    first = next(iter(med))
    return {"threads": threads, "iters": iters, "steady_ms_median": {k: round(v, 2) for k, v in med.items()},
            f"ratio_to_{first}": {k: round(v / med[first], 3) for k, v in med.items()}}


# ------------------------------------------------------------------------------------------- the table
def _row(report: dict, role: str, variant: str) -> dict | None:
    return next((r for r in report["results"] if r["role"] == role and r["variant"] == variant), None)


def to_markdown(entries: list[dict[str, Any]], duels: list[dict[str, Any]] = ()) -> str:
    lines = ["# The MobileCLIP family and ViT-B-32 on this machine (random init)", "",
             "Weights: open_clip's seeded random init (`--pretrained none`): sizes, latency, load and memory are "
             "those of the real models; cosine figures are int8 against fp32 on the kit's probe inputs and may "
             "differ with trained weights (docs/models.md says how to measure them).", "",
             "Commands (one session each; `session` in the JSON files):", "",
             *[f"- `{c}`" for c in dict.fromkeys(e["command"] for e in entries)], "",
             "## Size and fidelity (android recipe: dynamic int8, qnnpack)", "",
             "| model | image fp32 MiB | image int8 `.ptl` MiB | text fp32 MiB | text int8 `.ptl` MiB | image+text `.ptl` MiB "
             "| image cos min | text cos min | text cos min, one prompt at a time | image fp32 share of its `.ptl` | "
             "reparameterized blocks |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for e in entries:
        t = e["towers"]
        im, tx = t["image_encoder"], t["text_encoder"]
        share = ", ".join(f"{r.get('count', '')} {r['module']} {100 * r['share']:.0f} %".strip()
                          for r in (im["fp32_share"] or []) if r["share"] and r["share"] >= 0.01) or "< 1 %"
        lines.append(f"| {e['model']} | {im['fp32_bytes'] / MIB:.2f} | {im['int8_bytes'] / MIB:.2f} | "
                     f"{tx['fp32_bytes'] / MIB:.2f} | {tx['int8_bytes'] / MIB:.2f} | "
                     f"{(im['int8_bytes'] + tx['int8_bytes']) / MIB:.2f} | {im['cosine_min']:.6f} | "
                     f"{tx['cosine_min']:.6f} | {tx['cosine_min_per_prompt']:.6f} | {share} | "
                     f"{im['reparameterized']['modules']} |")
    lines += ["", "## Latency, load and memory (one interleaved `deploy bench` run per model; medians)", ""]
    variants = sorted({r["variant"] for e in entries if e.get("bench") for r in e["bench"]["results"]},
                      key=lambda v: (v != "lite", v))
    lines += ["| model | tower | threads | " + " | ".join(
        f"{v} steady ms | {v} load ms | {v} peak RSS MiB (above runtime)" for v in variants) + " | lite / " + " | lite / ".join(
        v for v in variants if v != "lite") + " (steady) |",
        "|---|---|---:|" + "---:|" * (3 * len(variants) + len(variants) - 1)]
    for e in entries:
        if not e.get("bench"):
            continue
        for role in ENCODERS:
            cells, steady = [], {}
            threads = None
            for v in variants:
                r = _row(e["bench"], role, v)
                if r is None:
                    cells += ["", "", ""]
                    continue
                threads = r["threads"]
                steady[v] = r["steady_ms"]["median"]
                cells += [f"{r['steady_ms']['median']:.1f}", f"{r['load_ms']['median']:.0f}",
                          f"{r['peak_rss_bytes'] / MIB:.0f} ({r['peak_rss_above_baseline_bytes'] / MIB:.0f})"]
            ratios = [f"{steady['lite'] / steady[v]:.2f}" if "lite" in steady and steady.get(v) else ""
                      for v in variants if v != "lite"]
            lines.append(f"| {e['model']} | {role} | {threads} | " + " | ".join(cells + ratios) + " |")
    sessions: dict[str, list[dict]] = {}
    for e in entries:
        if e.get("bench"):
            sessions.setdefault(e["session"], []).append(e)
    notes = []
    for session, group in sessions.items():
        vit = next((e for e in group if e["model"] == "ViT-B-32"), None)
        if vit is None:
            continue
        for e in group:
            if e is vit:
                continue
            for role in ENCODERS:
                a, b = _row(e["bench"], role, "lite"), _row(vit["bench"], role, "lite")
                if a and b:
                    notes.append(f"- session {session}: {e['model']} / ViT-B-32 `.ptl` {role} steady latency "
                                 f"{a['steady_ms']['median'] / b['steady_ms']['median']:.2f}")
    if notes:
        lines += ["", "## Same-session ratios to ViT-B-32", "", *notes]
    loads = [f"{e['model']}: load average {', '.join(f'{v:.1f}' for v in e['bench']['environment'].get('load_average_end') or [])}" for e in entries
             if e.get("bench")]
    lines += ["", "Machine: " + (entries[0].get("bench") or {}).get("environment", {}).get("device", "?")
              + f"; shared with other jobs ({'; '.join(loads)} at the end of each run)."]
    if duels:
        lines += ["", "## Image `.ptl` head to head (interleaved call by call in one process, medians)", ""]
        for duel in duels:
            ms = duel["steady_ms_median"]
            ratio = next(v for k, v in duel.items() if k.startswith("ratio_to_"))
            first = next(iter(ms))
            lines.append(f"- session {duel['session']}, {duel['threads']} thread(s), {duel['iters']} calls each: " + "; ".join(
                f"{k} {v:.1f} ms" + (f" ({ratio[k]:.2f}x {first})" if k != first else "") for k, v in ms.items())
                + f" (`{duel['command']}`)")
    reparam = [e["reparam_latency"] for e in entries if e.get("reparam_latency")]
    if reparam:
        lines += ["", "## Reparameterized against the training form (int8 `.ptl` image tower, interleaved, one process)",
                  "", "| model | threads | reparameterized ms | training form ms | ratio | blocks | int8 cosine |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in reparam:
            ms = r["steady_ms_median"]
            lines.append(f"| {r['model']} | {r['threads']} | {ms['reparameterized']:.1f} | {ms['training form']:.1f} | "
                         f"{r['ratio_reparameterized_to_training']:.3f} | {r['reparameterized_modules']} | "
                         f"{r['int8_outputs_cosine_min']:.6f} |")
    return "\n".join(lines) + "\n"


def write_markdown(out: Path) -> Path:
    entries = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.json"))]
    duels = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "head-to-head").glob("*.json"))]
    order = {m: i for i, m in enumerate(DEFAULT_MODELS)}
    entries.sort(key=lambda e: order.get(e["model"], len(order)))
    path = out / "family.md"
    path.write_text(to_markdown(entries, duels), encoding="utf-8")
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--pretrained", default="none", help="an open_clip tag (open_clip.list_pretrained()) or none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", default=["lite", "onnx-int8"], help="deploy bench variants")
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--load-repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-bench", action="store_true", help="conversion facts only")
    p.add_argument("--reparam-latency", nargs="*", default=[], metavar="MODEL",
                   help="also time reparameterized against training-form image towers of these models")
    p.add_argument("--reparam-iters", type=int, default=30)
    p.add_argument("--head-to-head", action="store_true",
                   help="also time the image .ptl of every model of this run against each other, interleaved in one "
                        "process (after all of them are converted; written to <out>/head-to-head/)")
    p.add_argument("--markdown-only", action="store_true", help="rebuild family.md from the JSON files in --out")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "family")
    args = p.parse_args()
    from convert.cli import set_openmp_default

    set_openmp_default()  # before torch loads, as the kit's entry points do
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    # Before the first conversion creates the thread pools: a pool made for more threads and cut down later
    # ran the MobileCLIP2-S0 image .ptl 2.2x slower (2548 against 1176 ms) than one made for its one thread.
    torch.set_num_threads(args.threads[0])
    command = "python benchmarks/family.py " + " ".join(sys.argv[1:])
    session = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    if args.markdown_only:
        args.models = []
    with tempfile.TemporaryDirectory(prefix="clipkit-family-") as tmp:
        for model in args.models:
            print(f"== {model}", flush=True)
            directory = Path(tmp) / model
            entry = convert_model(model, args.pretrained, args.seed, directory)
            print(f"   converted in {entry['convert_seconds']} s", flush=True)
            entry.update(session=session, command=command)
            if not args.no_bench:
                entry["bench"] = bench_model(directory, args)
            if not args.head_to_head:  # the artifacts are needed once more at the end
                shutil.rmtree(directory)
            if model in args.reparam_latency:
                entry["reparam_latency"] = reparam_latency(model, args.seed, args.reparam_iters, args.threads[0])
            target = args.out / f"{model}.json"
            if args.no_bench and target.is_file():  # conversion facts alone never replace a benchmarked entry
                kept = json.loads(target.read_text(encoding="utf-8"))
                if "reparam_latency" in entry:
                    kept["reparam_latency"] = dict(entry["reparam_latency"], session=session, command=command)
                entry = kept
                print(f"   {target}: bench figures kept (this run has --no-bench)", flush=True)
            target.write_text(json.dumps(entry, indent=1) + "\n", encoding="utf-8")
            print(write_markdown(args.out).read_text(encoding="utf-8"), flush=True)
        if args.head_to_head and args.models:
            result = head_to_head([Path(tmp) / m for m in args.models], args.reparam_iters, args.threads[0])
            result.update(session=session, command=command)
            (args.out / "head-to-head").mkdir(exist_ok=True)
            (args.out / "head-to-head" / f"{session.replace(':', '')}.json").write_text(
                json.dumps(result, indent=1) + "\n", encoding="utf-8")
            print(write_markdown(args.out).read_text(encoding="utf-8"), flush=True)
    if args.markdown_only:
        print(write_markdown(args.out).read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
