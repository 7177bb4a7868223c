"""Where a second intra-op thread starts to pay, per tower and input size: the measurement behind
``deploy.threads.WORK_PER_THREAD``.

Loads the ``.ptl`` towers of one artifact directory once and times each input at 1 and at N threads,
interleaved in one process (every repetition runs every case at both counts), so machine load hits both
alike. Reports medians, the N/1 ratio, the work estimate ``rows x width^2`` (``deploy.threads``) and the
thread count the kit's policy picks.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python benchmarks/threads_crossover.py DIR [--threads 2] [--reps 15]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convert.entry import check_thread_count, set_openmp_default  # noqa: E402 - no torch in convert.entry
from convert.errors import ConfigError  # noqa: E402

set_openmp_default()  # before torch starts, as the kit's entry points do

import torch  # noqa: E402

from deploy import threads  # noqa: E402
from deploy.artifacts import load_artifacts  # noqa: E402


def prompt(length: int, batch: int, context: int, sot: int, eot: int) -> torch.Tensor:
    x = torch.zeros(batch, context, dtype=torch.long)
    x[:, 0] = sot
    x[:, 1:length - 1] = 320  # any ids time the same
    x[:, length - 1] = eot
    return x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("directory")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--markdown", metavar="FILE")
    args = p.parse_args(argv)
    try:
        check_thread_count(args.threads, "--threads")
    except ConfigError as exc:
        p.error(str(exc))
    artifacts = load_artifacts(args.directory, roles=("image_encoder", "text_encoder"))
    manifest = artifacts.manifest
    tok = manifest["tokenizer"]
    context = tok["context_length"]
    size = manifest["preprocess"]["image_size"]
    cases = [(f"image, batch {b}", "image_encoder", torch.randn(b, 3, *size)) for b in (1, 4)]
    cases += [(f"text, {n} tokens", "text_encoder", prompt(n, 1, context, tok["sot_token_id"], tok["eot_token_id"]))
              for n in (4, 8, 16, 32, context) if n <= context]
    cases += [(f"text, {b} x 8 tokens", "text_encoder", prompt(8, b, context, tok["sot_token_id"], tok["eot_token_id"]))
              for b in (4, 8, 32)]
    counts = (1, args.threads)
    times: dict[tuple[str, int], list[float]] = {}
    with torch.no_grad():
        for _, role, x in cases:  # first calls (packing) and warm-up at both counts
            for n in counts:
                torch.set_num_threads(n)
                artifacts.modules[role](x)
                artifacts.modules[role](x)
        load0 = os.getloadavg()[0]
        for _ in range(args.reps):
            for name, role, x in cases:
                for n in counts:
                    torch.set_num_threads(n)
                    t0 = time.perf_counter_ns()
                    artifacts.modules[role](x)
                    times.setdefault((name, n), []).append((time.perf_counter_ns() - t0) / 1e6)
        load1 = os.getloadavg()[0]
    command = "PYTHONPATH=. python benchmarks/threads_crossover.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    lines = [f"Command: `{command}` (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})", "",
             f"{(manifest.get('model') or {}).get('name')} ({manifest['target']}, {manifest['engine']}); torch "
             f"{torch.__version__}; {args.reps} interleaved repetitions, medians; load average {load0:.2f} -> "
             f"{load1:.2f} on {os.cpu_count()} CPUs. Work = rows x width^2 (`deploy.threads`, "
             f"WORK_PER_THREAD = {threads.WORK_PER_THREAD:,}).", "",
             f"| input | 1 thread ms | {args.threads} threads ms | {args.threads}/1 | work (M) | kit picks |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, role, x in cases:
        one, many = (statistics.median(times[(name, n)]) for n in counts)
        work = artifacts.work(role)
        cost = threads.rows_of(work, x) * work["width"] ** 2 if work else None
        pick = threads.threads_for(work, x, args.threads)
        lines.append(f"| {name} | {one:.2f} | {many:.2f} | {many / one:.3f} | "
                     f"{'' if cost is None else f'{cost / 1e6:.1f}'} | {pick} |")
    out = "\n".join(lines)
    print(out)
    if args.markdown:
        Path(args.markdown).write_text(out + "\n")
    print(json.dumps({"load_average": [load0, load1]}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
