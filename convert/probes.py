"""Fixed, seeded inputs on which every artifact is compared with the fp32 reference."""
from __future__ import annotations

import random
from collections.abc import Sequence

import torch

PROBE_SENTENCES = (
    "a photo of a dog.",
    "A red circle on a noisy blue background",
    "two cats sleeping on a sofa, seen from above",
    "the quick brown fox jumps over the lazy dog " * 3,
    "",
    "¿Dónde está la biblioteca? 東京タワー 🚀",
    "a diagram of a transformer model, with 12 layers and 768-dim tokens",
    "night sky",
)


def probe_pil_images(n: int = 8, seed: int = 0):
    """``n`` varied RGB images: smooth colour fields with random shapes, odd sizes and aspect ratios."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    images = []
    for i in range(n):
        w, h = rng.choice([(224, 224), (320, 240), (181, 257), (96, 96), (640, 480), (300, 500)])
        img = Image.new("RGB", (8, 8))
        img.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(64)])
        img = img.resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(1, 4)):
            x0, y0 = rng.randrange(w), rng.randrange(h)
            x1, y1 = x0 + rng.randint(w // 8, w // 2), y0 + rng.randint(h // 8, h // 2)
            colour = tuple(rng.randrange(256) for _ in range(3))
            shape = rng.choice(["ellipse", "rectangle", "polygon"])
            if shape == "polygon":
                draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
            else:
                getattr(draw, shape)([x0, y0, x1, y1], fill=colour)
        if i % 2:
            img = img.filter(ImageFilter.GaussianBlur(1.5))
        images.append(img)
    return images


def preprocess_transform(preprocess: dict):
    """open_clip's own eval transform for a manifest ``preprocess`` block (the reference path)."""
    from open_clip.transform import image_transform

    size = preprocess["image_size"]
    return image_transform(
        tuple(size) if size[0] != size[1] else size[0], is_train=False, mean=tuple(preprocess["mean"]),
        std=tuple(preprocess["std"]), interpolation=preprocess["interpolation"],
        resize_mode=preprocess["resize_mode"], fill_color=preprocess["fill_color"],
    )


def probe_images(preprocess: dict, n: int = 8, seed: int = 0) -> torch.Tensor:
    transform = preprocess_transform(preprocess)
    return torch.stack([transform(img) for img in probe_pil_images(n, seed)])


def probe_texts(labels: Sequence[str] | None = None) -> list[str]:
    texts = list(PROBE_SENTENCES)
    if labels:
        texts += [f"a photo of a {label}." for label in list(labels)[:8]]
    return texts
