"""Build benchmarks/runner (one .cpp against the torch wheel's libtorch) and run it on a tiny .ptl.

Skipped with the reason when cmake or a C++ compiler is missing, except under CI (env CI set), where a
missing toolchain is a failure.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # builds libtorch C++ (~1 min of 2 cores); .ci/run runs it with -m slow

RUNNER_SRC = Path(__file__).resolve().parent.parent / "benchmarks" / "runner"


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(50000, 8)
        self.lin = torch.nn.Linear(3 * 4 * 4, 8)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.lin(image.flatten(1)) + self.emb(tokens).mean(1)


def _toolchain_missing() -> str | None:
    missing = [tool for tool in ("cmake",) if shutil.which(tool) is None]
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        missing.append("a C++ compiler (c++/g++/clang++)")
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Path:
    missing = _toolchain_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the C++ runner cannot be built: missing {missing}")
        pytest.skip(f"cannot build the C++ runner: missing {missing}")
    build = tmp_path_factory.mktemp("runner-build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    configure = subprocess.run(["cmake", "-S", str(RUNNER_SRC), "-B", str(build), *gen,
                                f"-DPython_EXECUTABLE={sys.executable}"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout[-2000:] + configure.stderr[-2000:]
    compiled = subprocess.run(["cmake", "--build", str(build), "--parallel", "2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    binary = build / "clip-kit-runner"
    assert binary.is_file()
    return binary


@pytest.fixture(scope="module")
def tiny_ptl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ptl") / "two_inputs.ptl"
    torch.jit.script(TwoInputs().eval())._save_for_lite_interpreter(str(path))
    return path


def test_runner_prints_a_bench_report(runner, tiny_ptl, tmp_path):
    proc = subprocess.run([str(runner), str(tiny_ptl), "--input", "1,3,4,4:float", "--input", "1,77:int64",
                           "--iters", "4", "--warmup", "1", "--loads", "2", "--threads", "1", "--role", "toy"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    from deploy.bench.report import validate_report

    validate_report(report)
    result = report["results"][0]
    assert result["role"] == "toy" and result["variant"] == "lite" and result["threads"] == 1
    assert result["size_bytes"] == tiny_ptl.stat().st_size
    assert len(result["load_ms"]["samples"]) == 2 and len(result["steady_ms"]["samples"]) == 4
    assert result["peak_rss_bytes"] > 0
    # the same report tool renders it
    path = tmp_path / "runner.json"
    path.write_text(proc.stdout)
    from deploy.__main__ import main

    assert main(["bench", "--from-json", str(path), "--quiet"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--input", "1,3,4,4:float"], "forward failed"),            # the model wants two inputs
    (["--input", "1,x:float"], "shape must be positive integers"),
    (["--input", "1,3:half"], "dtype must be float or int64"),
    ([], "give at least one --input"),
])
def test_runner_errors_are_one_line(runner, tiny_ptl, args, message):
    proc = subprocess.run([str(runner), str(tiny_ptl), *args, "--iters", "1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_runner_missing_model(runner, tmp_path):
    proc = subprocess.run([str(runner), str(tmp_path / "nope.ptl"), "--input", "1:float"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "cannot open" in proc.stderr
