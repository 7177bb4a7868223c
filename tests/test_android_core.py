"""Runs the Android demo's plain-Java core tests (android_demo/core/run_tests.sh: javac + JUnit4).

Skips when javac or the JUnit4/Hamcrest jars are missing, unless the CI environment variable is set:
CI must provide them (Debian/Ubuntu: `apt-get install -y default-jdk-headless junit4`).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "android_demo" / "core" / "run_tests.sh"
JUNIT_JAR = pathlib.Path(os.environ.get("JUNIT_JAR", "/usr/share/java/junit4.jar"))
HAMCREST_JAR = pathlib.Path(os.environ.get("HAMCREST_JAR", "/usr/share/java/hamcrest-core.jar"))


def _missing() -> list[str]:
    missing = []
    for tool in ("javac", "java", "bash"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} not on PATH")
    for jar in (JUNIT_JAR, HAMCREST_JAR):
        if not jar.is_file():
            missing.append(f"{jar} not found (apt-get install junit4, or set JUNIT_JAR/HAMCREST_JAR)")
    return missing


def test_android_core_junit() -> None:
    missing = _missing()
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"CI must install a JDK and JUnit4: {reason}")
        pytest.skip(reason)
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"android_demo/core JUnit tests failed (exit {proc.returncode}):\n{out[-8000:]}"
    assert "OK (" in proc.stdout, out[-4000:]
