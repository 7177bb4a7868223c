"""The README is the front door: its first two commands and its Python example must work as written."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from _deploy_helpers import shape_images

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_the_two_commands():
    block = README.read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == [
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && python -m convert',
        "python -m pytest"]


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(code.strip().splitlines()) <= 12  # a front-door example, not a tutorial
    monkeypatch.chdir(tmp_path)
    shape_images(tmp_path / "imgs", n=1)[0].rename(tmp_path / "photo.png")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    top = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(top) == 1 and len(top[0]) == 3
    assert {label for label, _ in top[0]} == {"red circle", "blue square", "green star"}
    assert (tmp_path / "out" / "shapes" / "manifest.json").is_file()
