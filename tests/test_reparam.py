"""Reparameterization (convert.reparam) on a small MobileCLIP-family tower, and what stays fp32 (convert.quantize).

The tower is timm's smallest FastViT (``fastvit_t8``: MobileOne stem, RepMixer stages, the blocks MobileCLIP's
``fastvit_mci*`` towers are made of) at 64 x 64 with a one-layer text tower: seconds, not the ~30 s of a
MobileCLIP2-S0 conversion (that one runs in the ``mobileclip`` suite, tests/test_mobileclip.py).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convert.errors import ReparamError
from convert.quantize import OTHER_FP32, PTL_FP32_REASONS, fp32_share
from convert.reparam import TOLERANCE, reparameterizable, reparameterize_towers


def small_fastvit_clip(seed: int = 0) -> nn.Module:
    """A CustomTextCLIP with a fastvit_t8 image tower whose BatchNorms hold trained-looking statistics
    (random init leaves them at identity, where folding them would be exact whatever the code did)."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(
        embed_dim=32,
        vision_cfg={"timm_model_name": "fastvit_t8", "timm_model_pretrained": False, "timm_pool": "avg",
                    "timm_proj": "linear", "image_size": 64},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def probes():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 64, 64, generator=generator), torch.randint(1, 49000, (3, 16), generator=generator)


def test_reparameterization_folds_every_block_and_keeps_outputs():
    model = small_fastvit_clip()
    images, tokens = probes()
    with torch.no_grad():
        before = model.encode_image(images)
    found = reparameterizable(model.visual)
    assert found["MobileOneBlock"] and found["RepMixer"]
    reports = reparameterize_towers(model, probes)
    image = reports["image_encoder"]
    assert image.modules == sum(found.values()) and image.kinds == dict(sorted(found.items()))
    assert reports["text_encoder"].modules == 0
    with torch.no_grad():
        after = model.encode_image(images)
    measured = float((after - before).abs().max() / before.abs().max())
    assert measured <= TOLERANCE
    assert image.relative_diff == pytest.approx(measured, rel=1e-3, abs=1e-12)
    assert image.to_dict()["tolerance"] == TOLERANCE
    # the inference form: every MobileOne block is one convolution, its training branches gone
    blocks = [m for m in model.visual.modules() if type(m).__name__ == "MobileOneBlock"]
    assert blocks and all(m.reparam_conv is not None and not hasattr(m, "conv_kxk") for m in blocks)


def test_a_fold_that_changes_outputs_is_an_error(monkeypatch):
    from timm.models.fastvit import MobileOneBlock

    model = small_fastvit_clip()
    fold = MobileOneBlock._get_kernel_bias
    monkeypatch.setattr(MobileOneBlock, "_get_kernel_bias", lambda self: tuple(t * 1.01 for t in fold(self)))
    with pytest.raises(ReparamError, match=r"reparameterizing the image_encoder \(\d+ modules: .*MobileOneBlock.*"
                                           r"changed its fp32 outputs by .* allowed: 1e-05"):
        reparameterize_towers(model, probes)


def test_a_model_without_train_time_branches_is_untouched_and_not_run():
    model = small_fastvit_clip()
    model.visual = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 32))
    reports = reparameterize_towers(model, lambda: pytest.fail("probes computed with nothing to fold"))
    assert {role: r.to_dict() for role, r in reports.items()} == {"image_encoder": {"modules": 0},
                                                                  "text_encoder": {"modules": 0}}


def test_fp32_share_names_the_convolutions_and_lumps_the_rest():
    from convert.config import build_config
    from convert.quantize import quantize_tower
    from convert.towers import build_image_encoder

    model = small_fastvit_clip()
    reparameterize_towers(model, probes)
    tower = build_image_encoder(model)
    quantized, _ = quantize_tower(tower, build_config(model="kit-tiny-clip").quant, "image_encoder")
    rows = fp32_share(quantized, PTL_FP32_REASONS, file_bytes=10 * 2**20)
    conv = next(r for r in rows if r["module"] == "Conv2d")
    convs = [m for m in quantized.modules() if isinstance(m, nn.Conv2d)]
    assert conv["count"] == len(convs) and conv["reason"] == "torch dynamic quantization has no conv"
    assert conv["bytes"] == sum(t.numel() * 4 for m in convs for t in (m.weight, m.bias) if t is not None)
    assert conv["share"] == round(conv["bytes"] / (10 * 2**20), 4)
    assert rows[-1]["module"] == OTHER_FP32 and "count" not in rows[-1]
    fp32_total = sum(t.numel() * 4 for t in (*quantized.parameters(), *quantized.buffers()) if t.dtype == torch.float32)
    assert sum(r["bytes"] for r in rows) == fp32_total  # every fp32 tensor once; the int8 Linears in none
    assert not any(r["module"] == "Linear" for r in rows)  # the recipe quantized every Linear
    # a format that quantizes convolutions: they are no longer listed
    int8_conv = fp32_share(quantized, {**PTL_FP32_REASONS, nn.Conv2d: None})
    assert [r["module"] for r in int8_conv] == [OTHER_FP32] and int8_conv[0]["share"] is None
    assert int8_conv[0]["bytes"] == fp32_total - conv["bytes"]


def test_the_manifest_records_both_and_its_check_names_a_bad_field(convert_tiny):
    import copy

    from convert.cli import fp32_lines, reparam_lines
    from convert.errors import ArtifactError
    from convert.schema import validate_manifest

    manifest = convert_tiny().manifest
    assert manifest["model"]["reparameterized"] == {"image_encoder": {"modules": 0}, "text_encoder": {"modules": 0}}
    assert reparam_lines(manifest) == ["image_encoder: nothing to reparameterize", "text_encoder: nothing to reparameterize"]
    for role in ("image_encoder", "text_encoder"):
        rows = manifest["quantized"][role]["fp32_share"]["lite"]
        assert rows and all(0 < r["share"] < 1 for r in rows)
    assert any(line.startswith("image_encoder.ptl: other fp32 parameters") for line in fp32_lines(manifest))
    for path, value, field in ((("model", "reparameterized", "image_encoder"), {"modules": 3},
                                "model.reparameterized.image_encoder.kinds"),
                               (("quantized", "text_encoder", "fp32_share"), {"lite": [{"module": "Conv2d"}]},
                                "quantized.text_encoder.fp32_share.lite[0].reason")):
        bad = copy.deepcopy(manifest)
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(ArtifactError, match=field.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
            validate_manifest(bad)
