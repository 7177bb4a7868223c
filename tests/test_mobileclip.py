"""MobileCLIP2-S0 end to end (seeded random weights): ``python -m convert`` says the towers were reparameterized
and what stayed fp32; ``deploy verify`` and ``deploy classify`` run the output. Marked ``mobileclip`` (the
conversion alone takes ~30 s on 2 cores; .ci/run runs the suite)."""
import json

import pytest

from _deploy_helpers import shape_images
from conftest import run_entry

MIB = 2**20
pytestmark = pytest.mark.mobileclip


@pytest.fixture(scope="module")
def s0(tmp_path_factory):
    """(output directory, convert's stdout) of MobileCLIP2-S0 converted through the CLI, with a 3-label head."""
    import contextlib
    import io

    from convert.cli import main

    out = tmp_path_factory.mktemp("s0") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["--model", "MobileCLIP2-S0", "--pretrained", "none", "--labels", "cat,dog,car",
                     "--templates", "plain", "--out", str(out)])
    assert code == 0, stdout.getvalue()
    return out, stdout.getvalue()


def test_conversion_reparameterizes_and_says_what_stayed_fp32(s0):
    out, printed = s0
    manifest = json.loads((out / "manifest.json").read_text())
    rep = manifest["model"]["reparameterized"]
    assert rep["text_encoder"] == {"modules": 0}
    image = rep["image_encoder"]
    assert image["modules"] > 0 and image["kinds"]["RepMixer"] > 0 and image["kinds"]["MobileOneBlock"] > 0
    assert image["relative_diff"] <= image["tolerance"] == 1e-5
    assert f"image_encoder: reparameterized {image['modules']} blocks" in printed
    assert "text_encoder: nothing to reparameterize" in printed
    conv = manifest["quantized"]["image_encoder"]["fp32_share"]["lite"][0]
    assert conv["module"] == "Conv2d" and conv["share"] > 0.5  # the convolutions are most of the image file
    assert f"image_encoder.ptl: {conv['count']} Conv2d (" in printed and "torch dynamic quantization has no conv" in printed
    sizes = {f["role"]: f["bytes"] for f in manifest["files"] if f["format"] == "lite"}
    assert sizes["image_encoder"] + sizes["text_encoder"] <= 100 * MIB
    for role in ("image_encoder", "text_encoder"):
        assert manifest["fidelity"][role]["cosine_min"] >= 0.999, role
    assert manifest["fidelity"]["text_encoder"]["per_prompt"]["cosine_min"] >= 0.999


def test_deploy_verify_and_classify_run_the_output(s0, tmp_path, capsys):
    from deploy.__main__ import main

    out, _ = s0
    code, printed, err = run_entry(main, capsys, "verify", out)
    assert code == 0 and "MobileCLIP2-S0" in printed, err
    images = shape_images(tmp_path / "imgs", n=2)
    code, printed, err = run_entry(main, capsys, "classify", *images, "--artifacts", out, "--json")
    assert code == 0, err
    answers = json.loads(printed)["results"]
    assert len(answers) == 2 and all(a["top"][0]["label"] in ("cat", "dog", "car") for a in answers), answers
