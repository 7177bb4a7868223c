"""Runs the Android demo's plain-Java core tests (android_demo/core/run_tests.sh: javac + JUnit4), and checks
the benchmark report the core writes for the app against the Python schema validator and the desktop harness.

Skips when javac or the JUnit4/Hamcrest jars are missing, unless the CI environment variable is set:
CI must provide them (Debian/Ubuntu: `apt-get install -y default-jdk-headless junit4`).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "android_demo" / "core" / "run_tests.sh"
CORE = ROOT / "android_demo" / "core" / "src"
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


# The samples of android_demo/core/src/test/java/org/clipkit/core/BenchReportSample.java (keep in step).
SAMPLE_LOAD_MS = [41.5, 38.25, 40.0]
SAMPLE_STEADY_MS = [12.5, 11.25, 13.0, 11.25, 19.75, 12.0, 12.125, 11.5]


def test_android_core_bench_report_follows_the_schema(tmp_path: pathlib.Path) -> None:
    """The report the app writes (org.clipkit.core.BenchReport) passes the harness's v1 validator, renders in
    the desktop report tool, and has the harness's own statistics for the same samples."""
    missing = [f"{tool} not on PATH" for tool in ("javac", "java") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install a JDK: {'; '.join(missing)}")
        pytest.skip("; ".join(missing))
    from deploy.bench.plan import stats
    from deploy.bench.report import load_reports, to_markdown, validate_report

    classes = tmp_path / "classes"
    sources = sorted(str(p) for p in (CORE / "main" / "java").rglob("*.java"))
    sources.append(str(CORE / "test" / "java" / "org" / "clipkit" / "core" / "BenchReportSample.java"))
    subprocess.run(["javac", "-nowarn", "-Xlint:-options", "--release", "8", "-encoding", "UTF-8", "-d", str(classes),
                    *sources], check=True, capture_output=True, text=True, timeout=600)
    out = tmp_path / "bench-image_encoder-2t-20261127T100000Z.json"
    proc = subprocess.run(["java", "-cp", str(classes), "org.clipkit.core.BenchReportSample", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text(encoding="utf-8"))

    validate_report(report)
    assert report["environment"]["host"] == "android"
    assert report["environment"]["device"] == 'Google Pixel "7" (Android 14, API 34, arm64-v8a) \u2013 \u00fcn\u00efcode'
    image, head = report["results"]
    # the harness's statistics, computed by Python on the same samples
    assert image["load_ms"] == stats(SAMPLE_LOAD_MS)
    assert image["steady_ms"] == stats(SAMPLE_STEADY_MS)
    assert image["first_ms"] == round(25.125, 4)
    assert head["first_ms"] == round(0.03125, 4) == 0.0312  # half-even on an exact tie, as Python rounds
    assert head["steady_ms"] == stats([0.09375])
    assert head["peak_rss_bytes"] is None and image["peak_rss_bytes"] == 104857600
    # Minibench's metrics, recomputed here from its ModelRunner's definitions (Java long division for PSS)
    ordered = sorted(SAMPLE_STEADY_MS)
    window = ordered[len(ordered) // 10: len(ordered) * 9 // 10]
    assert image["minibench"] == {"model_load_time(ms)": SAMPLE_LOAD_MS[0],
                                  "avg_inference_latency(ms)": round(sum(SAMPLE_STEADY_MS) / len(SAMPLE_STEADY_MS), 4),
                                  "trimmean_inference_latency(ms)": round(sum(window) / len(window), 4),
                                  "ram_pss_usage(mb)": 100, "load_status": 0}
    assert image["load_cold_ms"] == SAMPLE_LOAD_MS[0] and image["load_warm_ms"] == stats(SAMPLE_LOAD_MS[1:])
    # the desktop report tool reads it (python -m deploy bench --from-json ... --markdown)
    pte = tmp_path / "bench-image_encoder-pte-2t-20261127T100000Z.json"
    proc = subprocess.run(["java", "-cp", str(classes), "org.clipkit.core.BenchReportSample", str(pte), "pte"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pte_report = json.loads(pte.read_text(encoding="utf-8"))
    validate_report(pte_report)
    assert pte_report["environment"]["torch"] == "executorch-android 1.3.1"
    assert [r["variant"] for r in pte_report["results"]] == ["pte", "pte"]
    markdown = to_markdown(load_reports([str(out), str(pte)]))
    assert "| image_encoder | lite | qnnpack | 2 |" in markdown
    assert "| image_encoder | pte | qnnpack | 2 |" in markdown
    assert "kit-tiny-clip (android)" in markdown
