"""The benchmark report (schema ``clip-mobile-kit-bench`` v1, docs/formats.md): validation, reading,
diagnosis notes, rich/markdown tables and bar charts. The Android app's core writes the same schema."""
from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA = "clip-mobile-kit-bench"
SCHEMA_VERSION = 1
VARIANTS = ("eager-fp32", "eager-int8", "jit", "lite", "pte", "onnx-int8")
ROLES = ("image_encoder", "text_encoder", "zero_shot_head")

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
        anon = r.get("anon_after_first_call_bytes")
        if anon is not None and r.get("size_bytes"):
            r["anon_after_first_call_to_size"] = round(anon / r["size_bytes"], 3)


QNNPACK_ON_X86 = ("qnnpack on x86 is expected to be slow (it is built for ARM; here it runs its generic x86 "
                  "kernels): the qnnpack int8 figures are not what a phone does; measure on the phone "
                  "(benchmarks/android, the demo app), or convert --target x86 (fbgemm) for x86")


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
    if env.get("host") in ("x86_64", "AMD64") and any(r.get("engine") == "qnnpack" for r in results):
        notes.append(QNNPACK_ON_X86)
    la0, la1 = env.get("load_average_start"), env.get("load_average_end")
    if la0 and la1 and env.get("cpu_count") and max(la0[0], la1[0]) > 0.5 * env["cpu_count"] + 0.5:
        notes.append(f"machine was busy (1-min load average {la0[0]:.2f} -> {la1[0]:.2f} on {env['cpu_count']} CPUs): "
                     "absolute times are inflated; the interleaved ratios are the robust figures")
    return notes


def _threads(r: dict[str, Any]) -> str:
    """``2``, or ``2 (1 used)`` when the kit's per-call thread sizing ran the calls on fewer."""
    used = r.get("threads_used")
    given = str(r.get("threads", ""))
    return given if not used or used == [r.get("threads")] else f"{given} ({'/'.join(map(str, used))} used)"


def _mib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**20:.2f}"


def _f(v: float | None, digits: int = 1) -> str:
    return "" if v is None else f"{v:.{digits}f}"


COLUMNS = ("role", "variant", "engine", "thr", "OMP", "size MiB", "x size", "load ms", "first ms",
           "median ms", "p90 ms", "x fp32", "RSS+ MiB", "RSS+/size", "anon+/size")
# The default (compact) table: what fits 100 columns; ``--wide`` shows every one of COLUMNS.
COMPACT = ("role", "variant", "engine", "thr", "OMP", "size MiB", "x size", "load ms", "first ms", "median ms",
           "x fp32", "RSS+ MiB")
LEGEND = {
    "size MiB": "the artifact file (eager: the serialized state_dict)",
    "x size": "size / fp32 eager size",
    "load ms": "load in a fresh process (eager: rebuild from the manifest)",
    "first ms": "the first call",
    "median ms": "median of the timed calls", "p90 ms": "90th percentile of the timed calls",
    "x fp32": "median / fp32 eager median (same tower, threads, OMP policy)",
    "RSS+ MiB": "peak RSS above the RSS right after importing the runtime",
    "RSS+/size": "RSS+ / size",
    "anon+/size": "anonymous memory above that baseline after the first call / size",
}
SHORT_ROLES = {"image_encoder": "image", "text_encoder": "text", "zero_shot_head": "head"}


def _row(r: dict[str, Any]) -> dict[str, str]:
    return {
        "role": r["role"], "variant": r["variant"], "engine": r.get("engine") or "-", "thr": _threads(r),
        "OMP": str(r.get("omp_wait_policy") or "unset"), "size MiB": _mib(r.get("size_bytes")),
        "x size": _f(r.get("size_ratio_to_eager_fp32"), 3), "load ms": _f((r.get("load_ms") or {}).get("median")),
        "first ms": _f(r.get("first_ms")), "median ms": _f((r.get("steady_ms") or {}).get("median"), 2),
        "p90 ms": _f((r.get("steady_ms") or {}).get("p90"), 2), "x fp32": _f(r.get("latency_ratio_to_eager_fp32"), 3),
        "RSS+ MiB": _mib(r.get("peak_rss_above_baseline_bytes")), "RSS+/size": _f(r.get("rss_above_baseline_to_size"), 2),
        "anon+/size": _f(r.get("anon_after_first_call_to_size"), 2),
    }


