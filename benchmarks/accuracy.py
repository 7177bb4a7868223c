"""What quantization costs in accuracy: prints a table and writes JSON (not a timed test).

1. Built-in tiny CLIP, default conversion (combined int8, attention + embedding int8, qnnpack, android):
   zero-shot top-1 drop against fp32 and top-1 agreement on the held-out generated shapes
   (targets: drop <= 0.5 points, agreement >= 99 %). Runs the real conversion and the lite artifacts
   through ``deploy.evaluate``. Without the trained checkpoint it falls back to random weights and says so.
2. Random-init ViT-B-32 / ViT-B-16 (``--pretrained none``): per-tower cosine (min/mean) and SQNR of int8
   against fp32 on the converter's probe inputs, for the per-channel and per-tensor recipes. Eager int8
   towers built by the converter's own ``towers`` + ``quantize_tower`` (qnnpack engine, same recipe as
   ``python -m convert``), not the scripted lite files (target >= 0.9999 per-channel).

    PYTHONPATH=. python benchmarks/accuracy.py [--n 2000] [--models ViT-B-32 ViT-B-16] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def tiny_clip(n: int, templates: list[str], log) -> dict:
    from assets import TINY_CHECKPOINT, TINY_LABELS
    from convert import build_config
    from convert.config import read_labels
    from convert.pipeline import convert
    from deploy.evaluate import evaluate

    trained = TINY_CHECKPOINT.is_file()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "art"
        if trained:
            config = build_config(out=str(out))
        else:
            log(f"WARNING: {TINY_CHECKPOINT} is missing: random weights, accuracy figures are meaningless")
            config = build_config(model="kit-tiny-clip", pretrained="none", labels=read_labels(str(TINY_LABELS)),
                                  out=str(out))
        log("converting the tiny CLIP (default recipe)")
        convert(config)
        report = evaluate(out, "shapes", n, templates=templates, log=log)
    report["trained_checkpoint"] = trained
    report["targets"] = {"top1_drop_points_max": 0.5, "top1_agreement_min": 0.99}
    return report


def vit_towers(name: str, log) -> list[dict]:
    import open_clip
    import torch

    from convert import build_config
    from convert.load import load_model
    from convert.pipeline import compare
    from convert.probes import probe_images, probe_texts
    from convert.quantize import quantize_tower, set_engine
    from convert.towers import build_image_encoder, build_text_encoder

    rows = []
    loaded = load_model(build_config(model=name, pretrained="none"))
    model = loaded.model
    images = probe_images(loaded.preprocess, n=8, seed=0)
    tokens = open_clip.get_tokenizer(name)(probe_texts(["red circle", "dog", "cat"]))
    for weights in ("per-channel", "per-tensor"):
        config = build_config(model=name, pretrained="none", weights=weights)
        quant = config.quant
        set_engine(config.engine)
        for role, tower, inputs in (
            ("image_encoder", build_image_encoder(model, attention=True, patch=True), images),
            ("text_encoder", build_text_encoder(model, attention=True), tokens),
        ):
            t0 = time.perf_counter()
            with torch.no_grad():
                ref = tower(inputs)
                qt, report = quantize_tower(tower, quant, role)
                got = qt(inputs)
            c = compare(ref, got)
            rows.append({"model": name, "weights": weights, "role": role, "int8_modules": len(report.int8),
                         "fp32_modules": len(report.fp32), **c, "seconds": round(time.perf_counter() - t0, 1)})
            log(f"{name} {weights} {role}: cosine min {c['cosine_min']:.6f} mean {c['cosine_mean']:.6f}")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="held-out shapes images (default 2000)")
    p.add_argument("--templates", default="simple,openai")
    p.add_argument("--models", nargs="*", default=["ViT-B-32", "ViT-B-16"])
    p.add_argument("--skip-tiny", action="store_true")
    p.add_argument("--json", default="accuracy.json", help="output JSON (default accuracy.json)")
    args = p.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    log = console.log
    result: dict = {"schema": "clip-mobile-kit-accuracy", "schema_version": 1}
    import torch

    result["environment"] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if not args.skip_tiny:
        tiny = tiny_clip(args.n, [t for t in args.templates.split(",") if t], log)
        result["tiny_clip"] = tiny
        t = Table(title=f"kit-tiny-clip default conversion, {tiny['dataset']}"
                        + ("" if tiny["trained_checkpoint"] else " [RANDOM WEIGHTS: checkpoint missing]"))
        for col in ("templates", "fp32 top-1 %", "int8 top-1 %", "drop (points, target <= 0.5)",
                    "top-1 agreement (target >= 99 %)", "fp32 top-5 %", "int8 top-5 %"):
            t.add_column(col, justify="right")
        for name, z in tiny["zero_shot"].items():
            t.add_row(name, f"{100 * z['fp32_top1']:.2f}", f"{100 * z['converted_top1']:.2f}",
                      f"{z['top1_drop_points']:.2f}", f"{100 * z['top1_agreement']:.2f}",
                      f"{100 * z['fp32_top5']:.2f}", f"{100 * z['converted_top5']:.2f}")
        console.print(t)
        lp = tiny.get("linear_probe", {})
        console.print(f"image cosine mean {tiny['image_encoder']['cosine_mean']:.6f}, text cosine mean "
                      f"{tiny['text_encoder']['cosine_mean']:.6f}; linear probe fp32 {100 * lp.get('fp32_top1', 0):.2f} % "
                      f"vs int8 {100 * lp.get('converted_top1', 0):.2f} %")
    rows = []
    for name in args.models:
        rows += vit_towers(name, log)
    if rows:
        result["vit_towers"] = rows
        t = Table(title="random-init ViT towers, eager int8 (qnnpack) vs fp32 on probe inputs (target >= 0.9999)")
        for col in ("model", "weights", "tower", "cosine min", "cosine mean", "SQNR dB"):
            t.add_column(col, justify="right")
        for r in rows:
            t.add_row(r["model"], r["weights"], r["role"], f"{r['cosine_min']:.6f}", f"{r['cosine_mean']:.6f}",
                      f"{r['sqnr_db']:.1f}")
        console.print(t)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
