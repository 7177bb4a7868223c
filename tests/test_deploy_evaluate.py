"""python -m deploy evaluate (accuracy report, plots, datasets) and python -m convert --sensitivity (recipe)."""
from __future__ import annotations

import json

import pytest

from _deploy_helpers import shape_images
from convert.config import build_config, load_recipe
from deploy.__main__ import main


def test_evaluate_shapes_json(art, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["evaluate", "--artifacts", str(art), "--n", "96", "--templates", "plain,simple", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["n"] == 96 and report["classes"] == 48
    assert set(report["zero_shot"]) == {"plain-1", "simple-7"}
    z = report["zero_shot"]["simple-7"]
    # Accuracies are counts over 96 images, top-5 contains top-1, and the drop is their difference.
    for key in ("fp32_top1", "fp32_top5", "converted_top1", "converted_top5", "top1_agreement"):
        assert round(z[key] * 96) == pytest.approx(z[key] * 96, abs=1e-3)
    assert z["fp32_top5"] >= z["fp32_top1"] and z["converted_top5"] >= z["converted_top1"]
    assert z["top1_drop_points"] == pytest.approx(100 * (z["fp32_top1"] - z["converted_top1"]), abs=1e-3)
    # int8 towers this close to fp32 (cosine > 0.99) pick the same class for most images even with random
    # weights, whose 48 class scores are nearly tied (measured 0.90-0.98): a converted side that ran other
    # inputs, labels or templates would agree on about 1 in 48.
    assert report["image_encoder"]["cosine_mean"] > 0.99 and report["text_encoder"]["cosine_mean"] > 0.99
    assert z["top1_agreement"] >= 0.75 and abs(z["top1_drop_points"]) <= 10
    assert report["image_encoder"]["sqnr_db"] > 15
    lp = report["linear_probe"]
    assert lp["train"] == 48 and lp["test"] == 48
    assert abs(lp["fp32_top1"] - lp["fp32_probe_on_converted_top1"]) <= 0.1
    assert "zero-shot" in capsys.readouterr().out


def test_evaluate_plots(art, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    code = main(["evaluate", "--artifacts", str(art), "--n", "48", "--templates", "plain", "--no-linear-probe",
                 "--plots", str(plots), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    names = {p.split("/")[-1] for p in report["plots"]}
    assert names == {"similarity_fp32_vs_int8.png", "weight_distributions.png", "per_layer_error.png"}
    for name in names:
        assert (plots / name).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_plots_without_matplotlib(art, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert main(["evaluate", "--artifacts", str(art), "--n", "4", "--plots", str(tmp_path)]) == 2
    assert "needs matplotlib" in capsys.readouterr().err


def test_evaluate_imagefolder(art, tmp_path, capsys):
    root = tmp_path / "folder"
    shape_images(root / "red_circle", n=2, seed=1)
    shape_images(root / "blue_square", n=2, seed=2)
    code = main(["evaluate", "--artifacts", str(art), "--dataset", "imagefolder", "--data-root", str(root),
                 "--templates", "plain", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 4 and report["classes"] == 2


@pytest.mark.parametrize("argv,match", [
    (["--dataset", "cifar10"], "needs --data-root"),
    (["--dataset", "cifar100", "--data-root", "{tmp}"], "cifar100 is not under"),
    (["--dataset", "imagefolder", "--data-root", "{tmp}"], "no class sub-folders with images"),
    (["--dataset", "imagefolder", "--data-root", "{tmp}/nope"], "does not exist"),
    (["--templates", "nonexistent_set"], "templates='nonexistent_set'"),
    (["--n", "0"], "--n 0"),
])
def test_evaluate_bad_inputs(art, tmp_path, capsys, argv, match):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["evaluate", "--artifacts", str(art), *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and err.strip().count("\n") == 0


def test_sensitivity_writes_loadable_recipe(run_cli, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    code, out, err = run_cli("--model", "kit-tiny-clip", "--pretrained", "none", "--sensitivity", "2",
                             "--sensitivity-recipe", recipe, "--json")
    assert code == 0, err
    data = json.loads(out)
    rows = data["rows"]
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["drop"] >= rows[-1]["drop"]
    groups = {r["pattern"] for r in rows}
    assert "text_encoder.token_embedding" in groups and "image_encoder.proj" in groups
    assert any(p.startswith("text_encoder.transformer.resblocks.0.attn") for p in groups)
    values = load_recipe(str(recipe))
    assert values["keep_fp32"] == [r["pattern"] for r in rows[:2]]
    config = build_config(str(recipe))
    assert config.model == "kit-tiny-clip" and config.pretrained == "none"
    assert config.keep_fp32 == tuple(values["keep_fp32"])


def test_rank_groups_api(tmp_path):
    from convert.sensitivity import rank_groups, write_recipe

    config = build_config(model="kit-tiny-clip", pretrained="none", quantize="image")
    result = rank_groups(config, k=1)
    write_recipe(tmp_path / "r.yaml", config, result)
    rows = result.rows
    assert rows and all(r["role"] == "image_encoder" for r in rows)
    assert sum(r["kept_fp32"] for r in rows) == 1
    assert load_recipe(str(tmp_path / "r.yaml"))["quantize"] == "image"


def test_sensitivity_target_keeps_groups_until_each_tower_reaches_it(tmp_path):
    """Keep-until-target: each tower's curve starts all-int8, adds groups one at a time (most cosine drop
    per parameter first) and stops at the first measured cosine >= target (or at k groups); the recipe
    keeps exactly those groups."""
    from convert.sensitivity import rank_groups, write_recipe

    config = build_config(model="kit-tiny-clip")
    result = rank_groups(config, k=4, target=0.99999)
    write_recipe(tmp_path / "r.yaml", config, result)
    rows, summary = result.rows, result.summary
    kept = []
    for role in ("image_encoder", "text_encoder"):
        curve = summary[role]["curve"]
        assert curve[0]["fp32_groups"] == 0 and curve[0]["added"] is None and curve[0]["extra_mib"] == 0
        assert curve[0]["cosine_min"] == pytest.approx(summary[role]["all_int8"]["cosine_min"], abs=1e-12)
        # Stops at the first point that reaches the target, else after k groups.
        assert all(c["cosine_min"] < 0.99999 for c in curve[:-1])
        assert curve[-1]["cosine_min"] >= 0.99999 or curve[-1]["fp32_groups"] == 4
        assert [c["extra_mib"] for c in curve] == sorted(c["extra_mib"] for c in curve)
        per_byte = sorted((r for r in rows if r["role"] == role), key=lambda r: r["drop"] / r["params"], reverse=True)
        assert [c["added"] for c in curve[1:]] == [r["pattern"] for r in per_byte[: len(curve) - 1]]
        kept += [c["added"] for c in curve[1:]]
        assert summary[role]["with_recipe"]["cosine_min"] == pytest.approx(curve[-1]["cosine_min"], abs=1e-12)
    assert load_recipe(str(tmp_path / "r.yaml"))["keep_fp32"] == kept  # per tower, in the order kept
    assert sorted(kept) == sorted(r["pattern"] for r in rows if r["kept_fp32"])
    # A target the all-int8 towers already reach keeps nothing.
    again = rank_groups(config, k=4, target=0.9)
    assert all(len(s["curve"]) == 1 for s in again.summary.values())
    assert result.summary is summary and summary["text_encoder"]["curve"]  # two calls, two results


def test_sensitivity_target_must_be_a_cosine_below_one(run_cli):
    code, out, err = run_cli("--sensitivity-target", "0.9999")
    assert code == 2 and "--sensitivity-target needs --sensitivity K" in err
    code, out, err = run_cli("--sensitivity", "2", "--sensitivity-target", "1.5")
    assert code == 2 and "--sensitivity-target 1.5 must be a cosine below 1" in err and err.strip().count("\n") == 0
