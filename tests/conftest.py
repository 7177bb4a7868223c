"""Shared fixtures: the tiny conversions (one session cache), the CLI runners, shape images."""
from __future__ import annotations

import warnings

# Before torch starts (see convert/__main__.py): CI machines are small and shared.
from convert.entry import set_openmp_default  # noqa: E402 - no torch in convert.entry

set_openmp_default()  # before torch starts, as the kit's entry points do

import pytest  # noqa: E402
import torch  # noqa: E402

from _deploy_helpers import run_entry, tiny_options  # noqa: E402

warnings.filterwarnings("ignore", message=".*(quantiz|TorchScript|torch.jit|lite).*")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def convert_tiny(tmp_path_factory):
    """``convert_tiny(**overrides) -> ConversionResult``, cached per option set for the session."""
    from convert import build_config
    from convert.pipeline import convert

    cache = {}

    def run(**overrides):
        key = tuple(sorted((k, str(v)) for k, v in overrides.items()))
        if key not in cache:
            out = tmp_path_factory.mktemp("conv") / "out"
            cache[key] = convert(build_config(**tiny_options(out=str(out), **overrides)))
        return cache[key]

    return run


@pytest.fixture
def run_cli(capsys):
    """Run ``python -m convert`` in-process: returns (exit code, stdout, stderr)."""
    from convert.cli import main

    return lambda *argv: run_entry(main, capsys, *argv)


@pytest.fixture
def deploy_cli(capsys):
    """Run ``python -m deploy`` in-process: returns (exit code, stdout, stderr)."""
    from deploy.__main__ import main

    return lambda *argv: run_entry(main, capsys, *argv)


@pytest.fixture(scope="session")
def art(convert_tiny):
    """kit-tiny-clip artifacts (random weights, the shapes' 48 labels, simple templates, .ptl + .pt)."""
    from assets import TINY_LABELS
    from convert.config import read_labels

    return convert_tiny(labels=read_labels(str(TINY_LABELS)), templates="simple", also_pt=True).out_dir


@pytest.fixture(scope="session")
def imgs(tmp_path_factory):
    """Three held-out shapes images."""
    from _deploy_helpers import shape_images

    return shape_images(tmp_path_factory.mktemp("imgs") / "shapes", n=3)
