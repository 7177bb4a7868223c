"""How many threads one call of a tower gets: all it is given only when the call is big enough to pay for them.

Why: torch runs intra-op parallel regions on OpenMP threads, and under ``OMP_WAIT_POLICY=PASSIVE`` (the kit's
default on small shared machines) a sleeping worker is woken for each of the ~200 operators of a transformer
call; for a short prompt that costs more than the second thread gives, while an image or a full-length prompt
gains from every thread. ONNX Runtime makes the same choice per operator with a cost model; TorchScript gives
no per-operator hook, so the kit decides per call: one more thread per ``WORK_PER_THREAD`` of rows x width^2
(every Linear of a transformer block costs rows x width x a multiple of width). The constant is the measured
crossover on a 2-core x86 machine (``benchmarks/threads_crossover.py``, ``benchmarks/results/threads-x86.md``;
docs/performance.md, "Threads per call"). The manifest's ``files[].work`` says the tower's width and rows
(``convert.towers.work_shape``); phones run pthreadpool, not OpenMP, and the Android app does not apply this
policy (not measured there).

``CLIPKIT_THREAD_POLICY=off`` gives every call all threads (for comparisons). The thread count is torch's
process-wide setting, so calls from several Python threads at once should turn the policy off (or share one
count). Standard library only at import.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

WORK_PER_THREAD = 12_000_000


def enabled() -> bool:
    return os.environ.get("CLIPKIT_THREAD_POLICY", "on") != "off"


def text_length(tokens) -> int:
    """Positions up to the batch's last non-padding token of ``tokens`` ``[B, L]`` (a torch tensor): what a
    truncating text tower computes (padding is token 0 in open_clip's tokenizers)."""
    used = (tokens != 0).any(dim=0).nonzero()
    return int(used.max()) + 1 if used.numel() else 1


def rows_of(work: dict, x) -> int:
    """Token rows one call computes for input ``x`` (a torch tensor): batch x rows per input; for a text
    tower that stops at the last end-of-text token, up to the last non-padding token of the batch."""
    batch = int(x.shape[0]) if x.dim() > 0 else 1
    rows = int(work["rows_per_input"])
    if work.get("rows_end_at_eot") and x.dim() == 2 and x.shape[-1] > 0:
        rows = min(rows, text_length(x))
    return batch * rows


def threads_for(work: dict | None, x, available: int) -> int:
    """Threads for one call: ``1 + rows x width^2 // WORK_PER_THREAD``, at most ``available``."""
    if work is None or not enabled() or available <= 1:
        return available
    cost = rows_of(work, x) * int(work["width"]) ** 2
    return max(1, min(available, 1 + cost // WORK_PER_THREAD))


@contextmanager
def sized(torch, work: dict | None, x):
    """Run the body with the threads :func:`threads_for` gives ``x``; yields that number."""
    available = torch.get_num_threads()
    n = threads_for(work, x, available)
    if n == available:
        yield n
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(available)
