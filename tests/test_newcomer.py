"""What a newcomer met (issue 21): interrupted commands, the bench's readable output, evaluate's progress
and warnings, one ``--json`` convention, outputs under ``out/``, path-independent artifacts."""
from __future__ import annotations

import re

import pytest

from _deploy_helpers import assert_one_line_error, run_entry
from deploy.__main__ import main as deploy_main


def run_deploy(capsys, *argv):
    return run_entry(deploy_main, capsys, *argv)


# ----------------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize("command", ["classify", "search", "evaluate", "bench", "verify"])
def test_ctrl_c_is_one_line_and_exit_130(command, art, imgs, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Every command verifies its artifacts first, through the one reader. deploy.artifacts binds the name at
    # import: patched first, so that its import never captures the other patch as the "original".
    monkeypatch.setattr("deploy.artifacts.verify_artifacts", interrupted)
    monkeypatch.setattr("convert.artifact.verify_artifacts", interrupted)
    monkeypatch.setattr("convert.artifact.read_manifest", interrupted)
    argv = {"classify": ("classify", imgs[0], "--artifacts", art),
            "search": ("search", "--artifacts", art, "--images", imgs[0].parent, "--query", "x"),
            "evaluate": ("evaluate", "--artifacts", art, "--n", "4"),
            "bench": ("bench", art),
            "verify": ("verify", art)}[command]
    code, out, err = run_deploy(capsys, *argv)
    assert_one_line_error(code, err, "interrupted by Ctrl-C", status=130)


# ------------------------------------------------------------------------------------------ bench
@pytest.fixture(scope="module")
def bench_run(art, tmp_path_factory):
    """A small real bench of android (qnnpack) tiny artifacts, in-process, output piped (not a terminal)."""
    report = tmp_path_factory.mktemp("bench") / "r.json"
    import contextlib  # capsys is function-scoped: the module's run is captured with contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = deploy_main(["bench", str(art), "--variants", "lite", "--threads", "1",
                            "--engines", "qnnpack", "--load-repeats", "1", "--roles", "image_encoder", "text_encoder", "--iters", "2", "--warmup", "0",
                            "--json", str(report)])
    return code, out.getvalue(), err.getvalue(), report


def test_bench_table_fits_100_columns_and_says_what_it_timed(bench_run, capsys):
    code, out, err, report = bench_run
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(ln) <= 100 for ln in lines if not ln.startswith(("x86", "aarch64", "-", "one call", "per figure"))), out
    assert "…" not in out
    # what one call computed, and how many calls/processes make a figure
    timed = next(ln for ln in lines if ln.startswith("one call: "))
    assert "image_encoder: a batch of 1 image(s) of " in timed and re.search(r"8 of \d+ tokens", timed), timed
    assert any(ln.startswith("per figure: 1 fresh process(es)") and "2 timed calls" in ln for ln in lines), out
    # a legend for the ratio columns, and the qnnpack-on-x86 note
    for col in ("x size", "x fp32", "RSS+ MiB"):
        assert any(ln.strip().startswith(col) for ln in lines[lines.index(next(ln for ln in lines if ln.startswith("columns"))):]), col
    import platform

    if platform.machine() in ("x86_64", "AMD64"):
        assert any("qnnpack on x86 is expected to be slow" in ln for ln in lines), out
    # stderr is not a terminal: plain progress lines, no escape codes
    assert "done after" in err and "\x1b" not in err, err
    # --wide: every column, from the JSON
    code, wide, err = run_deploy(capsys, "bench", "--from-json", report, "--wide")
    assert code == 0, err
    assert "anon+/size" in wide and "RSS+/size" in wide and "p90" in wide
    assert "anon+/size" not in out


def test_bench_report_records_its_inputs_and_validates(bench_run):
    import json

    from deploy.bench.report import validate_report

    report = json.loads(bench_run[3].read_text())
    validate_report(report)
    assert report["settings"]["inputs"]["text_encoder"][0]["shape"][-1] >= report["settings"]["prompt_tokens"] == 8
    report["settings"]["inputs"]["text_encoder"] = [{"shape": "77"}]
    with pytest.raises(ValueError):
        validate_report(report)


# --------------------------------------------------------------------------------------- evaluate
def test_evaluate_skips_a_corrupt_image_and_warns_about_a_thin_probe(art, tmp_path, capsys):
    from _deploy_helpers import shape_images

    root = tmp_path / "folder"
    for name in ("red circle", "blue square"):
        shape_images(root / name.replace(" ", "_"), n=2)
    (root / "red_circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, out, err = run_deploy(capsys, "evaluate", "--artifacts", art, "--dataset", "imagefolder",
                                "--data-root", root, "--templates", "plain")
    assert code == 0, err
    assert "warning: skipped image" in err and "broken.png" in err
    assert "1 unreadable image(s) skipped; 4 evaluated" in out
    assert "warning: the linear probe had 2 training images for 2 classes" in out
    assert "--dataset shapes" not in out  # not the default dataset: no hint
    # what the time went to, and the step that dominates for real models named with its size
    assert "encoding 2 classes x 1 templates = 2 prompts through the fp32 and int8 text towers" in out
    assert re.search(r"^time [\d.]+ s: .*text towers \(2 prompts x 2\)", out, re.M), out


