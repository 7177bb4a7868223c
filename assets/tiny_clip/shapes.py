"""Procedural colour x shape images: the training data and the accuracy yardstick of the tiny CLIP.

Each class is a (colour, shape) pair, e.g. ``"red circle"``; 8 colours x 6 shapes = 48 classes,
label index ``i = colour_index * len(SHAPES) + shape_index`` (see :data:`CLASS_NAMES`).

An image (:func:`render`) is ``RENDER_SIZE`` x ``RENDER_SIZE`` RGB: a textured background (a
two-colour linear gradient of random direction plus pixel noise, whose colours are kept far from the
shape's colour), one filled shape with random position, size and a small tilt (+-20 degrees) and a slightly jittered
colour, a few tiny random-colour specks, and a little global noise. The model's own preprocessing
resizes it (80 -> 64 for ``kit-tiny-clip``), as it would any photo.

Everything is deterministic given a ``numpy.random.Generator`` (or an int seed):
``make_split(n, seed)`` always returns the same pixels for the same ``(n, seed)``.
Training draws from :data:`TRAIN_SEED`; the held-out evaluation split uses :data:`HELDOUT_SEED`,
which training never uses.

Captions (:func:`caption`) are open_clip's own zero-shot prompt templates applied to the class name,
so zero-shot evaluation with ``SIMPLE_IMAGENET_TEMPLATES`` or ``OPENAI_IMAGENET_TEMPLATES`` matches
the training text distribution.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import numpy as np
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS", "SHAPES", "CLASS_NAMES", "NUM_CLASSES", "RENDER_SIZE", "TRAIN_SEED", "HELDOUT_SEED",
    "TEMPLATES", "ZERO_SHOT_TEMPLATES", "render", "make_split", "caption", "class_of",
    "write_labels",
]

#: Well-separated RGB prototypes. The rendered colour is jittered by up to +-COLOUR_JITTER per channel.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (245, 225, 30),
    "purple": (140, 40, 190),
    "orange": (250, 135, 20),
    "white": (248, 248, 248),
    "black": (12, 12, 12),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")

CLASS_NAMES: list[str] = [f"{c} {s}" for c in COLOURS for s in SHAPES]
NUM_CLASSES = len(CLASS_NAMES)

RENDER_SIZE = 80
COLOUR_JITTER = 12
#: Minimum RGB Euclidean distance between any background colour and the shape's prototype colour.
MIN_BG_DISTANCE = 150.0

#: Seed of the training stream (train.py). Never used for evaluation.
TRAIN_SEED = 0
#: Seed of the held-out evaluation split. Never used for training.
HELDOUT_SEED = 20_240_917

#: All caption templates used in training: open_clip's 80 OpenAI prompts + its 7 "simple" prompts.
TEMPLATES: tuple = tuple(OPENAI_IMAGENET_TEMPLATES) + tuple(SIMPLE_IMAGENET_TEMPLATES)
#: Default template set for zero-shot evaluation (open_clip's 7 simple ImageNet prompts).
ZERO_SHOT_TEMPLATES: tuple = tuple(SIMPLE_IMAGENET_TEMPLATES)

RngLike = Union[np.random.Generator, int, None]


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def class_of(class_index: int) -> tuple[str, str]:
    """``(colour, shape)`` of a label index."""
    name = CLASS_NAMES[class_index]
    colour, shape = name.split(" ")
    return colour, shape


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    if size not in _GRIDS:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size - 1) - np.float32(0.5)
        _GRIDS[size] = (yy, xx)
    return _GRIDS[size]


def _background(rgb: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Float HxWx3 textured background whose colours all stay far from ``rgb``."""

    def far_colour() -> np.ndarray:
        while True:
            c = rng.uniform(0, 255, size=3)
            # pull towards grey a bit so backgrounds are less saturated than the shapes
            c = 0.65 * c + 0.35 * c.mean()
            if np.linalg.norm(c - rgb) >= MIN_BG_DISTANCE:
                return c

    c0 = far_colour()
    while True:  # second gradient colour: near c0, also far from the shape colour
        c1 = np.clip(c0 + rng.uniform(-50, 50, size=3), 0, 255)
        if np.linalg.norm(c1 - rgb) >= MIN_BG_DISTANCE:
            break
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = _grid(size)
    t = (np.float32(np.cos(ang)) * xx + np.float32(np.sin(ang)) * yy) + np.float32(0.5)
    t = np.clip(t, 0, 1)[..., None]
    bg = (1 - t) * c0.astype(np.float32) + t * c1.astype(np.float32)
    bg += rng.standard_normal(size=(size, size, 3), dtype=np.float32) * np.float32(10)
    return bg


