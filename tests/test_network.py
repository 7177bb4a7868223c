"""Real pretrained weights: needs the network (off by default; run with `pytest -m network`)."""
import pytest

from convert import build_config
from convert.pipeline import convert


@pytest.mark.network
def test_vitb32_openai_weights_convert_with_fidelity(tmp_path):
    """The path users take on a connected machine: open_clip downloads the OpenAI weights, the
    android-compact recipe converts them, and both towers stay within the default floor."""
    result = convert(build_config("android-compact", model="ViT-B-32", pretrained="openai",
                                  labels=("a dog", "a cat", "a car"), out=str(tmp_path / "out")))
    assert result.manifest["model"]["pretrained"] == "openai"
    for role in ("image_encoder", "text_encoder"):
        assert result.manifest["fidelity"][role]["cosine_min"] >= 0.99
