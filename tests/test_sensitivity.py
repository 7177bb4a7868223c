"""``--sensitivity`` ranks the towers the converter ships, and refuses what the conversion refuses."""
from __future__ import annotations

import pytest
import torch

import convert.quantize
from convert import build_config
from convert.errors import ConfigError
from convert.sensitivity import rank_groups

TINY = ("--model", "kit-tiny-clip", "--pretrained", "none", "--templates", "plain", "--labels", "cat,dog")


def test_full_range_sensitivity_is_refused_where_the_conversion_is(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(convert.quantize, "cpu_flags", lambda: {"avx2"})  # a CPU whose 8-bit sums would saturate
    x86 = (*TINY, "--target", "x86", "--full-range")
    code, _, conversion = run_cli(*x86, "--out", tmp_path / "o")
    assert code == 2 and "avx512_vnni" in conversion
    recipe = tmp_path / "r.yaml"
    code, _, err = run_cli(*x86, "--sensitivity", "1", "--sensitivity-recipe", recipe)
    assert (code, err) == (2, conversion) and not recipe.exists()


@pytest.mark.parametrize("options", [dict(target="x86", full_range=True), dict(target="android")],
                         ids=["x86-full-range", "android"])
def test_sensitivity_measures_the_towers_the_converter_builds(options, monkeypatch):
    """The all-int8 figures of the ranking are those of the converter's own towers (``build_towers`` with the
    recipe's text truncation, packing and activation range), on the same probe inputs."""
    import open_clip

    from convert.load import load_model
    from convert.metrics import compare
    from convert.probes import probe_images, probe_texts
    from convert.towers import build_towers

    monkeypatch.setattr(convert.quantize, "cpu_flags", lambda: {"avx512_vnni"})  # deterministic on any x86 CPU
    config = build_config(model="kit-tiny-clip", pretrained="none", labels=("cat", "dog"), templates="plain",
                          seed=0, **options)
    result = rank_groups(config, k=1)
    loaded = load_model(config)
    towers = build_towers(loaded.model, config.quant, truncate_text=config.truncate_text, pack=config.pack)
    inputs = {"image_encoder": probe_images(loaded.preprocess, n=8, seed=config.seed),
              "text_encoder": open_clip.get_tokenizer(loaded.name)(probe_texts(config.labels))}
    assert towers.fp32["text_encoder"].truncate  # the shipped tiny text tower stops at the last end-of-text token
    for role, x in inputs.items():
        with torch.no_grad():
            shipped = compare(towers.fp32[role](x), towers.modules[role](x))
        assert result.summary[role]["all_int8"] == shipped, role


def test_sensitivity_recipe_converts_what_was_measured(tmp_path, monkeypatch):
    from convert.sensitivity import write_recipe

    monkeypatch.setattr(convert.quantize, "cpu_flags", lambda: {"avx512_vnni"})

    config = build_config(model="kit-tiny-clip", pretrained="none", target="x86", full_range=True,
                          truncate_text=False, labels=("cat", "dog"), templates="plain")
    result = rank_groups(config, k=0)
    again = build_config(str(write_recipe(tmp_path / "r.yaml", config, result)))
    assert (again.full_range, again.truncate_text, again.pack) == (True, False, config.pack)


def test_sensitivity_k_must_be_a_count():
    with pytest.raises(ConfigError, match="integer >= 0"):
        rank_groups(build_config(model="kit-tiny-clip", pretrained="none"), k=-1)
