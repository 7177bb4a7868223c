"""python -m deploy classify / search on a tiny conversion, including the bad-input cases."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from _deploy_helpers import copy_artifacts, edit_manifest, shape_images
from deploy.__main__ import main


def run_json(capsys, argv):
    code = main(argv + ["--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def test_classify_table(art, imgs, capsys):
    assert main(["classify", str(imgs[0]), "--artifacts", str(art), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{imgs[0]}: ") and out.count("\n") == 1 and out.count(", ") == 2  # one line, top-3
    assert main(["classify", str(imgs[0]), "--artifacts", str(art), "--topk", "3", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "probability" in out and str(imgs[0].name) in out


def test_classify_json_head_lite_and_jit_agree(art, imgs, capsys):
    code, lite, _ = run_json(capsys, ["classify", *map(str, imgs), "--artifacts", str(art), "--topk", "5"])
    assert code == 0 and len(lite["results"]) == 3
    assert all(len(r["top"]) == 5 for r in lite["results"])
    code, jit, _ = run_json(capsys, ["classify", *map(str, imgs), "--artifacts", str(art), "--jit"])
    assert code == 0 and jit["kind"] == "jit"
    for a, b in zip(lite["results"], jit["results"]):
        assert a["top"][0]["label"] == b["top"][0]["label"]


def test_classify_custom_labels_unicode_and_truncation(art, imgs, capsys):
    labels = "red circle,chat noir 🐈,東京タワー," + "a " + "very " * 40 + "long label"
    code, data, err = run_json(capsys, ["classify", str(imgs[0]), "--artifacts", str(art), "--labels", labels,
                                        "--templates", "plain", "--topk", "4"])
    assert code == 0
    assert {t["label"] for t in data["results"][0]["top"]} >= {"chat noir 🐈", "東京タワー"}
    assert "truncated" in err and "32-token context" in err


def test_classify_partial_failure_reports_and_answers(art, imgs, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    code, data, err = run_json(capsys, ["classify", str(imgs[0]), str(bad), str(empty), "--artifacts", str(art)])
    assert code == 1
    assert "top" in data["results"][0] and "error" in data["results"][1] and "error" in data["results"][2]
    assert "bad.jpg is not an image" in err and "empty (0 bytes)" in err
    code, data, err = run_json(capsys, ["classify", str(bad), "--artifacts", str(art)])
    assert code == 2


@pytest.mark.parametrize("labels,match", [("", "label list is empty"), ("a,b,a", "duplicate label"),
                                          ("missing/labels.txt", "does not exist")])
def test_classify_bad_labels(art, imgs, capsys, labels, match):
    assert main(["classify", str(imgs[0]), "--artifacts", str(art), "--labels", labels]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_classify_empty_labels_file(art, imgs, tmp_path, capsys):
    f = tmp_path / "labels.txt"
    f.write_text("# nothing\n\n")
    assert main(["classify", str(imgs[0]), "--artifacts", str(art), "--labels", str(f)]) == 2
    assert "empty" in capsys.readouterr().err


def test_classify_missing_artifacts(imgs, tmp_path, capsys):
    assert main(["classify", str(imgs[0]), "--artifacts", str(tmp_path)]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err


def test_classify_head_from_other_model(art, imgs, tmp_path, capsys):
    """A zero-shot head of another embedding width (manifest hash updated) fails with one clear line."""
    from convert.artifact import read_metadata
    from convert.export import save_lite
    from convert.head import ZeroShotHead

    d = copy_artifacts(art, tmp_path / "a")
    head = torch.jit.script(ZeroShotHead(torch.nn.functional.normalize(torch.randn(48, 32), dim=-1), 100.0))
    meta = read_metadata(d / "zero_shot_head.ptl")
    save_lite(head, d / "zero_shot_head.ptl", meta)

    def fix(m):
        for e in m["files"]:
            if e["file"] == "zero_shot_head.ptl":
                data = (d / e["file"]).read_bytes()
                e["bytes"], e["sha256"] = len(data), hashlib.sha256(data).hexdigest()

    edit_manifest(d, fix)
    assert main(["classify", str(imgs[0]), "--artifacts", str(d)]) == 2
    err = capsys.readouterr().err
    assert "zero_shot_head does not fit the image encoder" in err and "the image encoder gives 64" in err
    assert err.count("\n") == 1


def test_search_text_and_image_query_with_index_reuse(art, imgs, tmp_path, capsys):
    index = tmp_path / "index.pt"
    folder = imgs[0].parent
    code, data, _ = run_json(capsys, ["search", "--artifacts", str(art), "--images", str(folder), "--query",
                                      "a red circle 🔴", "--index", str(index), "--topk", "2"])
    assert code == 0 and index.is_file()
    assert data["stats"]["embedded"] == 3 and len(data["results"]) == 2
    code, data, _ = run_json(capsys, ["search", "--artifacts", str(art), "--images", str(folder), "--image-query",
                                      str(imgs[1]), "--index", str(index)])
    assert data["stats"] == {"reused": 3, "embedded": 0, "removed": 0, "failed": 0}
    assert data["results"][0]["path"] == str(imgs[1].resolve())
    assert data["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    # modify one file (new mtime), add one, the index refreshes only those
    extra = shape_images(tmp_path / "more", n=1, seed=9)[0]
    new = folder / "added.png"
    new.write_bytes(extra.read_bytes())
    st = imgs[2].stat()
    os.utime(imgs[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    code, data, _ = run_json(capsys, ["search", "--artifacts", str(art), "--images", str(folder), "--query", "x",
                                      "--index", str(index)])
    assert data["stats"]["reused"] == 2 and data["stats"]["embedded"] == 2
    new.unlink()
    code, data, _ = run_json(capsys, ["search", "--artifacts", str(art), "--images", str(folder), "--query", "x",
                                      "--index", str(index)])
    assert data["stats"]["removed"] == 1


def test_search_table(art, imgs, tmp_path, capsys):
    assert main(["search", "--artifacts", str(art), "--images", str(imgs[0].parent), "--query", "blue star",
                 "--index", str(tmp_path / "i.pt")]) == 0
    assert "cosine" in capsys.readouterr().out


def test_search_bad_inputs(art, imgs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    assert main(["search", "--artifacts", str(art), "--images", str(empty), "--query", "x",
                 "--index", str(tmp_path / "i.pt")]) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(["search", "--artifacts", str(art), "--images", str(tmp_path / "nope"), "--query", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["search", "--artifacts", str(art), "--images", str(imgs[0].parent), "--query", "  "]) == 2
    assert "query is empty" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    assert main(["search", "--artifacts", str(art), "--images", str(imgs[0].parent), "--image-query", str(bad),
                 "--index", str(tmp_path / "i.pt")]) == 2
    assert "empty (0 bytes)" in capsys.readouterr().err
