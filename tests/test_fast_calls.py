"""Fast repeat calls and readable output: class embeddings cached on disk, a tokenizer that does not import
the open_clip package (identical tokens), one line per image from ``classify``."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deploy.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "android_demo" / "core" / "src" / "test" / "resources" / "golden" / "tokens.json"
LABELS = "red circle,blue square,green star"



@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "class_embeddings"


def _block(context_length, clean="lower"):
    return {"context_length": context_length, "clean": clean, "vocab_size": 49408, "sot_token_id": 49406,
            "eot_token_id": 49407}


# ------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_matches_the_open_clip_goldens():
    """400 strings (whitespace, punctuation, contractions, many scripts, emoji, mojibake, long texts)
    tokenized by open_clip.get_tokenizer('ViT-B-32'), at context 77 and truncated at 32."""
    from deploy.tokenizer import KitTokenizer

    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert golden["tokenizer"] == "open_clip.get_tokenizer('ViT-B-32')" and golden["clean"] == "lower"
    cases = golden["cases"]
    for context, key in ((77, "ids77"), (32, "ids32")):
        tokens, truncated = KitTokenizer(_block(context)).encode([c["text"] for c in cases])
        for case, row, cut in zip(cases, tokens.tolist(), truncated):
            ids = case[key]
            assert row == ids + [0] * (context - len(ids)), (context, case["text"][:60])
            if context == 32 and len(case["ids77"]) < 77:  # the 77-token ids show the untruncated length
                assert cut == (len(case["ids77"]) > 32), case["text"][:60]


def test_tokenizer_follows_the_manifests_clean_mode_and_context():
    """The manifest's ``clean`` and ``context_length`` reach the tokenizer (the tokens themselves are open_clip's
    own code, checked against the goldens above)."""
    from deploy.tokenizer import KitTokenizer

    text = ["A PHOTO  OF A Dog"]
    lower, whitespace = (KitTokenizer(_block(77, clean))(text) for clean in ("lower", "whitespace"))
    assert not torch.equal(lower, whitespace)  # whitespace cleaning keeps the capitals
    assert KitTokenizer(_block(16))(text).shape == (1, 16)


def test_search_and_cached_classify_never_import_open_clip(art, imgs, tmp_path, cache, capsys):
    """The query path reads the vocabulary without the open_clip package (3.4 s of imports)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # CLIPKIT_CACHE from the `cache` fixture
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\nart of the {}.\n", encoding="utf-8")
    # fill the class-embedding cache for the named set here (loading named templates imports open_clip)
    assert main(["classify", str(imgs[0]), "--artifacts", str(art), "--labels", LABELS, "--templates", "simple"]) == 0
    assert len(list(cache.glob("*.pt"))) == 1
    script = f"""
import sys
from deploy.__main__ import main
common = ["--artifacts", {str(art)!r}]
assert main(["search", *common, "--images", {str(imgs[0].parent)!r}, "--query", "a red circle", "--json"]) == 0
assert "open_clip" not in sys.modules, "search imported open_clip"
# nor what only conversions and the bench need (issue 21: the kit's share of a cached query)
assert not [m for m in ("yaml", "deploy.bench.plan") if m in sys.modules], "search imported yaml or the bench planner"
assert main(["classify", {str(imgs[0])!r}, *common, "--labels", {LABELS!r}, "--templates", "simple"]) == 0
assert "open_clip" not in sys.modules, "cached classify imported open_clip"
assert main(["classify", {str(imgs[0])!r}, *common, "--labels", {LABELS!r}, "--templates", {str(templates)!r}]) == 0
assert "open_clip" not in sys.modules, "classify with a templates file imported open_clip"
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


# ------------------------------------------------------------------------------- class-embedding cache
def _classify(art, labels=LABELS, templates="plain", **kw):
    from convert.config import read_labels
    from deploy.classify import classifier

    return classifier(art, read_labels(labels), templates, **kw)


def test_class_embeddings_are_cached_and_the_text_encoder_not_loaded(art, cache):
    from deploy.runtime import encode_images

    a1, labels, fn1 = _classify(art)
    assert a1.text_encoder is not None and len(list(cache.glob("*.pt"))) == 1
    a2, _, fn2 = _classify(art)
    assert a2.text_encoder is None, "a cached call loaded the text encoder"
    x = torch.randn(2, 3, *a1.preprocess["image_size"])
    emb = encode_images(a1, x)
    assert torch.equal(fn1(emb), fn2(emb))
    _, _, fn3 = _classify(art, use_cache=False)
    assert torch.equal(fn1(emb), fn3(emb))  # the cache holds exactly what is computed
    assert not list(cache.glob(".*")), "temporary files left behind"
    # every part of the key matters: labels (and their order), templates, runtime kind
    _classify(art, labels="blue square,red circle,green star")
    _classify(art, templates="simple")
    _classify(art, kind="jit")
    assert len(list(cache.glob("*.pt"))) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-shape", "nan", "other-key"])
def test_a_bad_cache_file_is_recomputed_and_rewritten(art, cache, capsys, damage):
    _, _, fn = _classify(art)
    [path] = cache.glob("*.pt")
    good = torch.load(path, weights_only=True)
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        bad = dict(good)
        if damage == "wrong-shape":
            bad["weights"] = torch.nn.functional.normalize(torch.randn(2, good["weights"].shape[1]), dim=-1)
        elif damage == "nan":
            bad["weights"] = good["weights"].clone().fill_(float("nan"))
        else:
            bad["key"] = "0" * 64
        torch.save(bad, path)
    capsys.readouterr()
    artifacts, _, fn2 = _classify(art)
    assert artifacts.text_encoder is not None, "a bad cache file was trusted"
    assert "recomputing" in capsys.readouterr().err
    emb = torch.randn(1, artifacts.embed_dim)
    assert torch.equal(fn(emb), fn2(emb))
    again = torch.load(path, weights_only=True)
    assert again["key"] == good["key"] and torch.equal(again["weights"], good["weights"])


def test_truncation_warning_also_on_a_cached_call_and_quiet_silences_it(art, imgs, cache, capsys):
    labels = "red circle,a " + "very " * 40 + "long label"
    argv = ["classify", str(imgs[0]), "--artifacts", str(art), "--labels", labels, "--templates", "plain"]
    for _ in range(2):
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "1 text(s) longer than the 32-token context were truncated" in err
    assert main(argv + ["--quiet"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.count("\n") == 1


# ------------------------------------------------------------------------------------------- output
LINE = re.compile(r"^(?P<path>.+): (?P<items>[^,]+ \d\.\d\d(, [^,]+ \d\.\d\d)*)$")


def test_classify_prints_one_line_per_image(art, imgs, tmp_path, capsys):
    long_name = tmp_path / ("a-rather-long-file-name-that-must-not-be-wrapped-" * 3 + "shape.png")
    long_name.write_bytes(imgs[1].read_bytes())
    assert main(["classify", str(imgs[0]), str(long_name), "--artifacts", str(art)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, (imgs[0], long_name)):
        m = LINE.match(line)
        assert m and m.group("path") == str(path), line
        assert len(m.group("items").split(", ")) == 3  # top-3 by default
    assert main(["classify", str(imgs[0]), "--artifacts", str(art), "--topk", "1"]) == 0
    assert capsys.readouterr().out.count(", ") == 0


def test_classify_verbose_table_and_quiet(art, imgs, capsys):
    assert main(["classify", str(imgs[0]), "--artifacts", str(art), "--verbose"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{imgs[0]} (") and "probability" in out
    with pytest.raises(SystemExit) as exc:
        main(["classify", str(imgs[0]), "--artifacts", str(art), "--quiet", "--verbose"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_progress_is_one_plain_line_without_a_terminal(capsys):
    import time

    from deploy.runtime import Progress

    with Progress(10, "encoding 10 prompts", delay=0.05) as bar:
        bar.advance(3)
        time.sleep(0.3)  # a slow step: the line appears while it runs
        bar.advance(3)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("encoding 10 prompts: 3/10 done") and ".py:" not in err
    with Progress(10, "quick", delay=0.05) as bar:
        bar.advance(10)
    with Progress(10, "quiet", enabled=False, delay=0) as bar:
        time.sleep(0.1)
    time.sleep(0.1)
    assert capsys.readouterr().err == ""
