"""Datasets for ``deploy evaluate``: the tiny CLIP's procedural shapes, an image folder, CIFAR (local files).

``shapes`` is always offline (made by ``assets.tiny_clip.shapes``); ``imagefolder`` reads ``DIR/<class>/*``;
``cifar10`` / ``cifar100`` use torchvision with ``download=False``: the files must already be there.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convert.errors import PATH_QUOTE_LIMIT, ConfigError, DatasetError, one_line, quoted

DATASETS = ("shapes", "imagefolder", "cifar10", "cifar100")


@dataclass
class Dataset:
    name: str
    classes: list[str]
    targets: list[int]
    load: Callable[[int], Any]  # index -> PIL image

    def __len__(self) -> int:
        return len(self.targets)


def load_dataset(name: str, n: int | None = None, data_root: str | None = None) -> Dataset:
    if name == "shapes":
        from assets.tiny_clip import shapes

        count = n or 2000
        images, labels = shapes.make_split(count, shapes.HELDOUT_SEED)
        return Dataset(f"shapes (held-out seed {shapes.HELDOUT_SEED}, n={count})", list(shapes.CLASS_NAMES),
                       labels, images.__getitem__)
    if name == "imagefolder":
        from .preprocess import list_images, open_image

        if not data_root:
            raise DatasetError("--dataset imagefolder needs --data-root DIR (one sub-folder per class)")
        from convert.files import describe_path, path_kind

        kind = path_kind(data_root)
        if kind != "a directory":
            raise DatasetError(describe_path(data_root, kind, "image folder", "a directory"))
        root = Path(data_root)
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        files, targets = [], []
        for i, c in enumerate(classes):
            found = list_images(root / c)
            files += found
            targets += [i] * len(found)
        if not files:
            raise DatasetError(f"image folder {root} has no class sub-folders with images")
        if n:
            step = max(1, len(files) // n)
            files, targets = files[::step][:n], targets[::step][:n]
        return Dataset(f"imagefolder {root}", [c.replace("_", " ") for c in classes], targets,
                       lambda i: open_image(files[i]))
    if name in ("cifar10", "cifar100"):
        try:
            from torchvision import datasets
        except ImportError:
            raise DatasetError("torchvision is not installed (needed for CIFAR)") from None
        if not data_root:
            raise DatasetError(f"--dataset {name} needs --data-root DIR holding the torchvision {name} files")
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        try:
            ds = cls(data_root, train=False, download=False)
        except (RuntimeError, OSError) as exc:
            raise DatasetError(f"{name} is not under {quoted(data_root, PATH_QUOTE_LIMIT)} ({one_line(exc, 120)}); "
                               "download it once with torchvision (download=True) elsewhere") from None
        count = min(n or len(ds), len(ds))
        label = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
        return Dataset(f"{label} test (n={count})", [c.replace("_", " ") for c in ds.classes],
                       [int(t) for t in ds.targets[:count]], lambda i: ds[i][0])
    raise ConfigError(f"dataset {name!r} is not one of: {', '.join(DATASETS)}")
