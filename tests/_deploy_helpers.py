"""Helpers shared by the tests (fixtures live in conftest.py; test files import helpers from here, never from conftest)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

TINY = "kit-tiny-clip"


def tiny_options(**overrides):
    """Options for a fast conversion of the tiny architecture with seeded random weights."""
    opts = dict(model=TINY, pretrained="none", labels=("red circle", "blue square", "green star"),
                templates="plain", seed=0)
    opts.update(overrides)
    return opts


def run_entry(main, capsys, *argv):
    """An entry point's ``main`` in-process: returns (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles, status=2):
    """Exit ``status``, exactly one non-empty stderr line starting ``error:``, no traceback, the needles in
    it; returns the line. The kit's promise for every bad input."""
    assert code == status, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def lite_zip_storages(path: Path) -> list[tuple[str, bytes]]:
    """The tensor storages inside a ``.ptl`` archive: (name, bytes)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [(n, archive.read(n)) for n in archive.namelist()
                if "/constants/" in n or "/data/" in n]


def copy_artifacts(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def edit_manifest(directory: Path, fn) -> None:
    path = Path(directory) / "manifest.json"
    manifest = json.loads(path.read_text())
    fn(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def shape_images(directory: Path, n: int = 3, seed: int = 1) -> list[Path]:
    from assets.tiny_clip.shapes import make_split

    directory.mkdir(parents=True, exist_ok=True)
    images, _ = make_split(n, seed)
    paths = []
    for i, img in enumerate(images):
        p = directory / f"shape{i}.png"
        img.save(p)
        paths.append(p)
    return paths
