"""Same inputs, recipe and torch -> byte-identical artifacts, so content-keyed caches survive a reconversion.

Two causes made ``text_encoder.ptl`` differ between conversions (``convert.export.deterministic_scripting``):
TorchScript class constants (``Final`` attributes, ``__constants__``) ordered by Python's per-process
string hashing, and class names mangled by a process-wide counter. The first shows only between processes
(``PYTHONHASHSEED``), the second only within one, so both are tested.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _deploy_helpers import shape_images, tiny_options
from deploy.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def _convert(out: Path, **overrides):
    from convert import build_config
    from convert.pipeline import convert

    return convert(build_config(**tiny_options(out=str(out), **overrides)))


def _manifest_without_run_facts(path: Path) -> dict:
    """The manifest minus what legitimately differs between two runs: the time and the --out argument."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.pop("created_utc")
    manifest["config"].pop("out")
    return manifest


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """The tiny model converted twice in this process into two folders (android target, with .pt twins)."""
    root = tmp_path_factory.mktemp("repro")
    for name in ("a", "b"):
        _convert(root / name, also_pt=True)
    return root / "a", root / "b"


def test_two_conversions_are_byte_identical(twice):
    a, b = twice
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"image_encoder.ptl", "text_encoder.ptl", "zero_shot_head.ptl", "text_encoder.pt", "ops.yaml"} <= set(names)
    for name in names:
        if name == "manifest.json":
            continue
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two conversions"
    ma, mb = _manifest_without_run_facts(a / "manifest.json"), _manifest_without_run_facts(b / "manifest.json")
    assert ma == mb  # file hashes included
    # nothing time-dependent inside the archives either (the metadata every .ptl/.pt embeds)
    from convert.artifact import read_metadata

    meta = read_metadata(a / "text_encoder.ptl")
    assert "created_utc" not in json.dumps(meta)


# Scripted in a fresh process per hash seed: a class with many constants (any two seeds order 8 names
# differently), LayerNorm's and GELU's, for both targets (x86 archives are unfrozen and keep every
# submodule class), saved both ways. Within one process the order is stable (and x86 types are reused),
# so only separate processes show this cause.
_SCRIPT = r"""
import hashlib, sys, tempfile
from pathlib import Path
import torch
from torch import nn
from convert import export
from open_clip.transformer import LayerNormFp32

class Consts(nn.Module):
    alpha: torch.jit.Final[int]
    beta: torch.jit.Final[float]
    gamma: torch.jit.Final[str]
    delta: torch.jit.Final[bool]
    __constants__ = ["epsilon", "zeta", "eta", "theta"]

    def __init__(self):
        super().__init__()
        self.alpha, self.beta, self.gamma, self.delta = 2, 0.5, "argmax", False
        self.epsilon, self.zeta, self.eta, self.theta = 1, 2, 3, 4
        self.norm = nn.LayerNorm(8)
        self.act = nn.GELU()
        self.norm32 = LayerNormFp32(8)  # open_clip's source file, scripted too

    def forward(self, x):
        if self.gamma == "argmax" and not self.delta:
            x = x * self.alpha + self.beta + self.epsilon + self.zeta + self.eta + self.theta
        return self.act(self.norm32(self.norm(x)))

out = Path(tempfile.mkdtemp())
scripted = export.script_tower(Consts(), "test")
for target in ("x86", "android"):
    module = export.optimize_tower(scripted, target, "test")
    export.save_lite(module, out / f"{target}.ptl", {"role": "test"})
    export.save_torchscript(module, out / f"{target}.pt", {"role": "test"})
for path in sorted(out.iterdir()):
    print(path.name, hashlib.sha256(path.read_bytes()).hexdigest())
"""


