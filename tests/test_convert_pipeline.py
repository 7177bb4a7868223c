"""Conversion end to end on the tiny architecture: parity, manifest, metadata, storages, bytecode."""
import hashlib
import json
from collections import defaultdict

import pytest
import torch
import yaml

from _deploy_helpers import lite_zip_storages
from convert.artifact import bytecode_version, read_metadata
from convert.export import load_lite

MODES = ["none", "image", "text", "combined"]
TARGETS = ["android", "x86"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", MODES)
def test_lite_artifacts_match_the_fp32_reference(convert_tiny, mode, target):
    result = convert_tiny(quantize=mode, target=target)
    fid = result.manifest["fidelity"]
    # fp32 towers are exact up to float reordering; int8 towers stay close on the probe inputs.
    for role in ("image_encoder", "text_encoder"):
        quantized = mode in ("combined", role.split("_")[0])
        floor = 0.995 if quantized else 0.99999
        assert fid[role]["cosine_min"] >= floor, (role, fid[role])
        assert fid[role]["fp32_tower_max_abs_err"] < 1e-4
    assert fid["zero_shot_head"]["top1_agreement"] >= 0.75
    engine = {"android": "qnnpack", "x86": "fbgemm"}[target]
    assert result.manifest["engine"] == engine
    int8 = result.manifest["quantized"]
    assert ("image_encoder" in int8) == (mode in ("image", "combined"))
    assert ("text_encoder" in int8) == (mode in ("text", "combined"))


def test_quantized_towers_cover_every_linear_attention_embedding_patch_and_projection(convert_tiny):
    q = convert_tiny().manifest["quantized"]
    image, text = q["image_encoder"], q["text_encoder"]
    assert image["fp32"] == [] and text["fp32"] == []
    assert any(n.endswith("attn.in_proj") for n in image["int8"])
    assert any(n.endswith("attn.out_proj") for n in text["int8"])
    assert "visual.conv1.linear" in image["int8"] and "proj" in image["int8"]
    assert "projection" in text["int8"] and "token_embedding" in text["int8"]


@pytest.mark.parametrize("truncate", [False, True])
def test_lite_outputs_equal_the_eager_quantized_model(convert_tiny, truncate):
    """Scripting + optimize_for_mobile + lite loading must not change the quantized model's answers."""
    import open_clip

    from convert.config import QuantConfig
    from convert.probes import probe_texts
    from convert.quantize import quantize_tower
    from convert.towers import build_text_encoder

    # The default truncates (the tiny text tower is causal, pooled at its end-of-text token).
    result = convert_tiny() if truncate else convert_tiny(truncate_text=False)
    assert result.manifest["config"]["truncate_text"] is truncate
    torch.manual_seed(0)
    model = open_clip.create_model("kit-tiny-clip").eval()
    tower, _ = quantize_tower(build_text_encoder(model, truncate=truncate), QuantConfig(engine="qnnpack"),
                              "text_encoder")
    tokens = open_clip.get_tokenizer("kit-tiny-clip")(probe_texts())
    lite_tower = load_lite(result.out_dir / "text_encoder.ptl")
    with torch.no_grad():
        torch.testing.assert_close(lite_tower(tokens), tower(tokens), atol=1e-4, rtol=1e-4)
        # One prompt at a time, as the phone runs it (a truncated tower then runs a shorter sequence).
        for i in (0, 3):
            torch.testing.assert_close(lite_tower(tokens[i:i + 1]), tower(tokens[i:i + 1]), atol=1e-4, rtol=1e-4)


def test_manifest_hashes_sizes_and_versions(convert_tiny):
    result = convert_tiny(also_pt=True)
    m = json.loads((result.out_dir / "manifest.json").read_text())
    assert m["format"] == "clip-mobile-kit-manifest" and m["format_version"] == 1
    roles = {(f["role"], f["format"]) for f in m["files"]}
    for role in ("image_encoder", "text_encoder", "zero_shot_head"):
        assert (role, "lite") in roles and (role, "torchscript") in roles
    assert ("ops", "yaml") in roles and ("vocab", "bpe-merges-gz") in roles
    for entry in m["files"]:
        data = (result.out_dir / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["versions"]["torch"] == torch.__version__
    assert m["versions"]["bytecode"] == bytecode_version(result.out_dir / "image_encoder.ptl") == 8
    assert m["config"]["quantize"] == "combined" and m["preprocess"]["image_size"] == [64, 64]
    assert m["tokenizer"]["context_length"] == 32
    assert m["zero_shot"]["labels"] == ["red circle", "blue square", "green star"]
    assert sorted(p.name for p in result.out_dir.iterdir()) == sorted([f["file"] for f in m["files"]] + ["manifest.json"])


def test_metadata_embedded_in_each_artifact_round_trips(convert_tiny):
    result = convert_tiny(also_pt=True)
    m = result.manifest
    for entry in m["files"]:
        if entry["format"] not in ("lite", "torchscript"):
            continue
        meta = read_metadata(result.out_dir / entry["file"])
        assert meta["role"] == entry["role"]
        for key in ("model", "preprocess", "tokenizer", "zero_shot", "target", "engine"):
            assert meta[key] == m[key], key
    # The lite runtime sees the same file through its own extra-files API.
    extra = {"clip_kit.json": ""}
    torch.jit.load(str(result.out_dir / "image_encoder.pt"), _extra_files=extra)
    assert json.loads(extra["clip_kit.json"])["role"] == "image_encoder"


def test_ops_yaml_lists_the_root_operators(convert_tiny):
    result = convert_tiny()
    ops = yaml.safe_load((result.out_dir / "ops.yaml").read_text())
    assert "quantized::linear_dynamic" in ops["root_operators"]
    assert set(ops["per_file"]) == {"image_encoder.ptl", "text_encoder.ptl", "zero_shot_head.ptl"}


def _duplicate_storages(path, min_bytes=4096):
    """Groups of identical storages of at least ``min_bytes`` (weights, not the small LayerNorm /
    bias / zero-point vectors that random init makes identical)."""
    by_hash = defaultdict(list)
    for name, data in lite_zip_storages(path):
        if len(data) >= min_bytes:
            by_hash[hashlib.sha256(data).hexdigest()].append(name)
    return [names for names in by_hash.values() if len(names) > 1]


@pytest.mark.parametrize("target", TARGETS)
def test_no_artifact_carries_duplicate_storages(convert_tiny, target):
    result = convert_tiny(target=target)
    for role in ("image_encoder", "text_encoder"):
        assert _duplicate_storages(result.out_dir / f"{role}.ptl") == [], (target, role)


def test_why_x86_artifacts_are_not_frozen(tmp_path):
    """The cause of the duplicated fbgemm weights: a frozen packed weight is pickled twice in a lite
    file, and fbgemm rebuilds a new weight tensor at each pickling (qnnpack keeps the original)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    torch.manual_seed(0)
    for engine, duplicated in (("fbgemm", True), ("qnnpack", False)):
        torch.backends.quantized.engine = engine
        model = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()), {torch.nn.Linear}, dtype=torch.qint8)
        assert isinstance(model[0], DynamicLinear)
        frozen = torch.jit.freeze(torch.jit.script(model.eval()))
        path = tmp_path / f"{engine}.ptl"
        frozen._save_for_lite_interpreter(str(path))
        assert bool(_duplicate_storages(path)) is duplicated, engine
        unfrozen = tmp_path / f"{engine}-unfrozen.ptl"
        torch.jit.script(model.eval())._save_for_lite_interpreter(str(unfrozen))
        assert _duplicate_storages(unfrozen) == []


def test_backport_to_an_older_bytecode_version_loads(convert_tiny):
    result = convert_tiny(bytecode_version=7)
    path = result.out_dir / "image_encoder.ptl"
    assert bytecode_version(path) == 7 == result.manifest["versions"]["bytecode"]
    out = load_lite(path)(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 64)


def test_artifacts_are_ordinary_readable_files(convert_tiny):
    result = convert_tiny()
    for p in result.out_dir.iterdir():
        assert p.stat().st_mode & 0o444 == 0o444, p
    assert result.out_dir.stat().st_mode & 0o555 == 0o555
    assert not [p for p in result.out_dir.parent.iterdir() if p.name.startswith(".")]


def test_qnnpack_artifacts_run_without_the_reduce_range_warning(convert_tiny):
    """torch.ao's dynamic Linear passes reduce_range=True, which qnnpack ignores with a C++ warning on the
    first call of every process (the phone's log too); the kit's qnnpack Linears do not pass it."""
    import subprocess
    import sys

    result = convert_tiny()
    code = ("import sys, torch; torch.backends.quantized.engine = 'qnnpack'; "
            "from torch.jit.mobile import _load_for_lite_interpreter as load; "
            "print(load(sys.argv[1])(torch.zeros(1, 3, 64, 64)).shape)")
    proc = subprocess.run([sys.executable, "-c", code, str(result.out_dir / "image_encoder.ptl")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "torch.Size([1, 64])" in proc.stdout
    assert "reduce_range" not in proc.stderr
