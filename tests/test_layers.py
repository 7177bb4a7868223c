"""The layer rule (docs/architecture.md): assets <- convert <- deploy <- (benchmarks, tests).

- ``convert`` imports nothing of the kit but ``assets``; ``assets`` imports neither ``convert`` nor ``deploy``;
- ``deploy`` uses only public names of ``convert`` (no ``_private`` module or name);
- the bench worker, which runs in a fresh process, imports only the standard library at module level;
- ``import convert`` loads no torch, and every entry point sets the OpenMP default before torch loads.
Every import counts, at module level or inside a function.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = {"assets": set(), "convert": {"assets"}, "deploy": {"assets", "convert"}}
KIT = {"assets", "convert", "deploy", "benchmarks", "tests"}


def imports(source: str, module: str) -> list[tuple[str, tuple[str, ...], int, bool]]:
    """``(imported module, imported names, line, at module level)`` for every import in ``source``;
    relative imports are resolved against ``module`` (a dotted name)."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    package = module.rsplit(".", 1)[0] if not module.endswith("__init__") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, (), node.lineno, id(node) in top))
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([name] if name else []))
            found.append((name, tuple(a.name for a in node.names), node.lineno, id(node) in top))
    return found


def violations(files: dict[str, str]) -> list[str]:
    """Every import in ``files`` ({dotted module: source}) that breaks the layer rule."""
    bad = []
    for module, source in files.items():
        layer = module.split(".")[0]
        allowed = LAYERS[layer]
        for target, names, line, top_level in imports(source, module):
            root = target.split(".")[0]
            where = f"{module}:{line} imports {target}"
            if root in KIT and root != layer and root not in allowed:
                bad.append(f"{where} (a back-edge: {layer} may import {sorted(allowed) or 'nothing of the kit'})")
            if layer == "deploy" and root == "convert":
                private = [n for n in names if n.startswith("_")] + [p for p in target.split(".") if p.startswith("_")]
                if private:
                    bad.append(f"{where} ({', '.join(private)}: deploy uses only public names of convert)")
            if module == "deploy.bench.worker" and top_level and root not in sys.stdlib_module_names | {"__future__"}:
                bad.append(f"{where} (the bench worker imports only the standard library at module level)")
    return bad


def kit_sources() -> dict[str, str]:
    files = {}
    for layer in LAYERS:
        for path in (REPO / layer).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            files[".".join(rel.parts)] = path.read_text(encoding="utf-8")
    return files


def test_the_kit_follows_the_layer_rule():
    files = kit_sources()
    assert "deploy.bench.worker" in files and "convert.pipeline" in files
    assert violations(files) == []


@pytest.mark.parametrize("module,source,expected", [
    ("convert.pipeline", "def f():\n    from deploy.zeroshot import load_templates\n", "back-edge"),
    ("convert.cli", "import deploy.evaluate\n", "back-edge"),
    ("assets.tiny_clip.train", "from convert import build_config\n", "back-edge"),
    ("deploy.__main__", "from convert.cli import _Parser\n", "public names"),
    ("deploy.classify", "from convert._private import x\n", "public names"),
    ("deploy.bench.worker", "import torch\n", "standard library"),
    ("deploy.bench.worker", "from .plan import Case\n", "standard library"),
])
def test_the_checker_catches_each_kind_of_break(module, source, expected):
    found = violations({module: source})
    assert len(found) == 1 and expected in found[0]
    # ... and the same import inside a function of the worker is allowed (it runs after the baseline).
    if module == "deploy.bench.worker":
        assert violations({module: "def f():\n" + "".join("    " + ln + "\n" for ln in source.splitlines())}) == []


def _python(code: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(REPO)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_import_convert_loads_no_torch():
    proc = _python("import sys, convert, convert.cli, convert.entry, convert.config, convert.errors, convert.artifact\n"
                   "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip', 'numpy')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# Records OMP_WAIT_POLICY at the moment torch is first imported, then lets the entry point run on.
HOOK = """
import importlib.abc, os, sys
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "seen" not in os.environ:
            os.environ["seen"] = "1"
            print("OMP at torch import:", os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"),
                  flush=True)
        return None
sys.meta_path.insert(0, Watch())
"""


@pytest.mark.parametrize("entry", [
    "from convert.cli import main; main(['--model', 'no-such-model', '--pretrained', 'none', '--quiet'])",
    "from deploy.__main__ import main; main(['classify', 'x.png', '--artifacts', 'no-such-dir'])",
    "from deploy.__main__ import main; main(['bench', 'no-such-dir', '--quiet'])",
    "import runpy, sys; sys.argv = ['convert', '--help']; runpy.run_module('convert', run_name='__main__')",
], ids=["convert", "deploy-classify", "deploy-bench", "python-m-convert"])
def test_entry_points_set_the_openmp_default_before_torch_loads(entry):
    proc = _python(HOOK + entry)
    assert "OMP at torch import: PASSIVE 1000" in proc.stdout or (
        "--help" in entry and "torch" not in proc.stdout), proc.stdout + proc.stderr[-2000:]
    # A user's own setting wins, and the kit's short spin comes only with the kit's PASSIVE.
    proc = _python(HOOK + entry, {"OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP at torch import: PASSIVE" not in proc.stdout
    assert "1000" not in proc.stdout


def test_a_users_spincount_wins():
    proc = _python(HOOK + "from deploy.__main__ import main; main(['classify', 'x.png', '--artifacts', 'no-such-dir'])",
                   {"GOMP_SPINCOUNT": "50"})
    assert "OMP at torch import: PASSIVE 50" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_console_scripts_are_the_tested_entry_points():
    text = (REPO / "pyproject.toml").read_text()
    assert 'clip-kit-convert = "convert.cli:main"' in text and 'clip-kit-deploy = "deploy.__main__:main"' in text
