"""arm64 parity: the android artifacts in the phone's runtime (torch 2.1.0's lite interpreter, the runtime of
``pytorch_android_lite:2.1.0``) on arm64 code, under qemu user-mode emulation, against the same files on x86.
See ``benchmarks/arm64/README.md``.

- The refusal of x86 artifacts and the gate's logic need no emulation: they run in every pytest run.
- ``-m arm64`` (``.ci/arm64.sh``): also the tiny model on cortex-a53, cortex-a76 and max, its ``.ptl`` files
  in torch 2.1.0's lite runtime and its ``.pte`` files in ExecuTorch 1.3.1's (~2-3 min each); needs
  ``qemu-aarch64-static`` and the cached sysroot (``benchmarks/arm64/setup_sysroot.sh``); in CI or with
  CLIPKIT_ARM64=1 (set by ``.ci/arm64.sh``) the sysroot is built when missing and a missing qemu fails.
- ``-m arm64_vitb32``: ViT-B-32 with seeded random weights (opt-in; 36 min measured under load).
- ``-m arm64_mobileclip``: MobileCLIP2-S0 with seeded random weights on cortex-a53 (opt-in).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "arm64"))
import parity  # noqa: E402

# In CI (or under .ci/arm64.sh) a missing qemu or sysroot is an error, never a skip: the fixture sets it up.
REQUIRED = os.environ.get("CLIPKIT_ARM64") == "1" or bool(os.environ.get("CI"))
WRONG_TARGET = "converted for x86 (fbgemm); a phone runs qnnpack: reconvert with --target android"


def _selected(config, marker: str) -> bool:
    expr = config.getoption("-m") or ""
    return marker in expr and f"not {marker}" not in expr


def _no_emulation(monkeypatch):
    """Any attempt to set up or start a worker fails the test: the refusal must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("emulation started before the wrong-target refusal")
    monkeypatch.setattr(parity, "ensure_sysroot", boom)
    monkeypatch.setattr(parity, "run_worker", boom)


# ------------------------------------------------------------------------------------ wrong-target refusal
@pytest.mark.arm64
def test_x86_artifacts_are_refused_from_the_manifest(convert_tiny, monkeypatch):
    x86 = convert_tiny(target="x86", pack="load")
    fp32 = convert_tiny(quantize="none")
    _no_emulation(monkeypatch)
    with pytest.raises(parity.ParityError, match="converted for x86") as exc:
        parity.run_parity({"x86": x86.out_dir, "fp32": fp32.out_dir}, root=Path("/nonexistent"))
    assert WRONG_TARGET in str(exc.value)
    assert str(x86.out_dir) in str(exc.value)


@pytest.mark.arm64
def test_an_x86_ptl_under_an_android_manifest_is_refused_from_its_embedded_metadata(convert_tiny, tmp_path,
                                                                                   monkeypatch):
    android, x86 = convert_tiny(), convert_tiny(target="x86", pack="load")
    mixed = tmp_path / "mixed"
    shutil.copytree(android.out_dir, mixed)
    shutil.copy(x86.out_dir / "text_encoder.ptl", mixed / "text_encoder.ptl")   # the manifest still says android
    assert json.loads((mixed / "manifest.json").read_text())["target"] == "android"
    _no_emulation(monkeypatch)
    with pytest.raises(parity.ParityError) as exc:
        parity.run_parity({"mixed": mixed, "fp32": convert_tiny(quantize="none").out_dir})
    message = str(exc.value)
    assert str(mixed / "text_encoder.ptl") in message and "converted for x86 (fbgemm)" in message
    assert "mixed in one directory" in message


@pytest.mark.arm64
def test_the_cli_refuses_x86_artifacts_in_one_line(convert_tiny, capsys, monkeypatch):
    _no_emulation(monkeypatch)
    code = parity.main([str(convert_tiny(target="x86", pack="load").out_dir),
                        str(convert_tiny(quantize="none").out_dir)])
    err = capsys.readouterr().err
    assert code == 2 and WRONG_TARGET in err and len(err.strip().splitlines()) == 1


