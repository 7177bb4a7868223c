"""Nothing lost, nothing trusted blindly: every bad input is ONE stderr line and exit 2 (a typed KitError from
the API), never a traceback; a failure or an interruption never leaves a staging folder, a temporary file or
a half-replaced output; artifacts are verified before any loader sees them.

Each case asserts the exit code, one ``error:`` line, no traceback and the state of the disk (no hidden
staging/lock/temporary entries, an existing output byte-identical). Grow the tables with each case found.

- recipes and API values (types and ranges of every ConvertConfig field), label and template files;
- outputs: ``--out .``, symlinked ``--out``, a second conversion into the same output (the lock), an output
  filled during the conversion, SIGTERM/Ctrl-C (in-process here; at several points of a real conversion in
  subprocesses under ``-m slow``), free space (checked before writing; a 3 MiB tmpfs when root may mount);
- manifests and the embedded ``clip_kit.json``; search indexes; images; the verify command and the
  shell wrappers that push artifacts to a device.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from _deploy_helpers import assert_one_line_error, copy_artifacts
from convert import build_config
from convert.artifact import validate_manifest, verify_all, verify_artifacts
from convert.config import ConvertConfig, QuantConfig, read_labels
from convert.errors import ArtifactError, ConfigError, KitError, LabelsError, OutputError
from convert.files import atomic_write, atomic_write_bytes, torch_save_atomic

REPO = Path(__file__).resolve().parent.parent
TINY = ["--model", "kit-tiny-clip", "--pretrained", "none", "--templates", "plain", "--labels", "a,b"]
TINY_RECIPE = {"model": "kit-tiny-clip", "pretrained": "none", "templates": "plain", "labels": ["a", "b"]}


# ------------------------------------------------------------------------------------------------ helpers
one_line = assert_one_line_error


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(Path(directory).rglob("*"))
            if p.is_file()}


def litter(directory: Path) -> list[str]:
    """Hidden entries the kit leaves beside an output when something goes wrong: staging folders, locks,
    backups (``.out.old-PID``), temporary files."""
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("."))


def existing_output(parent: Path, name: str = "out") -> tuple[Path, dict[str, bytes]]:
    out = parent / name
    out.mkdir(parents=True)
    (out / "manifest.json").write_text('{"mine": true}\n')
    (out / "keep.bin").write_bytes(os.urandom(64))
    return out, snapshot(out)


@pytest.fixture(autouse=True)
def _in_empty_dir(tmp_path_factory, monkeypatch):
    """From an empty folder (the default out/... never pre-exists) and with a private cache."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CLIPKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("CLIPKIT_TEST_PAUSE", raising=False)



def fake_stages(payload: bytes = b'{"new": true}\n', also=None):
    """A stand-in for the conversion's stages 2-7 (``pipeline._convert_into``): writes one file into the
    staging folder (then calls ``also(staging, config)``); the output handling around it is the real one."""
    from convert import pipeline

    def stages(staging, config, loaded, labels, templates, log):
        (staging / "manifest.json").write_bytes(payload)
        if also is not None:
            also(staging, config)
        return pipeline.ConversionResult(out_dir=staging, manifest={}, rows=[])

    return stages


