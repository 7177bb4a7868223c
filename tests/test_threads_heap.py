"""Per-call thread sizing (``deploy.threads``), the work shape the converter records for it, and the heap
phase around loads (``deploy.heap``). Behaviour only: the speed and memory effects are measured by
``deploy bench`` and recorded in ``benchmarks/results/``."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from _deploy_helpers import assert_one_line_error, copy_artifacts, edit_manifest, run_entry
from convert.errors import ArtifactError
from deploy import threads

REPO = Path(__file__).resolve().parent.parent
TEXT = {"width": 512, "rows_per_input": 77, "rows_end_at_eot": True}
IMAGE = {"width": 768, "rows_per_input": 50}


def tokens(length: int, batch: int = 1, context: int = 77) -> torch.Tensor:
    x = torch.zeros(batch, context, dtype=torch.long)
    x[:, 0] = 49406
    x[:, 1:length - 1] = 320
    x[:, length - 1] = 49407
    return x


def test_rows_follow_the_last_real_token_of_the_batch():
    assert threads.rows_of(TEXT, tokens(8)) == 8
    batch = torch.cat([tokens(5), tokens(12)])
    assert threads.rows_of(TEXT, batch) == 2 * 12          # the tower computes up to the batch's last token
    assert threads.rows_of(dict(TEXT, rows_end_at_eot=False), tokens(8)) == 77
    assert threads.rows_of(IMAGE, torch.zeros(3, 3, 224, 224)) == 150
    assert threads.rows_of(TEXT, torch.zeros(1, 77, dtype=torch.long)) == 1


def test_short_prompts_get_one_thread_long_inputs_all():
    # ViT-B-32 shapes on 2 threads, as measured (benchmarks/results/threads-x86.md)
    assert threads.threads_for(TEXT, tokens(8), 2) == 1
    assert threads.threads_for(TEXT, tokens(32), 2) == 1
    assert threads.threads_for(TEXT, tokens(77), 2) == 2
    assert threads.threads_for(TEXT, tokens(8, batch=8), 2) == 2
    assert threads.threads_for(IMAGE, torch.zeros(1, 3, 224, 224), 2) == 2
    assert threads.threads_for(IMAGE, torch.zeros(8, 3, 224, 224), 4) == 4
    assert threads.threads_for(IMAGE, torch.zeros(1, 3, 224, 224), 1) == 1
    assert threads.threads_for(None, tokens(8), 2) == 2     # no work shape recorded: every thread


def test_policy_off_gives_every_call_all_threads(monkeypatch):
    monkeypatch.setenv("CLIPKIT_THREAD_POLICY", "off")
    assert threads.threads_for(TEXT, tokens(8), 2) == 2


def test_sized_restores_the_thread_count_even_on_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads.sized(torch, TEXT, tokens(8)) as n:
            assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), threads.sized(torch, TEXT, tokens(8)):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_converter_records_the_work_shape(art):
    manifest = json.loads((art / "manifest.json").read_text())
    config = json.loads((REPO / "assets/tiny_clip/kit-tiny-clip.json").read_text())
    vision, text = config["vision_cfg"], config["text_cfg"]
    grid = vision["image_size"] // vision["patch_size"]
    for entry in manifest["files"]:
        if entry["role"] == "image_encoder":
            assert entry["work"] == {"width": vision["width"], "rows_per_input": grid * grid + 1}
        elif entry["role"] == "text_encoder":
            assert entry["work"] == {"width": text["width"], "rows_per_input": text["context_length"],
                                     "rows_end_at_eot": manifest["config"]["truncate_text"]}
        else:
            assert "work" not in entry


def test_runtime_calls_run_on_the_sized_thread_count(art):
    from deploy.artifacts import load_artifacts
    from deploy.runtime import encode_images, encode_tokens

    artifacts = load_artifacts(art, roles=("image_encoder", "text_encoder"))
    seen = {}

    def spy(role):
        real = artifacts.modules[role]

        def call(x):
            seen[role] = torch.get_num_threads()
            return real(x)
        return call

    artifacts.modules = {role: spy(role) for role in artifacts.modules}
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # the tiny towers (width 96 and 64) are far below one thread's worth of work
        encode_images(artifacts, torch.zeros(2, 3, 64, 64))
        encode_tokens(artifacts, tokens(6, batch=2, context=32))
        assert seen == {"image_encoder": 1, "text_encoder": 1}
        assert torch.get_num_threads() == 2
        artifacts.verified.manifest["files"] = [{k: v for k, v in e.items() if k != "work"}
                                                for e in artifacts.verified.manifest["files"]]
        encode_tokens(artifacts, tokens(6, batch=2, context=32))
        assert seen["text_encoder"] == 2                   # an older manifest without work: every thread
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("work, needle", [
    ({"width": "512", "rows_per_input": 77}, "work.width"),
    ({"width": 0, "rows_per_input": 77}, "work.width"),
    ({"width": 512}, "rows_per_input"),
    ({"width": 512, "rows_per_input": 77, "rows_end_at_eot": "yes"}, "rows_end_at_eot"),
    ([512, 77], "work"),
])
def test_bad_work_shape_is_refused(art, tmp_path, capsys, work, needle):
    from deploy.__main__ import main as deploy_main

    bad = copy_artifacts(art, tmp_path / "bad")

    def edit(m):
        next(e for e in m["files"] if e["role"] == "text_encoder")["work"] = work
    edit_manifest(bad, edit)
    code, _, err = run_entry(deploy_main, capsys, "verify", str(bad))
    assert_one_line_error(code, err, needle)


def test_bad_work_shape_is_a_typed_error(art, tmp_path):
    from convert.artifact import read_manifest

    bad = copy_artifacts(art, tmp_path / "bad")
    edit_manifest(bad, lambda m: m["files"][0].__setitem__("work", {"width": True, "rows_per_input": 1}))
    with pytest.raises(ArtifactError, match="width"):
        read_manifest(bad)


HEAP_PROBE = textwrap.dedent("""
    import ctypes, json, sys
    sys.path.insert(0, sys.argv[1])
    from deploy import heap
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc_usable_size.argtypes = [ctypes.c_void_p]

    def mapped(n):
        # glibc rounds a mapped chunk up to whole pages; a heap chunk keeps about the size asked for
        p = libc.malloc(n)
        return libc.malloc_usable_size(p) >= n + 2048

    out = {"active": heap.active()}

    class Model:
        def __call__(self):
            return mapped(1_000_001)

    model = heap.load(lambda: (out.__setitem__("in_load", mapped(1_000_001)), Model())[1])
    out["between"] = mapped(1_000_001)
    with heap.first_call(model):
        out["first_call"] = model()
    with heap.first_call(model):
        out["second_call"] = model()
    print(json.dumps(out))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.parametrize("phase", ["1", "0"])
def test_loads_map_weights_and_calls_use_the_heap(phase, tmp_path):
    import os

    probe = tmp_path / "probe.py"
    probe.write_text(HEAP_PROBE)
    env = dict(os.environ, CLIPKIT_HEAP_PHASE=phase)
    out = subprocess.run([sys.executable, str(probe), str(REPO)], env=env, capture_output=True, text=True,
                         check=True)
    got = json.loads(out.stdout)
    if phase == "1":
        # a 1 MB buffer allocated while a model loads or makes its first call (packing) is its own mapping,
        # handed back to the system when freed; elsewhere the same size stays on the heap (steady calls
        # reuse it)
        assert got == {"active": True, "in_load": True, "between": False, "first_call": True,
                       "second_call": False}
    else:
        # turned off: glibc's default (1 MB is above its initial 128 KiB threshold, and nothing was freed)
        assert got == {"active": False, "in_load": True, "between": True, "first_call": True,
                       "second_call": True}
