"""Per-tower int8 fidelity of random-init ViT towers: prints a table and writes JSON (not a timed test).

Random-init ViT-B-32 / ViT-B-16 (``--pretrained none``): per-tower cosine (min/mean) and SQNR of eager
int8 against fp32 on the converter's probe inputs, for the per-channel and per-tensor recipes, with the
converter's own ``build_towers`` (qnnpack engine, same recipe as ``python -m convert``), not the scripted
lite files (target >= 0.9999 per-channel). Zero-shot accuracy of converted artifacts has one source:
``python -m deploy evaluate`` (the README's figures come from it).

    PYTHONPATH=. python benchmarks/accuracy.py [--models ViT-B-32 ViT-B-16] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def vit_towers(name: str, log) -> list[dict]:
    import open_clip
    import torch

    from convert import build_config
    from convert.load import load_model
    from convert.metrics import compare
    from convert.probes import probe_images, probe_texts
    from convert.quantize import set_engine
    from convert.towers import build_towers

    rows = []
    loaded = load_model(build_config(model=name, pretrained="none"))
    model = loaded.model
    images = probe_images(loaded.preprocess, n=8, seed=0)
    tokens = open_clip.get_tokenizer(name)(probe_texts(["red circle", "dog", "cat"]))
    for weights in ("per-channel", "per-tensor"):
        config = build_config(model=name, pretrained="none", weights=weights)
        quant = config.quant
        set_engine(config.engine)
        t0 = time.perf_counter()
        towers = build_towers(model, quant)
        for role, inputs in (("image_encoder", images), ("text_encoder", tokens)):
            report = towers.reports[role]
            with torch.no_grad():
                ref = towers.fp32[role](inputs)
                got = towers.modules[role](inputs)
            c = compare(ref, got)
            rows.append({"model": name, "weights": weights, "role": role, "int8_modules": len(report.int8),
                         "fp32_modules": len(report.fp32), **c, "seconds": round(time.perf_counter() - t0, 1)})
            log(f"{name} {weights} {role}: cosine min {c['cosine_min']:.6f} mean {c['cosine_mean']:.6f}")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["ViT-B-32", "ViT-B-16"])
    p.add_argument("--json", default="out/accuracy.json", help="output JSON (default out/accuracy.json)")
    args = p.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    log = console.log
    result: dict = {"schema": "clip-mobile-kit-accuracy", "schema_version": 1}
    import torch

    result["environment"] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
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
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