# ---------------------------------------------------------------------------------- a small file system
@pytest.fixture(scope="module")
def small_fs(tmp_path_factory):
    """A 3 MiB tmpfs (root only: skipped when mount is not permitted, a failure in CI)."""
    where = tmp_path_factory.mktemp("smallfs")
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=30)
        reason = proc.stderr.strip() if proc.returncode else None
    except (OSError, subprocess.SubprocessError) as exc:
        reason = str(exc)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs as root and must be able to mount a tmpfs: {reason}")
        pytest.skip(f"mounting a small tmpfs is not permitted here ({reason})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


@contextlib.contextmanager
def filled(fs: Path):
    """The file system ``fs`` with no free byte left, for the block."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush at close
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * block)
    try:
        assert shutil.disk_usage(fs).free < 4096
        yield fs
    finally:
        filler.unlink()


def _clean(fs: Path) -> None:
    for entry in fs.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


# ===================================================================================== recipes and API
RECIPE_CASES = [
    # (id, recipe values over TINY_RECIPE, needles)
    ("force-string-false", {"force": "false"}, ["force='false'", "true or false"]),
    ("force-integer", {"force": 1}, ["force=1", "boolean"]),
    ("also-pt-string", {"also_pt": "no"}, ["also_pt='no'", "true or false"]),
    ("truncate-text-string", {"truncate_text": "yes"}, ["truncate_text='yes'"]),
    ("out-a-number", {"out": 5}, ["out=5", "output directory path"]),
    ("out-empty", {"out": ""}, ["out=''"]),
    ("pretrained-a-number", {"pretrained": 5}, ["pretrained=5"]),
    ("checkpoint-a-number", {"checkpoint": 5, "pretrained": None}, ["checkpoint=5", "checkpoint file path"]),
    ("seed-a-string", {"seed": "1"}, ["seed='1'", "integer"]),
    ("seed-too-large", {"seed": 2**64}, ["seed=18446744073709551616", "2**63-1"]),
    ("seed-negative", {"seed": -1}, ["seed=-1"]),
    ("min-cosine-a-string", {"min_cosine": "0.9"}, ["min_cosine='0.9'", "[-1, 1]"]),
    ("min-cosine-nan", {"min_cosine": float("nan")}, ["min_cosine=nan"]),
    ("bytecode-a-string", {"bytecode_version": "8"}, ["bytecode_version='8'", "positive integer"]),
    ("labels-a-number", {"labels": 5}, ["labels=5", "list of class names"]),
    ("labels-numbers", {"labels": [1, 2]}, ["label 1 is blank or not text"]),
    ("keep-fp32-a-number", {"keep_fp32": 5}, ["keep_fp32=5", "module-name patterns"]),
    ("keep-fp32-a-string", {"keep_fp32": "text_encoder.*"}, ["keep_fp32='text_encoder.*'"]),
    ("templates-a-number", {"templates": 5}, ["templates=5", "openai, simple, plain"]),
    ("install-to-a-number", {"install_to": 5}, ["install_to=5"]),
    ("model-a-number", {"model": 5}, ["model=5"]),
    ("target-a-number", {"target": 5}, ["target=5", "android, x86"]),
    ("quantize-a-list", {"quantize": ["combined"]}, ["quantize=['combined']", "none, image, text, combined"]),
    ("engine-fbgemm-for-android", {"engine": "fbgemm"}, ["engine='fbgemm' needs target x86"]),
    ("key-given-twice", {"also-pt": False, "also_pt": False}, ["also_pt is given twice"]),
]


@pytest.mark.parametrize("values,needles", [c[1:] for c in RECIPE_CASES], ids=[c[0] for c in RECIPE_CASES])
def test_bad_recipe_value_is_one_line_and_the_output_is_untouched(run_cli, tmp_path, values, needles):
    out, before = existing_output(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, **values}, sort_keys=False))
    argv = ["--recipe", recipe] + ([] if "out" in values else ["--out", out])
    one_line(*run_cli(*argv)[::2], *needles)
    assert snapshot(out) == before and litter(tmp_path) == []
    assert not (Path.cwd() / "out").exists()


RAW_RECIPES = [
    ("a-list", "- model: kit-tiny-clip\n", ["must be a mapping", "list"]),
    ("nested-too-deeply", "model: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", ["nested too deeply"]),
    ("not-utf8", b"model: kit-tiny-clip\ntemplates: \xff\xfe\n", ["cannot be read"]),
    ("python-tag", "model: !!python/object/apply:os.system ['true']\n", ["malformed YAML"]),
    # issue 20 item 6: YAML lets the last value win; a recipe refuses it, naming the key and its lines
    ("duplicate-key", "model: kit-tiny-clip\nseed: 1\n\nmodel: ViT-B-32\n", ["key 'model' is given twice",
                                                                            "lines 1 and 4"]),
    ("duplicate-key-nested", "model: kit-tiny-clip\nkeep_fp32: [a]\nlabels: {a: 1, a: 2}\n",
     ["key 'a' is given twice", "lines 3 and 3"]),
]


@pytest.mark.parametrize("content,needles", [c[1:] for c in RAW_RECIPES], ids=[c[0] for c in RAW_RECIPES])
def test_bad_recipe_file(run_cli, tmp_path, content, needles):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(content if isinstance(content, bytes) else content.encode())
    one_line(*run_cli("--recipe", recipe, "--out", tmp_path / "o")[::2], *needles)
    assert not (tmp_path / "o").exists() and litter(tmp_path) == []


def test_recipe_that_is_a_directory(run_cli, tmp_path):
    one_line(*run_cli("--recipe", tmp_path, "--out", tmp_path / "o")[::2], "is a directory, not a regular file")


@pytest.mark.parametrize("field,value", [("force", "false"), ("also_pt", "no"), ("truncate_text", 1),
                                         ("out", 5), ("checkpoint", 5), ("seed", 2**70), ("labels", 5),
                                         ("keep_fp32", 5), ("templates", ["plain"])])
def test_api_raises_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        build_config(**{**TINY_RECIPE, field: value})
    with pytest.raises(KitError):
        ConvertConfig(**{**TINY_RECIPE, "labels": ("a", "b"), field: value})


def test_api_quant_config_types():
    with pytest.raises(ConfigError, match="keep_fp32=5"):
        QuantConfig(keep_fp32=5)
    with pytest.raises(ConfigError, match="per_tensor="):
        QuantConfig(per_tensor="text_encoder.*")


def test_api_accepts_paths_and_records_them_as_strings(tmp_path):
    config = build_config(**{**TINY_RECIPE, "out": tmp_path / "o"})
    assert config.out == str(tmp_path / "o") and isinstance(config.to_dict()["out"], str)
    json.dumps(config.to_dict())  # what the manifest records


# ============================================================================== label and template files
def _bad_templates(tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    cases = {}
    for name, content, needles in [
        ("second-placeholder", "a photo of a {} and a {}.\n", ["line 1", "exactly one '{}'"]),
        ("numbered-placeholders", "# ok\na {0} {1}\n", ["line 2", "exactly one"]),
        ("named-placeholder", "a {name}\n", ["line 1"]),
        ("not-utf8", b"a photo of a \xff {}\n", ["not UTF-8"]),
        ("no-templates", "# only a comment\n\n", ["has no templates"]),
    ]:
        path = tmp_path / f"{name}.txt"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cases[name] = (path, needles)
    cases["a-directory"] = (tmp_path, ["is a directory"])
    return cases


@pytest.mark.parametrize("case", ["second-placeholder", "numbered-placeholders", "named-placeholder", "not-utf8",
                                  "no-templates", "a-directory"])
def test_bad_templates_file(run_cli, tmp_path, case):
    folder = tmp_path / "t"
    folder.mkdir()
    path, needles = _bad_templates(folder)[case]
    out, before = existing_output(tmp_path, "o")
    one_line(*run_cli(*TINY, "--templates", path, "--out", out, "--force")[::2], *needles)
    assert snapshot(out) == before and litter(tmp_path) == []


@pytest.mark.parametrize("content,needle", [(b"cat\n\xff\xfedog\n", "cannot be read"), (None, "is a directory")])
def test_bad_labels_file(run_cli, tmp_path, content, needle):
    if content is None:
        spec = f"{tmp_path}/"
    else:
        spec = tmp_path / "labels.txt"
        spec.write_bytes(content)
    one_line(*run_cli(*TINY[:-2], "--labels", spec, "--out", tmp_path / "o")[::2], needle)
    with pytest.raises(LabelsError):
        read_labels(str(spec))


# ========================================================================================== the output
def test_out_dot_from_an_empty_directory(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line(*run_cli(*TINY, "--out", ".")[::2], "current directory", "choose a new folder")
    assert list(tmp_path.iterdir()) == []
    one_line(*run_cli(*TINY, "--out", "..", "--force")[::2], "current directory or contains it")


def test_out_under_a_file_and_out_a_file(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line(*run_cli(*TINY, "--out", blocker / "o")[::2], "cannot create")
    one_line(*run_cli(*TINY, "--out", blocker, "--force")[::2], "not a directory")
    assert blocker.read_text() == "x" and litter(tmp_path) == []


def test_out_symlink_loop(run_cli, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    one_line(*run_cli(*TINY, "--out", tmp_path / "loop")[::2], "loop")


def test_a_second_conversion_into_a_locked_output_is_refused(run_cli, tmp_path):
    """Two conversions into one --out: the second is refused at once (the first holds the output's lock),
    and the first's output is untouched."""
    from convert.output import lock_path, output_lock

    out, before = existing_output(tmp_path)
    with output_lock(out.resolve()):  # what a running conversion holds
        line = one_line(*run_cli(*TINY, "--out", out, "--force")[::2], "is being written by another conversion")
        assert f"(pid {os.getpid()})" in line
        # a symlink to the same folder is the same output
        (tmp_path / "link").symlink_to(out)
        one_line(*run_cli(*TINY, "--out", tmp_path / "link", "--force")[::2], "being written by another conversion")
    assert not lock_path(out.resolve()).exists()
    assert snapshot(out) == before and litter(tmp_path) == []


def test_output_filled_during_the_conversion_is_not_replaced(run_cli, tmp_path, monkeypatch):
    """The emptiness check at the start is repeated by the rename itself (a rename replaces only an empty
    folder): a file that appears meanwhile is kept and the new artifacts are not half-merged into it."""
    from convert import pipeline

    out = tmp_path / "out"
    out.mkdir()

    def intruder(staging, config):
        (out / "theirs.txt").write_text("theirs")

    monkeypatch.setattr(pipeline, "_convert_into", fake_stages(also=intruder))
    one_line(*run_cli(*TINY, "--out", out, "--quiet")[::2], "filled by something else", "nothing was replaced")
    assert snapshot(out) == {"theirs.txt": b"theirs"} and litter(tmp_path) == []


def test_staging_left_by_a_killed_conversion_is_removed_under_the_lock(run_cli, tmp_path, monkeypatch):
    from convert import pipeline

    monkeypatch.setattr(pipeline, "_convert_into", fake_stages())
    stale = tmp_path / ".out.staging-abc123"
    stale.mkdir()
    (stale / "image_encoder.ptl").write_bytes(b"half")
    (tmp_path / ".out.lock").write_text("4242\n")  # a lock file nobody holds any more
    other = tmp_path / ".other.staging-abc123"
    other.mkdir()
    assert run_cli(*TINY, "--out", tmp_path / "out", "--quiet")[0] == 0
    assert litter(tmp_path) == [".other.staging-abc123"]


def test_force_replaces_and_an_empty_output_is_filled(run_cli, tmp_path, monkeypatch):
    from convert import pipeline

    monkeypatch.setattr(pipeline, "_convert_into", fake_stages())
    out, _ = existing_output(tmp_path)
    assert run_cli(*TINY, "--out", out, "--force", "--quiet")[0] == 0
    assert snapshot(out) == {"manifest.json": b'{"new": true}\n'} and litter(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(*TINY, "--out", empty, "--quiet")[0] == 0
    assert snapshot(empty) == {"manifest.json": b'{"new": true}\n'} and litter(tmp_path) == []


def test_symlinked_out_is_written_through_never_replaced(run_cli, tmp_path, monkeypatch):
    """A real conversion into a symlinked --out: the link stays a link, its target gets the artifacts,
    no stray `.out.old-PID` link, no staging folder."""
    from convert import pipeline

    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "out"
    link.symlink_to(target)
    code, _, err = run_cli(*TINY, "--out", link, "--quiet")
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert verify_all(target)["model"]["name"] == "kit-tiny-clip"
    assert litter(tmp_path) == []
    # --force through the link replaces the target's content, the link stays
    monkeypatch.setattr(pipeline, "_convert_into", fake_stages())
    code, _, err = run_cli(*TINY, "--out", link, "--quiet", "--force")
    assert code == 0, err
    assert link.is_symlink() and snapshot(target) == {"manifest.json": b'{"new": true}\n'}
    assert litter(tmp_path) == []
    # a dangling link: its target is created
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "later")
    assert run_cli(*TINY, "--out", dangling, "--quiet")[0] == 0
    assert dangling.is_symlink() and (tmp_path / "later" / "manifest.json").is_file() and litter(tmp_path) == []


def test_sigterm_in_process_cleans_up_and_restores_the_handler(run_cli, tmp_path, monkeypatch):
    from convert import pipeline

    def terminated(staging, config):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises long before

    monkeypatch.setattr(pipeline, "_convert_into", fake_stages(also=terminated))
    out, before = existing_output(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    one_line(*run_cli(*TINY, "--out", out, "--force", "--quiet")[::2], "interrupted by SIGTERM", status=143)
    assert snapshot(out) == before and litter(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is handler


def test_ctrl_c_cleans_up_api_and_cli(run_cli, tmp_path, monkeypatch):
    from convert import pipeline

    def interrupted(staging, config):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_convert_into", fake_stages(also=interrupted))
    out, before = existing_output(tmp_path)
    one_line(*run_cli(*TINY, "--out", out, "--force", "--quiet")[::2], "interrupted by Ctrl-C", status=130)
    with pytest.raises(KeyboardInterrupt):
        pipeline.convert(build_config(**TINY_RECIPE, out=str(out), force=True))
    assert snapshot(out) == before and litter(tmp_path) == []


def test_a_signal_during_the_swap_waits_until_the_new_output_is_in_place(run_cli, tmp_path, monkeypatch):
    """SIGTERM between "old output moved aside" and "new output moved in": deferred, so the output is the
    new one (complete) and the backup is gone; then the CLI reports the interruption."""
    from convert import pipeline

    monkeypatch.setattr(pipeline, "_convert_into", fake_stages())
    out, _ = existing_output(tmp_path)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        real_rename(src, dst)
        calls.append(Path(dst).name)
        if Path(dst).name.startswith(".out.old-"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # a handler that were not deferred would raise here

    monkeypatch.setattr(os, "rename", rename)
    one_line(*run_cli(*TINY, "--out", out, "--force", "--quiet")[::2], "interrupted by SIGTERM", status=143)
    assert calls[-1] == "out" and any(c.startswith(".out.old-") for c in calls)
    assert snapshot(out) == {"manifest.json": b'{"new": true}\n'} and litter(tmp_path) == []


def test_not_enough_free_space_is_refused_before_writing(run_cli, tmp_path, monkeypatch):
    from convert import pipeline

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda path: usage._replace(free=2 << 20))
    out, before = existing_output(tmp_path)
    one_line(*run_cli(*TINY, "--out", out, "--force")[::2], "not enough free space", "MiB of fp32 weights",
             "2.0 MiB free")
    assert snapshot(out) == before and litter(tmp_path) == []
    line = one_line(*run_cli(*TINY, "--out", tmp_path / "o2", "--also-pt")[::2], "x2 for --also-pt")
    assert float(line.split("about ")[1].split(" MiB")[0]) > 2 * 14  # the tiny model: 14.5 MiB of fp32 weights


def test_disk_full_during_a_python_write_leaves_nothing(run_cli, tmp_path, monkeypatch):
    from convert import pipeline

    def full(staging, config):
        def write(tmp):
            Path(tmp).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        atomic_write(staging / "text_encoder.ptl", write)

    monkeypatch.setattr(pipeline, "_convert_into", fake_stages(also=full))
    out, before = existing_output(tmp_path)
    one_line(*run_cli(*TINY, "--out", out, "--force", "--quiet")[::2], "No space left on device")
    assert snapshot(out) == before and litter(tmp_path) == []


def test_conversion_onto_a_small_file_system(run_cli, small_fs, monkeypatch):
    """A real 3 MiB tmpfs: the free-space check refuses before anything is written (no C++ abort, no
    staging folder, nothing left on the disk)."""
    one_line(*run_cli(*TINY, "--out", small_fs / "o")[::2], "not enough free space", f"free in {small_fs}")
    assert list(small_fs.iterdir()) == []


def test_disk_full_for_python_writes_on_a_small_file_system(run_cli, small_fs, monkeypatch):
    """Past the free-space check (bypassed here), a full disk met by a checked write is one line too."""
    from convert import pipeline

    def big(staging, config):
        atomic_write_bytes(staging / "image_encoder.ptl", b"\0" * (4 << 20))

    from convert import output

    monkeypatch.setattr(output, "space_needed", lambda config, loaded: (0, 0))
    monkeypatch.setattr(pipeline, "_convert_into", fake_stages(also=big))
    one_line(*run_cli(*TINY, "--out", small_fs / "o", "--quiet")[::2], "No space left on device")
    assert list(small_fs.iterdir()) == []


def test_atomic_writes_on_a_full_disk_leave_no_temporary_file(small_fs):
    with filled(small_fs):
        with pytest.raises(OutputError, match="No space left on device"):
            torch_save_atomic({"x": torch.zeros(1 << 16)}, small_fs / "index.pt")
        with pytest.raises(OutputError, match="No space left on device"):
            atomic_write(small_fs / "recipe.yaml", lambda tmp: Path(tmp).write_text("x" * 100_000))
        assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]


# ================================================================================ manifests and metadata
def _manifest_cases():
    def files_entry(m, role="image_encoder", fmt="lite"):
        return next(e for e in m["files"] if e["role"] == role and e["format"] == fmt)

    return [
        ("files-a-string", lambda m: m.update(files="image_encoder.ptl"), "files is 'image_encoder.ptl' (str)"),
        ("bytes-a-string", lambda m: files_entry(m).update(bytes="12"), ".bytes is '12' (str)"),
        ("versions-a-list", lambda m: m.update(versions=[1]), "versions is [1] (list)"),
        ("context-length-a-string", lambda m: m["tokenizer"].update(context_length="32"),
         "tokenizer.context_length is '32'"),
        ("mean-nan", lambda m: m["preprocess"].update(mean=[float("nan"), 0.5, 0.5]), "preprocess.mean"),
        ("logit-scale-infinite", lambda m: m["zero_shot"].update(logit_scale=float("inf")), "zero_shot.logit_scale"),
        ("file-a-path", lambda m: files_entry(m).update(file="../elsewhere.ptl"), "a plain file name"),
        ("file-listed-twice", lambda m: m["files"].append(dict(files_entry(m))), "a file listed once"),
        ("vocab-not-listed", lambda m: m["tokenizer"].update(vocab_file="other_vocab.txt.gz"),
         "tokenizer.vocab_file is 'other_vocab.txt.gz'"),
        ("labels-vs-head", lambda m: m["zero_shot"]["labels"].pop(), "one logit per label"),
        ("embed-dim-vs-outputs", lambda m: m["model"].update(embed_dim=65), "(model.embed_dim)"),
        ("engine-of-another-target", lambda m: m.update(engine="fbgemm"), "engine is 'fbgemm'"),
        ("sha256-not-hex", lambda m: files_entry(m).update(sha256="x" * 64), "64 lower-case hex digits"),
        ("format-version-2", lambda m: m.update(format_version=2), "format_version 2 is not supported"),
        ("shape-a-string", lambda m: files_entry(m)["inputs"][0].update(shape="1,3,64,64"), ".inputs[0].shape"),
        ("nested-too-deeply", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("a-list", "[]", "not a clip-mobile-kit manifest"),
        ("not-utf8", b'{"format": "\xff"}', "cannot be read as JSON"),
        ("not-json", "{", "cannot be read as JSON"),
        # issue 20 item 4: the runtime block (and every block deploy reads) is checked like the rest
        ("cpu-flags-a-number", lambda m: m.update(runtime={"requires_cpu_flags_any": 5}),
         "runtime.requires_cpu_flags_any is 5 (int)"),
        ("cpu-flags-nested", lambda m: m.update(runtime={"requires_cpu_flags_any": [["avx2"]]}),
         "runtime.requires_cpu_flags_any is [['avx2']] (list)"),
        ("cpu-flags-an-object", lambda m: m.update(runtime={"requires_cpu_flags_any": {"avx2": True}}),
         "runtime.requires_cpu_flags_any is {'avx2': True} (dict)"),
        ("runtime-a-list", lambda m: m.update(runtime=["avx2"]), "runtime is ['avx2'] (list)"),
        ("random-weights-a-string", lambda m: m["model"].update(random_weights="false"),
         "model.random_weights is 'false' (str)"),
        ("config-checkpoint-a-number", lambda m: m["config"].update(checkpoint=5), "config.checkpoint is 5"),
        ("config-seed-a-string", lambda m: m["config"].update(seed="0"), "config.seed is '0'"),
        ("fidelity-of-a-tower-a-list", lambda m: m["fidelity"].update(image_encoder=[1]),
         "fidelity.image_encoder is [1]"),
        ("templates-a-number", lambda m: m["zero_shot"].update(templates=5), "zero_shot.templates is 5"),
        ("vocab-id-a-list", lambda m: m["tokenizer"].update(vocab_id=[]), "tokenizer.vocab_id is []"),
        ("format-10-mb", lambda m: m.update(format="x" * 10_000_000), "(10000000 characters)"),
    ]


MANIFEST_CASES = _manifest_cases()


@pytest.mark.parametrize("edit,needle", [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_bad_manifest_is_one_line_before_any_file_is_read(art, imgs, tmp_path, deploy_cli, edit, needle):
    """Only manifest.json in the folder: validation fails before a single listed file is looked at."""
    d = tmp_path / "a"
    d.mkdir()
    if callable(edit):
        manifest = json.loads((art / "manifest.json").read_text())
        edit(manifest)
        (d / "manifest.json").write_text(json.dumps(manifest))
    else:
        (d / "manifest.json").write_bytes(edit if isinstance(edit, bytes) else edit.encode())
    with pytest.raises(ArtifactError, match="manifest"):
        verify_artifacts(d)
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", d)[::2], needle)
    if _verify_registered():
        one_line(*deploy_cli("verify", d)[::2], needle)
    from deploy.verify import main as verify_main

    assert verify_main([str(d), "--quiet"]) == 2


def _verify_registered() -> bool:
    from deploy.__main__ import COMMANDS

    return "verify" in COMMANDS


def test_the_written_manifest_validates(art):
    validate_manifest(json.loads((art / "manifest.json").read_text()))


def _rewrite_metadata(path: Path, edit) -> None:
    """Replace the embedded clip_kit.json of ``path`` (a TorchScript zip) with ``edit(meta)``."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/extra/clip_kit.json"):
                meta = json.loads(data)
                edit(meta)
                data = json.dumps(meta).encode()
            dst.writestr(info, data)
    tmp.replace(path)


METADATA_CASES = [
    ("role-a-list", lambda m: m.update(role=["image_encoder"]), "clip_kit.json: role is ['image_encoder'] (list)"),
    ("role-unknown", lambda m: m.update(role="decoder"), "role is 'decoder'"),
    ("model-a-string", lambda m: m.update(model="kit-tiny-clip"), "model is 'kit-tiny-clip' (str)"),
    ("model-name-missing", lambda m: m["model"].pop("name"), "required field model.name is missing"),
    ("target-a-number", lambda m: m.update(target=5), "target is 5 (int)"),
    ("preprocess-a-list", lambda m: m.update(preprocess=[]), "preprocess is [] (list)"),
]


@pytest.mark.parametrize("edit,needle", [c[1:] for c in METADATA_CASES], ids=[c[0] for c in METADATA_CASES])
def test_bad_embedded_metadata(convert_tiny, imgs, tmp_path, deploy_cli, edit, needle):
    """The file's hash is updated in the manifest too: only the embedded metadata's schema catches it."""
    d = copy_artifacts(convert_tiny().out_dir, tmp_path / "a")
    path = d / "image_encoder.ptl"
    _rewrite_metadata(path, edit)
    manifest = json.loads((d / "manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["file"] == path.name)
    entry.update(bytes=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="clip_kit.json"):
        verify_artifacts(d)
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", d)[::2], needle)


def test_listed_file_that_is_a_symlink_leaving_the_directory(convert_tiny, imgs, tmp_path, deploy_cli):
    d = copy_artifacts(convert_tiny().out_dir, tmp_path / "a")
    outside = tmp_path / "outside.ptl"
    (d / "image_encoder.ptl").rename(outside)
    (d / "image_encoder.ptl").symlink_to(outside)
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", d)[::2], "symbolic link leaving")
    # inside the directory, a link is resolved and checked like the file itself
    (d / "image_encoder.ptl").unlink()
    outside.rename(d / "image.bin")
    (d / "image_encoder.ptl").symlink_to(d / "image.bin")
    verify_artifacts(d)


# ================================================================================== the search index
def _search(deploy_cli, art, imgs, *extra):
    return deploy_cli("search", "--artifacts", art, "--images", imgs[0].parent, "--query", "red", "--json", *extra)


def _mismatched(index: Path, how: str) -> None:
    data = torch.load(index, weights_only=True)
    if how == "entries":
        data["entries"] = data["entries"][:-1]
    elif how == "width":
        data["embeddings"] = torch.zeros(len(data["entries"]), 32)
    elif how == "entry-types":
        data["entries"][0]["mtime_ns"] = "yesterday"
    elif how == "not-finite":
        data["embeddings"][0, 0] = float("nan")
    torch.save(data, index)


@pytest.mark.parametrize("how", ["entries", "width", "entry-types", "not-finite", "truncated"])
def test_corrupt_or_mismatched_index_is_rebuilt(art, imgs, tmp_path, deploy_cli, how):
    """A kit index that does not fit (default cache or --index) is rebuilt with a warning, never trusted."""
    index = tmp_path / "index.pt"
    assert _search(deploy_cli, art, imgs, "--index", index)[0] == 0
    if how == "truncated":
        index.write_bytes(index.read_bytes()[:100])
        code, out, err = _search(deploy_cli, art, imgs)  # the default cache path, corrupted the same way
        default = Path(json.loads(out)["index"])
        default.write_bytes(default.read_bytes()[:100])
        code, out, err = _search(deploy_cli, art, imgs)
        assert code == 0 and "rebuilding it" in err and json.loads(out)["stats"]["embedded"] == 3
        # ... while a named --index that is no longer a kit index is an error, and stays as it is
        before = index.read_bytes()
        one_line(*_search(deploy_cli, art, imgs, "--index", index)[::2], "is not a clip-mobile-kit search index")
        assert index.read_bytes() == before
        return
    _mismatched(index, how)
    code, out, err = _search(deploy_cli, art, imgs, "--index", index)
    assert code == 0 and "rebuilding it" in err and "Traceback" not in err
    assert json.loads(out)["stats"]["embedded"] == 3
    assert _search(deploy_cli, art, imgs, "--index", index)[0] == 0  # the rebuilt one is reused
    assert litter(tmp_path) == []


@pytest.mark.parametrize("what", ["text-file", "foreign-torch-file"])
def test_named_index_that_is_not_an_index_is_an_error_and_kept(art, imgs, tmp_path, deploy_cli, what):
    index = tmp_path / "weights.pt"
    if what == "text-file":
        index.write_text("my notes\n")
    else:
        torch.save({"state_dict": {"w": torch.ones(3)}}, index)
    before = index.read_bytes()
    one_line(*_search(deploy_cli, art, imgs, "--index", index)[::2], "not a clip-mobile-kit search index",
             "left as it is")
    assert index.read_bytes() == before and litter(tmp_path) == []


def test_index_is_a_directory_or_under_a_file(art, imgs, tmp_path, deploy_cli):
    one_line(*_search(deploy_cli, art, imgs, "--index", tmp_path)[::2], "is a directory", "index.pt")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line(*_search(deploy_cli, art, imgs, "--index", blocker / "index.pt")[::2], "is a file, not a folder")
    assert blocker.read_text() == "x" and litter(tmp_path) == []


def test_index_on_a_full_disk(art, imgs, small_fs, deploy_cli, monkeypatch):
    """--index on a full disk: one line, no temporary file; the default cache on a full disk: a warning, the
    results still printed."""
    with filled(small_fs):
        one_line(*_search(deploy_cli, art, imgs, "--index", small_fs / "index.pt")[::2], "No space left on device")
        monkeypatch.setenv("CLIPKIT_CACHE", str(small_fs / "cache"))
        code, out, err = _search(deploy_cli, art, imgs)
        assert code == 0 and len(json.loads(out)["results"]) == 3 and "the search index is not saved" in err
        hidden = [p for p in small_fs.rglob(".*")]
        assert hidden == [] and not list(small_fs.rglob("*.pt")), hidden
    _clean(small_fs)


# ============================================================================================ images
@pytest.mark.parametrize("size", [(1, 1_000_000), (1_000_000, 1)], ids=["tall-strip", "wide-strip"])
def test_extreme_aspect_ratio_image(art, tmp_path, deploy_cli, size):
    from PIL import Image

    path = tmp_path / "strip.png"
    Image.new("L", size).save(path)
    one_line(*deploy_cli("classify", path, "--artifacts", art)[::2], "aspect ratio above 1000:1")


def test_truncated_image(art, imgs, tmp_path, deploy_cli):
    path = tmp_path / "cut.png"
    path.write_bytes(imgs[0].read_bytes()[:60])
    one_line(*deploy_cli("classify", path, "--artifacts", art)[::2], "cut.png")


# ===================================================================== sensitivity recipe, verify, shells
def test_sensitivity_recipe_that_is_a_directory(run_cli, tmp_path, monkeypatch):
    from convert import sensitivity

    class Result:  # only where the recipe is written matters here, not the ranking
        rows, summary, keep_fp32, target = [], {}, (), None

    monkeypatch.setattr(sensitivity, "rank_groups", lambda config, **kw: Result())
    one_line(*run_cli(*TINY, "--sensitivity", "1", "--sensitivity-recipe", tmp_path)[::2],
             "--sensitivity-recipe", "is a directory")
    assert litter(tmp_path) == []


def test_verify_command(convert_tiny, tmp_path, capsys):
    from deploy.verify import main as verify_main

    good = convert_tiny().out_dir
    assert verify_main([str(good)]) == 0
    assert "files verified" in capsys.readouterr().out
    assert verify_main([str(good), "--target", "x86", "-q"]) == 2
    assert "were converted for android (qnnpack); an x86 machine runs fbgemm: reconvert with --target x86" in capsys.readouterr().err
    d = copy_artifacts(good, tmp_path / "a")
    with open(d / "ops.yaml", "a") as handle:  # not a model file: checked too
        handle.write("# edited\n")
    assert verify_main([str(d), "-q"]) == 2
    one_line(2, capsys.readouterr().err, "ops.yaml")


def _fake_adb(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "adb.log"
    adb = tmp_path / "adb"
    adb.write_text(f'#!/bin/sh\necho "$@" >> {log}\n[ "$1" = get-state ] && echo unknown\nexit 0\n')
    adb.chmod(0o755)
    return adb, log


@pytest.mark.parametrize("script", ["bench_runner.sh", "bench_app.sh"])
def test_device_wrappers_verify_before_touching_the_device(tmp_path, script):
    """Nothing is pushed (adb is never called) when the artifact directory does not verify."""
    adb, log = _fake_adb(tmp_path)
    art_dir = tmp_path / "not-artifacts"
    art_dir.mkdir()
    args = [str(adb), str(art_dir)] if script == "bench_runner.sh" else [str(art_dir)]
    env = dict(os.environ, ADB=str(adb), PYTHON=sys.executable, PYTHONPATH=str(REPO))
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "android" / script), *args, str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    one_line(proc.returncode, proc.stderr, "manifest.json is missing")
    assert not log.exists()


# ========================================================= real conversions in subprocesses (-m slow)
def _convert_process(out: Path, *extra: str, pause: str | None = None, marker: Path | None = None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CLIPKIT_TEST_PAUSE", None)
    if pause:
        env["CLIPKIT_TEST_PAUSE"] = f"{pause}:{marker}"
    return subprocess.Popen([sys.executable, "-m", "convert", *TINY, "--out", str(out), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent)


def _wait_for(predicate, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.fixture
def old_output(convert_tiny, tmp_path):
    """A real, verified previous conversion (seed 1) in tmp_path/out, and its bytes."""
    out = copy_artifacts(convert_tiny(seed=1).out_dir, tmp_path / "out")
    return out, snapshot(out)


@pytest.mark.slow
@pytest.mark.parametrize("stage,sig", [pytest.param(stage, sig, id=f"{stage}-{sig.name}") for stage, sig in (
    ("staging", signal.SIGTERM), ("move", signal.SIGTERM), ("moved", signal.SIGTERM), ("staging", signal.SIGINT),
    ("move", signal.SIGINT))])
def test_a_signal_at_any_stage_leaves_the_old_or_the_new_output(old_output, tmp_path, stage, sig):
    out, before = old_output
    marker = tmp_path / "paused"
    proc = _convert_process(out, "--force", pause=stage, marker=marker)
    _wait_for(lambda: marker.exists() or proc.poll() is not None)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    one_line(proc.returncode, err, "interrupted by", status=128 + sig)
    assert litter(tmp_path) == []
    if stage == "moved":  # the new output was complete and in place
        assert snapshot(out) != before and verify_all(out)["model"]["seed"] == 0
    else:
        assert snapshot(out) == before


@pytest.mark.slow
def test_sigterm_while_the_towers_are_being_written(old_output, tmp_path):
    """No hook: SIGTERM as soon as the first artifact shows up in the staging folder."""
    out, before = old_output
    proc = _convert_process(out, "--force")

    def writing():
        return proc.poll() is not None or any(p.suffix == ".ptl" for s in tmp_path.glob(".out.staging-*")
                                              for p in s.iterdir())

    _wait_for(writing)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    one_line(proc.returncode, err, "interrupted by SIGTERM", status=143)
    assert snapshot(out) == before and litter(tmp_path) == []


@pytest.mark.slow
def test_two_real_conversions_into_one_output(tmp_path, run_cli):
    """The first holds the lock (paused after staging); a second one is refused with its pid; the first then
    finishes on its own... here, it is stopped with SIGTERM and leaves nothing."""
    out = tmp_path / "out"
    marker = tmp_path / "paused"
    first = _convert_process(out, pause="staging", marker=marker)
    _wait_for(lambda: marker.exists() or first.poll() is not None)
    line = one_line(*run_cli(*TINY, "--out", out)[::2], "is being written by another conversion")
    assert f"(pid {first.pid})" in line
    second = _convert_process(out, "--force")
    _, err = second.communicate(timeout=300)
    one_line(second.returncode, err, f"(pid {first.pid})")
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert first.returncode == 143 and not out.exists() and litter(tmp_path) == []
    # without pauses, both at once: one writes, the other is refused; the output verifies
    procs = [_convert_process(out, "--seed", str(seed)) for seed in (0, 1)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    one_line(*next(r for r in results if r[0] == 2), "")
    verify_all(out)
    assert litter(tmp_path) == []


@pytest.mark.slow
def test_device_wrappers_refuse_tampered_and_x86_artifacts(convert_tiny, tmp_path):
    adb, log = _fake_adb(tmp_path)
    env = dict(os.environ, ADB=str(adb), PYTHON=sys.executable, PYTHONPATH=str(REPO))
    script = REPO / "benchmarks" / "android" / "bench_runner.sh"
    tampered = copy_artifacts(convert_tiny().out_dir, tmp_path / "tampered")
    data = bytearray((tampered / "text_encoder.ptl").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / "text_encoder.ptl").write_bytes(bytes(data))
    for directory, needle in ((tampered, "text_encoder.ptl: sha256"),
                              (convert_tiny(target="x86").out_dir, "converted for x86 (fbgemm); a phone runs qnnpack")):
        proc = subprocess.run(["bash", str(script), str(adb), str(directory), str(tmp_path / "o")],
                              capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
        one_line(proc.returncode, proc.stderr, needle)
        assert not log.exists()
    # verified artifacts get as far as the device check
    proc = subprocess.run(["bash", str(script), str(adb), str(convert_tiny().out_dir), str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    one_line(proc.returncode, proc.stderr, "no device attached")


@pytest.mark.slow
def test_disk_full_inside_torchs_writer_is_one_line(small_fs, tmp_path):
    """Past the free-space check (bypassed), the disk fills while a tower is saved."""
    code = ("import sys; from convert import output; output.space_needed = lambda c, l: (0, 0); "
            "from convert.cli import main; sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code, *TINY, "--out", str(small_fs / "o"), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    try:
        one_line(proc.returncode, proc.stderr, "No space left on device")
        assert list(small_fs.iterdir()) == []
    finally:
        _clean(small_fs)


# ===================================== convert's flags, labels, checkpoints, floor, torch (was test_convert_errors.py)
from convert.errors import CheckpointError, FidelityError, ModelError, TorchVersionError  # noqa: E402

TINY_NO_LABELS = ["--model", "kit-tiny-clip", "--pretrained", "none", "--templates", "plain"]


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
    one_line(code, err, *needles)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content,needles", [("quantise: combined\n", ["unknown key 'quantise'", "quantize"]),
                                             ("quantize: [combined\nweights: per-tensor\n", ["malformed YAML", "line"])],
                         ids=["unknown-key-with-hint", "malformed-yaml-with-line"])
def test_recipe_unknown_key_or_malformed(run_cli, tmp_path, content, needles):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(content)
    one_line(*run_cli("--recipe", recipe, "--out", tmp_path / "o")[::2], *needles)


def test_recipe_bad_enum_value_and_unknown_recipe_name(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("attention: int4\n")
    one_line(*run_cli("--recipe", recipe)[::2], "attention='int4'", "int8, fp32")
    one_line(*run_cli("--recipe", "andriod")[::2], "recipe 'andriod'", "android")


def test_recipe_is_overridden_by_cli():
    config = build_config("paper", weights="per-channel")
    assert config.weights == "per-channel" and config.attention == "fp32" and config.target == "x86"


@pytest.mark.parametrize("content,needle", [("", "empty"), ("cat\ndog\nCat\n", "duplicate label 'Cat'"),
                                           ("# only a comment\n\n", "empty")])
def test_labels_file_empty_or_duplicated(run_cli, tmp_path, content, needle):
    labels = tmp_path / "labels.txt"
    labels.write_text(content)
    code, _, err = run_cli(*TINY_NO_LABELS, "--labels", labels, "--out", tmp_path / "o")
    one_line(code, err, needle)
    with pytest.raises(LabelsError):
        build_config(labels=labels.read_text().splitlines() or [])


def test_labels_file_missing(run_cli, tmp_path):
    one_line(*run_cli(*TINY_NO_LABELS, "--labels", tmp_path / "nope.txt")[::2], "does not exist")


def test_checkpoint_missing_truncated_and_wrong_architecture(run_cli, tmp_path):
    import open_clip

    missing = tmp_path / "missing.pt"
    one_line(*run_cli("--model", "kit-tiny-clip", "--checkpoint", missing)[::2], "does not exist")

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    one_line(*run_cli("--model", "kit-tiny-clip", "--checkpoint", empty)[::2], "empty")

    from assets import register_tiny_model

    register_tiny_model()
    good = tmp_path / "good.pt"
    torch.save(open_clip.create_model("kit-tiny-clip").state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    one_line(*run_cli("--model", "kit-tiny-clip", "--checkpoint", truncated, "--out", tmp_path / "o")[::2],
                    "truncated.pt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    one_line(*run_cli("--model", "kit-tiny-clip", "--checkpoint", garbage, "--out", tmp_path / "o")[::2],
                    "garbage.pt")

    code, _, err = run_cli("--model", "RN50", "--checkpoint", good, "--out", tmp_path / "o")
    one_line(code, err, "does not fit RN50")
    assert not (tmp_path / "o").exists()


def test_non_empty_output_directory_refused_unless_force(run_cli, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(*TINY_NO_LABELS, "--out", out)
    one_line(code, err, "is not empty", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_fidelity_below_floor_fails_and_writes_nothing(run_cli, tmp_path):
    out = tmp_path / "o"
    code, _, err = run_cli(*TINY_NO_LABELS, "--min-cosine", "1.0", "--out", out)
    line = one_line(code, err, "below the recipe's floor", "image_encoder cosine", status=1)
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
    one_line(*run_cli(*TINY_NO_LABELS, "--out", tmp_path / "o")[::2], "no 'qnnpack' quantized engine")


def test_api_raises_typed_errors():
    with pytest.raises(ConfigError, match="did you mean"):
        build_config(**{"quantise": "combined"})
    with pytest.raises(ModelError):
        from convert.load import load_model

        load_model(build_config(model="ViT-B-33"))
    with pytest.raises(CheckpointError):
        from convert.load import load_model

        load_model(build_config(checkpoint="/nonexistent.pt"))
