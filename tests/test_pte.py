"""The ExecuTorch (``.pte``) format: the same recipe, verification, reader and deploy commands as ``.ptl``.

The fast tests here check the recipe -> quantizer mapping and the one-line refusals without exporting
anything. Those marked ``pte`` convert the built-in tiny CLIP to both formats once (about a minute on 2 cores:
torch.export and XNNPACK lowering dominate) and run it; ``.ci/run`` runs them (``-m pte``), and without the
``executorch`` extra they skip with the reason.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from _deploy_helpers import assert_one_line_error, run_entry, tiny_options
from convert.export_pte import EXECUTORCH_PIN, executorch_version

needs_executorch = pytest.mark.skipif(executorch_version() is None,
                                      reason='ExecuTorch is not installed (pip install -e ".[executorch]")')


# ------------------------------------------------------------------------------------- recipe -> quantizer
@pytest.fixture(scope="module")
def fp32_towers():
    from convert import build_config
    from convert.load import load_model
    from convert.towers import build_towers

    config = build_config(**tiny_options())
    loaded = load_model(config)
    return config, build_towers(loaded.model, config.quant, truncate_text=None, quantize=False), loaded.preprocess


def _prepared(fp32_towers, role, **quant):
    from convert.export_pte import prepare_tower

    config, towers, _ = fp32_towers
    q = dataclasses.replace(config.quant, **quant)
    return prepare_tower(towers.fp32[role], q, role, True)


def test_pte_quantizes_exactly_the_ptl_recipe_modules(fp32_towers):
    import torch

    from convert.quantize import select_modules

    config, towers, _ = fp32_towers
    for role in ("image_encoder", "text_encoder"):
        module, selected, report, _ = _prepared(fp32_towers, role)
        ptl, _ = select_modules(towers.fp32[role], config.quant, role)
        prefix = "tower." if role == "text_encoder" else ""
        # attention's stacked in_proj is three Linears in the .pte: the same weights, by three names
        expected = {prefix + name + suffix for name in ptl
                    for suffix in ((".q", ".k", ".v") if name.endswith(".in_proj") else ("",))}
        assert set(selected) == expected, role
        assert all(selected.values())  # per-channel, as the recipe says
        names = dict(module.named_modules())
        # the quantizer matches modules whose own forward runs: every name is a Linear, never a container
        assert all(type(names.get(name)) is torch.nn.Linear for name in selected), role
        weights = sum(names[name].weight.numel() for name in selected)
        assert weights == sum(m.weight.numel() for n, m in towers.fp32[role].named_modules() if n in ptl), role


def test_keep_fp32_attention_embedding_and_per_tensor_reach_the_pte(fp32_towers):
    from convert.quantize import Int8Embedding

    block = "text_encoder.transformer.resblocks.0.mlp.c_fc"
    module, selected, report, notes = _prepared(fp32_towers, "text_encoder", keep_fp32=(block,))
    assert "tower.transformer.resblocks.0.mlp.c_fc" not in selected
    assert "transformer.resblocks.0.mlp.c_fc" in report.fp32
    assert isinstance(module.tower.token_embedding, Int8Embedding) and any("weight-only" in n for n in notes)
    module, selected, _, _ = _prepared(fp32_towers, "text_encoder", attention="fp32", embedding="fp32")
    assert not any(name.endswith(("in_proj", "out_proj")) for name in selected)
    assert not isinstance(module.tower.token_embedding, Int8Embedding)
    _, selected, _, notes = _prepared(fp32_towers, "image_encoder", weights="per-tensor")
    assert selected and not any(selected.values()) and any("three" in n for n in notes)


def test_export_forms_compute_what_the_towers_compute(fp32_towers):
    """The forms torch.export takes (three-Linear attention, a causal mask built per length) are the towers'
    function: fp32, one prompt at a time at its own length."""
    import open_clip
    import torch

    from convert.probes import probe_images, probe_texts

    config, towers, preprocess = fp32_towers
    image, _, _, _ = _prepared(fp32_towers, "image_encoder", embedding="fp32")
    x = probe_images(preprocess, n=2)
    with torch.no_grad():
        assert torch.allclose(image(x[:1]), towers.fp32["image_encoder"](x[:1]), atol=1e-5)
        text, _, _, _ = _prepared(fp32_towers, "text_encoder", embedding="fp32")
        tokens = open_clip.get_tokenizer("ViT-B-32")(probe_texts(None))[:, :32]
        for row in tokens[:4]:
            end = int(row.argmax()) + 1
            assert torch.allclose(text(row[None, :end]), towers.fp32["text_encoder"](row[None]), atol=1e-5)


# ------------------------------------------------------------------------------------- refusals
def test_ptl_only_options_are_refused_with_format_pte():
    from convert import build_config
    from convert.errors import ConfigError

    for option in ({"also_pt": True}, {"bytecode_version": 7}):
        with pytest.raises(ConfigError, match="applies to .ptl files only"):
            build_config(**tiny_options(format="pte", **option))
    assert build_config(**tiny_options(format="both", also_pt=True)).formats == ("ptl", "pte")
    with pytest.raises(ConfigError, match="format='pdf'"):
        build_config(**tiny_options(format="pdf"))


def test_missing_executorch_is_one_line_naming_the_extra(run_cli, tmp_path, monkeypatch):
    import convert.export_pte as export_pte

    monkeypatch.setattr(export_pte, "executorch_version", lambda: None)
    code, _, err = run_cli("--format", "pte", "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(code, err, 'pip install -e ".[executorch]"')
    assert not (tmp_path / "o").exists()


def test_another_executorch_release_is_refused(run_cli, tmp_path, monkeypatch):
    import convert.export_pte as export_pte

    monkeypatch.setattr(export_pte, "executorch_version", lambda: "1.4.0")
    code, _, err = run_cli("--format", "both", "--out", tmp_path / "o", "--quiet")
    assert_one_line_error(code, err, "executorch 1.4.0", EXECUTORCH_PIN)


# ------------------------------------------------------------------------------------- converted
@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The built-in trained tiny CLIP, both formats, its 48 labels (simple templates)."""
    if executorch_version() is None:
        pytest.skip('ExecuTorch is not installed (pip install -e ".[executorch]")')
    from assets import TINY_LABELS
    from convert import build_config
    from convert.config import read_labels
    from convert.pipeline import convert

    out = tmp_path_factory.mktemp("pte") / "both"
    convert(build_config(format="both", labels=read_labels(str(TINY_LABELS)), templates="simple", out=str(out)))
    return out


