"""--full-range (8-bit fbgemm activations): refused where the CPU would saturate, recorded in the manifest,
and refused by the loaders on a CPU without the flags it needs."""
from __future__ import annotations

import pytest
import torch

from _deploy_helpers import copy_artifacts, edit_manifest
from convert.artifact import require_cpu
from convert.errors import ArtifactError, ConfigError
from convert.quantize import cpu_flags, full_range_requirement, use_full_range
from convert.towers import build_towers
from deploy.artifacts import load_artifacts


def test_full_range_needs_fbgemm(run_cli):
    code, _, err = run_cli("--full-range", "--out", "unused")
    assert code == 2 and "full_range needs engine fbgemm" in err and err.strip().count("\n") == 0


def test_full_range_is_refused_on_a_cpu_without_vnni_and_applied_with_it(convert_tiny):
    import dataclasses

    from convert import build_config
    from convert.load import load_model

    config = build_config(model="kit-tiny-clip", pretrained="none", target="x86", pack="load")
    model = load_model(config).model
    tower = build_towers(model, config.quant, ("image_encoder",)).modules["image_encoder"]
    with pytest.raises(ConfigError, match="need a CPU with avx512_vnni"):
        use_full_range(tower, "fbgemm", flags={"avx2"})
    assert use_full_range(tower, "fbgemm", flags={"avx512_vnni"}) > 0
    assert full_range_requirement("qnnpack") == [] and full_range_requirement("fbgemm") == ["avx512_vnni"]
    if "avx512_vnni" not in cpu_flags():  # this machine: the conversion itself refuses
        with pytest.raises(ConfigError, match="avx512_vnni"):
            build_towers(model, dataclasses.replace(config.quant, full_range=True))


def test_loaders_refuse_full_range_artifacts_on_a_cpu_without_the_flags(convert_tiny, tmp_path):
    d = copy_artifacts(convert_tiny(target="x86", pack="load").out_dir, tmp_path / "a")
    edit_manifest(d, lambda m: m.update(runtime={"requires_cpu_flags_any": ["no_such_cpu_flag"]}))
    with pytest.raises(ArtifactError, match="need a CPU with no_such_cpu_flag.*reconvert without --full-range"):
        load_artifacts(d)
    require_cpu({"runtime": {"requires_cpu_flags_any": ["avx512_vnni"]}}, flags={"avx512_vnni"})
    edit_manifest(d, lambda m: m.pop("runtime"))
    assert load_artifacts(d).image_encoder(torch.zeros(1, 3, 64, 64)).shape == (1, 64)
