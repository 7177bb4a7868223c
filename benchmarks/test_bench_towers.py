"""Per-tower timings (pytest-benchmark), grouped by model and tower; one test per artifact kind.

Compare kinds within a group in one run; compare runs with --benchmark-autosave / --benchmark-compare
(see conftest.py).
"""
import pytest
import torch

KINDS = ("eager-fp32", "eager-int8", "jit", "lite", "pte")
ROLES = ("image_encoder", "text_encoder")


def _run(benchmark, artifacts, role, kind):
    fn = artifacts.callable(role, kind)
    args = artifacts.inputs(role)
    benchmark.group = f"{artifacts.name} {role}"
    benchmark.extra_info.update({"model": artifacts.name, "role": role, "kind": kind,
                                 "threads": torch.get_num_threads(), "engine": torch.backends.quantized.engine,
                                 "target": artifacts.manifest["target"]})
    with torch.no_grad():
        for _ in range(3):  # warm-up outside the timing (a .pt's profiling executor runs here)
            fn(*args)
        out = benchmark(fn, *args)
    assert out.shape[0] == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ROLES)
def test_tiny(benchmark, tiny, role, kind):
    _run(benchmark, tiny, role, kind)


@pytest.mark.parametrize("kind", ("eager-fp32", "lite", "pte"))
def test_tiny_zero_shot_head(benchmark, tiny, kind):
    if kind == "eager-fp32":
        pytest.skip("the head is fp32 in every variant; only its artifact is timed")
    _run(benchmark, tiny, "zero_shot_head", kind)


@pytest.mark.benchmark_vitb32
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ROLES)
def test_vitb32(benchmark, vitb32, role, kind):
    _run(benchmark, vitb32, role, kind)