def test_evaluate_hints_at_dataset_when_shapes_meets_another_model(art, capsys, monkeypatch):
    code, out, err = run_deploy(capsys, "evaluate", "--artifacts", art, "--n", "8", "--templates", "plain",
                                "--no-linear-probe")
    assert code == 0 and "--dataset shapes (the default)" not in out, err
    monkeypatch.setattr("deploy.evaluate.TINY_MODEL", "another-model")  # as if the artifacts were a ViT
    code, out, err = run_deploy(capsys, "evaluate", "--artifacts", art, "--n", "8", "--templates", "plain",
                                "--no-linear-probe")
    assert code == 0, err
    assert "warning: --dataset shapes (the default) is the built-in tiny CLIP's synthetic test set" in out
    assert "pass --dataset imagefolder" in out


# ------------------------------------------------------------------------------- one --json convention
def test_one_json_convention_across_commands(art, imgs, tmp_path, capsys, bench_run):
    """``--json`` alone: one JSON document on stdout and nothing else there; ``--json FILE.json``: the file,
    and the usual output too; a non-.json word after ``--json`` (an image) is refused, never overwritten."""
    import json

    from convert.cli import main as convert_main

    report = bench_run[3]
    commands = {
        "classify": ("classify", imgs[0], "--artifacts", art),
        "search": ("search", "--artifacts", art, "--images", imgs[0].parent, "--query", "red",
                   "--index", tmp_path / "index.pt"),
        "evaluate": ("evaluate", "--artifacts", art, "--n", "4", "--templates", "plain", "--no-linear-probe"),
        "bench": ("bench", "--from-json", report),
        "verify": ("verify", art),
    }
    for name, argv in commands.items():
        code, out, err = run_deploy(capsys, *argv, "--json")
        assert code == 0, (name, err)
        json.loads(out)  # the whole of stdout is one document
        target = tmp_path / f"{name}.json"
        code, out, err = run_deploy(capsys, *argv, "--json", target)
        assert code == 0, (name, err)
        assert json.loads(target.read_text()) and out.strip() and not out.lstrip().startswith("{"), (name, out)
    before = imgs[1].read_bytes()
    code, out, err = run_deploy(capsys, "classify", "--json", imgs[1], imgs[0], "--artifacts", art)
    assert_one_line_error(code, err, "is not a .json file name")
    assert imgs[1].read_bytes() == before
    # convert (the tiny default, seeded random weights): the same two forms
    out_dir = tmp_path / "conv"
    code, out, err = run_entry(convert_main, capsys, "--pretrained", "none", "--out", out_dir, "--json")
    assert code == 0, err
    assert json.loads(out)["out_dir"] == str(out_dir)


# ------------------------------------------------------------------------------- outputs under out/
OUTPUT_OPTION = re.compile(r"--(?:json|markdown|plot|plots|sensitivity-recipe|out|index) ([^\s`\]|]+)")


def test_default_outputs_and_doc_commands_write_under_out():
    """Nothing a user copies from the docs leaves files in the repository root: outputs go under out/
    (git-ignored), or into benchmarks/results (tracked on purpose)."""
    from pathlib import Path

    from convert.cli import build_parser

    assert build_parser().parse_args([]).sensitivity_recipe == "out/sensitivity.yaml"
    root = Path(__file__).resolve().parent.parent
    bad = []
    for doc in ("README.md", "docs/deploy.md", "docs/formats.md", "docs/architecture.md", "docs/performance.md",
                "benchmarks/README.md", "android_demo/README.md"):
        for value in OUTPUT_OPTION.findall((root / doc).read_text(encoding="utf-8")):
            if not value.startswith(("out/", "benchmarks/results", "/tmp", "FILE", "DIR", "-", "$", "<", "[")) \
                    and value not in ("R", "K"):
                bad.append(f"{doc}: {value}")
    assert not bad, bad


# ------------------------------------------------------------------------------------------- --help
def test_every_option_has_help_and_says_its_default(run_cli):
    import argparse
    import importlib

    from convert.cli import build_parser
    from convert.entry import KitArgumentParser
    from deploy.__main__ import COMMANDS

    parsers = {"convert": build_parser()}
    sub = KitArgumentParser(prog="x").add_subparsers(dest="command")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    parsers.update(sub.choices)
    missing = []
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text, default = action.help or "", action.default
            if not text or (default not in (None, False) and "default" not in text):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    code, out, err = run_cli("--quiet", "--verbose")
    assert_one_line_error(code, err, "not allowed with")
