"""ViT-B-32 to ExecuTorch (``.pte``) end to end, seeded random weights (``-m vitb32``; about 8 minutes on
2 busy cores, torch.export and XNNPACK lowering of the text tower's dynamic length dominate).

Measured (docs/executorch.md): image 84.38 MiB cosine 0.999877, text 61.21 MiB per prompt 0.999334.
"""
import pytest

from convert.export_pte import executorch_version

MIB = 2**20
pytestmark = [pytest.mark.vitb32,
              pytest.mark.skipif(executorch_version() is None, reason='pip install -e ".[executorch]"')]


@pytest.fixture(scope="module")
def vitb32_pte(tmp_path_factory):
    from convert import build_config
    from convert.pipeline import convert

    out = tmp_path_factory.mktemp("vitb32-pte") / "out"
    return convert(build_config("android", model="ViT-B-32", pretrained="none", format="pte", out=str(out)))


def test_vitb32_pte_size_fidelity_and_delegation(vitb32_pte):
    entries = {e["role"]: e for e in vitb32_pte.manifest["files"] if e["format"] == "pte"}
    assert (entries["image_encoder"]["bytes"] + entries["text_encoder"]["bytes"]) / MIB <= 146.0
    assert entries["image_encoder"]["fidelity"]["cosine_min"] >= 0.9998
    assert entries["text_encoder"]["fidelity"]["per_prompt"]["cosine_min"] >= 0.999
    for role in ("image_encoder", "text_encoder"):
        delegation = entries[role]["delegation"]
        assert delegation["xnnpack"]["linear.default"] >= 73, role  # every Linear of the recipe, in XNNPACK
        assert not any(op.startswith(("linear", "bmm", "mm", "addmm", "_softmax")) for op in delegation["portable"])


def test_vitb32_pte_directory_verifies(vitb32_pte, capsys):
    from _deploy_helpers import run_entry
    from deploy.__main__ import main

    code, out, err = run_entry(main, capsys, "verify", vitb32_pte.out_dir)
    assert code == 0 and "executorch" in out, err
