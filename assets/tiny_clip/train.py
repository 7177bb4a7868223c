"""Train the built-in tiny CLIP (``kit-tiny-clip``) on procedural colour x shape data, on CPU.

    python -m assets.tiny_clip.train [--steps N] [--out PATH] [--seed S] [--eval-n N]

Reproducible: the model init is seeded with ``torch.manual_seed(seed)``, the data stream is a
``numpy`` generator seeded with ``TRAIN_SEED + seed`` (never the held-out seed), and the run uses a
fixed number of threads (2). The model is built by open_clip from ``kit-tiny-clip.json``; inputs go
through open_clip's own eval preprocess (resize 80 -> 64, centre crop, OpenAI mean/std; the
generator already randomises position/size/tilt/colour/background so no extra augmentation is
used) and open_clip's tokenizer (context length 32).

Loss: CLIP's symmetric InfoNCE, but with label-aware soft targets. A class-balanced batch larger than
48 holds some classes twice (the default 48 holds each once), so the usual one-hot "diagonal" target would
push apart image/caption pairs that describe the same class. Instead every same-class pair is a
positive: the target row for image i is uniform over all captions j with y_j == y_i (and vice
versa for text), and the loss is the cross entropy against those soft targets.

At the end the fp32 model is evaluated zero-shot (open_clip's ``build_zero_shot_classifier`` over
the 7 SIMPLE_IMAGENET_TEMPLATES) on a held-out split (``HELDOUT_SEED``), the state dict is saved in
fp16 (it loads back through ``open_clip.create_model_and_transforms(name, pretrained=path)``), and
``train_log.json`` records steps, time, accuracy, command, versions and the checkpoint sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from assets import TINY_CHECKPOINT, TINY_LABELS, TINY_MODEL_NAME, register_tiny_model
from assets.tiny_clip import shapes

DEFAULTS = dict(steps=3000, batch_size=48, lr=3e-3, weight_decay=0.1, warmup=100, seed=0, threads=2)


def build(seed: int = 0):
    """Fresh (seeded) ``kit-tiny-clip`` model, its eval preprocess and its tokenizer."""
    register_tiny_model()
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(TINY_MODEL_NAME)
    return model, preprocess, tokenizer


def soft_clip_loss(img: torch.Tensor, txt: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor):
    """Symmetric contrastive loss where every same-class (image, caption) pair is a positive."""
    logits = logit_scale.exp() * img @ txt.T
    same = (labels[:, None] == labels[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)  # symmetric matrix: same target for both directions
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in n or "embedding" in n else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _batch(rng: np.random.Generator, batch_size: int, preprocess, tokenizer):
    labels = shapes.balanced_labels(batch_size, rng)
    images = torch.stack([preprocess(shapes.render(y, rng)) for y in labels])
    texts = tokenizer([shapes.caption(y, rng) for y in labels])
    return images, texts, torch.tensor(labels)


@torch.no_grad()
def zero_shot_accuracy(model, preprocess, tokenizer, images, labels,
                       classnames: Sequence[str] = shapes.CLASS_NAMES,
                       templates: Sequence = shapes.ZERO_SHOT_TEMPLATES, batch_size: int = 256) -> float:
    """fp32 zero-shot top-1 of ``model`` on (PIL ``images``, int ``labels``)."""
    model.eval()
    head = open_clip.build_zero_shot_classifier(model, tokenizer, classnames, templates,
                                                num_classes_per_batch=None)
    correct = 0
    for i in range(0, len(images), batch_size):
        x = torch.stack([preprocess(im) for im in images[i:i + batch_size]])
        feats = model.encode_image(x, normalize=True)
        pred = (feats @ head).argmax(dim=1)
        correct += (pred == torch.tensor(labels[i:i + batch_size])).sum().item()
    return correct / len(images)


def train(steps: int = DEFAULTS["steps"], seed: int = DEFAULTS["seed"], batch_size: int = DEFAULTS["batch_size"],
          lr: float = DEFAULTS["lr"], weight_decay: float = DEFAULTS["weight_decay"],
          warmup: int = DEFAULTS["warmup"], threads: Optional[int] = DEFAULTS["threads"],
          log_every: int = 100, log: Callable[[str], None] = print):
    """Train a fresh model for ``steps`` steps. Returns ``(model, preprocess, tokenizer, losses)``."""
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # denormals can make CPU training steps several times slower
    model, preprocess, tokenizer = build(seed)
    model.train()
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = min(warmup, max(1, steps // 10))

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 0
        if step < warmup:
            return lr * (step + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    rng = np.random.default_rng(shapes.TRAIN_SEED + seed)
    assert shapes.TRAIN_SEED + seed != shapes.HELDOUT_SEED
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        images, texts, labels = _batch(rng, batch_size, preprocess, tokenizer)
        img = model.encode_image(images, normalize=True)
        txt = model.encode_text(texts, normalize=True)
        loss = soft_clip_loss(img, txt, labels, model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # as in CLIP: cap the temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            log(f"step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f} "
                f"scale {model.logit_scale.exp().item():.1f} lr {lr_at(step):.2e} {time.time() - t0:.0f}s")
    model.eval()
    return model, preprocess, tokenizer, losses


def save_fp16(model, path: Path) -> str:
    """Save the state dict with floating tensors in fp16; returns its sha256."""
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m assets.tiny_clip.train", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--out", type=Path, default=TINY_CHECKPOINT)
    p.add_argument("--log", type=Path, default=None, help="train log JSON (default: train_log.json beside --out)")
    p.add_argument("--eval-n", type=int, default=2400, help="held-out images for the final zero-shot eval")
    p.add_argument("--min-top1", type=float, default=0.95, help="exit 1 if held-out top-1 is below this")
    a = p.parse_args(argv)

    shapes.write_labels(TINY_LABELS)
    t0 = time.time()
    model, _, _, losses = train(steps=a.steps, seed=a.seed, batch_size=a.batch_size, lr=a.lr)
    train_seconds = time.time() - t0
    sha = save_fp16(model, a.out)

    # evaluate what ships: reload the fp16 checkpoint through open_clip (into an fp32 model)
    register_tiny_model()
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL_NAME, pretrained=str(a.out))
    tokenizer = open_clip.get_tokenizer(TINY_MODEL_NAME)
    images, labels = shapes.make_split(a.eval_n, shapes.HELDOUT_SEED)
    top1 = zero_shot_accuracy(model, preprocess, tokenizer, images, labels)
    total_seconds = time.time() - t0

    record = {
        "model": TINY_MODEL_NAME,
        "command": "python -m assets.tiny_clip.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed,
        "train_seconds": round(train_seconds, 1), "total_seconds": round(total_seconds, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "heldout": {"seed": shapes.HELDOUT_SEED, "n": a.eval_n, "templates": "SIMPLE_IMAGENET_TEMPLATES",
                    "precision": "fp32 (from the fp16 checkpoint)", "top1": round(top1, 4)},
        "checkpoint": {"file": a.out.name, "bytes": a.out.stat().st_size, "sha256": sha, "dtype": "float16"},
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(), "machine": platform.machine(),
    }
    log_path = a.log or a.out.with_name("train_log.json")
    log_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    if top1 < a.min_top1:
        print(f"held-out top-1 {top1:.4f} < {a.min_top1}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
