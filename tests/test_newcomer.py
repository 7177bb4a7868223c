"""What a newcomer met (issue 21): interrupted commands, the bench's readable output, evaluate's progress
and warnings, one ``--json`` convention, outputs under ``out/``, path-independent artifacts."""
from __future__ import annotations

import pytest

from conftest import assert_one_line_error, run_entry
from deploy.__main__ import main as deploy_main


def run_deploy(capsys, *argv):
    return run_entry(deploy_main, capsys, *argv)


# ----------------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize("command", ["classify", "search", "evaluate", "bench", "verify"])
def test_ctrl_c_is_one_line_and_exit_130(command, art, imgs, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Every command verifies its artifacts first, through the one reader.
    monkeypatch.setattr("convert.artifact.verify_artifacts", interrupted)
    monkeypatch.setattr("deploy.artifacts.verify_artifacts", interrupted)
    monkeypatch.setattr("convert.artifact.read_manifest", interrupted)
    argv = {"classify": ("classify", imgs[0], "--artifacts", art),
            "search": ("search", "--artifacts", art, "--images", imgs[0].parent, "--query", "x"),
            "evaluate": ("evaluate", "--artifacts", art, "--n", "4"),
            "bench": ("bench", art),
            "verify": ("verify", art)}[command]
    code, out, err = run_deploy(capsys, *argv)
    assert_one_line_error(code, err, "interrupted by Ctrl-C", status=130)
