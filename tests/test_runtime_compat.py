"""The artifacts load and answer the same in torch 2.1.0's lite runtime, the version inside
``pytorch_android_lite:2.1.0`` (the app's runtime). Needs a second Python with torch 2.1.0, named by
CLIPKIT_RUNTIME21_PYTHON (``.ci/run`` makes one); skipped without it, except in CI."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from convert.artifact import verify_all
from convert.export import load_lite

OLD_PYTHON = os.environ.get("CLIPKIT_RUNTIME21_PYTHON")
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compat" / "run_lite.py"

if not OLD_PYTHON:
    if os.environ.get("CI"):
        raise RuntimeError("CI must set CLIPKIT_RUNTIME21_PYTHON (a Python with torch==2.1.0)")
    pytest.skip("CLIPKIT_RUNTIME21_PYTHON (a Python with torch==2.1.0) is not set", allow_module_level=True)


def _inputs(manifest):
    torch.manual_seed(0)
    tokens = torch.zeros(2, manifest["tokenizer"]["context_length"], dtype=torch.long)
    tokens[:, 0] = manifest["tokenizer"]["sot_token_id"]
    tokens[0, 1:4] = torch.tensor([320, 1929, manifest["tokenizer"]["eot_token_id"]])
    tokens[1, 1:3] = torch.tensor([2368, manifest["tokenizer"]["eot_token_id"]])
    return {
        "image_encoder": torch.randn(2, 3, *manifest["preprocess"]["image_size"]),
        "text_encoder": tokens,
        "zero_shot_head": torch.randn(2, manifest["model"]["embed_dim"]),
    }


@pytest.mark.parametrize("options", [
    {"target": "android"}, {"target": "android", "truncate_text": True},
    {"target": "x86", "pack": "load"}, {"target": "x86", "pack": "first-call"},
], ids=["android", "android-truncate-text", "x86-pack-load", "x86-pack-first-call"])
def test_artifacts_run_in_the_android_runtime_version(convert_tiny, tmp_path, options):
    result = convert_tiny(**options)
    manifest = verify_all(result.out_dir)  # the torch-only runner below trusts its files: verify them first
    inputs = _inputs(manifest)
    np.savez(tmp_path / "in.npz", **{k: v.numpy() for k, v in inputs.items()})
    proc = subprocess.run([OLD_PYTHON, str(SCRIPT), str(result.out_dir), str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    old = np.load(tmp_path / "out.npz")
    assert str(old["torch_version"]).startswith("2.1.0")
    torch.backends.quantized.engine = manifest["engine"]
    for role, x in inputs.items():
        with torch.no_grad():
            new = load_lite(result.out_dir / f"{role}.ptl")(x).numpy()
        assert int(old[role + ".bytecode"]) == 8
        # Same kernels, same int8 weights: equal up to float summation order.
        np.testing.assert_allclose(old[role], new, atol=1e-4, rtol=1e-4, err_msg=role)
