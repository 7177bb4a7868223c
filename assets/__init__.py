"""Shipped assets of clip-mobile-kit: paths, and registration of the built-in tiny CLIP.

The built-in model ``kit-tiny-clip`` is a small open_clip CLIP trained offline on the
procedural colour x shape data of :mod:`assets.tiny_clip.shapes` (see ``tiny_clip/train.py``).
After :func:`register_tiny_model` it is an ordinary open_clip model::

    from assets import register_tiny_model, TINY_MODEL_NAME, TINY_CHECKPOINT
    register_tiny_model()
    model, _, preprocess = open_clip.create_model_and_transforms(
        TINY_MODEL_NAME, pretrained=str(TINY_CHECKPOINT))
    tokenizer = open_clip.get_tokenizer(TINY_MODEL_NAME)
"""
from __future__ import annotations

from pathlib import Path

ASSETS_DIR: Path = Path(__file__).resolve().parent
TINY_DIR: Path = ASSETS_DIR / "tiny_clip"
TINY_MODEL_NAME = "kit-tiny-clip"
TINY_CONFIG: Path = TINY_DIR / f"{TINY_MODEL_NAME}.json"
TINY_CHECKPOINT: Path = TINY_DIR / f"{TINY_MODEL_NAME}.pt"
TINY_LABELS: Path = TINY_DIR / "labels.txt"
TINY_TRAIN_LOG: Path = TINY_DIR / "train_log.json"

__all__ = [
    "ASSETS_DIR", "TINY_DIR", "TINY_MODEL_NAME", "TINY_CONFIG", "TINY_CHECKPOINT",
    "TINY_LABELS", "TINY_TRAIN_LOG", "register_tiny_model", "tiny_labels",
]


def register_tiny_model() -> str:
    """Make ``kit-tiny-clip`` known to open_clip (model config + tokenizer). Idempotent.

    Returns the model name.
    """
    import open_clip

    if TINY_MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(TINY_CONFIG)
    return TINY_MODEL_NAME


def tiny_labels() -> list[str]:
    """Class names of the tiny model's data, in label-index order (from ``labels.txt``)."""
    return [ln.strip() for ln in TINY_LABELS.read_text(encoding="utf-8").splitlines() if ln.strip()]
