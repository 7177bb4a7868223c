"""No traps for the user: random weights say so, offline fails in seconds with what to do, manifests survive a
move, every pattern must match, output people can read, the Android README works verbatim, one message for an
unsupported torch. Nothing here reaches the network: the hub is switched off or its probe is replaced."""
from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from _deploy_helpers import run_entry, shape_images
from deploy.__main__ import main as deploy_main

REPO = Path(__file__).resolve().parent.parent
TINY = ["--model", "kit-tiny-clip", "--pretrained", "none", "--templates", "plain"]
SOURCE_PATH = re.compile(r"\b\w+\.py:\d+")
LOG = re.compile(r"^(\[\d\d:\d\d:\d\d\] | {11})\S")  # rich's progress lines (console.log)


def run_deploy(capsys, *argv):
    """``python -m deploy`` in-process: (exit code, stdout, stderr)."""
    return run_entry(deploy_main, capsys, *argv)


def error_line(err: str) -> str:
    """The stderr of a failed command must be exactly one ``error:`` line (warnings and progress lines aside)."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning: ") and not LOG.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"the test tried to reach the network: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def empty_caches(monkeypatch, tmp_path):
    """Empty weight caches (huggingface_hub's and open_clip's URL cache), whatever this machine holds."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr("convert.load._url_cache_dir", lambda: str(tmp_path / "clip-cache"))


@pytest.fixture
def no_download(monkeypatch):
    """open_clip's downloader must not be called at all (no retries, no waiting)."""
    import open_clip.factory
    import open_clip.pretrained

    def refuse(*args, **kwargs):
        raise AssertionError("open_clip tried to download weights")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", refuse)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", refuse)


# ------------------------------------------------------------------- 1. weights are always a decision
def test_random_weights_are_marked_in_the_manifest_and_every_report(convert_tiny, tmp_path, capsys):
    from deploy.runtime import random_weights, warn_random_weights

    result = convert_tiny()
    manifest = result.manifest
    assert manifest["model"]["random_weights"] is True
    on_disk = json.loads((result.out_dir / "manifest.json").read_text())
    assert on_disk["model"]["random_weights"] is True
    # deploy evaluate: in the JSON report and as the first line of the printed report.
    report_file = tmp_path / "report.json"
    code, out, err = run_deploy(capsys, "evaluate", "--artifacts", result.out_dir, "--n", "8", "--templates", "plain",
                                "--no-linear-probe", "--json", report_file)
    assert code == 0, err
    assert json.loads(report_file.read_text())["random_weights"] is True
    assert any(ln.startswith("warning: these artifacts carry RANDOM weights (--pretrained none)")
               for ln in out.splitlines()), out
    assert not SOURCE_PATH.search(out + err), out + err  # no file.py:NN on log lines
    # classify / search (the commands, not the helper): exactly one warning line on stderr, none with --quiet.
    image = shape_images(tmp_path / "imgs", n=2)[0]
    images = image.parent
    runs = {"classify": ("classify", image, "--artifacts", result.out_dir),
            "search": ("search", "--artifacts", result.out_dir, "--images", images, "--query", "a red circle",
                       "--index", tmp_path / "index.pt")}
    for name, argv in runs.items():
        code, out, err = run_deploy(capsys, *argv)
        assert code == 0, err
        warned = [ln for ln in err.splitlines() if "RANDOM weights (--pretrained none)" in ln]
        assert len(warned) == 1 and warned[0].startswith("warning: "), (name, err)
        code, out, err = run_deploy(capsys, *argv, "--quiet")
        assert code == 0 and "RANDOM" not in err, (name, err)
    stream = io.StringIO()
    assert warn_random_weights(manifest, stream) is True
    assert stream.getvalue().count("\n") == 1 and stream.getvalue().startswith("warning: ")
    # Older manifests (no field) still say it; trained weights and checkpoints never do.
    assert random_weights({"model": {"name": "x", "pretrained": "none", "checkpoint": None}})
    assert not random_weights({"model": {"name": "x", "pretrained": "builtin"}})
    assert not random_weights({"model": {"name": "x", "pretrained": None, "checkpoint": "c.pt"}})
    quiet = io.StringIO()
    assert warn_random_weights({"model": {"name": "x", "random_weights": False}}, quiet) is False
    assert quiet.getvalue() == ""


