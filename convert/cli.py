"""``python -m convert``: one command from an open_clip model to verified mobile artifacts."""
from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from typing import Any

from .config import (
    ENGINES,
    FORMATS,
    PACK_MODES,
    PRECISIONS,
    QUANTIZE_MODES,
    TARGETS,
    WEIGHT_SCHEMES,
    build_config,
    read_labels,
)
from .entry import (
    KitArgumentParser,
    add_json_option,
    json_to_stdout,
    make_console,
    run_command,
    safe_output_streams,
    set_openmp_default,
    write_json,
)
from .errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = KitArgumentParser(prog="python -m convert", description=(
        "Convert an open_clip CLIP model into int8 mobile artifacts (TorchScript lite .ptl, ExecuTorch .pte, or "
        "both) and verify them against the fp32 model. With no arguments: the built-in tiny CLIP, offline."))
    p.add_argument("--recipe", help="YAML recipe file or built-in name (android, android-compact, x86, paper); options below override it")
    p.add_argument("--model", help="open_clip model name (open_clip.list_models()); default kit-tiny-clip")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", help="open_clip pretrained tag (needs the network once), 'none' for seeded random weights")
    src.add_argument("--checkpoint", help="local state dict / open_clip checkpoint file")
    p.add_argument("--format", choices=FORMATS, help=(
        "model files to write: ptl (TorchScript lite interpreter; the default), pte (ExecuTorch + XNNPACK, "
        'needs pip install -e ".[executorch]"), or both from the one recipe'))
    p.add_argument("--allow-undelegated", action="store_true", default=None, help=(
        ".pte: accept Linear/matmul/attention ops that XNNPACK does not take (they run in portable kernels, "
        "10-100x slower); by default the conversion fails"))
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
    p.add_argument("--labels", help="labels file (one per line) or names with a comma: cat,dog (one label: cat,); "
                                    "a word without a comma is a file name. Ships a zero-shot head")
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
    p.add_argument("--truncate-text", action=argparse.BooleanOptionalAction, default=None, help=(
        "the text encoder computes only up to the batch's last end-of-text token (default: on for causal text "
        "towers pooled at it, where the fp32 result is the same; a short prompt runs several times faster)"))
    p.add_argument("--full-range", action="store_true", default=None, help=(
        "x86 (fbgemm): 8-bit instead of 7-bit activations, about half the int8 error; the artifacts then need "
        "a CPU with AVX512-VNNI (refused elsewhere, recorded in the manifest)"))
    p.add_argument("--install-to", metavar="APP_DIR", help="copy the artifacts into the android_demo app's assets")
    p.add_argument("--sensitivity", type=int, metavar="K", help=(
        "instead of converting: quantize one module group at a time, rank the groups by the error they "
        "add, and write a recipe keeping the worst K in fp32 (to --sensitivity-recipe)"))
    p.add_argument("--sensitivity-target", type=float, metavar="COSINE", help=(
        "with --sensitivity K: keep each tower's worst groups in fp32, one at a time, until its minimum "
        "cosine reaches COSINE (at most K a tower)"))
    p.add_argument("--sensitivity-recipe", default="out/sensitivity.yaml", help=(
        "where --sensitivity writes its recipe (default out/sensitivity.yaml)"))
    add_json_option(p, "the summary (or the --sensitivity ranking)")
    loud = p.add_mutually_exclusive_group()  # as deploy classify: one or the other, never both silently
    loud.add_argument("--quiet", action="store_true", help="print nothing but errors")
    loud.add_argument("--verbose", action="store_true", help="also show the log lines of open_clip, huggingface_hub and urllib3")
    p.add_argument("--wide", action="store_true", help="every column of the tables")
    return p


def _options(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"recipe", "json", "quiet", "verbose", "wide", "sensitivity", "sensitivity_recipe", "sensitivity_target"}
    opts = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if "labels" in opts:
        opts["labels"] = read_labels(opts["labels"])
    return opts


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f}"


def print_summary(result, console) -> None:
    from rich.table import Table

    m = result.manifest
    weights = m["model"].get("pretrained") or (f"checkpoint {m['model'].get('checkpoint')}" if m["model"].get("checkpoint") else None)
    runtimes = []
    if m["versions"].get("bytecode") is not None:
        runtimes.append(f"bytecode v{m['versions']['bytecode']}")
    if m["versions"].get("executorch"):
        runtimes.append(f"executorch {m['versions']['executorch']}")
    console.print(f"{m['model']['name']} -> {result.out_dir} ({m['target']}, {m['engine']}, {', '.join(runtimes)}; "
                  f"weights: {'RANDOM (--pretrained none)' if weights == 'none' else weights})", soft_wrap=True)
    table = Table()
    for col in ("artifact", "MiB", "fp32 MiB", "ratio", "cos min", "cos mean", "SQNR dB", "max abs err"):
        table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=True)
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
    for line in reparam_lines(m) + fp32_lines(m):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for row in result.rows:
        if row["role"] == "zero_shot_head" and row.get("top1_agreement") is not None:
            console.print(f"{row['file']}: top-1 agreement with fp32 on the probe images {row['top1_agreement']:.3f}")
    for entry in m["files"]:
        portable = {op: n for op, n in (entry.get("delegation") or {}).get("portable", {}).items()}
        if portable:
            console.print(f"{entry['file']}: {sum(entry['delegation']['xnnpack'].values())} ops in XNNPACK "
                          f"({entry['delegation']['segments']['xnnpack']} segments); portable kernels: "
                          + ", ".join(f"{op} x{n}" for op, n in portable.items()), soft_wrap=True, highlight=False)
    if result.installed_to:
        console.print(f"installed into {result.installed_to}")