pte = pytest.mark.pte


@pte
def test_both_formats_written_verified_and_recorded(both):
    from convert.artifact import verify_artifacts

    manifest = json.loads((both / "manifest.json").read_text())
    assert manifest["versions"]["executorch"] == executorch_version()
    by_format = {(e["role"], e["format"]): e for e in manifest["files"]}
    for role in ("image_encoder", "text_encoder", "zero_shot_head"):
        ptl, pte_entry = by_format[(role, "lite")], by_format[(role, "pte")]
        assert pte_entry["file"] == f"{role}.pte" and pte_entry["inputs"] == ptl["inputs"]
        delegation = pte_entry["delegation"]
        assert delegation["xnnpack"] and not any(op.split(".")[0] in ("linear", "mm", "bmm", "addmm", "softmax")
                                                 for op in delegation["portable"]), delegation
    for role in ("image_encoder", "text_encoder"):
        # the same int8 weights (XNNPACK's fp32 scales are smaller than torch's); a tower left fp32 by a
        # recipe name the quantizer missed weighed 1.5x the .ptl
        assert by_format[(role, "pte")]["bytes"] <= 1.1 * by_format[(role, "lite")]["bytes"], role
        figures = by_format[(role, "pte")]["fidelity"]
        assert figures["cosine_min"] >= 0.999, (role, figures)  # measured 0.99994 / 0.99997
    assert by_format[("text_encoder", "pte")]["fidelity"]["per_prompt"]["cosine_min"] >= 0.999
    assert by_format[("text_encoder", "pte")]["work"]["pool"] == "argmax"
    verified = verify_artifacts(both, None, ("pte",))
    assert {role for role, fmt in verified.paths if fmt == "pte"} == {"image_encoder", "text_encoder", "zero_shot_head"}
    ops = (both / "ops.yaml").read_text()
    assert "executorch:" in ops and "root_operators:" in ops


