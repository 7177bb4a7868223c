"""Every "list or file" argument, console encoding, thread count and quoted value answered in one line
(issue 20, and items of issue 21): the commands users run, in-process through ``run_entry`` or, where the
process matters (a named pipe that would block, the console's encoding), in a subprocess with a timeout.

Rules under test (``convert.config.read_labels``, ``convert.files``):
- a labels spec with a comma is a list (``cat,`` is a one-label list); without one it is a file name;
- a string that cannot be a path (longer than ``PATH_MAX``/``NAME_MAX``, a NUL) never reaches the file system;
- only a regular file is opened: a directory, a named pipe, a socket or a device is one line.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _deploy_helpers import assert_one_line_error as one_line

REPO = Path(__file__).resolve().parent.parent
TINY = ["--model", "kit-tiny-clip", "--pretrained", "none", "--templates", "plain"]
FORTY = ",".join(f"household object {i}" for i in range(40))  # 789 characters: an ordinary label list


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.setenv("CLIPKIT_CACHE", str(tmp_path_factory.mktemp("cache")))


@contextlib.contextmanager
def no_hang(seconds: float = 20):
    """Fail (instead of hanging the suite) when the block blocks: a blocking open() of a named pipe is
    interrupted by the alarm and the handler's exception propagates (PEP 475)."""
    def expired(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_module(*argv, env=None, timeout=240):
    environ = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=REPO, capture_output=True, timeout=timeout,
                          env=environ)


# ================================================================ 1. strings that cannot be paths
def test_an_ordinary_800_character_label_list_classifies(art, imgs, deploy_cli):
    assert len(FORTY) > 255
    code, out, err = deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", FORTY, "--templates", "plain")
    assert code == 0, err
    assert "household object" in out and "Traceback" not in err


