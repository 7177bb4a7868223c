"""pytest-benchmark regression suites over converted artifacts (``pytest benchmarks``; not in the default run).

Regression gate on one machine (same machine, same load, same threads):

    pytest benchmarks --benchmark-autosave                                   # baseline, saved in .benchmarks/
    pytest benchmarks --benchmark-compare --benchmark-compare-fail=median:10%   # fails if a median got 10 % slower
    pytest benchmarks -m benchmark_vitb32 ...                                 # the ViT-B-32 suites (opt-in, ~minutes)

Ratio checks (``test_bench_ratios.py``) time int8 lite against fp32 eager interleaved in one run, so they do
not depend on the machine's speed; their bounds are deliberately generous (a regression gate, not a target).

Environment: CLIPKIT_BENCH_THREADS (default 2) threads; OMP_WAIT_POLICY defaults to PASSIVE here (set before
torch starts: XNNPACK-optimized artifacts fight spinning OpenMP threads; `python -m deploy bench
--omp-wait-policy PASSIVE default` shows the difference); CLIPKIT_BENCH_VITB32_DIR reuses an existing
ViT-B-32 artifact directory instead of converting one (with --also-pt) per session; the converted one
uses the host's target (x86 -> fbgemm, unfrozen; ARM -> android).
"""
from __future__ import annotations

import os

from convert.entry import set_openmp_default  # noqa: E402 - no torch in convert.entry

set_openmp_default()  # before torch starts, as the kit's entry points do

from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from convert.artifact import read_manifest  # noqa: E402


def _bench_threads() -> int:
    """CLIPKIT_BENCH_THREADS (default 2, at most the CPUs this process may use), checked like ``--threads``."""
    from convert.entry import check_thread_count, usable_cpus
    from convert.errors import ConfigError

    value = os.environ.get("CLIPKIT_BENCH_THREADS", "").strip() or str(min(2, usable_cpus()))
    try:
        return check_thread_count(int(value) if value.isdigit() else value, "CLIPKIT_BENCH_THREADS=")
    except ConfigError as exc:
        pytest.exit(f"error: {exc}", returncode=2)


THREADS = _bench_threads()
VITB32 = "benchmark_vitb32"


def pytest_collection_modifyitems(config, items):
    markexpr = config.getoption("-m") or ""
    if VITB32 in markexpr and "not " + VITB32 not in markexpr:
        return
    skip = pytest.mark.skip(reason=f"ViT-B-32 suites are opt-in: pytest benchmarks -m {VITB32}")
    for item in items:
        if VITB32 in item.keywords:
            item.add_marker(skip)


@dataclass
class Artifacts:
    """A converted directory plus the eager models rebuilt from its manifest, built once per session."""

    name: str
    directory: Path
    manifest: dict[str, Any]
    _cache: dict[str, Any]

    def inputs(self, role: str):
        import torch

        from deploy.bench.worker import manifest_inputs

        return tuple(manifest_inputs(self.manifest, role, torch))

    def callable(self, role: str, kind: str) -> Callable:
        key = f"{role}/{kind}"
        if key not in self._cache:
            self._cache[key] = self._build(role, kind)
        return self._cache[key]

    def _model(self):
        if "model" not in self._cache:
            from convert.load import load_model, reference_config

            self._cache["config"] = reference_config(self.manifest)
            self._cache["model"] = load_model(self._cache["config"]).model
        return self._cache["model"], self._cache["config"]

    def _build(self, role: str, kind: str) -> Callable:
        import torch

        torch.backends.quantized.engine = self.manifest["engine"]
        if kind in ("lite", "jit", "kit", "pte"):
            from deploy.artifacts import load_artifacts  # verified (sha256) like every other reader

            if kind == "pte" and not any(e["format"] == "pte" for e in self.manifest["files"]):
                pytest.skip('no .pte files: ExecuTorch is not installed (pip install -e ".[executorch]")')

            loaded = load_artifacts(self.directory, "lite" if kind == "kit" else kind, roles=(role,))
            if kind != "kit":
                return loaded.modules[role]
            # the .ptl as deploy.runtime runs it: per-call threads (deploy.threads), deploy.heap
            from deploy.runtime import encode_images, encode_tokens

            encode = encode_images if role == "image_encoder" else encode_tokens
            return lambda x: encode(loaded, x)
        model, config = self._model()
        if kind == "eager-fp32":
            return model.encode_image if role == "image_encoder" else model.encode_text
        from convert.towers import build_towers

        return build_towers(model, config.quant, (role,), truncate_text=config.truncate_text).modules[role]


def _convert(out: Path, **opts) -> Path:
    import convert
    from convert.export_pte import executorch_version

    # .pte beside .ptl where the executorch extra is installed (the pte kind skips otherwise)
    fmt = "both" if executorch_version() is not None else "ptl"
    convert.convert(convert.build_config(out=str(out), force=True, also_pt=True, format=fmt, **opts))
    return out


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(THREADS)
    yield


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Artifacts:
    from assets import TINY_CHECKPOINT, TINY_LABELS

    opts = {"labels": tuple(ln.strip() for ln in TINY_LABELS.read_text().splitlines() if ln.strip()),
            "templates": "plain"}
    if not TINY_CHECKPOINT.is_file():
        opts["pretrained"] = "none"
    out = _convert(tmp_path_factory.mktemp("bench") / "tiny", **opts)
    return Artifacts("tiny", out, read_manifest(out), {})


@pytest.fixture(scope="session")
def vitb32(tmp_path_factory) -> Artifacts:
    given = os.environ.get("CLIPKIT_BENCH_VITB32_DIR")
    if given:
        out = Path(given)
    else:
        import platform

        # The host's own target: fbgemm/unfrozen on x86, qnnpack + optimize_for_mobile on ARM.
        target = "x86" if platform.machine().lower() in ("x86_64", "amd64") else "android"
        out = _convert(tmp_path_factory.mktemp("bench") / "vitb32", model="ViT-B-32", pretrained="none",
                       labels=("a", "b"), templates="plain", target=target)
    return Artifacts("vitb32", out, read_manifest(out), {})