@pytest.mark.arm64
def test_an_int8_set_without_its_fp32_export_is_refused(convert_tiny, monkeypatch):
    _no_emulation(monkeypatch)
    with pytest.raises(parity.ParityError, match="no fp32 export"):
        parity.run_parity({"int8": convert_tiny().out_dir})


# ------------------------------------------------------------------------------------------ the gate
def _run(name, outputs):
    return parity.Run(name, [], {}, outputs={f"int8/{k}": v for k, v in outputs.items()}
                      | {f"fp32/{k}": v for k, v in REF.items()})


REF = {"image_encoder": np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)}


@pytest.mark.arm64
@pytest.mark.parametrize("fmt", sorted(parity.FORMATS))
@pytest.mark.parametrize("scale, ok", [(1.0, True), (1.4, True), (2.0, False)])
def test_the_gate_fails_an_arm64_error_larger_than_x86s_by_the_factor(scale, ok, fmt):
    noise = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32) * 0.01
    x86_out = REF["image_encoder"] + noise
    arm_out = REF["image_encoder"] + scale * noise
    x86 = {name: _run(name, {"image_encoder": x86_out}) for name, _ in parity.FORMATS[fmt].x86_runs}
    arm = {"cortex-a53": _run("arm64 cortex-a53", {"image_encoder": arm_out})}
    lines = parity.compare({"int8": "int8", "fp32": "fp32"}, {"int8": "fp32", "fp32": "fp32"}, arm, x86,
                           ["image_encoder"], direct=False, fmt=fmt)
    int8 = [ln for ln in lines if ln.set == "int8"][0]
    assert int8.ok is ok, int8.why
    assert int8.ratio == pytest.approx(scale, rel=1e-3)
    assert all(ln.ok for ln in lines if ln.set == "fp32")


# ------------------------------------------------------------------------------------------- emulation
@pytest.fixture(scope="module")
def arm64_root():
    if not REQUIRED and not (shutil.which(parity.QEMU) and parity.sysroot_ready()):
        pytest.skip("no qemu-aarch64-static or arm64 sysroot: run `bash .ci/arm64.sh` "
                    "(or benchmarks/arm64/setup_sysroot.sh after apt-get install qemu-user-static)")
    return parity.ensure_sysroot(log=lambda m: None)


@pytest.fixture(scope="module")
def runtime21(arm64_root):
    """The .ptl rows' second x86 runtime (torch 2.1.0, the phone's)."""
    if not parity.runtime21_python():
        pytest.fail("CLIPKIT_RUNTIME21_PYTHON (x86 torch 2.1.0) is needed: .ci/run makes .venv21")
    return arm64_root


def _print_report(title: str, report) -> None:
    print(f"\n{title}\n{report.table}\nseconds: {report.seconds}\n" +
          "\n".join(f"  {k}: {v}" for k, v in report.versions.items()))


def _check_emulated_cpus(report, cpus, runtime="2.1.0 aarch64"):
    versions = report.versions
    for cpu in cpus:
        assert versions[f"arm64 {cpu}"].startswith(runtime), versions
    # The CPU model really changed what the code may use: a53 is ARMv8.0 (no LSE atomics, the reason torch
    # 2.12's aarch64 wheel cannot run there), a76 has dot product, max has SVE.
    if "cortex-a53" in cpus:
        assert "atomics" not in versions["arm64 cortex-a53"]
    if "cortex-a76" in cpus:
        assert "asimddp" in versions["arm64 cortex-a76"] and "sve" not in versions["arm64 cortex-a76"]
    if "max" in cpus:
        assert "sve" in versions["arm64 max"]
    if parity.MAX_WITHOUT_SME in cpus:   # the qemu property took effect: everything of max but SME
        facts = versions[f"arm64 {parity.MAX_WITHOUT_SME}"]
        assert "sve" in facts and "i8mm" in facts and "sme" not in facts


