"""deploy.artifacts: verification before loading; deploy.tokenizer: vocab, truncation, Unicode."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from _deploy_helpers import copy_artifacts, edit_manifest
from convert.errors import ArtifactError
from deploy.artifacts import load_artifacts


def test_loads_lite_and_jit(art):
    for kind in ("lite", "jit"):
        a = load_artifacts(art, kind)
        assert set(a.modules) == {"image_encoder", "text_encoder", "zero_shot_head"}
        assert len(a.labels) == 48 and a.embed_dim == 64
        assert a.preprocess["image_size"] == [64, 64] and a.tokenizer["context_length"] == 32
        out = a.image_encoder(torch.zeros(2, 3, 64, 64))
        assert out.shape == (2, 64)


def test_tampered_byte_names_file(art, tmp_path):
    d = copy_artifacts(art, tmp_path / "a")
    p = d / "image_encoder.ptl"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"image_encoder\.ptl: sha256"):
        load_artifacts(d)


def test_truncated_file(art, tmp_path):
    d = copy_artifacts(art, tmp_path / "a")
    p = d / "text_encoder.ptl"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"text_encoder\.ptl is truncated"):
        load_artifacts(d)


def test_missing_file(art, tmp_path):
    d = copy_artifacts(art, tmp_path / "a")
    (d / "zero_shot_head.ptl").unlink()
    with pytest.raises(ArtifactError, match=r"zero_shot_head\.ptl .*missing"):
        load_artifacts(d)


def test_missing_vocab_and_manifest(art, tmp_path):
    d = copy_artifacts(art, tmp_path / "a")
    (d / "bpe_simple_vocab_16e6.txt.gz").unlink()
    with pytest.raises(ArtifactError, match="bpe_simple_vocab_16e6.txt.gz"):
        load_artifacts(d)
    (d / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_artifacts(d)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifacts(tmp_path / "nowhere")


def test_wrong_torch_version(art, tmp_path):
    d = copy_artifacts(art, tmp_path / "a")
    edit_manifest(d, lambda m: m["versions"].update(torch="2.1.0"))
    with pytest.raises(ArtifactError, match=r"torch 2\.1\.0"):
        load_artifacts(d)


def test_wrong_bytecode_version(art, tmp_path):
    d = copy_artifacts(art, tmp_path / "a")
    edit_manifest(d, lambda m: m["versions"].update(bytecode=3))
    with pytest.raises(ArtifactError, match="bytecode version"):
        load_artifacts(d)


def test_foreign_file_with_matching_hash(art, tmp_path):
    """A file swapped in under another role (hash updated too) is caught by its embedded metadata."""
    d = copy_artifacts(art, tmp_path / "a")
    (d / "image_encoder.ptl").write_bytes((d / "zero_shot_head.ptl").read_bytes())

    def fix(m):
        for e in m["files"]:
            if e["file"] == "image_encoder.ptl":
                e["bytes"] = (d / "image_encoder.ptl").stat().st_size
                e["sha256"] = hashlib.sha256((d / "image_encoder.ptl").read_bytes()).hexdigest()

    edit_manifest(d, fix)
    with pytest.raises(ArtifactError, match="'zero_shot_head' artifact"):
        load_artifacts(d)


def test_not_a_torchscript_file(art, tmp_path):
    d = copy_artifacts(art, tmp_path / "a")
    (d / "text_encoder.ptl").write_bytes(b"garbage" * 100)

    def fix(m):
        for e in m["files"]:
            if e["file"] == "text_encoder.ptl":
                e["bytes"] = 700
                e["sha256"] = hashlib.sha256(b"garbage" * 100).hexdigest()

    edit_manifest(d, fix)
    with pytest.raises(ArtifactError, match="text_encoder.ptl is not a readable TorchScript archive"):
        load_artifacts(d)


def test_not_a_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ArtifactError, match="not a clip-mobile-kit manifest"):
        load_artifacts(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="cannot be read as JSON"):
        load_artifacts(tmp_path)


def test_export_vocab_matches_manifest(art, tmp_path):
    from deploy.tokenizer import export_vocab

    manifest = json.loads((art / "manifest.json").read_text())
    info = export_vocab(tmp_path / "vocab", manifest)
    assert info["vocab_id"] == manifest["tokenizer"]["vocab_id"]
    sidecar = json.loads((tmp_path / "vocab" / "bpe_simple_vocab_16e6.txt.gz.json").read_text())
    assert sidecar["sha256"] == hashlib.sha256((tmp_path / "vocab" / info["file"]).read_bytes()).hexdigest()
    bad = json.loads(json.dumps(manifest))
    next(f for f in bad["files"] if f["role"] == "vocab")["sha256"] = "0" * 64
    with pytest.raises(ArtifactError, match="differs from the manifest"):
        export_vocab(tmp_path / "vocab2", bad)


def test_tokenizer_from_the_artifacts_truncates_and_says_so(art):
    from deploy.tokenizer import KitTokenizer

    a = load_artifacts(art, roles=("image_encoder",))
    tok = KitTokenizer.from_artifacts(a)
    texts = ["a photo of a red circle.", "¿Dónde está? 東京タワー 🚀", "", "word " * 50]
    tokens, truncated = tok.encode(texts)
    assert tokens.shape == (4, 32)
    assert truncated == [False, False, False, True]
    assert int(tokens[3, -1]) == a.tokenizer["eot_token_id"]


def test_x86_artifacts_are_refused_on_an_arm64_host(convert_tiny, monkeypatch):
    """Shipping fbgemm (x86) weights to a phone is the classic wrong-file mistake: an arm64 host refuses them."""
    import platform

    x86 = convert_tiny(target="x86").out_dir
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(ArtifactError, match=r"were converted for x86 \(fbgemm\); this aarch64 machine runs qnnpack: reconvert with --target android"):
        load_artifacts(x86)
    load_artifacts(convert_tiny().out_dir)  # android artifacts load there


def test_android_and_x86_files_mixed_in_one_directory_are_refused(convert_tiny, tmp_path):
    android = copy_artifacts(convert_tiny().out_dir, tmp_path / "a")
    x86_text = convert_tiny(target="x86").out_dir / "text_encoder.ptl"
    (android / "text_encoder.ptl").write_bytes(x86_text.read_bytes())

    def relist(m):  # the manifest updated to the new file's size and hash: only the embedded metadata differs
        entry = next(e for e in m["files"] if e["file"] == "text_encoder.ptl")
        entry["bytes"] = x86_text.stat().st_size
        entry["sha256"] = hashlib.sha256(x86_text.read_bytes()).hexdigest()

    edit_manifest(android, relist)
    with pytest.raises(ArtifactError, match=r"text_encoder\.ptl was converted for x86 \(fbgemm\).*mixed in one directory"):
        load_artifacts(android)
