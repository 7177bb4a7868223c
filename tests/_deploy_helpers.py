"""Shared by tests/test_deploy_*.py: one tiny conversion per test session (random-init kit-tiny-clip)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

_CACHE: dict[str, Path] = {}


def converted(tmp_path_factory) -> Path:
    """Artifacts of kit-tiny-clip (--pretrained none, shapes labels, --also-pt), converted once."""
    if "art" not in _CACHE:
        from assets import TINY_LABELS
        from convert import build_config
        from convert.config import read_labels
        from convert.pipeline import convert

        out = tmp_path_factory.mktemp("deploy") / "art"
        config = build_config(model="kit-tiny-clip", pretrained="none", labels=read_labels(str(TINY_LABELS)),
                              templates="simple", out=str(out), also_pt=True)
        convert(config)
        _CACHE["art"] = out
    return _CACHE["art"]


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
