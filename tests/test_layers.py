"""The layer rule (docs/architecture.md): assets <- convert <- deploy <- (benchmarks, tests).

- ``convert`` imports nothing of the kit but ``assets``; ``assets`` imports neither ``convert`` nor ``deploy``;
- ``deploy`` uses only public names of ``convert`` (no ``_private`` module or name);
- the bench worker, which runs in a fresh process, imports only the standard library at module level;
- ``import convert`` loads no torch, and every entry point sets the OpenMP default before torch loads
  (one subprocess checks them all).
Every import counts, at module level or inside a function.
"""
from __future__ import annotations

import ast
import json
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


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


# One fresh interpreter checks every entry point (torch loads once a process, so the check watches the
# ``import torch`` *statements* instead): first that the light modules load no torch, then, for each entry
# point and each user setting, the OpenMP variables at the first torch import the entry point executes.
PROBE = """
import builtins, io, json, os, runpy, sys, contextlib
import convert, convert.cli, convert.config, convert.entry, convert.errors, convert.artifact
light = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip', 'numpy'))
seen = []
real_import = builtins.__import__
def watch(name, *args, **kwargs):
    if name.split('.')[0] == 'torch' and not seen:
        seen.append((os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT')))
    return real_import(name, *args, **kwargs)
def python_m_convert_help():
    sys.argv = ['convert', '--help']
    runpy.run_module('convert', run_name='__main__')
def imports_torch_first():  # a broken entry point: the checker must catch it
    import torch  # noqa
    convert.entry.set_openmp_default()
ENTRIES = {
    'convert': lambda: __import__('convert.cli').cli.main(['--model', 'no-such-model', '--pretrained', 'none', '--quiet']),
    'deploy-classify': lambda: __import__('deploy.__main__').__main__.main(['classify', 'x.png', '--artifacts', 'nope']),
    'deploy-bench': lambda: __import__('deploy.__main__').__main__.main(['bench', 'no-such-dir', '--quiet']),
    'deploy-verify': lambda: __import__('deploy.verify').verify.main(['no-such-dir']),
    'python-m-convert': python_m_convert_help,
    'broken': imports_torch_first,
}
USERS = {'none': {}, 'active': {'OMP_WAIT_POLICY': 'ACTIVE'}, 'spin50': {'GOMP_SPINCOUNT': '50'}}
found = {}
for user, preset in USERS.items():
    for name, entry in ENTRIES.items():
        for key in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT'):
            os.environ.pop(key, None)
        os.environ.update(preset)
        convert.entry._set_by_kit.clear()
        seen.clear()
        builtins.__import__ = watch
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                entry()
        except SystemExit:
            pass
        finally:
            builtins.__import__ = real_import
        found[f'{name}/{user}'] = seen[0] if seen else None
print(json.dumps({'light': light, 'found': found}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    proc = _python(PROBE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_convert_loads_no_torch(probe):
    assert probe["light"] == []


@pytest.mark.parametrize("entry", ["convert", "deploy-classify", "deploy-bench", "deploy-verify", "python-m-convert"])
def test_entry_points_set_the_openmp_default_before_torch_loads(probe, entry):
    # --help, and verify's refusal of a missing directory, import no torch at all (None); the others do.
    allowed = [None] if entry in ("python-m-convert", "deploy-verify") else []
    assert probe["found"][f"{entry}/none"] in [["PASSIVE", "1000"], *allowed]
    # A user's own setting wins, and the kit's short spin comes only with the kit's PASSIVE.
    assert probe["found"][f"{entry}/active"] in [["ACTIVE", None], *allowed]
    assert probe["found"][f"{entry}/spin50"] in [["PASSIVE", "50"], *allowed]


def test_the_probe_catches_an_entry_point_that_imports_torch_first(probe):
    assert probe["found"]["broken/none"] == [None, None]


def test_console_scripts_are_the_tested_entry_points():
    text = (REPO / "pyproject.toml").read_text()
    assert 'clip-kit-convert = "convert.cli:main"' in text and 'clip-kit-deploy = "deploy.__main__:main"' in text