# ------------------------------------------------------------------------ 2. offline fails in seconds
OFFLINE_NEEDLES = ("the openai weights of ViT-B-32 are not in the local cache", "huggingface.co cannot be reached",
                   "run the same command once on a machine with network access", "--checkpoint FILE",
                   "--pretrained none")


def test_hub_offline_mode_fails_at_once_with_what_to_do(run_cli, monkeypatch, tmp_path, no_network, empty_caches,
                                                        no_download):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("convert.load.probe_host", lambda url, timeout=3.0: pytest.fail("probed in offline mode"))
    start = time.monotonic()
    code, out, err = run_cli("--model", "ViT-B-32", "--pretrained", "openai", "--out", tmp_path / "out")
    elapsed = time.monotonic() - start
    line = error_line(err)
    assert code == 2
    for needle in OFFLINE_NEEDLES + ("HF_HUB_OFFLINE is set",):
        assert needle in line, (needle, line)
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())  # no staging folder left
    assert elapsed < 30, elapsed  # no retries: in-process this is the ViT-B-32 name checks only


def test_unreachable_hub_is_probed_once_and_fails_with_what_to_do(run_cli, monkeypatch, tmp_path, no_network,
                                                                  empty_caches, no_download):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    probed = []

    def probe(url, timeout=3.0):
        probed.append(url)
        return "huggingface.co:443: Name or service not known"

    monkeypatch.setattr("convert.load.probe_host", probe)
    code, out, err = run_cli("--model", "ViT-B-32", "--pretrained", "openai", "--out", tmp_path / "out")
    line = error_line(err)
    assert code == 2
    for needle in OFFLINE_NEEDLES + ("Name or service not known",):
        assert needle in line, (needle, line)
    assert probed == ["https://huggingface.co/timm/vit_base_patch32_clip_224.openai"]
    assert "Retry" not in out + err and "WARNING" not in out + err


def test_probe_host_is_bounded_and_honours_the_proxy(monkeypatch):
    from convert.load import probe_host

    calls = []

    def unresolvable(address, timeout=None):
        calls.append((address, timeout))
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.setattr(socket, "create_connection", unresolvable)
    assert probe_host("https://huggingface.co/timm/x") == "huggingface.co:443: Name or service not known"
    assert calls == [(("huggingface.co", 443), 3.0)]

    def hangs(address, timeout=None):
        time.sleep(3.0)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hangs)
    start = time.monotonic()
    assert "no answer within" in probe_host("https://huggingface.co/x", timeout=0.2)
    assert time.monotonic() - start < 2  # DNS and connect together are bounded, not only the connect

    class Connected:
        def close(self):
            pass

    calls.clear()
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: calls.append(address) or Connected())
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert probe_host("https://huggingface.co/x") is None
    assert calls == [("proxy.example", 3128)]


def test_cached_hub_weights_load_without_any_network(monkeypatch, tmp_path, no_network):
    """Weights already in huggingface_hub's cache load with the hub switched off: no probe, no request."""
    import open_clip
    import open_clip.pretrained as oc_pretrained
    from huggingface_hub import constants

    from assets import TINY_CHECKPOINT, register_tiny_model
    from convert import build_config
    from convert.load import load_model, pretrained_source

    register_tiny_model()
    monkeypatch.setitem(oc_pretrained._PRETRAINED, "kit-tiny-clip", {"cached": {"hf_hub": "kit/cached-tiny/"}})
    # A hub cache laid out as huggingface_hub writes it: refs/main -> snapshots/<commit>/<file>.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--kit--cached-tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    trained = open_clip.create_model("kit-tiny-clip", pretrained=str(TINY_CHECKPOINT))
    torch.save(trained.state_dict(), snapshot / oc_pretrained.HF_WEIGHTS_NAME)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("convert.load.probe_host", lambda url, timeout=3.0: pytest.fail("probed with cached weights"))

    assert pretrained_source("kit-tiny-clip", "cached").cached == str(snapshot / oc_pretrained.HF_WEIGHTS_NAME)
    loaded = load_model(build_config(model="kit-tiny-clip", pretrained="cached"))
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert constants.HF_HUB_OFFLINE is False  # switched back on afterwards


