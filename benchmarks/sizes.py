"""What each conversion option contributes: artifact sizes and fidelity, option by option.

    python benchmarks/sizes.py --model ViT-B-32 --pretrained none [--json FILE] [--markdown FILE]

Each row is a real conversion (script -> optimize -> save -> reload in the lite interpreter ->
compare with fp32), so the sizes are those of the `.ptl` files a phone loads. It also measures the
paper's state-dict sizes (quantize_dynamic on nn.Linear only).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 2**20
FP32 = dict(attention="fp32", embedding="fp32", patch="fp32", projection="fp32")
ROWS = [
    ("fp32 (no quantization)", dict(quantize="none", target="android")),
    ("paper: Linear only, per-tensor (x86)", dict(target="x86", weights="per-tensor", **FP32)),
    ("paper recipe on android (qnnpack)", dict(target="android", weights="per-tensor", **FP32)),
    ("+ attention int8", dict(target="android", weights="per-tensor", **{**FP32, "attention": "int8"})),
    ("+ token embedding int8", dict(target="android", weights="per-tensor", **{**FP32, "attention": "int8", "embedding": "int8"})),
    ("+ patch conv int8", dict(target="android", weights="per-tensor", attention="int8", embedding="int8", patch="int8", projection="fp32")),
    ("+ projections int8 (all int8, per-tensor)", dict(target="android", weights="per-tensor")),
    ("all int8, per-channel (recipe android)", dict(recipe="android")),
    ("image per-tensor, text per-channel (recipe android-compact)", dict(recipe="android-compact")),
    ("all int8, per-channel, fbgemm (recipe x86)", dict(recipe="x86")),
]


def measure(model: str, pretrained: str, rows, seed: int) -> dict:
    import torch

    from convert import build_config
    from convert.load import load_model
    from convert.pipeline import convert
    from convert.quantize import paper_state_dict_mib

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, opts) in enumerate(rows):
            opts = dict(opts)
            recipe = opts.pop("recipe", None)
            config = build_config(recipe, model=model, pretrained=pretrained, seed=seed,
                                  out=str(Path(tmp) / f"row{i}"), min_cosine=-1.0, **opts)
            result = convert(config)
            sizes = {f["role"]: f["bytes"] for f in result.manifest["files"] if f["format"] == "lite"}
            fid = result.manifest["fidelity"]
            row = {"variant": name, "config": {k: v for k, v in config.to_dict().items()
                                               if k in ("target", "engine", "weights", "attention", "embedding",
                                                        "patch", "projection", "per_tensor")},
                   "image_mib": sizes["image_encoder"] / MIB, "text_mib": sizes["text_encoder"] / MIB,
                   "total_mib": (sizes["image_encoder"] + sizes["text_encoder"]) / MIB,
                   "image_cosine_min": fid["image_encoder"]["cosine_min"],
                   "text_cosine_min": fid["text_encoder"]["cosine_min"],
                   "text_cosine_min_per_prompt": fid["text_encoder"]["per_prompt"]["cosine_min"],
                   "image_sqnr_db": fid["image_encoder"]["sqnr_db"], "text_sqnr_db": fid["text_encoder"]["sqnr_db"]}
            results.append(row)
            print(f"{name}: {row['total_mib']:.2f} MiB, cos {row['image_cosine_min']:.6f} / "
                  f"{row['text_cosine_min']:.6f}", flush=True)
            import shutil

            shutil.rmtree(result.out_dir, ignore_errors=True)
    torch.manual_seed(seed)
    loaded = load_model(build_config(model=model, pretrained=pretrained, seed=seed))
    fp32_sd, paper_sd = paper_state_dict_mib(loaded.model)
    return {"model": model, "pretrained": pretrained, "torch": torch.__version__,
            "paper_state_dict_mib": {"fp32": round(fp32_sd, 2), "quantize_dynamic_linear": round(paper_sd, 2)},
            "rows": results}


def to_markdown(report: dict) -> str:
    lines = [f"Model {report['model']} (pretrained={report['pretrained']}), torch {report['torch']}. "
             f"Paper state dict: fp32 {report['paper_state_dict_mib']['fp32']} MiB -> "
             f"quantize_dynamic(nn.Linear) {report['paper_state_dict_mib']['quantize_dynamic_linear']} MiB.", "",
             "| variant | image .ptl MiB | text .ptl MiB | total MiB | image cosine min | text cosine min | text, one prompt at a time |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['variant']} | {r['image_mib']:.2f} | {r['text_mib']:.2f} | {r['total_mib']:.2f} | "
                     f"{r['image_cosine_min']:.6f} | {r['text_cosine_min']:.6f} | {r['text_cosine_min_per_prompt']:.6f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--pretrained", default="none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, nargs="*", help="row indices to run (default: all)")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    rows = [ROWS[i] for i in args.rows] if args.rows else ROWS
    report = measure(args.model, args.pretrained, rows, args.seed)
    md = to_markdown(report)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
