"""Shared fixtures: tiny open_clip conversions made once per session, and a CLI runner."""
from __future__ import annotations

import warnings
from pathlib import Path

# Before torch starts (see convert/__main__.py): CI machines are small and shared.
from convert.entry import set_openmp_default  # noqa: E402 - no torch in convert.entry

set_openmp_default()  # before torch starts, as the kit's entry points do

import pytest  # noqa: E402
import torch  # noqa: E402

warnings.filterwarnings("ignore", message=".*(quantiz|TorchScript|torch.jit|lite).*")
torch.set_num_threads(2)

TINY = "kit-tiny-clip"


def tiny_options(**overrides):
    """Options for a fast conversion of the tiny architecture with seeded random weights."""
    opts = dict(model=TINY, pretrained="none", labels=("red circle", "blue square", "green star"),
                templates="plain", seed=0)
    opts.update(overrides)
    return opts


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


def run_entry(main, capsys, *argv):
    """An entry point's ``main`` in-process: returns (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def run_cli(capsys):
    """Run ``python -m convert`` in-process: returns (exit code, stdout, stderr)."""
    from convert.cli import main

    return lambda *argv: run_entry(main, capsys, *argv)


def lite_zip_storages(path: Path) -> list[tuple[str, bytes]]:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [(n, archive.read(n)) for n in archive.namelist()
                if "/constants/" in n or "/data/" in n]


def assert_one_line_error(code, err, *needles, status=2):
    """Exit ``status``, exactly one non-empty stderr line starting ``error:``, no traceback, the needles in
    it; returns the line. The kit's promise for every bad input."""
    assert code == status, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def art(tmp_path_factory):
    """kit-tiny-clip artifacts (48 labels, .ptl + .pt), converted once per session."""
    from _deploy_helpers import converted

    return converted(tmp_path_factory)


@pytest.fixture(scope="session")
def imgs(tmp_path_factory):
    """Three held-out shapes images."""
    from _deploy_helpers import shape_images

    return shape_images(tmp_path_factory.mktemp("imgs") / "shapes", n=3)