def rows(report: dict[str, Any], columns: Sequence[str] = COLUMNS) -> list[list[str]]:
    return [[cells[c] for c in columns] for cells in map(_row, report["results"])]


def table_columns(report: dict[str, Any], wide: bool = False) -> tuple[str, ...]:
    """Every column with ``wide``; else the compact set, without OMP when a single policy was measured
    (the header line names it)."""
    if wide:
        return COLUMNS
    policies = {r.get("omp_wait_policy") for r in report["results"]}
    return tuple(c for c in COMPACT if c != "OMP" or len(policies) > 1)


def env_line(env: dict[str, Any]) -> str:
    return (f"{env.get('host')} {env.get('device')}; torch {env.get('torch')}; threads {env.get('threads_measured', env.get('threads'))}; "
            f"engine {env.get('engines_measured', env.get('engine'))}; OMP_WAIT_POLICY {env.get('omp_wait_policies_measured', env.get('omp_wait_policy'))}"
            + (f" (GOMP_SPINCOUNT {(env.get('env') or {})['GOMP_SPINCOUNT']})" if "GOMP_SPINCOUNT" in (env.get("env") or {}) else "")
            + "; "
            f"CPU flags {' '.join(env.get('cpu_flags') or []) or '-'}"
            + (f"; load avg {env['load_average_start'][0]:.2f} -> {env['load_average_end'][0]:.2f}"
               if env.get("load_average_start") and env.get("load_average_end") else ""))


def _shape(item: dict[str, Any]) -> str:
    return "x".join(str(d) for d in item.get("shape") or []) + f" {item.get('dtype', '')}".rstrip()


def timed_lines(report: dict[str, Any]) -> list[str]:
    """What one call computes (per tower: the input batch and size, the prompt's length in tokens) and how
    many calls and processes make a figure; empty parts for reports that do not record them (the app's)."""
    s = report.get("settings") or {}
    lines = []
    inputs = s.get("inputs") or {}
    parts = []
    for role, items in inputs.items():
        if not items:
            continue
        shape = items[0].get("shape") or []
        if role == "image_encoder" and len(shape) == 4:
            parts.append(f"image_encoder: a batch of {shape[0]} image(s) of {shape[2]}x{shape[3]} ({_shape(items[0])})")
        elif role == "text_encoder" and len(shape) == 2:
            n, ctx = s.get("prompt_tokens"), shape[1]
            what = f"{shape[0]} prompt(s) {s.get('prompt_text', '')!r}, {n} of {ctx} tokens with start/end" if n else \
                f"{shape[0]} prompt(s) of {ctx} tokens"
            if n and s.get("truncate_text"):
                what += f" (the int8 towers compute {n} positions, truncate_text; fp32 eager all {ctx})"
            parts.append(f"text_encoder: {what}")
        else:
            parts.append(f"{role}: {_shape(items[0])}")
    if parts:
        lines.append("one call: " + "; ".join(parts))
    if s.get("repeats") is not None:
        lines.append(f"per figure: {s['repeats']} fresh process(es) per configuration (interleaved), each 1 first "
                     f"call + {s['warmup']} warm-up + {s['iters']} timed calls; threads "
                     f"{' '.join(map(str, (report['environment'].get('threads_measured') or [report['environment'].get('threads')])))}")
    return lines


def render_table(report: dict[str, Any], console, title: str | None = None, wide: bool = False) -> None:
    """Header lines (model, environment, what was timed), the table (compact unless ``wide``), a legend
    of the shown columns, the notes. Plain lines, not table titles: rich wraps titles mid-word."""
    from convert.entry import report_table

    def line(text: str) -> None:
        console.print(text, soft_wrap=True, markup=False, highlight=False)

    model = (report.get("model") or {}).get("name") if isinstance(report.get("model"), dict) else None
    line(title or f"{model or 'artifacts'} ({report.get('target') or report['environment'].get('host')}"
                  + (f" artifacts, {report['artifact_engine']}" if report.get("artifact_engine") else "") + ")")
    line(env_line(report["environment"]))
    for text in timed_lines(report):
        line(text)
    columns = table_columns(report, wide)
    body = rows(report, columns)
    if not wide:
        body = [[SHORT_ROLES.get(c, c) if i == 0 else c for i, c in enumerate(r)] for r in body]
    headers = [c if c in ("role", "variant", "engine", "thr", "OMP") else c.replace(" ", "\n", 1) for c in columns]
    console.print(report_table(headers, body, text_columns=3))
    line("columns" + ("" if wide else " (--wide: every column)") + ":")
    for c in columns:
        if c in LEGEND:
            line(f"  {c:<10} {LEGEND[c]}")
    for note in report.get("notes") or []:
        line(f"- {note}")