@pytest.mark.arm64
def test_tiny_artifacts_on_arm64_match_x86(request, convert_tiny, runtime21, capsys, tmp_path):
    if not _selected(request.config, "arm64"):
        pytest.skip("emulated (~2-3 min): opt-in with pytest -m arm64 (.ci/arm64.sh)")
    keep = parity.TINY_KEEP_FP32
    sets = {
        "int8": convert_tiny().out_dir,                        # the default conversion (random init)
        "keep-fp32": convert_tiny(keep_fp32=keep).out_dir,     # a recipe keeping some modules fp32
        "fp32": convert_tiny(quantize="none").out_dir,         # the reference
        "builtin-int8": convert_tiny(pretrained="builtin").out_dir,   # the trained tiny CLIP that ships
        "builtin-fp32": convert_tiny(pretrained="builtin", quantize="none").out_dir,
    }
    report = parity.run_parity(sets, cpus=parity.CPU_MODELS, rows=4, direct=True, root=runtime21,
                               workdir=tmp_path, log=lambda m: None)
    with capsys.disabled():
        _print_report("arm64 parity, tiny CLIP (torch 2.1.0 lite, qemu) vs x86", report)
    _check_emulated_cpus(report, parity.CPU_MODELS)
    roles = {(ln.set, ln.role) for ln in report.lines}
    assert len(roles) == 3 * len(sets), roles          # every .ptl of every set
    assert report.ok, "\n" + report.table


@pytest.mark.arm64_vitb32
def test_vitb32_artifacts_on_arm64_match_x86(request, runtime21, capsys, tmp_path):
    if not _selected(request.config, "arm64_vitb32"):
        pytest.skip("ViT-B-32 under emulation (~20-40 min): opt-in with pytest -m arm64_vitb32")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sets = parity.vitb32_sets(tmp_path / "vitb32")
    report = parity.run_parity(sets, cpus=parity.CPU_MODELS, rows=2, direct=False, root=runtime21,
                               workdir=tmp_path / "work", log=lambda m: None)
    with capsys.disabled():
        _print_report("arm64 parity, ViT-B-32 (random init; torch 2.1.0 lite, qemu) vs x86", report)
    _check_emulated_cpus(report, parity.CPU_MODELS)
    assert report.ok, "\n" + report.table


# ------------------------------------------------------------------------------------------- the .pte rows
@pytest.mark.arm64
def test_the_pte_worker_cuts_prompts_as_the_kit_does():
    """The emulated worker's twin of ``convert.export_pte.cut_tokens`` (the kit's module cannot be imported
    in the sysroot) cuts every case alike: pooled at argmax or at the first eos id, an eos missing, no cut."""
    pytest.importorskip("executorch", reason="the .pte worker needs the executorch extra")
    import run_pte_arm64
    import torch

    from convert.export_pte import cut_tokens

    tokens = torch.tensor([[1, 5, 9, 2, 0, 0], [1, 7, 2, 4, 2, 0], [1, 3, 4, 5, 6, 7], [1, 8, 8, 8, 8, 2]])
    works = [None, {"rows_end_at_eot": False}, {"rows_end_at_eot": True},
             {"rows_end_at_eot": True, "pool": "argmax", "eos_id": 2},
             {"rows_end_at_eot": True, "pool": "eos", "eos_id": 2},
             {"rows_end_at_eot": True, "pool": "eos", "eos_id": 99}]
    lengths = set()
    for work in works:
        kit, twin = cut_tokens(tokens, work), run_pte_arm64.cut_tokens(tokens, work)
        assert len(kit) == len(twin) == len(tokens)
        for a, b in zip(kit, twin):
            assert a.shape == b.shape and torch.equal(a, b), (work, a, b)
            lengths.add(a.shape[1])
    assert {3, 4, 6}.issubset(lengths)   # the cases really cut at different places


