"""``python -m deploy bench``: behaviour and report schema on the tiny model (never wall-clock bounds)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.__main__ import main as deploy_main
from deploy.bench import plan as bench_plan
from deploy.bench.report import validate_report

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(art, tmp_path_factory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("report")
    # 8 fresh processes (2 thread counts x 4 variants, one tower): the matrix, not the statistics, is tested.
    args = ["bench", str(art), "--threads", "1", "2", "--engines", "qnnpack", "--load-repeats", "1",
            "--iters", "3", "--warmup", "1", "--omp-wait-policy", "PASSIVE", "--quiet",
            "--roles", "image_encoder",
            "--json", str(work / "r.json"), "--markdown", str(work / "r.md")]
    assert deploy_main(args) == 0
    return json.loads((work / "r.json").read_text()), work


def test_report_follows_schema(report):
    data, _ = report
    validate_report(data)
    assert data["schema"] == "clip-mobile-kit-bench" and data["schema_version"] == 1
    env = data["environment"]
    for key in ("host", "device", "torch", "threads", "engine", "omp_wait_policy", "cpu_flags"):
        assert key in env
    assert env["threads_measured"] == [1, 2]
    assert env["omp_wait_policies_measured"] == ["PASSIVE"] and env["omp_wait_policy"] == "PASSIVE"
    assert isinstance(env["cpu_flags"], list)


def test_every_variant_role_thread_and_policy_measured(report):
    data, _ = report
    got = {(r["role"], r["variant"], r["threads"], r["omp_wait_policy"]) for r in data["results"]}
    for variant in ("eager-fp32", "eager-int8", "jit", "lite"):
        for threads in (1, 2):
            assert ("image_encoder", variant, threads, "PASSIVE") in got
    assert len(data["results"]) == 4 * 2


def test_samples_ratios_and_memory_are_consistent(report, art):
    data, _ = report
    manifest = json.loads((art / "manifest.json").read_text())
    sizes = {f["file"]: f["bytes"] for f in manifest["files"]}
    for r in data["results"]:
        assert len(r["load_ms"]["samples"]) == 1            # one fresh process per repetition
        assert len(r["steady_ms"]["samples"]) == 3          # iters pooled over repetitions
        assert len(r["first_ms_samples"]) == 1
        assert r["steady_ms"]["median"] <= r["steady_ms"]["p90"] <= max(r["steady_ms"]["samples"])
        if r["variant"] in ("jit", "lite"):
            # Loading and running a model holds at least its weights: a worker that measured the wrong
            # process, or a baseline taken after the load, would show less.
            assert r["peak_rss_above_baseline_bytes"] >= 0.5 * r["size_bytes"], r
        assert "latency_ratio_to_eager_fp32" in r
        if r["variant"] in ("jit", "lite"):
            assert r["size_bytes"] == sizes[r["file"]]
            assert r["engine"] == "qnnpack"
        if r["variant"] == "eager-fp32":
            assert r["latency_ratio_to_eager_fp32"] == 1.0 and r["engine"] is None
    assert data["reference_check"]["image_encoder"]["ok"]
    assert data["reference_check"]["image_encoder"]["abs_diff"] < 1e-3


def test_markdown_and_from_json_round_trip(report, tmp_path, capsys):
    data, work = report
    md = (work / "r.md").read_text()
    assert "| role | variant |" in md and "eager-fp32" in md and "OMP_WAIT_POLICY" in md
    app_like = {  # what the Android app writes (no desktop additions)
        "schema": "clip-mobile-kit-bench", "schema_version": 1, "created_utc": "2026-01-01T00:00:00Z",
        "environment": {"host": "android", "device": "Pixel", "torch": "pytorch_android_lite 2.1.0", "threads": 2,
                        "engine": "qnnpack", "omp_wait_policy": None, "cpu_flags": []},
        "results": [{"role": "image_encoder", "variant": "lite", "file": "image_encoder.ptl", "threads": 2,
                     "engine": "qnnpack", "size_bytes": 10, "load_ms": {"median": 1, "p90": 1, "samples": [1]},
                     "first_ms": 2, "steady_ms": {"median": 1, "p90": 1, "samples": [1]}, "peak_rss_bytes": 5}]}
    app = tmp_path / "app.json"
    app.write_text(json.dumps(app_like))
    out_md = tmp_path / "both.md"
    assert deploy_main(["bench", "--from-json", str(work / "r.json"), str(app), "--markdown", str(out_md)]) == 0
    text = out_md.read_text()
    assert "Pixel" in text and "image_encoder" in text
    assert "image_encoder" in capsys.readouterr().out


def test_from_json_rejects_other_files(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema": "something-else"}))
    assert deploy_main(["bench", "--from-json", str(bad)]) != 0
    assert "not a clip-mobile-kit-bench report" in capsys.readouterr().err


def test_missing_directory_is_a_clear_error(tmp_path, capsys):
    assert deploy_main(["bench", str(tmp_path / "nope"), "--quiet"]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_tampered_same_size_ptl_is_refused_not_measured(art, tmp_path, capsys):
    import shutil

    d = tmp_path / "tampered"
    shutil.copytree(art, d)
    p = d / "text_encoder.ptl"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    assert deploy_main(["bench", str(d), "--quiet", "--variants", "lite", "--threads", "1", "--load-repeats", "1",
                        "--iters", "1", "--warmup", "0"]) == 2
    err = capsys.readouterr().err
    assert "text_encoder.ptl: sha256" in err and err.strip().count("\n") == 0


def test_relative_directory_from_another_working_directory(art, tmp_path, monkeypatch):
    monkeypatch.chdir(art.parent)
    out = tmp_path / "r.json"
    assert deploy_main(["bench", art.name, "--quiet", "--variants", "lite", "--roles", "zero_shot_head",
                        "--threads", "1", "--load-repeats", "1", "--iters", "1", "--warmup", "0",
                        "--json", str(out)]) == 0
    assert json.loads(out.read_text())["results"][0]["variant"] == "lite"


def test_jit_variant_without_pt_twins_is_an_error(convert_tiny, capsys):
    out = convert_tiny().out_dir  # the session's conversion without --also-pt
    assert deploy_main(["bench", str(out), "--quiet", "--variants", "jit"]) == 2
    assert "--variants jit cannot run" in capsys.readouterr().err


def test_plot_writes_png(report, tmp_path):
    pytest.importorskip("matplotlib")
    data, work = report
    png = tmp_path / "p.png"
    assert deploy_main(["bench", "--from-json", str(work / "r.json"), "--plot", str(png), "--quiet"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_onnx_without_onnxruntime_is_a_clear_error(art, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    assert deploy_main(["bench", str(art), "--onnx", "--quiet"]) != 0
    assert "pip install" in capsys.readouterr().err


@pytest.mark.parametrize("omp", ["PASSIVE", "ACTIVE"])
def test_worker_sets_omp_policy_before_torch_starts(art, omp):
    from convert.artifact import verify_artifacts

    settings = bench_plan.Settings(directory=art, roles=("zero_shot_head",), variants=("lite", "eager-fp32"),
                                   threads=(1,), engines=("qnnpack",), omp=(omp,), repeats=1, iters=1, warmup=0)
    verified = verify_artifacts(art, settings.roles, require_image=False)
    cases = bench_plan.plan(settings, verified, {}, {})
    assert [c.variant for c in cases] == ["lite", "eager-fp32"]  # the head has no int8 eager variant
    sample = bench_plan.run_case(cases[0], settings, bench_plan.worker_spec(cases[0], settings, verified, None))
    assert sample["omp_wait_policy"] == omp and sample["num_threads"] == 1 and sample["engine"] == "qnnpack"


def test_percentile():
    assert bench_plan.percentile([1, 2, 3, 4, 5], 50) == 3
    assert bench_plan.percentile([1, 2], 90) == pytest.approx(1.9)
    assert bench_plan.percentile([7], 90) == 7


def test_cli_help_lists_bench():
    proc = subprocess.run([sys.executable, "-m", "deploy", "bench", "--help"], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "--omp-wait-policy" in proc.stdout and "--from-json" in proc.stdout


@pytest.mark.slow  # an ONNX export, quantization and two fresh processes: ~15 s
def test_onnx_peer_runs_the_text_tower_at_its_own_length(art, tmp_path):
    """The ONNX text tower is exported with a dynamic length and fed the positions the kit's truncating
    tower computes, so the peer's text column is not a full-length tower against a truncated one."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime as ort
    import torch

    from convert.load import load_model, reference_config
    from deploy.bench.peers import export_onnx
    from deploy.bench.worker import SAMPLE_TOKENS, manifest_inputs
    from deploy.threads import text_length

    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["config"]["truncate_text"] is True
    config = reference_config(manifest)
    loaded = load_model(config)
    export_onnx(manifest, loaded, config.quant, ("text_encoder",), tmp_path)
    (tokens,) = manifest_inputs(manifest, "text_encoder", torch)  # the bench's batch
    session = ort.InferenceSession(str(tmp_path / "text_encoder.fp32.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    short = tokens.numpy()[:, :text_length(tokens)]
    assert short.shape[1] == len(SAMPLE_TOKENS) + 2  # sot, the prompt, eot
    with torch.no_grad():
        expected = loaded.model.encode_text(tokens).numpy()
    np.testing.assert_allclose(session.run(None, {name: short})[0], expected, atol=1e-4, rtol=0)

    out = tmp_path / "r.json"
    args = ["bench", str(art), "--onnx", "--variants", "lite", "onnx-int8", "--roles", "text_encoder",
            "--threads", "1", "--load-repeats", "1", "--iters", "2", "--warmup", "1", "--omp-wait-policy",
            "PASSIVE", "--quiet", "--skip-reference-check", "--json", str(out)]
    assert deploy_main(args) == 0
    peer = next(r for r in json.loads(out.read_text())["results"] if r["variant"] == "onnx-int8")
    assert peer["session_options"]["text_positions"] == len(SAMPLE_TOKENS) + 2   # sot, the prompt, eot
    assert peer["session_options"]["allow_spinning"] is False