def to_markdown(reports: list[dict[str, Any]]) -> str:
    parts = []
    for report in reports:
        model = report.get("model") or {}
        parts.append(f"## {model.get('name', 'benchmark')} ({report.get('target') or report['environment'].get('host')}), "
                     f"{report.get('created_utc', '')}\n")
        parts.append(f"Environment: {env_line(report['environment'])}\n")
        if report.get("command"):
            parts.append(f"Command: `{report['command']}`\n")
        parts.extend(f"{text}\n" for text in timed_lines(report))
        parts.append("| " + " | ".join(COLUMNS) + " |")
        parts.append("|" + "|".join("---" if c in ("role", "variant", "engine", "OMP") else "---:" for c in COLUMNS) + "|")
        for row in rows(report):
            parts.append("| " + " | ".join(row) + " |")
        parts.append("\nColumns: " + "; ".join(f"{c}: {d}" for c, d in LEGEND.items()) + ".")
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
    """Read v1 reports (``bench --from-json``), each checked by :func:`validate_report`, with ratios added."""
    from convert.errors import ArtifactError, one_line
    from convert.files import read_user_text

    reports = []
    for p in paths:
        try:
            data = json.loads(read_user_text(p, "bench report", ArtifactError))
        except (ValueError, RecursionError) as exc:
            raise ArtifactError(f"{p}: cannot be read as JSON ({one_line(exc, 120)})") from None
        try:
            validate_report(data)
        except ArtifactError as exc:
            raise ArtifactError(f"{p}: {exc}") from None
        add_ratios(data["results"])
        # Notes this kit version knows how to make, for reports written before it did.
        data["notes"] = list(dict.fromkeys(list(data.get("notes") or []) + diagnose(data)))
        reports.append(data)
    return reports


def validate_report(report: Any) -> None:
    """:class:`ArtifactError` (one line naming the first problem) unless ``report`` follows the v1 schema of
    docs/formats.md; extra fields are allowed. The one check of a report, written or read."""
    from convert.errors import ArtifactError, quoted

    if not isinstance(report, dict):
        raise ArtifactError(f"not a {SCHEMA} report (a JSON {type(report).__name__}, not an object)")
    if report.get("schema") != SCHEMA:
        raise ArtifactError(f"not a {SCHEMA} report (schema={quoted(report.get('schema'))})")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"schema_version {quoted(report.get('schema_version'))} is not {SCHEMA_VERSION}")
    for key in ("created_utc", "environment", "results"):
        if key not in report:
            raise ArtifactError(f"the report lacks {key!r}")
    if not isinstance(report["environment"], dict) or not isinstance(report["results"], list) or not all(
            isinstance(r, dict) for r in report["results"]):
        raise ArtifactError(f"not a {SCHEMA} report (an environment object and a list of result objects)")
    for key in ("host", "device", "torch", "threads", "engine", "omp_wait_policy", "cpu_flags"):
        if key not in report["environment"]:
            raise ArtifactError(f"the environment lacks {key!r}")
    for r in report["results"]:
        for key in ("role", "variant", "file", "threads", "engine", "size_bytes", "load_ms", "first_ms",
                    "steady_ms", "peak_rss_bytes"):
            if key not in r:
                raise ArtifactError(f"a result lacks {key!r}")
        if r["variant"] not in VARIANTS:
            raise ArtifactError(f"unknown variant {quoted(r['variant'])} (known: {', '.join(VARIANTS)})")
        for key in ("load_ms", "steady_ms"):
            if not isinstance(r[key], dict) or set(r[key]) < {"median", "p90", "samples"}:
                raise ArtifactError(f"a result's {key} lacks median/p90/samples")
    # Optional (desktop additions): what one call computed, per role.
    inputs = (report.get("settings") or {}).get("inputs") if isinstance(report.get("settings"), dict) else None
    if inputs is not None:
        if not isinstance(inputs, dict) or any(
                not isinstance(items, list) or any(not isinstance(i, dict) or not isinstance(i.get("shape"), list)
                                                   or not isinstance(i.get("dtype"), str) for i in items)
                for items in inputs.values()):
            raise ArtifactError("settings.inputs must map each role to a list of {shape: [...], dtype: str}")
