"""The Android demo app compiled, linked and checked without an Android SDK: runs android_demo/check_app.sh.

The script parses every XML file of the app, compiles and links the resources and manifest with aapt2 against
API 23's android.jar (fetched once from Debian's older release and cached), and compiles the stubs, the core
and the app with javac -Xlint:all -Werror (see android_demo/README.md). It takes 10-25 s, so the test is behind
the ``android_app`` marker: ``pytest -m android_app tests/test_android_app.py``.

Skips when javac, aapt2 or android.jar is unavailable, unless the CI environment variable is set: CI provides
them (``.ci/android_app.sh`` installs the packages and fetches the jar).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "android_demo" / "check_app.sh"
TOOLCHAIN_MISSING = 3  # check_app.sh's exit status when javac/aapt2/python3 or android.jar is unavailable

pytestmark = pytest.mark.android_app


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide the Android check toolchain (.ci/android_app.sh): {reason}")
    pytest.skip(reason)


def test_android_app_compiles_and_links(tmp_path: pathlib.Path) -> None:
    missing = [tool for tool in ("bash", "python3", "javac", "aapt2") if shutil.which(tool) is None]
    if missing:
        _unavailable(f"not on PATH: {', '.join(missing)} (Debian: apt-get install aapt default-jdk-headless)")
    # A build directory of its own: the check may run while someone else runs it in the work tree.
    env = dict(os.environ, CLIPKIT_APP_BUILD=str(tmp_path / "app-check"))
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    if proc.returncode == TOOLCHAIN_MISSING:
        _unavailable(" / ".join(out.strip().splitlines()[-2:]) or "toolchain missing")
    assert proc.returncode == 0, f"android_demo/check_app.sh failed (exit {proc.returncode}):\n{out[-8000:]}"
    assert "[check_app] OK" in proc.stdout, out[-4000:]
