"""The built-in tiny CLIP: data generator, shipped checkpoint, accuracy floor, training entry point."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from assets import TINY_CHECKPOINT, TINY_CONFIG, TINY_LABELS, TINY_MODEL_NAME, register_tiny_model, tiny_labels  # noqa: E402
from assets.tiny_clip import shapes  # noqa: E402


def _pixels(images):
    return np.stack([np.asarray(im) for im in images])


def test_generator_is_deterministic_by_seed():
    a_imgs, a_labels = shapes.make_split(96, seed=123)
    b_imgs, b_labels = shapes.make_split(96, seed=123)
    c_imgs, c_labels = shapes.make_split(96, seed=124)
    assert a_labels == b_labels
    assert np.array_equal(_pixels(a_imgs), _pixels(b_imgs))
    assert not np.array_equal(_pixels(a_imgs), _pixels(c_imgs))
    im = a_imgs[0]
    assert im.mode == "RGB" and im.size == (shapes.RENDER_SIZE, shapes.RENDER_SIZE)


def test_render_accepts_int_seed_and_generator():
    assert np.array_equal(np.asarray(shapes.render(5, 7)), np.asarray(shapes.render(5, np.random.default_rng(7))))


def test_split_is_class_balanced():
    n = shapes.NUM_CLASSES * 3 + 5
    _, labels = shapes.make_split(n, seed=1)
    counts = np.bincount(labels, minlength=shapes.NUM_CLASSES)
    assert counts.min() >= 3 and counts.max() <= 4 and counts.sum() == n


def test_classes_and_labels_file():
    assert shapes.NUM_CLASSES == len(shapes.COLOURS) * len(shapes.SHAPES) == 48
    assert len(set(shapes.CLASS_NAMES)) == shapes.NUM_CLASSES
    assert shapes.CLASS_NAMES[0] == "red circle"
    assert tiny_labels() == shapes.CLASS_NAMES
    assert TINY_LABELS.read_text(encoding="utf-8").splitlines() == shapes.CLASS_NAMES
    assert shapes.HELDOUT_SEED != shapes.TRAIN_SEED


def test_captions_use_open_clip_templates():
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    rng = np.random.default_rng(0)
    caps = {shapes.caption(3, rng) for _ in range(50)}
    assert len(caps) > 10 and all(shapes.CLASS_NAMES[3] in c for c in caps)
    assert shapes.caption(3, 0, templates=SIMPLE_IMAGENET_TEMPLATES[:1]) == f"itap of a {shapes.CLASS_NAMES[3]}."


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(2)
    register_tiny_model()
    register_tiny_model()  # idempotent
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL_NAME, pretrained=str(TINY_CHECKPOINT))
    tokenizer = open_clip.get_tokenizer(TINY_MODEL_NAME)
    return model.eval(), preprocess, tokenizer


def test_checkpoint_is_small_fp16_and_config_is_nondefault():
    import json

    assert TINY_CHECKPOINT.stat().st_size <= 10 * 1024 * 1024
    sd = torch.load(TINY_CHECKPOINT, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    cfg = json.loads(TINY_CONFIG.read_text())
    assert cfg["vision_cfg"]["image_size"] == 64 and cfg["text_cfg"]["context_length"] == 32


def test_checkpoint_loads_by_name_and_embeds(tiny):
    model, preprocess, tokenizer = tiny
    embed_dim = model.text_projection.shape[1]
    assert embed_dim == 64
    assert any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    images, _ = shapes.make_split(8, seed=5)
    x = torch.stack([preprocess(im) for im in images])
    assert x.shape == (8, 3, 64, 64)
    t = tokenizer(["a photo of a red circle.", "a blue star"])
    assert t.shape == (2, 32)
    with torch.no_grad():
        fi = model.encode_image(x, normalize=True)
        ft = model.encode_text(t, normalize=True)
    for f, n in ((fi, 8), (ft, 2)):
        assert f.shape == (n, embed_dim) and torch.isfinite(f).all()
        assert torch.allclose(f.norm(dim=-1), torch.ones(n), atol=1e-4)


def test_zero_shot_accuracy_on_heldout(tiny):
    from assets.tiny_clip.train import zero_shot_accuracy

    model, preprocess, tokenizer = tiny
    images, labels = shapes.make_split(240, seed=shapes.HELDOUT_SEED)
    top1 = zero_shot_accuracy(model, preprocess, tokenizer, images, labels)
    assert top1 >= 0.9, top1  # chance is 1/48


def test_train_runs_a_few_steps():
    from assets.tiny_clip.train import train

    model, preprocess, tokenizer, losses = train(steps=3, seed=1, batch_size=16, log_every=0)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