def _polygon(shape: str, cx: float, cy: float, r: float, theta: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(r, 45 + 90 * k) for k in range(4)]
    elif shape == "triangle":
        pts = [(r, 90 + 120 * k) for k in range(3)]
    elif shape == "star":
        pts = [(r if k % 2 == 0 else 0.42 * r, 90 + 36 * k) for k in range(10)]
    elif shape == "cross":
        w = 0.32 * r
        xy = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r),
              (-w, -r), (-w, -w), (-r, -w), (-r, w), (-w, w), (-w, r)]
        pts = [(math.hypot(x, y), math.degrees(math.atan2(y, x))) for x, y in xy]
    else:
        raise ValueError(shape)
    out = []
    for rad, deg in pts:
        a = math.radians(deg) + theta
        out.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
    return out


def render(class_index: int, rng: RngLike = None, size: int = RENDER_SIZE) -> Image.Image:
    """Render one RGB image of class ``class_index``; all randomness comes from ``rng``."""
    rng = _rng(rng)
    colour, shape = class_of(class_index)
    proto = np.asarray(COLOURS[colour], dtype=np.float64)
    img = Image.fromarray(np.clip(_background(proto, rng, size), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)

    fill = tuple(int(v) for v in np.clip(proto + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255))
    r = rng.uniform(0.28, 0.38) * size
    margin = r + 2
    cx, cy = rng.uniform(margin, size - margin, size=2)
    theta = rng.uniform(-0.35, 0.35)  # a tilt, not a spin: at 64 px a spun square reads as a triangle
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(3, int(round(0.34 * r))))
    else:
        draw.polygon(_polygon(shape, cx, cy, r, theta), fill=fill)

    for _ in range(int(rng.integers(0, 5))):  # tiny distractor specks
        sx, sy = rng.uniform(0, size, size=2)
        sr = rng.uniform(0.6, 1.6)
        speck = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=speck)

    arr = np.asarray(img, dtype=np.float32) + rng.standard_normal(size=(size, size, 3), dtype=np.float32) * np.float32(4)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def balanced_labels(n: int, rng: RngLike) -> list[int]:
    """``n`` labels, each class ``n // NUM_CLASSES`` or one more times, in random order."""
    rng = _rng(rng)
    labels = np.arange(n) % NUM_CLASSES
    rng.shuffle(labels)
    return [int(v) for v in labels]


def make_split(n: int, seed: int = HELDOUT_SEED) -> tuple[list[Image.Image], list[int]]:
    """A class-balanced split of ``n`` images with labels, fully determined by ``(n, seed)``.

    Use ``seed=HELDOUT_SEED`` (the default) for evaluation; training uses other seeds.
    """
    rng = np.random.default_rng(seed)
    labels = balanced_labels(n, rng)
    images = [render(y, rng) for y in labels]
    return images, labels


def caption(class_index: int, rng: RngLike = None, templates: Sequence = TEMPLATES) -> str:
    """A caption for the class: a random open_clip prompt template applied to the class name."""
    rng = _rng(rng)
    t = templates[int(rng.integers(len(templates)))]
    name = CLASS_NAMES[class_index]
    return t.format(name) if isinstance(t, str) else t(name)


def write_labels(path) -> None:
    """Write ``CLASS_NAMES`` one per line (the shipped ``labels.txt``)."""
    from pathlib import Path

    Path(path).write_text("\n".join(CLASS_NAMES) + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m assets.tiny_clip.shapes OUT.png : a contact sheet of all classes
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "shapes_sheet.png"
    rng = np.random.default_rng(0)
    sheet = Image.new("RGB", (len(SHAPES) * RENDER_SIZE, len(COLOURS) * RENDER_SIZE))
    for i in range(NUM_CLASSES):
        sheet.paste(render(i, rng), ((i % len(SHAPES)) * RENDER_SIZE, (i // len(SHAPES)) * RENDER_SIZE))
    sheet.save(out)
    print(out)
