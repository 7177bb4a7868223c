"""``python -m deploy bench DIR``: eager vs JIT vs lite (vs ONNX Runtime) benchmark of converted artifacts.

What is measured, per tower (``role``), variant, quantized engine, thread count and OpenMP wait policy:
``size_bytes`` (the artifact; for eager variants the serialized ``state_dict``), ``load_ms`` (fresh
process; eager: rebuild from the manifest), ``first_ms`` (the first call: a ``.pt`` pays the profiling
executor, fbgemm ``--pack first-call`` artifacts pack here), ``steady_ms`` (median / p90 after warm-up),
``peak_rss_bytes`` and ``peak_rss_above_baseline_bytes`` (above the RSS right after importing the runtime).
The artifact directory is verified first by the one reader (sha256, confinement, metadata), exactly as
``classify`` does: a tampered file is refused, not measured.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from convert.entry import add_json_option, check_thread_count, json_to_stdout, write_json
from convert.errors import ConfigError

if TYPE_CHECKING:  # plan is imported when a bench runs, not when `python -m deploy` builds its parser
    from .plan import Settings
from .report import ROLES, SCHEMA, SCHEMA_VERSION, VARIANTS, load_reports, plot, render_table, to_markdown, validate_report

DEFAULT_VARIANTS = ("eager-fp32", "eager-int8", "jit", "lite")
OMP_CHOICES = ("default", "PASSIVE", "ACTIVE")


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
    p.add_argument("--checkpoint", help="the reference checkpoint, when the manifest's is not at its recorded path "
                                        "(its sha256 must match)")
    p.add_argument("--skip-reference-check", action="store_true",
                   help="do not verify that the rebuilt fp32 model matches the artifacts")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement process (default 900)")
    add_json_option(p, "the clip-mobile-kit-bench report (docs/formats.md)")
    p.add_argument("--markdown", metavar="FILE", help="write a markdown table")
    p.add_argument("--plot", metavar="FILE.png", help="size and latency bar charts (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no table or progress bar")
    p.add_argument("--wide", action="store_true", help="every column of the table (default: those that fit 100 columns)")
    p.set_defaults(func=main)


def settings_from_args(args) -> Settings:
    for count in args.threads:  # first: nothing is started for a count this machine cannot run
        check_thread_count(count, "--threads")
    import torch

    from .plan import Settings

    supported = torch.backends.quantized.supported_engines
    engines = tuple(args.engines) if args.engines else tuple(e for e in ("qnnpack", "fbgemm") if e in supported)
    unknown = [e for e in engines if e not in supported]
    if unknown:
        raise ConfigError(f"--engines {' '.join(unknown)}: not in this torch (valid: {', '.join(supported)})")
    if not engines:
        raise ConfigError("no quantized engine to measure")
    variants = tuple(args.variants) if args.variants else DEFAULT_VARIANTS + (("onnx-int8",) if args.onnx else ())
    if args.onnx and "onnx-int8" not in variants:
        variants += ("onnx-int8",)
    for name in ("repeats", "iters"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('repeats', 'load-repeats')} {getattr(args, name)} must be at least 1")
    if args.warmup < 0:
        raise ConfigError(f"--warmup {args.warmup} must be >= 0")
    return Settings(directory=Path(args.directory), roles=tuple(args.roles or ROLES), variants=variants,
                    threads=tuple(dict.fromkeys(args.threads)), engines=engines,
                    omp=tuple(dict.fromkeys(args.omp_wait_policy)), repeats=args.repeats, iters=args.iters,
                    warmup=args.warmup, timeout=args.timeout)


def check_variants(settings: Settings, verified, explicit: bool) -> None:
    """A requested variant that cannot run is an error with the reason; a default one that cannot is
    dropped with a note (never an empty table)."""
    has_pt = any(verified.entry(role, "torchscript") for role in settings.roles)
    if "jit" in settings.variants and not has_pt:
        reason = f"{verified.directory} has no .pt twins (convert with --also-pt)"
        if explicit:
            raise ConfigError(f"--variants jit cannot run: {reason}")
        settings.variants = tuple(v for v in settings.variants if v != "jit")
        settings.notes.append(f"jit not measured: {reason}")
    if "pte" in settings.variants and not any(verified.entry(role, "pte") for role in settings.roles):
        reason = f"{verified.directory} has no .pte files (convert with --format both or --format pte)"
        if explicit:
            raise ConfigError(f"--variants pte cannot run: {reason}")
        settings.variants = tuple(v for v in settings.variants if v != "pte")
    if "lite" in settings.variants and not any(verified.entry(role, "lite") for role in settings.roles):
        reason = f"{verified.directory} has no .ptl files (convert with --format both or --format ptl)"
        if explicit:
            raise ConfigError(f"--variants lite cannot run: {reason}")
        settings.variants = tuple(v for v in settings.variants if v != "lite")
        settings.notes.append(f"lite not measured: {reason}")
    from .plan import model_entry

    roles = [r for r in settings.roles if model_entry(verified, r)]
    if not roles:
        raise ConfigError(f"--roles {' '.join(settings.roles)}: none is in {verified.directory}")
    settings.roles = tuple(roles)
    if "onnx-int8" in settings.variants:
        from .peers import require_onnxruntime

        require_onnxruntime()


def write_outputs(reports: list[dict[str, Any]], args) -> None:
    if args.json:
        data = reports[0] if len(reports) == 1 else {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                                                      "reports": reports}
        write_json(data, args.json)
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(reports), encoding="utf-8")
    if args.plot:
        plot(reports, Path(args.plot))


def main(args) -> int:
    from convert.artifact import verify_artifacts
    from convert.entry import make_console

    from .plan import run

    console = make_console(wide=args.wide)
    from convert.files import check_output_file

    for flag in ("json", "markdown", "plot"):
        if getattr(args, flag) and getattr(args, flag) != "-":
            check_output_file(getattr(args, flag), f"--{flag}")
    if args.from_json:
        if args.directory:
            raise ConfigError("give either DIR or --from-json, not both")
        reports = load_reports(args.from_json)
        if not args.quiet and not json_to_stdout(args):
            for report in reports:
                render_table(report, console, wide=args.wide)
        write_outputs(reports, args)
        return 0
    if not args.directory:
        raise ConfigError("give an artifact directory DIR (or --from-json FILE...)")
    settings = settings_from_args(args)
    from convert.artifact import read_manifest

    listed = {e["format"] for e in read_manifest(settings.directory)["files"]}
    if not args.variants and "pte" in listed:
        settings.variants = tuple(v for v in settings.variants if v != "onnx-int8") + ("pte",) + tuple(
            v for v in settings.variants if v == "onnx-int8")  # a directory with .pte files: measured beside .ptl
    formats = tuple(f for f in ("lite", "torchscript", "pte") if f in listed
                    and (f != "torchscript" or "jit" in settings.variants) and (f != "pte" or "pte" in settings.variants))
    verified = verify_artifacts(settings.directory, settings.roles, formats or ("lite",), require_image=False)
    check_variants(settings, verified, explicit=bool(args.variants))
    kwargs = dict(check_reference=not args.skip_reference_check, checkpoint=args.checkpoint)
    if args.quiet:
        report = run(settings, verified, None, **kwargs)
    else:
        from deploy.runtime import Progress

        # A bar in a terminal; in a pipe or a log a plain line at least every 10 s (runs take minutes).
        report = run(settings, verified, lambda total, what: Progress(total, what, delay=0, every=10.0),
                     log=make_console(stderr=True).log, **kwargs)
    validate_report(report)
    if not args.quiet and not json_to_stdout(args):
        render_table(report, console, wide=args.wide)
    write_outputs([report], args)
    return 0