@pytest.mark.arm64
def test_cpu_models_keep_their_qemu_properties():
    assert parity.split_cpus("cortex-a53,max,sme=off,sve=off,cortex-a76") == (
        "cortex-a53", "max,sme=off,sve=off", "cortex-a76")
    assert parity.split_cpus(",".join(parity.FORMATS["pte"].cpus)) == parity.FORMATS["pte"].cpus


@pytest.mark.arm64
def test_pte_directories_without_pte_files_are_refused(convert_tiny, monkeypatch):
    _no_emulation(monkeypatch)
    with pytest.raises(parity.ParityError, match=r"lists no \.pte file"):
        parity.run_parity({"int8": convert_tiny().out_dir, "fp32": convert_tiny(quantize="none").out_dir},
                          fmt="pte")


@pytest.mark.arm64
def test_tiny_pte_artifacts_on_arm64_match_x86(request, convert_tiny, arm64_root, capsys, tmp_path):
    """The built-in tiny CLIP's .pte files in ExecuTorch 1.3.1 (+ torch 2.12.1) aarch64 on cortex-a53,
    cortex-a76 and max without SME, against the same files in the kit's x86 ExecuTorch: the .ptl rows' gates.
    (max with SME gives wrong int8 answers under qemu 7.2: parity.MAX_WITHOUT_SME, README.md.)"""
    if not _selected(request.config, "arm64"):
        pytest.skip("emulated (~3 min): opt-in with pytest -m arm64 (.ci/arm64.sh)")
    pytest.importorskip("executorch", reason="the .pte rows need the executorch extra")
    sets = {"builtin-int8": convert_tiny(pretrained="builtin", format="pte").out_dir,
            "builtin-fp32": convert_tiny(pretrained="builtin", quantize="none", format="pte").out_dir}
    cpus = parity.FORMATS["pte"].cpus
    report = parity.run_parity(sets, fmt="pte", cpus=cpus, rows=4, direct=True, root=arm64_root,
                               workdir=tmp_path, log=lambda m: None)
    with capsys.disabled():
        _print_report("arm64 parity, tiny CLIP .pte (ExecuTorch 1.3.1, qemu) vs x86", report)
    # cortex-a53 runs it too: ARMv8.0, no LSE atomics (checked below), and still no SIGILL in this runtime
    _check_emulated_cpus(report, cpus, runtime="executorch 1.3.1 torch 2.12.1")
    assert all("aarch64" in report.versions[f"arm64 {cpu}"] for cpu in cpus)
    roles = {(ln.set, ln.role) for ln in report.lines}
    assert len(roles) == 3 * len(sets), roles
    assert report.ok, "\n" + report.table


# The phone floor only: every emulated CPU model costs one more emulated process over both towers.
MOBILECLIP_CPUS = ("cortex-a53",)


@pytest.mark.arm64_mobileclip
def test_mobileclip_artifacts_on_arm64_match_x86(request, arm64_root, capsys, tmp_path):
    """MobileCLIP2-S0 (random init): a reparameterized FastViT image tower whose convolutions stay fp32
    (XNNPACK) beside qnnpack int8 Linears, and a non-causal text tower, on the phone's runtime."""
    if not _selected(request.config, "arm64_mobileclip"):
        pytest.skip("MobileCLIP2-S0 under emulation: opt-in with pytest -m arm64_mobileclip")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sets = parity.mobileclip_sets(tmp_path / "mobileclip")
    report = parity.run_parity(sets, cpus=MOBILECLIP_CPUS, rows=2, direct=False, root=arm64_root,
                               workdir=tmp_path / "work", log=lambda m: None)
    with capsys.disabled():
        _print_report("arm64 parity, MobileCLIP2-S0 (random init; torch 2.1.0 lite, qemu) vs x86", report)
    _check_emulated_cpus(report, MOBILECLIP_CPUS)
    assert {(ln.set, ln.role) for ln in report.lines} >= {(s, r) for s in sets for r in ("image_encoder", "text_encoder")}
    assert report.ok, "\n" + report.table
