"""Running loaded artifacts: batched encoders, class embeddings from the artifact's text encoder, the head."""
from __future__ import annotations

import re
import sys
from typing import Sequence

import torch
import torch.nn.functional as F

from convert.errors import ArtifactError, LabelsError

from .tokenizer import KitTokenizer


def _run(module, x: torch.Tensor, role: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            return module(x)
    except Exception as exc:  # noqa: BLE001 - the interpreters raise C++ errors
        raise ArtifactError(f"{role} failed on input of shape {list(x.shape)} ({' '.join(str(exc).split())[:160]})") from None


def _check_dim(out: torch.Tensor, expected: int, role: str) -> torch.Tensor:
    if out.dim() != 2 or out.shape[-1] != expected:
        raise ArtifactError(f"{role} returns embeddings of shape {list(out.shape)}, the manifest says embed_dim {expected}")
    return out


def encode_images(artifacts, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Unnormalised image embeddings ``[N, D]`` from the artifact's image encoder."""
    if artifacts.image_encoder is None:
        raise ArtifactError(f"{artifacts.directory} has no loaded image_encoder")
    outs = [_run(artifacts.image_encoder, images[i:i + batch_size], "image_encoder") for i in range(0, len(images), batch_size)]
    return _check_dim(torch.cat(outs), artifacts.embed_dim, "image_encoder")


def encode_tokens(artifacts, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    if artifacts.text_encoder is None:
        raise ArtifactError(f"{artifacts.directory} has no text_encoder (needed for text queries and custom labels)")
    outs = [_run(artifacts.text_encoder, tokens[i:i + batch_size], "text_encoder") for i in range(0, len(tokens), batch_size)]
    return _check_dim(torch.cat(outs), artifacts.embed_dim, "text_encoder")


def warn_truncated(texts: Sequence[str], truncated: Sequence[bool], context_length: int, stream=None) -> int:
    """One warning line when texts were truncated to the context length; returns how many."""
    cut = [t for t, flag in zip(texts, truncated) if flag]
    if cut:
        example = cut[0] if len(cut[0]) <= 60 else cut[0][:57] + "..."
        print(f"warning: {len(cut)} text(s) longer than the {context_length}-token context were truncated "
              f"(e.g. {example!r})", file=stream or sys.stderr)
    return len(cut)


def class_embeddings(artifacts, tokenizer: KitTokenizer, labels: Sequence[str], templates: Sequence) -> torch.Tensor:
    """``[C, D]`` normalised class embeddings from the artifact's (quantized) text encoder, the same
    recipe as open_clip's ``build_zero_shot_classifier``: mean of normalised template embeddings,
    renormalised."""
    if not labels:
        raise LabelsError("the label list is empty; give at least one class name")
    prompts = [t.format(label) if isinstance(t, str) else t(label) for label in labels for t in templates]
    tokens, truncated = tokenizer.encode(prompts)
    warn_truncated(prompts, truncated, tokenizer.context_length)
    emb = F.normalize(encode_tokens(artifacts, tokens), dim=-1).reshape(len(labels), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def head_logits(artifacts, embeddings: torch.Tensor) -> torch.Tensor:
    """The shipped zero-shot head on image embeddings, with a clear error when its width differs."""
    head = artifacts.zero_shot_head
    if head is None:
        raise ArtifactError(f"{artifacts.directory} has no zero_shot_head; pass --labels")
    try:
        with torch.no_grad():
            logits = head(embeddings)
    except Exception as exc:  # noqa: BLE001
        detail = " ".join(str(exc).split())
        shapes = re.findall(r"\d+x\d+", detail)
        raise ArtifactError(
            f"zero_shot_head does not fit the image encoder: the image encoder gives {embeddings.shape[-1]}-dim "
            f"embeddings{' (head matmul shapes ' + ' and '.join(shapes[:2]) + ')' if shapes else ''}; "
            "the head comes from another model: reconvert, or pass --labels to build classes with the text encoder"
        ) from None
    labels = artifacts.labels or []
    if logits.dim() != 2 or logits.shape[-1] != len(labels):
        raise ArtifactError(f"zero_shot_head gives {logits.shape[-1]} logits, the manifest lists {len(labels)} labels")
    return logits


def logits_from_weights(embeddings: torch.Tensor, weights: torch.Tensor, scale: float) -> torch.Tensor:
    if weights.shape[-1] != embeddings.shape[-1]:
        raise ArtifactError(
            f"class embeddings are {weights.shape[-1]}-dim, image embeddings {embeddings.shape[-1]}-dim (different models)"
        )
    return scale * F.normalize(embeddings, dim=-1) @ weights.t()