def test_scripting_depends_on_neither_the_hash_seed_nor_the_install_path(tmp_path):
    """Each process scripts from its own install: the kit (and the script) copied to two paths of different
    lengths, the second with its own copy of open_clip too (another site-packages). TorchScript records
    source file names in ``.debug_pkl``: absolute ones made two virtualenvs write different artifacts."""
    import open_clip

    installs = {"1": tmp_path / "a", "4": tmp_path / "install" / "much" / "deeper" / "b"}
    for root in installs.values():
        for package in ("convert", "assets"):
            shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
        (root / "script_consts.py").write_text(_SCRIPT, encoding="utf-8")  # TorchScript reads the source file
    shutil.copytree(Path(open_clip.__file__).parent, installs["4"] / "open_clip",
                    ignore=shutil.ignore_patterns("__pycache__"))
    outputs = []
    for seed, root in installs.items():
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(root))
        proc = subprocess.run([sys.executable, str(root / "script_consts.py")], capture_output=True, text=True,
                              env=env, cwd=root)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(proc.stdout)
    assert outputs[0].count("\n") == 4
    assert outputs[0] == outputs[1]


def test_search_index_survives_reconversion_and_stale_ones_go(twice, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPKIT_CACHE", str(tmp_path / "cache"))
    a, b = twice
    folder = tmp_path / "imgs"
    shape_images(folder, n=3)
    art = shutil.copytree(a, tmp_path / "art")

    def search(artifacts):
        assert main(["search", "--artifacts", str(artifacts), "--images", str(folder), "--query", "red", "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    first = search(art)
    assert first["stats"]["embedded"] == 3
    index = Path(first["index"])
    # "reconvert" into the same folder: a conversion gives the bytes of `b` (test above)
    shutil.rmtree(art)
    shutil.copytree(b, art)
    again = search(art)
    assert again["stats"] == {"reused": 3, "embedded": 0, "removed": 0, "failed": 0}
    assert again["index"] == str(index)

    # other live artifacts keep their own index of the same folder
    other = tmp_path / "other"
    shutil.copytree(b, other)
    from _deploy_helpers import edit_manifest

    edit_manifest(other, lambda m: [e.update(sha256="0" * 64) for e in m["files"] if e["file"] == "zero_shot_head.pt"])
    # (model-file hashes differ: another fingerprint; the .pt is never loaded by a lite search)
    other_index = Path(search(other)["index"])
    assert other_index != index and other_index.is_file() and index.is_file()

    # a real reconversion with other content: the superseded index of this artifacts folder is deleted
    shutil.rmtree(art)
    _convert(art, seed=1)
    new = search(art)
    assert new["stats"]["embedded"] == 3 and Path(new["index"]) != index
    assert not index.exists(), "the superseded index was left behind"
    assert other_index.is_file(), "the index of other live artifacts was deleted"
    # artifacts that are gone: their index goes on this folder's next search; so does an index of the
    # first naming (sha256(folder|artifacts)[:20].pt) for this folder, not one of another folder
    shutil.rmtree(other)
    legacy, foreign = index.with_name("0123456789abcdef0123.pt"), index.with_name("fedcba98765432100123.pt")
    shutil.copy(new["index"], legacy)
    data = torch.load(new["index"], weights_only=True)
    torch.save(dict(data, folder="/elsewhere"), foreign)
    search(art)
    assert not other_index.exists() and not legacy.exists()
    assert sorted(p.name for p in (tmp_path / "cache" / "index").iterdir()) == sorted([Path(new["index"]).name,
                                                                                          foreign.name])


def test_backported_archives_are_byte_identical_and_run(twice, tmp_path):
    """``--bytecode-version``: torch's backport names constant storages after memory addresses."""
    from convert import export

    a, _ = twice
    copies = []
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        copy = shutil.copy(a / "text_encoder.ptl", tmp_path / name / "text_encoder.ptl")
        assert export.backport(Path(copy), 7) == 7
        copies.append(Path(copy))
    assert copies[0].read_bytes() == copies[1].read_bytes()
    tokens = torch.zeros(2, 32, dtype=torch.long)
    tokens[:, 0], tokens[0, 1], tokens[0, 2], tokens[1, 1] = 49406, 320, 49407, 49407
    with torch.no_grad():
        assert torch.equal(export.load_lite(copies[0])(tokens), export.load_lite(a / "text_encoder.ptl")(tokens))