@pte
def test_deploy_commands_answer_from_either_format(both, tmp_path, capsys):
    from _deploy_helpers import shape_images
    from deploy.__main__ import main

    images = shape_images(tmp_path / "imgs", n=4)
    code, out, err = run_entry(main, capsys, "verify", both)
    assert code == 0 and "executorch" in out, err
    answers = {}
    for runtime in ("lite", "pte"):
        code, out, err = run_entry(main, capsys, "classify", *images, "--artifacts", both, "--runtime", runtime,
                                   "--json", "--no-cache")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["kind"] == runtime
        answers[runtime] = [r["top"][0]["label"] for r in doc["results"]]
    assert answers["pte"] == answers["lite"]
    code, out, err = run_entry(main, capsys, "search", "--artifacts", both, "--images", tmp_path / "imgs",
                               "--query", "a red circle", "--runtime", "pte", "--json", "--index", tmp_path / "i.pt")
    assert code == 0, err


@pte
def test_pte_keeps_the_tiny_clips_zero_shot_accuracy(both):
    """As tests/test_accuracy.py for .ptl: 500 held-out images; measured on 2000: fp32 96.05 %, .pte 96.05 %
    (simple-7), agreement 100 %."""
    from deploy.evaluate import evaluate

    report = evaluate(both, "shapes", 500, templates=("simple",), kind="pte", linear_probe=False)
    assert report["kind"] == "pte"
    z = report["zero_shot"]["simple-7"]
    assert z["fp32_top1"] >= 0.90, z
    assert abs(z["top1_drop_points"]) <= 0.5, z
    assert z["top1_agreement"] >= 0.99, z


@pte
def test_tampered_or_foreign_pte_is_one_line(both, tmp_path, capsys):
    from _deploy_helpers import edit_manifest
    from deploy.__main__ import main

    bad = tmp_path / "bad"
    shutil.copytree(both, bad)
    data = bytearray((bad / "text_encoder.pte").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "text_encoder.pte").write_bytes(bytes(data))
    code, _, err = run_entry(main, capsys, "verify", bad)
    assert_one_line_error(code, err, "text_encoder.pte", "sha256")
    other = tmp_path / "other"
    shutil.copytree(both, other)
    edit_manifest(other, lambda m: m["versions"].update(executorch="1.2.0"))
    code, _, err = run_entry(main, capsys, "verify", other)
    assert_one_line_error(code, err, "executorch 1.2.0", f"executorch {executorch_version()}")


@pte
@needs_executorch
def test_a_matmul_xnnpack_cannot_take_fails_the_conversion(tmp_path):
    """The known ExecuTorch speed trap: a matmul left to portable kernels is an error unless allowed."""
    import torch

    from convert.errors import ExportError
    from convert.export_pte import export_pte

    class TransposedHead(torch.nn.Module):  # the kit's head before it became a Linear
        def __init__(self):
            super().__init__()
            self.register_buffer("weight", torch.randn(4, 8))

        def forward(self, x):
            return torch.matmul(x, self.weight.t())

    args = (TransposedHead(), "zero_shot_head", (torch.randn(1, 8),), None, {}, {"role": "zero_shot_head"})
    with pytest.raises(ExportError, match="mm.*portable kernels.*allow_undelegated"):
        export_pte(*args, tmp_path / "h.pte")
    assert not (tmp_path / "h.pte").exists()
    report = export_pte(*args, tmp_path / "h.pte", allow_undelegated=True)
    assert "mm.default" in report["portable"] and (tmp_path / "h.pte").is_file()


@pte
def test_bench_measures_pte_beside_lite(both, tmp_path, capsys):
    from deploy.__main__ import main

    out = tmp_path / "bench.json"
    code, _, err = run_entry(main, capsys, "bench", both, "--roles", "text_encoder", "--variants", "lite", "pte",
                             "--threads", "1", "--load-repeats", "1", "--iters", "2", "--warmup", "0",
                             "--quiet", "--json", out)
    assert code == 0, err
    results = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"lite", "pte"}
    assert results["pte"]["file"] == "text_encoder.pte" and results["pte"]["steady_ms"]["median"] > 0