def reparam_lines(manifest: dict) -> list[str]:
    """One line per tower: the train-time blocks folded into their inference form, and the measured difference."""
    lines = []
    for role, rep in ((manifest["model"].get("reparameterized")) or {}).items():
        if not rep.get("modules"):
            lines.append(f"{role}: nothing to reparameterize")
            continue
        kinds = ", ".join(f"{n} {k}" for k, n in rep["kinds"].items())
        lines.append(f"{role}: reparameterized {rep['modules']} blocks ({kinds}); fp32 outputs before/after differ by "
                     f"{rep['relative_diff']:.1e} of their largest (allowed {rep['tolerance']:.0e})")
    return lines


def fp32_lines(manifest: dict) -> list[str]:
    """What stayed fp32 in each file, by module type, with its share of the file and why."""
    names = {(e["role"], e["format"]): e["file"] for e in manifest["files"]}
    lines = []
    for role, block in (manifest.get("quantized") or {}).items():
        for fmt, rows in (block.get("fp32_share") or {}).items():
            for row in rows:
                what = f"{row['count']} {row['module']}" if "count" in row else row["module"]
                share = f", {100 * row['share']:.1f} % of the file" if row.get("share") is not None else ""
                lines.append(f"{names.get((role, fmt), role)}: {what} ({_mib(row['bytes'])} MiB{share}) fp32: "
                             f"{row['reason']}")
    return lines


def print_sensitivity(result, config, console, wide: bool = False) -> None:
    """The ranking (compact: rank, pattern, cosine drop, kept; ``wide`` adds the rest) and per-tower summary."""
    from rich.table import Table

    console.print(f"sensitivity of {config.model} ({config.engine}, {config.weights}): one module group int8 at a "
                  "time, worst first", soft_wrap=True)
    t = Table()
    cols = ["#", "group", "drop", "fp32"] + (["modules", "params", "cos mean", "cos min", "SQNR dB"] if wide else [])
    for col in cols:
        t.add_column(col, justify="left" if col == "group" else "right", overflow="fold")
    for r in result.rows:
        cells = [str(r["rank"]), r["pattern"], f"{r['drop']:.2e}", "yes" if r["kept_fp32"] else ""]
        if wide:
            cells += [str(r["modules"]), str(r["params"]), f"{r['cosine_mean']:.6f}", f"{r['cosine_min']:.6f}",
                      f"{r['sqnr_db']:.1f}"]
        t.add_row(*cells)
    console.print(t)
    for role, s in result.summary.items():
        console.print(f"{role}: all int8 cosine min {s['all_int8']['cosine_min']:.6f}; with the recipe "
                      f"{s['with_recipe']['cosine_min']:.6f}")
        if s.get("curve"):
            c = Table(title=f"{role}: groups kept in fp32, one at a time")
            for col in ("fp32 groups", "added", "cos min", "SQNR dB", "+MiB"):
                c.add_column(col, justify="left" if col == "added" else "right", overflow="fold")
            for p in s["curve"]:
                c.add_row(str(p["fp32_groups"]), p["added"] or "(all int8)", f"{p['cosine_min']:.6f}",
                          f"{p['sqnr_db']:.1f}", f"{p['extra_mib']:.2f}")
            console.print(c)
    kept = sum(1 for r in result.rows if r["kept_fp32"])
    console.print(f"recipe keeping {kept} groups in fp32: {result.recipe} (use: python -m convert --recipe "
                  f"{result.recipe})", soft_wrap=True)


def run_sensitivity(config, args, console, log) -> int:
    """``--sensitivity K``: rank module groups by the error their quantization adds; write a recipe."""
    from .sensitivity import check_recipe_path, rank_groups, write_recipe

    check_recipe_path(args.sensitivity_recipe)
    result = rank_groups(config, k=args.sensitivity, target=args.sensitivity_target, log=log)
    write_recipe(args.sensitivity_recipe, config, result)
    write_json(result.to_dict(), args.json)
    if not args.quiet and not json_to_stdout(args):
        print_sensitivity(result, config, console, args.wide)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convert`` and the ``clip-kit-convert`` console script."""
    set_openmp_default()
    safe_output_streams()
    args = build_parser().parse_args(argv)
    console = make_console(stderr=json_to_stdout(args), wide=args.wide)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(quantiz|TorchScript|torch.jit|lite).*")
    quiet = args.quiet or json_to_stdout(args)
    log = (lambda msg: None) if quiet else (lambda msg: console.log(msg))

    def command() -> int:
        config = build_config(args.recipe, **_options(args))
        if args.sensitivity_target is not None and args.sensitivity is None:
            raise ConfigError("--sensitivity-target needs --sensitivity K (the most groups a tower may keep in fp32)")
        if args.sensitivity is not None:
            return run_sensitivity(config, args, console, log)
        from .pipeline import convert

        if quiet:
            result = convert(config)
        else:
            with console.status("converting") as status:
                result = convert(config, log=lambda msg: (status.update(msg), console.log(msg)))
        write_json({"out_dir": str(result.out_dir), "rows": result.rows, "manifest": result.manifest}, args.json)
        if not args.quiet and not json_to_stdout(args):
            print_summary(result, console)
        return 0

    # The conversion removes its staging folder on the way out of an interrupt.
    return run_command(command, verbose=args.verbose)
