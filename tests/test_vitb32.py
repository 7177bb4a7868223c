"""End to end on the real ViT-B-32 architecture (seeded random weights; ~1 min per conversion)."""
import hashlib
from collections import defaultdict

import pytest
import torch

from _deploy_helpers import lite_zip_storages
from convert import build_config
from convert.pipeline import convert

MIB = 2**20
pytestmark = pytest.mark.vitb32


@pytest.fixture(scope="module")
def vitb32(tmp_path_factory):
    results = {}

    def run(recipe):
        if recipe not in results:
            out = tmp_path_factory.mktemp(recipe) / "out"
            results[recipe] = convert(build_config(
                recipe, model="ViT-B-32", pretrained="none", labels=("cat", "dog", "car"),
                templates="plain", out=str(out)))
        return results[recipe]

    return run


def _duplicated_bytes(path):
    """Bytes stored more than once, all-zero storages aside: random init makes biases zero, and
    fbgemm rebuilds each layer's (all-zero) zero-point vector when it pickles a packed weight."""
    by_hash = defaultdict(list)
    for _, data in lite_zip_storages(path):
        if data.count(0) != len(data):
            by_hash[hashlib.sha256(data).hexdigest()].append(len(data))
    return sum(sizes[0] * (len(sizes) - 1) for sizes in by_hash.values())


@pytest.mark.parametrize("recipe", ["android", "x86"])
def test_vitb32_conversion(vitb32, recipe):
    result = vitb32(recipe)
    sizes = {f["role"]: f["bytes"] for f in result.manifest["files"] if f["format"] == "lite"}
    fid = result.manifest["fidelity"]
    # fp32 towers: image 335 MiB + text 242 MiB; the int8 artifacts are about a quarter of that.
    assert sizes["image_encoder"] < 90 * MIB and sizes["text_encoder"] < 66 * MIB
    for role in ("image_encoder", "text_encoder"):
        assert fid[role]["cosine_min"] >= 0.995, (role, fid[role])
        assert fid[role]["fp32_tower_max_abs_err"] < 1e-3
        path = result.out_dir / f"{role}.ptl"
        # No duplicated weights: what is identical is a small LayerNorm vector (all ones at init).
        assert _duplicated_bytes(path) < 0.001 * path.stat().st_size, role


def test_vitb32_android_compact_fits_the_size_budget_with_fidelity(vitb32):
    """The android-compact recipe: both towers int8 throughout, image + text within 146 MiB,
    per-tower cosine >= 0.999 against fp32 as the phone runs them (images batched, text one prompt at a
    time, computed to its own end-of-text token: the default)."""
    result = vitb32("android-compact")
    sizes = {f["role"]: f["bytes"] for f in result.manifest["files"] if f["format"] == "lite"}
    assert (sizes["image_encoder"] + sizes["text_encoder"]) / MIB <= 146.0, sizes
    fidelity = result.manifest["fidelity"]
    assert result.manifest["config"]["truncate_text"] is True
    assert fidelity["image_encoder"]["cosine_min"] >= 0.999
    assert fidelity["text_encoder"]["per_prompt"]["cosine_min"] >= 0.999, fidelity["text_encoder"]


def test_paper_state_dict_sizes_reproduced():
    """quantize_dynamic({nn.Linear}) of ViT-B-32: exactly the paper's 577.18 -> 343.22 MiB."""
    import open_clip

    from convert.quantize import paper_state_dict_mib

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").eval()
    fp32, int8 = paper_state_dict_mib(model)
    assert round(fp32, 2) == 577.18
    assert round(int8, 2) == 343.22
