"""The trained tiny CLIP keeps its zero-shot accuracy through the default int8 conversion.

Held-out shapes images (``deploy evaluate``'s ``shapes`` split, never seen in training), both sides' class
embeddings from their own text encoder, 7 templates. Measured on the default artifacts (simple-7 templates):

    n      fp32 top-1   int8 top-1   drop (points)   top-1 agreement
    100    99.00        99.00         0.00           100.00 %
    200    97.00        97.00         0.00           100.00 %
    300    96.33        96.00         0.33            99.67 %
    500    94.80        94.80         0.00            99.60 %
    1000   96.50        96.40         0.10            99.90 %
    2000   96.05        96.00         0.05            99.95 %

Each n is its own class-balanced sample, so fp32 accuracy moves by a few points between them while the int8
answers stay within 1-2 images of fp32. n=500 (~10 s) is the smallest n at which the floors below mean
something: 0.5 points is 2.5 images and 1 % agreement is 5 images, against 0 and 2 measured; at n=200 one
flipped image is already 0.5 points.
"""
from __future__ import annotations

import pytest

N = 500


@pytest.fixture(scope="module")
def default_artifacts(convert_tiny):
    """The default conversion of the built-in trained tiny CLIP (android, qnnpack, every option at its default).

    Only its zero-shot head is smaller (3 labels, one template: the session's shared conversion, also used by
    the arm64 suite): ``evaluate`` never runs the head, it compares the towers, which are the default's."""
    result = convert_tiny(pretrained="builtin")
    config = result.manifest["config"]
    assert (config["quantize"], config["target"], config["weights"], config["keep_fp32"]) == (
        "combined", "android", "per-channel", [])
    return result.out_dir


def test_default_int8_conversion_keeps_zero_shot_top1(default_artifacts):
    from deploy.evaluate import evaluate

    report = evaluate(default_artifacts, "shapes", N, templates=("simple",), linear_probe=False)
    assert report["n"] == N and report["random_weights"] is False
    z = report["zero_shot"]["simple-7"]
    assert z["fp32_top1"] >= 0.90, z  # the reference is the trained model (chance is 1/48)
    assert abs(z["top1_drop_points"]) <= 0.5, z
    assert z["top1_agreement"] >= 0.99, z