def test_an_ordinary_800_character_label_list_converts(run_cli, tmp_path):
    code, _, err = run_cli(*TINY, "--labels", FORTY, "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert len(manifest["zero_shot"]["labels"]) == 40


@pytest.mark.parametrize("spec,needle", [("t" * 300, "is neither a file nor one of"),
                                         ("t" * 5000, "(5000 characters)"),
                                         ("a\0b", "neither a file")])
def test_templates_that_cannot_be_a_path(art, imgs, deploy_cli, run_cli, tmp_path, spec, needle):
    line = one_line(*deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", "a,b", "--templates", spec)[::2],
                    needle)
    assert len(line) < 400
    if "\0" not in spec:  # (argv cannot carry a NUL: the API path is tested below)
        one_line(*run_cli(*TINY[:-2], "--labels", "a,b", "--templates", spec, "--out", tmp_path / "o")[::2],
                 "templates=")


def test_recipe_labels_and_checkpoint_that_cannot_be_paths(run_cli, tmp_path):
    long = "r" * 5000
    one_line(*run_cli("--recipe", long)[::2], "neither a file nor a built-in recipe", "(5000 characters)")
    one_line(*run_cli(*TINY, "--labels", long)[::2], "not a file name", "4096-byte path limit")
    one_line(*run_cli("--model", "kit-tiny-clip", "--checkpoint", long)[::2], "checkpoint=", "not a file name")
    one_line(*run_cli(*TINY, "--labels", "a,b", "--out", "o" * 300)[::2], "out=", "255-byte limit")


def test_the_api_refuses_a_nul_in_a_path_field():
    from convert import build_config
    from convert.errors import ConfigError

    with pytest.raises(ConfigError, match="templates="):
        build_config(model="kit-tiny-clip", pretrained="none", labels=("a", "b"), templates="a\0b")


def test_artifacts_index_and_images_that_cannot_be_paths(art, imgs, deploy_cli, tmp_path):
    long = "x" * 5000
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", long)[::2], "artifact directory", "not a file name")
    one_line(*deploy_cli("classify", long, "--artifacts", art)[::2], "image", "not a file name")
    one_line(*deploy_cli("search", "--artifacts", art, "--images", long, "--query", "x")[::2], "image folder")
    one_line(*deploy_cli("search", "--artifacts", art, "--images", imgs[0].parent, "--image-query", long)[::2], "image")
    one_line(*deploy_cli("verify", long)[::2], "artifact directory")
    one_line(*deploy_cli("evaluate", "--artifacts", art, "--dataset", "imagefolder", "--data-root", long)[::2],
             "image folder")
    one_line(*deploy_cli("bench", "--from-json", long)[::2], "bench report")


# ================================================================ 2. pipes, sockets, devices, folders
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_a_named_pipe_as_templates_never_hangs(art, imgs, fifo):
    """The reported hang: the class-cache key read the templates file before anything checked it."""
    proc = run_module("deploy", "classify", imgs[0], "--artifacts", art, "--labels", "cat,dog", "--templates", fifo,
                      timeout=120)
    one_line(proc.returncode, proc.stderr.decode(), "is a named pipe, not a regular file")


@pytest.mark.parametrize("what", ["labels", "recipe", "checkpoint", "image", "from-json", "data-root"])
def test_a_named_pipe_is_named_as_such_everywhere(art, imgs, fifo, deploy_cli, run_cli, what):
    with no_hang():
        if what == "labels":
            result = deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", fifo)
        elif what == "recipe":
            result = run_cli("--recipe", fifo)
        elif what == "checkpoint":
            result = run_cli("--model", "kit-tiny-clip", "--checkpoint", fifo, "--labels", "a,b")
        elif what == "image":
            result = deploy_cli("classify", fifo, "--artifacts", art)
        elif what == "from-json":
            result = deploy_cli("bench", "--from-json", fifo)
        else:
            result = deploy_cli("evaluate", "--artifacts", art, "--dataset", "imagefolder", "--data-root", fifo)
    one_line(*result[::2], "is a named pipe")


@pytest.mark.parametrize("kind", ["socket", "device", "directory"])
def test_sockets_devices_and_folders_are_no_labels_or_templates_files(art, imgs, tmp_path, deploy_cli, kind):
    if kind == "socket":
        spec = tmp_path / "s.sock"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(spec))
        needle = "is a socket"
    elif kind == "device":
        spec, server, needle = Path("/dev/zero"), None, "is a character device"
    else:
        spec, server, needle = tmp_path, None, "is a directory"
    try:
        with no_hang():
            one_line(*deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", spec)[::2], needle)
            one_line(*deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", "a,b", "--templates", spec)[::2],
                     needle)
    finally:
        if server is not None:
            server.close()


# ================================================================ 3. the console's encoding
def test_an_ascii_console_gets_escapes_and_json_stays_utf8(art, imgs, tmp_path):
    labels = "🐱 cat,chien 狗,🚗 car"
    common = ["deploy", "classify", imgs[0], "--artifacts", art, "--labels", labels, "--templates", "plain"]
    env = {"PYTHONIOENCODING": "ascii", "CLIPKIT_CACHE": str(tmp_path / "cache")}
    proc = run_module(*common, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("ascii")  # nothing but ASCII reached the ascii console
    assert "\\U0001f431 cat" in out or "\\u72d7" in out or "\\U0001f697 car" in out, out
    proc = run_module(*common, "--json", env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    data = json.loads(proc.stdout.decode("utf-8"))
    assert {t["label"] for t in data["results"][0]["top"]} == set(labels.split(","))


def test_a_label_the_console_cannot_encode_in_an_error_line(art, imgs, tmp_path):
    proc = run_module("deploy", "classify", imgs[0], "--artifacts", art, "--labels", "🐱,🐱", env={
        "PYTHONIOENCODING": "ascii", "CLIPKIT_CACHE": str(tmp_path / "cache")})
    one_line(proc.returncode, proc.stderr.decode("ascii"), "duplicate label", "\\U0001f431")


# ================================================================ 5. thread counts
def test_bench_refuses_more_threads_than_cpus_before_starting_anything(art, deploy_cli, monkeypatch):
    from convert.entry import usable_cpus
    from deploy.bench import plan

    monkeypatch.setattr(plan, "run", lambda *a, **k: pytest.fail("the benchmark started"))
    line = one_line(*deploy_cli("bench", art, "--threads", "1", "9999")[::2], "--threads 9999",
                    f"1 to {usable_cpus()}")
    assert "sched_getaffinity" in line
    one_line(*deploy_cli("bench", art, "--threads", "0")[::2], "--threads 0")


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_thread_variables_above_the_cpus_are_refused(art, imgs, deploy_cli, run_cli, monkeypatch, variable):
    monkeypatch.setenv(variable, "9999")
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", art)[::2], f"{variable}=9999")
    one_line(*run_cli(*TINY, "--labels", "a,b")[::2], f"{variable}=9999")
    monkeypatch.setenv(variable, "lots")
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", art)[::2], f"{variable}='lots'")


def test_a_benchmark_script_refuses_too_many_threads(art):
    """(benchmarks/profile_ops.py checks its --threads with the same four lines)"""
    proc = subprocess.run([sys.executable, "benchmarks/threads_crossover.py", str(art), "--threads", "9999"], cwd=REPO,
                          capture_output=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "--threads 9999" in err and "Traceback" not in err, err


# ================================================================ 7. quoted values are cut
@pytest.mark.parametrize("key", ["target", "templates", "labels", "out", "unknown-key"])
def test_a_10_mb_recipe_value_is_cut_in_its_error_line(run_cli, tmp_path, key):
    big = "v" * 10_000_000
    recipe = tmp_path / "r.yaml"
    head = "model: kit-tiny-clip\npretrained: none\n" + ("" if key == "templates" else "templates: plain\n")
    recipe.write_text(head + (f"? {big}\n: 1\n" if key == "unknown-key" else f"{key}: {big}\n"))
    out = [] if key == "out" else ["--out", tmp_path / "o"]
    line = one_line(*run_cli("--recipe", recipe, *out)[::2], "(10000000 characters)")
    assert len(line) < 500, len(line)


def test_quoted_says_how_long_a_cut_value_was():
    from convert.errors import quoted

    assert quoted("abc") == "'abc'"
    cut = quoted("x" * 1000, limit=40)
    assert cut.startswith("'xxx") and cut.endswith("... (1000 characters)") and len(cut) < 70


# ================================================================ issue 21: one-label lists, folders
def test_a_bare_word_is_a_file_name_not_a_one_label_list(art, imgs, deploy_cli, run_cli, tmp_path):
    hint = "for a one-label list write `mylabels,`"
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", "mylabels")[::2], "does not exist", hint)
    one_line(*run_cli(*TINY, "--labels", "mylabels", "--out", tmp_path / "o")[::2], "does not exist", hint)
    code, out, err = deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", "mylabels,", "--templates", "plain")
    assert code == 0 and out.strip().endswith("mylabels 1.00"), err
    (tmp_path / "mylabels").write_text("cat\ndog\n")  # the file it was meant to name
    code, out, err = deploy_cli("classify", imgs[0], "--artifacts", art, "--labels", tmp_path / "mylabels",
                            "--templates", "plain")
    assert code == 0 and ("cat" in out and "dog" in out), err


def test_the_rule_is_in_the_help(capsys):
    from convert.cli import build_parser

    assert "one label: cat," in " ".join(build_parser().format_help().split())
    from deploy.__main__ import main

    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    assert "one label: cat," in " ".join(capsys.readouterr().out.split())


def test_classify_accepts_a_folder_like_search(art, imgs, deploy_cli, tmp_path):
    code, out, err = deploy_cli("classify", imgs[0].parent, "--artifacts", art)
    assert code == 0, err
    assert sorted(line.split(":")[0] for line in out.splitlines()) == sorted(map(str, imgs))
    (tmp_path / "notes.txt").write_text("no image here")
    one_line(*deploy_cli("classify", tmp_path, "--artifacts", art)[::2], "contains no images")


def test_the_parent_of_artifact_folders_names_them(art, imgs, deploy_cli, tmp_path):
    parent = art.parent
    line = one_line(*deploy_cli("classify", imgs[0], "--artifacts", parent)[::2], "manifest.json is missing")
    assert str(art) in line and "pass one" in line
    one_line(*deploy_cli("classify", imgs[0], "--artifacts", tmp_path)[::2], "run python -m convert first")


# ================================================================ the same shape elsewhere (found by the sweep)
def test_index_that_is_a_pipe_or_no_file_name(art, imgs, fifo, deploy_cli):
    common = ["search", "--artifacts", art, "--images", imgs[0].parent, "--query", "x"]
    with no_hang():
        one_line(*deploy_cli(*common, "--index", fifo)[::2], "index", "is a named pipe")
    one_line(*deploy_cli(*common, "--index", "i" * 5000)[::2], "index", "not a file name")


def test_output_files_are_checked_before_the_work(art, deploy_cli, tmp_path, monkeypatch):
    from deploy import evaluate
    from deploy.bench import plan

    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    monkeypatch.setattr(plan, "run", lambda *a, **k: pytest.fail("the benchmark started"))
    (tmp_path / "folder.json").mkdir()  # a .json name (the --json convention refuses others), yet a folder
    one_line(*deploy_cli("evaluate", "--artifacts", art, "--json", tmp_path / "folder.json")[::2], "--json",
             "is a directory")
    one_line(*deploy_cli("evaluate", "--artifacts", art, "--json", tmp_path / "no" / "r.json")[::2], "does not exist")
    (tmp_path / "plots.png").write_bytes(b"")
    one_line(*deploy_cli("evaluate", "--artifacts", art, "--plots", tmp_path / "plots.png")[::2], "--plots",
             "is a regular file, not a directory")
    one_line(*deploy_cli("bench", art, "--threads", "1", "--markdown", tmp_path)[::2], "--markdown", "is a directory")
    one_line(*deploy_cli("bench", art, "--threads", "1", "--json", "j" * 300 + ".json")[::2], "--json",
             "not a file name")


def test_bench_reports_that_are_not_objects(deploy_cli, tmp_path):
    for name, text in (("list.json", "[1, 2]"), ("results.json", '{"results": [5]}')):
        (tmp_path / name).write_text(text)
        one_line(*deploy_cli("bench", "--from-json", tmp_path / name)[::2], "not a clip-mobile-kit-bench report")


def test_profile_ops_reads_the_manifest_through_the_one_reader(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "clip-mobile-kit-manifest", "format_version": 1}')
    proc = subprocess.run([sys.executable, "benchmarks/profile_ops.py", str(tmp_path), "--threads", "1"], cwd=REPO,
                          capture_output=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    one_line(proc.returncode, proc.stderr.decode(), "required field versions is missing")  # run_command: exit 2
