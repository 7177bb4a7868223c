"""``python -m convert``: one command from an open_clip model to verified mobile artifacts."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any, Sequence

from .config import ENGINES, PRECISIONS, QUANTIZE_MODES, TARGETS, WEIGHT_SCHEMES, build_config, read_labels
from .errors import ConfigError, KitError
from .packing import PACK_MODES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"error: {message} (see python -m convert --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m convert", description=(
        "Convert an open_clip CLIP model into int8, scripted, mobile-optimized .ptl artifacts and "
        "verify them against the fp32 model. With no arguments: the built-in tiny CLIP, offline."))
    p.add_argument("--recipe", help="YAML recipe file or built-in name (android, android-compact, x86, paper); options below override it")
    p.add_argument("--model", help="open_clip model name (open_clip.list_models()); default kit-tiny-clip")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", help="open_clip pretrained tag (needs the network once), 'none' for seeded random weights")
    src.add_argument("--checkpoint", help="local state dict / open_clip checkpoint file")
    p.add_argument("--quantize", choices=QUANTIZE_MODES, help="towers to quantize (default combined)")
    p.add_argument("--target", choices=TARGETS, help="android: qnnpack + optimize_for_mobile; x86: fbgemm, unfrozen")
    p.add_argument("--engine", choices=ENGINES, help="quantized engine (default: the target's)")
    p.add_argument("--weights", choices=WEIGHT_SCHEMES, help="int8 weight scales (default per-channel)")
    p.add_argument("--attention", choices=PRECISIONS, help="int8 unfolds MultiheadAttention so it is quantized too")
    p.add_argument("--embedding", choices=PRECISIONS, help="weight-only int8 token embedding")
    p.add_argument("--patch", choices=PRECISIONS, help="patch convolution as an int8 Linear over patches")
    p.add_argument("--projection", choices=PRECISIONS, help="output projections as int8 Linears")
    p.add_argument("--keep-fp32", nargs="+", metavar="PATTERN", help="module-name patterns (fnmatch on <role>.<module>, e.g. text_encoder.*.mlp.c_fc) kept in fp32")
    p.add_argument("--per-tensor", nargs="+", metavar="PATTERN", help="module-name patterns given one weight scale per tensor")
    p.add_argument("--labels", help="labels file (one per line) or comma-separated names: ships a zero-shot head")
    p.add_argument("--templates", help="prompt templates: openai (80), simple (7), plain, or a file")
    p.add_argument("--out", help="output directory (default out/<model>-<target>)")
    p.add_argument("--force", action="store_true", default=None, help="replace a non-empty output directory")
    p.add_argument("--also-pt", action="store_true", default=None, help="also write .pt TorchScript twins")
    p.add_argument("--bytecode-version", type=int, help="backport the .ptl files to this bytecode version")
    p.add_argument("--min-cosine", type=float, help="fidelity floor per tower (default 0.99)")
    p.add_argument("--seed", type=int, help="seed for random weights and probe inputs")
    p.add_argument("--pack", choices=PACK_MODES, help=(
        "when int8 weights are packed for the engine: at load, or on the first call (x86 only, and its "
        "default: the load only reads the file and memory never holds two copies of every weight)"))
    p.add_argument("--truncate-text", action="store_true", default=None, help=(
        "the text encoder computes only up to the batch's last end-of-text token (causal text towers: the "
        "fp32 result is the same; a short prompt runs several times faster)"))
    p.add_argument("--install-to", metavar="APP_DIR", help="copy the artifacts into the android_demo app's assets")
    p.add_argument("--sensitivity", type=int, metavar="K", help=(
        "instead of converting: quantize one module group at a time, rank the groups by the error they "
        "add, and write a recipe keeping the worst K in fp32 (to --sensitivity-recipe)"))
    p.add_argument("--sensitivity-target", type=float, metavar="COSINE", help=(
        "with --sensitivity K: keep each tower's worst groups in fp32, one at a time, until its minimum "
        "cosine reaches COSINE (at most K a tower)"))
    p.add_argument("--sensitivity-recipe", default="sensitivity.yaml", help="where --sensitivity writes its recipe")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def _options(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"recipe", "json", "quiet", "sensitivity", "sensitivity_recipe", "sensitivity_target"}
    opts = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if "labels" in opts:
        opts["labels"] = read_labels(opts["labels"])
    return opts


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f}"


def print_summary(result, console) -> None:
    from rich.table import Table

    m = result.manifest
    table = Table(title=f"{m['model']['name']} -> {result.out_dir} ({m['target']}, {m['engine']}, "
                        f"bytecode v{m['versions']['bytecode']})")
    for col in ("artifact", "MiB", "fp32 MiB", "ratio", "cosine min", "cosine mean", "SQNR dB", "max abs err"):
        table.add_column(col, justify="left" if col == "artifact" else "right")
    total = total_fp32 = 0
    for row in result.rows:
        total += row["bytes"]
        total_fp32 += row["fp32_bytes"]
        table.add_row(row["file"], _mib(row["bytes"]), _mib(row["fp32_bytes"]), f"{row['ratio']:.3f}",
                      f"{row.get('cosine_min', float('nan')):.6f}", f"{row.get('cosine_mean', float('nan')):.6f}",
                      f"{row.get('sqnr_db', float('nan')):.1f}", f"{row.get('max_abs_err', float('nan')):.2e}")
    table.add_row("total", _mib(total), _mib(total_fp32), f"{total / total_fp32:.3f}" if total_fp32 else "", "", "", "", "",
                  style="bold")
    console.print(table)
    head = m["fidelity"].get("zero_shot_head")
    if head:
        console.print(f"zero-shot head: top-1 agreement with fp32 on the probe images {head['top1_agreement']:.3f}")
    if result.installed_to:
        console.print(f"installed into {result.installed_to}")


def run_sensitivity(config, k: int, recipe: str, console, as_json: bool, target: float | None = None) -> int:
    """``--sensitivity K``: rank module groups by the error their quantization adds (deploy.evaluate)."""
    from rich.table import Table

    from deploy.evaluate import print_sensitivity_summary
    from deploy.evaluate import run_sensitivity as rank

    rows = rank(config, k=k, out_recipe=recipe, target=target)
    if as_json:
        print(json.dumps({"recipe": recipe, "rows": rows, "summary": getattr(rank, "summary", {})}, indent=2))
        return 0
    table = Table(title=f"sensitivity of {config.model} ({config.engine}, {config.weights}); worst first")
    for col in rows[0].keys() if rows else ():
        table.add_column(str(col))
    for row in rows:
        table.add_row(*(f"{v:.6f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)
    print_sensitivity_summary(getattr(rank, "summary", {}), console)
    kept = sum(1 for r in rows if r["kept_fp32"])
    console.print(f"recipe keeping {kept} groups in fp32: {recipe} (use: python -m convert --recipe {recipe})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    # A pipe gets a fixed width so the table is not squeezed to 80 columns.
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 120)
    err = Console(stderr=True)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(quantiz|TorchScript|torch.jit|lite).*")
    try:
        config = build_config(args.recipe, **_options(args))
        if args.sensitivity_target is not None and args.sensitivity is None:
            raise ConfigError("--sensitivity-target needs --sensitivity K (the most groups a tower may keep in fp32)")
        if args.sensitivity is not None:
            return run_sensitivity(config, args.sensitivity, args.sensitivity_recipe, console, args.json,
                                   args.sensitivity_target)
        from .pipeline import convert

        if args.quiet or args.json:
            result = convert(config)
        else:
            with console.status("converting") as status:
                result = convert(config, log=lambda msg: (status.update(msg), console.log(msg)))
    except KitError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    if args.json:
        print(json.dumps({"out_dir": str(result.out_dir), "rows": result.rows, "manifest": result.manifest}, indent=2))
    elif not args.quiet:
        print_summary(result, console)
    return 0
