"""Machine-independent checks: int8 lite against fp32 eager, interleaved in one run, generous bounds.

A ratio is a property of the artifacts and the runtime, not of the machine's speed, so it can gate a
regression anywhere (e.g. an export change that lets XNNPACK rewrites or fp32 attention back in). Bounds are
far looser than the targets (ViT-B-32 goal: <= 0.45x); they catch breakage, not a few percent.
"""
import statistics
import time

import pytest
import torch

REPS = 7


def interleaved_ratio(artifacts, role, fast="lite", slow="eager-fp32", calls=3):
    """Median over repetitions of (median call time of ``fast``) / (same of ``slow``), alternating each rep."""
    fns = {k: artifacts.callable(role, k) for k in (fast, slow)}
    args = artifacts.inputs(role)
    times = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():
            for _ in range(3):
                fn(*args)
        for rep in range(REPS):
            order = (fast, slow) if rep % 2 == 0 else (slow, fast)
            for k in order:
                samples = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    fns[k](*args)
                    samples.append(time.perf_counter() - t0)
                times[k].append(statistics.median(samples))
    ratios = [f / s for f, s in zip(times[fast], times[slow])]
    return statistics.median(ratios), times


def _ratio_below(record_property, artifacts, role, limit, what, **pair):
    """The interleaved ratio of ``pair`` (fast / slow), recorded and held below ``limit``."""
    ratio, _ = interleaved_ratio(artifacts, role, **pair)
    record_property("ratio", ratio)
    assert ratio < limit, f"{role}: {what} = {ratio:.2f}"


@pytest.mark.parametrize("role", ["image_encoder", "text_encoder"])
def test_tiny_lite_not_far_slower_than_eager_int8(tiny, role, record_property):
    # The tiny towers are overhead-bound and the android artifacts run qnnpack kernels (SSE2-only on x86),
    # so int8 vs fp32 says little here; lite vs eager on the *same* int8 kernels isolates what the export
    # did (e.g. XNNPACK rewrites fighting spinning OpenMP threads: 5-10x).
    _ratio_below(record_property, tiny, role, 3.0, "int8 lite / int8 eager", fast="lite", slow="eager-int8")


@pytest.mark.benchmark_vitb32
@pytest.mark.parametrize("role", ["image_encoder", "text_encoder"])
def test_vitb32_int8_lite_faster_than_fp32_eager(vitb32, role, record_property):
    # x86 hosts get the x86 (fbgemm) artifacts, ARM hosts the android (qnnpack) ones: see conftest.py.
    _ratio_below(record_property, vitb32, role, 1.0, "int8 lite / fp32 eager (goal 0.45)")


@pytest.mark.parametrize("role", ["image_encoder", "text_encoder"])
def test_tiny_kit_runtime_not_slower_than_the_bare_module(tiny, role, record_property):
    # deploy.runtime sizes each call's threads and wraps it (deploy.threads, deploy.heap); for the tiny
    # towers that is 1 thread. A sizing that picked badly, or a wrapper that cost a call's worth, shows here.
    _ratio_below(record_property, tiny, role, 1.5, "kit runtime / bare .ptl", fast="kit", slow="lite")


@pytest.mark.benchmark_vitb32
def test_vitb32_short_prompt_through_the_kit_runtime(vitb32, record_property):
    # A 3-token prompt: the text tower computes to its end-of-text token (the default) on the threads the
    # call is worth (1 here). Measured 0.06x on this 2-core x86 box (target 0.15x); 0.3 catches a lost
    # truncation (0.18x at full threads, ~0.5x at full length) without flaking.
    ratio, _ = interleaved_ratio(vitb32, "text_encoder", fast="kit")
    record_property("ratio", ratio)
    assert ratio < 0.3, f"text_encoder: kit runtime / fp32 eager = {ratio:.2f} (target 0.15)"
