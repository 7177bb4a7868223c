"""Bad input: one clear line, exit status 2 (typed exception from the API), nothing half-written."""
import errno
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error
from convert import build_config
from convert.errors import CheckpointError, ConfigError, FidelityError, LabelsError, ModelError, OutputError, TorchVersionError

TINY = ["--model", "kit-tiny-clip", "--pretrained", "none", "--templates", "plain"]


@pytest.fixture(autouse=True)
def _in_empty_dir(tmp_path_factory, monkeypatch):
    """Run from an empty folder, so the default output directory (out/...) never pre-exists."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


_one_line_error = assert_one_line_error


@pytest.mark.parametrize("argv,needles", [
    (["--model", "ViT-B-33"], ["unknown model 'ViT-B-33'", "ViT-B-32"]),
    (["--model", "ViT-B-32", "--pretrained", "opneai"], ["unknown pretrained tag 'opneai'", "openai"]),
    (["--quantize", "everything"], ["invalid choice", "everything"]),
    (["--target", "ios"], ["invalid choice", "ios"]),
    (["--weights", "per-row"], ["invalid choice", "per-row"]),
    (["--bytecode-version", "x"], ["invalid int value"]),
    (["--templates", "fancy"], ["templates='fancy'", "openai, simple, plain"]),
    (["--min-cosine", "2"], ["min_cosine=2.0"]),
])
def test_bad_options(run_cli, tmp_path, argv, needles):
    code, _, err = run_cli(*argv, "--out", tmp_path / "o", "--labels", "cat,dog")
    _one_line_error(code, err, *needles)
    assert not (tmp_path / "o").exists()


def test_recipe_unknown_key_with_hint(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("quantise: combined\n")
    code, _, err = run_cli("--recipe", recipe, "--out", tmp_path / "o")
    _one_line_error(code, err, "unknown key 'quantise'", "quantize")


def test_recipe_malformed_yaml(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("quantize: [combined\nweights: per-tensor\n")
    code, _, err = run_cli("--recipe", recipe, "--out", tmp_path / "o")
    _one_line_error(code, err, "malformed YAML", "line")


def test_recipe_bad_enum_value_and_unknown_recipe_name(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("attention: int4\n")
    _one_line_error(*run_cli("--recipe", recipe)[::2], "attention='int4'", "int8, fp32")
    _one_line_error(*run_cli("--recipe", "andriod")[::2], "recipe 'andriod'", "android")


def test_recipe_is_overridden_by_cli():
    config = build_config("paper", weights="per-channel")
    assert config.weights == "per-channel" and config.attention == "fp32" and config.target == "x86"


@pytest.mark.parametrize("content,needle", [("", "empty"), ("cat\ndog\nCat\n", "duplicate label 'Cat'"),
                                           ("# only a comment\n\n", "empty")])
def test_labels_file_empty_or_duplicated(run_cli, tmp_path, content, needle):
    labels = tmp_path / "labels.txt"
    labels.write_text(content)
    code, _, err = run_cli(*TINY, "--labels", labels, "--out", tmp_path / "o")
    _one_line_error(code, err, needle)
    with pytest.raises(LabelsError):
        build_config(labels=labels.read_text().splitlines() or [])


def test_labels_file_missing(run_cli, tmp_path):
    _one_line_error(*run_cli(*TINY, "--labels", tmp_path / "nope.txt")[::2], "does not exist")


def test_checkpoint_missing_truncated_and_wrong_architecture(run_cli, tmp_path):
    import open_clip

    missing = tmp_path / "missing.pt"
    _one_line_error(*run_cli("--model", "kit-tiny-clip", "--checkpoint", missing)[::2], "does not exist")

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _one_line_error(*run_cli("--model", "kit-tiny-clip", "--checkpoint", empty)[::2], "empty")

    from assets import register_tiny_model

    register_tiny_model()
    good = tmp_path / "good.pt"
    torch.save(open_clip.create_model("kit-tiny-clip").state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _one_line_error(*run_cli("--model", "kit-tiny-clip", "--checkpoint", truncated, "--out", tmp_path / "o")[::2],
                    "truncated.pt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    _one_line_error(*run_cli("--model", "kit-tiny-clip", "--checkpoint", garbage, "--out", tmp_path / "o")[::2],
                    "garbage.pt")

    code, _, err = run_cli("--model", "RN50", "--checkpoint", good, "--out", tmp_path / "o")
    _one_line_error(code, err, "does not fit RN50")
    assert not (tmp_path / "o").exists()


def test_non_empty_output_directory_refused_unless_force(run_cli, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(*TINY, "--out", out)
    _one_line_error(code, err, "is not empty", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_unwritable_output_location(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(*TINY, "--out", blocker / "sub" / "o")
    _one_line_error(code, err, "cannot create")
    code, _, err = run_cli(*TINY, "--out", blocker)
    _one_line_error(code, err, "not a directory")


def test_disk_full_mid_write_leaves_nothing(monkeypatch, tmp_path):
    """ENOSPC while saving the text tower: a clear OutputError, no staging dir, no output dir."""
    from convert import export
    from convert.pipeline import convert

    real = export.save_lite
    calls = []

    def failing(module, path, metadata):
        calls.append(path.name)
        if path.name == "text_encoder.ptl":
            def write(tmp):
                Path(tmp).write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
            export.atomic_write(path, write)
        real(module, path, metadata)

    monkeypatch.setattr(export, "save_lite", failing)
    out = tmp_path / "o"
    config = build_config(model="kit-tiny-clip", pretrained="none", templates="plain", out=str(out))
    with pytest.raises(OutputError, match="No space left on device"):
        convert(config)
    assert calls == ["image_encoder.ptl", "text_encoder.ptl"]
    assert list(tmp_path.iterdir()) == []


def test_fidelity_below_floor_fails_and_writes_nothing(run_cli, tmp_path):
    out = tmp_path / "o"
    code, _, err = run_cli(*TINY, "--min-cosine", "1.0", "--out", out)
    line = _one_line_error(code, err, "below the recipe's floor", "image_encoder cosine", status=1)
    assert "short by" in line
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(FidelityError):
        from convert.pipeline import convert

        convert(build_config(model="kit-tiny-clip", pretrained="none", min_cosine=1.0, out=str(out)))


def test_torch_without_xnnpack_is_refused_for_android(monkeypatch):
    from convert import torchcheck

    monkeypatch.setattr(torchcheck, "xnnpack_available", lambda: False)
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    with pytest.raises(TorchVersionError, match=r"torch 2\.13\.0\+cpu is built without XNNPACK.*torch==2\.12\.1"):
        torchcheck.check_torch("qnnpack", needs_xnnpack=True)
    with pytest.warns(UserWarning, match="not the pinned 2.12.1"):
        torchcheck.check_torch("fbgemm", needs_xnnpack=False)


def test_torch_without_the_engine_is_refused(monkeypatch, run_cli, tmp_path):
    from convert import torchcheck

    monkeypatch.setattr(torchcheck, "supported_engines", lambda: ["fbgemm"])
    with pytest.raises(TorchVersionError, match="no 'qnnpack' quantized engine"):
        torchcheck.check_torch("qnnpack")
    _one_line_error(*run_cli(*TINY, "--out", tmp_path / "o")[::2], "no 'qnnpack' quantized engine")


def test_api_raises_typed_errors():
    with pytest.raises(ConfigError):
        build_config(quantize="all")
    with pytest.raises(ConfigError, match="did you mean"):
        build_config(**{"quantise": "combined"})
    with pytest.raises(ModelError):
        from convert.load import load_model

        load_model(build_config(model="ViT-B-33"))
    with pytest.raises(CheckpointError):
        from convert.load import load_model

        load_model(build_config(checkpoint="/nonexistent.pt"))