def test_third_party_log_lines_only_with_verbose():
    """open_clip's root-logger warnings and huggingface_hub's retries stay out unless --verbose (a fresh
    interpreter: pytest's own log capture would hide the difference)."""
    script = ("import logging, sys\n"
              "from convert.entry import third_party_logging\n"
              "import huggingface_hub.utils.logging as hl\n"
              "with third_party_logging(verbose=sys.argv[1] == 'v'):\n"
              "    logging.warning('root says QuickGELU mismatch')\n"
              "    hl.get_logger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5].')\n"
              "    logging.getLogger('urllib3.connectionpool').warning('urllib3 retry')\n")
    runs = {}
    for mode in ("q", "v"):
        proc = subprocess.run([sys.executable, "-c", script, mode], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        runs[mode] = proc.stdout + proc.stderr
    assert runs["q"] == ""
    from convert.cli import _options, build_parser

    args = build_parser().parse_args(["--verbose"])
    assert args.verbose and "verbose" not in _options(args)  # a CLI switch, not a conversion option
    assert runs["v"].count("Retrying in 1s") == 1  # once, not once per handler
    assert "QuickGELU mismatch" in runs["v"] and "urllib3 retry" in runs["v"]


# -------------------------------------------------------------------------------- 3. portable manifests
@pytest.fixture(scope="module")
def from_checkpoint(tmp_path_factory):
    """The trained tiny CLIP saved as a plain state dict, converted from a relative --checkpoint path."""
    import os

    import open_clip

    from assets import TINY_CHECKPOINT, register_tiny_model
    from convert.cli import main

    root = tmp_path_factory.mktemp("portable")
    (root / "a").mkdir()
    register_tiny_model()
    trained = open_clip.create_model("kit-tiny-clip", pretrained=str(TINY_CHECKPOINT))
    torch.save(trained.state_dict(), root / "a" / "tiny.pt")
    torch.manual_seed(1)
    torch.save(open_clip.create_model("kit-tiny-clip").state_dict(), root / "other.pt")
    cwd = os.getcwd()
    os.chdir(root / "a")
    try:
        assert main(["--model", "kit-tiny-clip", "--checkpoint", "tiny.pt", "--out", "out", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    return root


def test_manifest_survives_a_move_of_the_working_directory_and_of_the_checkpoint(from_checkpoint, monkeypatch,
                                                                                capsys):
    root = from_checkpoint
    art = root / "a" / "out"
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["config"]["checkpoint"] == str(root / "a" / "tiny.pt")  # absolute, whatever the cwd was
    assert manifest["model"]["random_weights"] is False
    evaluate = ["evaluate", "--artifacts", art, "--n", "8", "--templates", "plain", "--no-linear-probe", "--json", "-"]
    (root / "elsewhere").mkdir(exist_ok=True)
    monkeypatch.chdir(root / "elsewhere")
    code, out, err = run_deploy(capsys, *evaluate)
    assert code == 0, err
    assert json.loads(out)["random_weights"] is False
    # The checkpoint moves: one line naming --checkpoint; the new path with the same bytes works.
    moved = root / "moved" / "tiny-renamed.pt"
    moved.parent.mkdir(exist_ok=True)
    shutil.move(root / "a" / "tiny.pt", moved)
    try:
        code, out, err = run_deploy(capsys, *evaluate)
        line = error_line(err)
        assert code == 2 and "--checkpoint" in line and str(root / "a" / "tiny.pt") in line, line
        code, out, err = run_deploy(capsys, *evaluate, "--checkpoint", moved)
        assert code == 0, err
        # Another file (same architecture, other weights) is refused by its sha256.
        code, out, err = run_deploy(capsys, *evaluate, "--checkpoint", root / "other.pt")
        line = error_line(err)
        assert code == 2 and "is not the checkpoint these artifacts were converted from" in line, line
    finally:
        shutil.move(moved, root / "a" / "tiny.pt")


# ------------------------------------------------------------------------------ 4. every pattern must match
@pytest.mark.parametrize("option,pattern,hint", [
    ("--keep-fp32", "nomatch.*", "module names look like "),
    ("--per-tensor", "text_encoder.transformer.resblocks.0.mlp.c_fcc", "text_encoder.transformer.resblocks.0.mlp.c_fc"),
])
def test_a_pattern_that_matches_nothing_is_an_error(run_cli, tmp_path, option, pattern, hint):
    code, out, err = run_cli(*TINY, option, pattern, "--out", tmp_path / "out")
    line = error_line(err)
    assert code == 2
    assert f"{option} '{pattern}' matches no module" in line and hint in line, line
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 5. output people can read
@pytest.mark.parametrize("argv,prog", [
    ([], "python -m deploy"),
    (["classify"], "python -m deploy classify"),
    (["search"], "python -m deploy search"),
    (["evaluate"], "python -m deploy evaluate"),
    (["bench", "--no-such-flag"], "python -m deploy bench"),
])
def test_deploy_usage_errors_point_to_their_own_help(capsys, argv, prog):
    code, out, err = run_deploy(capsys, *argv)
    assert code == 2
    assert error_line(err).endswith(f"(see {prog} --help)"), err


def test_convert_usage_error_points_to_its_help(run_cli):
    code, out, err = run_cli("--no-such-flag")
    assert code == 2 and error_line(err).endswith("(see python -m convert --help)"), err


def test_sensitivity_table_fits_100_columns_wide_adds_columns_quiet_silences(run_cli, tmp_path, capsys, monkeypatch):
    import convert.cli
    from convert.cli import print_sensitivity
    from convert.entry import make_console

    shown = []
    monkeypatch.setattr(convert.cli, "print_sensitivity", lambda *a, **k: (shown.append(a), print_sensitivity(*a, **k)))
    recipe = tmp_path / "r.yaml"
    code, out, err = run_cli(*TINY, "--quantize", "image", "--sensitivity", "2", "--sensitivity-recipe", recipe)
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if str(recipe) not in ln]  # a path is never broken
    assert max(map(len, lines)) <= 100, "\n".join(ln for ln in lines if len(ln) > 100)
    assert f"(use: python -m convert --recipe {recipe})" in out
    header = next(ln for ln in lines if "group" in ln and "#" in ln)
    assert "drop" in header and "fp32" in header and "SQNR" not in header and "…" not in out
    assert not SOURCE_PATH.search(out + err)
    # --wide: the same ranking with every column, on a 200-column console when piped.
    result, config = shown[0][:2]
    print_sensitivity(result, config, make_console(wide=True), wide=True)
    wide = capsys.readouterr().out
    header = next(ln for ln in wide.splitlines() if "group" in ln and "#" in ln)
    assert "SQNR dB" in header and "modules" in header and "cos min" in header
    assert max(len(ln) for ln in wide.splitlines() if str(recipe) not in ln) <= 200
    code, out, err = run_cli(*TINY, "--quantize", "image", "--sensitivity", "2", "--sensitivity-recipe", recipe,
                             "--quiet")
    assert code == 0 and out == "" and err == "", out + err


def _report(names=("simple-7", "openai-80", "my-long-templates-file-12")):
    zs = {"fp32_top1": 0.9605, "fp32_top5": 1.0, "converted_top1": 0.96, "converted_top5": 1.0,
          "top1_drop_points": 0.05, "top1_agreement": 0.9995, "truncated_prompts": 0}
    fid = {"cosine_min": 0.999766, "cosine_mean": 0.999966, "sqnr_db": 41.65, "max_abs_err": 0.11995}
    return {"artifacts": "out/x", "kind": "lite", "model": {"name": "kit-tiny-clip"}, "quantize": "combined",
            "random_weights": True, "dataset": "shapes (held-out seed 20240917, n=2000)", "n": 2000, "classes": 48,
            "zero_shot": {n: dict(zs) for n in names}, "image_encoder": fid, "text_encoder": fid,
            "linear_probe": {"train": 1000, "test": 1000, "fp32_top1": 0.956, "converted_top1": 0.957,
                             "fp32_probe_on_converted_top1": 0.957}}


@pytest.mark.parametrize("width,names", [
    (100, ("simple-7", "openai-80", "my-own-templates-file-12")),
    (80, ("simple-7", "openai-80", "my-own-templates-file-12")),
    (60, ("simple-7", "openai-80")),
])
def test_evaluate_report_is_readable_piped_and_narrow(width, names):
    """Piped, the console is 100 columns (convert.entry.make_console); a narrow terminal must not cut cells either."""
    from rich.console import Console

    from deploy.evaluate import print_report

    buffer = io.StringIO()
    print_report(_report(names), Console(file=buffer, width=width, log_path=False))
    text = buffer.getvalue()
    assert "…" not in text, text  # nothing cut: "templat…", "openai-…"
    lines = text.splitlines()
    table_lines = [ln for ln in lines if not ln.startswith(("warning:", "zero-shot", "linear probe"))]
    assert max(map(len, table_lines)) <= width, text
    assert max(map(len, lines)) <= 100, text
    for needle in ("templates", *names, "image_encoder", "text_encoder", "96.05", "99.95", "0.999766", "1.20e-01",
                   "warning: these artifacts carry RANDOM weights (--pretrained none)"):
        assert needle in text, (needle, text)
    # Plain lines are never broken: the title and the probe line stay one line however narrow the console.
    assert any(ln.startswith("zero-shot accuracy (%) of kit-tiny-clip") and ln.endswith("n=2000)") for ln in lines)
    assert any(ln.startswith("linear probe top-1 %") and ln.endswith("fp32 probe on int8 95.70") for ln in lines)


# --------------------------------------------------------------- 6. the Android README works verbatim
def test_recipes_get_their_own_default_output_directory():
    from convert import build_config

    default = build_config().out_dir
    paper, x86 = build_config("paper").out_dir, build_config("x86").out_dir
    assert paper == Path("out/kit-tiny-clip-paper") and x86 == Path("out/kit-tiny-clip-x86")
    assert len({default, paper, x86}) == 3


def _android_step_one() -> list[str]:
    text = (REPO / "android_demo" / "README.md").read_text(encoding="utf-8")
    step = text.split("## Build and run the app", 1)[1].split("\n2. ", 1)[0]
    commands = [ln.strip() for ln in step.splitlines() if ln.strip().startswith("python -m convert")]
    assert len(commands) == 1, step
    return shlex.split(commands[0])[3:]


def test_android_readme_step_one_never_collides_with_the_main_readme_conversion():
    """The main README's set-up ends with ``python -m convert`` (default --out); the app's step 1 must then
    work verbatim, and again when repeated (measured end to end in a scratch copy, see the issue)."""
    from convert import build_config
    from convert.cli import _options, build_parser

    args = build_parser().parse_args(_android_step_one())
    config = build_config(args.recipe, **_options(args))
    assert config.install_to == "android_demo" and config.target == "android"
    assert config.out_dir != build_config().out_dir or config.force
    assert config.force  # repeating the step replaces its own previous conversion


# -------------------------------------------------------- 8. one message for an unsupported torch
def test_convert_and_deploy_give_the_same_advice_for_an_unsupported_torch(convert_tiny, run_cli, monkeypatch, tmp_path,
                                                                         capsys):
    from convert.torchcheck import FIX

    art = convert_tiny().out_dir
    image = shape_images(tmp_path / "imgs", n=1)[0]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    monkeypatch.setattr(torch, "__version__", "2.13.0")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code_c, _, err_c = run_cli(*TINY, "--out", busy)
        code_d, _, err_d = run_deploy(capsys, "classify", image, "--artifacts", art)
    warn_c = [ln for ln in err_c.splitlines() if ln.startswith("warning: ")]
    warn_d = [ln for ln in err_d.splitlines() if ln.startswith("warning: ")]
    assert warn_c == warn_d == [f"warning: torch 2.13.0 is not the pinned 2.12.1; results are untested (fix: {FIX})"]
    assert code_c == 2 and "not empty" in error_line(err_c)  # the conversion went on to its own error
    line = error_line(err_d)
    assert code_d == 2 and re.search(r"written by torch 2\.12\.1\S*, this is torch 2\.13\.0", line), line
    assert FIX in line
    assert not SOURCE_PATH.search(err_c + err_d)
