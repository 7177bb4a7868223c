"""Thin, scriptable tower modules around an open_clip model.

open_clip's ``CLIP.encode_text`` (and scripting a wrapper around the whole model) breaks after
``quantize_dynamic`` because ``Transformer.get_cast_dtype`` reads ``.weight`` of the first block's MLP,
which a ``DynamicQuantizedLinear`` no longer has as a tensor. These towers never ask for a cast dtype:
they compute exactly what ``encode_image`` / ``encode_text`` (``normalize=False``) compute in fp32,
with the output projections (bare Parameters in open_clip) as Linear modules so quantization can reach
them.
"""

import copy
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .attention import unfold_attention
from .config import QuantConfig
from .errors import ModelError
from .packing import defer_packing
from .quantize import QuantReport, check_patterns, quantize_tower, use_full_range

ENCODER_ROLES = ("image_encoder", "text_encoder")


def linear_from_matrix(matrix: torch.Tensor) -> nn.Linear:
    """``x @ matrix`` as an ``nn.Linear`` (no bias)."""
    linear = nn.Linear(matrix.shape[0], matrix.shape[1], bias=False)
    with torch.no_grad():
        linear.weight.copy_(matrix.detach().t())
    return linear


def _projection(proj) -> nn.Module:
    if proj is None:
        return nn.Identity()
    if isinstance(proj, nn.Linear):
        return copy.deepcopy(proj)
    return linear_from_matrix(proj)



class PatchLinear(nn.Module):
    """A patch-embedding convolution whose stride equals its kernel, computed as a Linear over patches.

    Output layout equals the convolution's ([B, C_out, H/p, W/p]) so the owning vision tower runs
    unchanged; the Linear is what dynamic quantization can reach.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        kh, kw = conv.kernel_size
        if (
            conv.stride != conv.kernel_size or conv.padding not in ((0, 0), "valid")
            or conv.dilation != (1, 1) or conv.groups != 1
        ):
            raise ValueError("only a non-overlapping, unpadded, ungrouped patch convolution is a Linear")
        self.kh = kh
        self.kw = kw
        self.out_channels = conv.out_channels
        self.linear = nn.Linear(conv.in_channels * kh * kw, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight.reshape(conv.out_channels, -1))
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        gh = height // self.kh
        gw = width // self.kw
        x = x[:, :, : gh * self.kh, : gw * self.kw]
        x = x.reshape(batch, channels, gh, self.kh, gw, self.kw).permute(0, 2, 4, 1, 3, 5)
        x = self.linear(x.reshape(batch, gh * gw, channels * self.kh * self.kw))
        return x.permute(0, 2, 1).reshape(batch, self.out_channels, gh, gw)


class ImageEncoder(nn.Module):
    """``image [B, 3, H, W] -> embedding [B, D]``, equal to open_clip's ``encode_image``."""

    def __init__(self, visual: nn.Module, proj: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.proj = proj

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(self.visual(image))


class TextEncoder(nn.Module):
    """``tokens [B, context_length] (int64) -> embedding [B, D]``, equal to open_clip's ``encode_text``."""

    pool_type: torch.jit.Final[str]
    eos_id: torch.jit.Final[int]
    truncate: torch.jit.Final[bool]

    def __init__(
        self,
        token_embedding: nn.Module,
        positional_embedding: torch.Tensor,
        transformer: nn.Module,
        ln_final: nn.Module,
        attn_mask: Optional[torch.Tensor],
        projection: nn.Module,
        pool_type: str,
        eos_id: int,
        truncate: bool = False,
    ) -> None:
        super().__init__()
        if pool_type not in ("argmax", "eos", "first", "last"):
            raise ModelError(f"text pooling {pool_type!r} is not supported (argmax, eos, first, last)")
        self.token_embedding = token_embedding
        self.register_buffer("positional_embedding", positional_embedding.detach().clone())
        self.transformer = transformer
        self.ln_final = ln_final
        self.register_buffer("attn_mask", None if attn_mask is None else attn_mask.detach().clone())
        self.projection = projection
        self.pool_type = pool_type
        self.eos_id = eos_id
        # With a causal mask a token never sees the ones after it, so the pooled end-of-text token is the
        # same (in fp32) whether or not the padding after it is computed: ``truncate`` computes up to the
        # batch's last end-of-text token only.
        if truncate and not (pool_type in ("argmax", "eos") and attn_mask is not None and is_causal_mask(attn_mask)):
            raise ModelError("truncate_text needs a causal text tower pooled at its end-of-text token; "
                             f"this one pools {pool_type!r} with {'a non-causal' if attn_mask is not None else 'no'} mask")
        self.truncate = truncate

    def pool_index(self, text: torch.Tensor) -> torch.Tensor:
        """The position each row is pooled at (its end-of-text token, or the first)."""
        if self.pool_type == "argmax":
            return text.argmax(dim=-1)
        if self.pool_type == "eos":
            return (text == self.eos_id).int().argmax(dim=-1)
        return torch.zeros(text.shape[0], dtype=torch.long, device=text.device)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        index = self.pool_index(text)
        mask = self.attn_mask
        if self.truncate and text.shape[0] > 0:
            text = text[:, :int(index.max()) + 1]
        if mask is not None:
            # as open_clip does: a shorter input (or the truncation above) uses the mask's leading block
            mask = mask[:text.shape[1], :text.shape[1]]
        return self.encode(text, index, mask)

    def encode(self, text: torch.Tensor, index: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The tower after pooling positions and mask are known (shared by :class:`ExportTextEncoder`)."""
        x = self.token_embedding(text)
        x = x + self.positional_embedding[: x.shape[1]]
        x = self.transformer(x, attn_mask=mask)
        x = self.ln_final(x)
        rows = torch.arange(x.shape[0], device=x.device)
        if self.pool_type == "argmax" or self.pool_type == "eos":
            pooled = x[rows, index]
        elif self.pool_type == "first":
            pooled = x[:, 0]
        else:
            pooled = x[:, -1]
        return self.projection(pooled)


class ExportTextEncoder(nn.Module):
    """A :class:`TextEncoder` as torch.export takes it (the ``.pte`` path): one prompt of any length up to the
    context, cut by the caller after its end-of-text token (``deploy`` does, as the ``.ptl`` tower does inside).

    Slicing the stored mask to a symbolic length makes torch.export guard that length away from the full
    context (a strided view is contiguous only at full size), so a causal mask is built for the input's
    length instead: the same values as open_clip's slice.
    """

    def __init__(self, tower: TextEncoder) -> None:
        super().__init__()
        self.tower = tower
        self.causal = tower.attn_mask is not None and is_causal_mask(tower.attn_mask)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        mask = self.tower.attn_mask
        length = text.shape[1]
        if self.causal:
            mask = torch.triu(torch.full((length, length), float("-inf")), diagonal=1)
        elif mask is not None:
            mask = mask[:length, :length]
        return self.tower.encode(text, self.tower.pool_index(text), mask)


def is_causal_mask(mask: torch.Tensor) -> bool:
    """True when ``mask`` is an additive causal mask: 0 on and below the diagonal, -inf above it."""
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    upper = torch.triu(torch.ones_like(mask, dtype=torch.bool), diagonal=1)
    return bool(torch.all(mask[~upper] == 0)) and bool(torch.all(torch.isneginf(mask[upper])))


def work_shape(tower: nn.Module, context_length: int) -> dict | None:
    """How much a call of ``tower`` computes, for a runtime that sizes its thread count per call
    (``deploy.threads``): the transformer's ``width`` and its token rows per input (image: patches + class
    token; text: the context length, or up to the last end-of-text token when the tower truncates).
    ``None`` for towers this cannot be read from (the runtime then uses every thread it is given)."""
    if isinstance(tower, ImageEncoder):
        visual = tower.visual
        width = getattr(getattr(visual, "transformer", None), "width", None)
        positions = getattr(visual, "positional_embedding", None)
        if not isinstance(width, int) or not isinstance(positions, torch.Tensor) or positions.dim() != 2:
            return None
        return {"width": width, "rows_per_input": int(positions.shape[0])}
    if isinstance(tower, TextEncoder):
        width = getattr(tower.transformer, "width", None)
        if not isinstance(width, int):
            return None
        return {"width": width, "rows_per_input": int(context_length), "rows_end_at_eot": bool(tower.truncate)}
    return None


def build_image_encoder(model: nn.Module, attention: bool = True, patch: bool = True) -> ImageEncoder:
    """A deep-copied, fp32 image tower; ``attention``/``patch`` unfold MHA and the patch conv."""
    visual = copy.deepcopy(model.visual)
    if getattr(visual, "output_tokens", False):
        raise ModelError("vision towers that output tokens are not supported")
    proj = _projection(getattr(visual, "proj", None))
    if hasattr(visual, "proj"):
        visual.proj = None
    if patch and isinstance(getattr(visual, "conv1", None), nn.Conv2d):
        try:
            visual.conv1 = PatchLinear(visual.conv1)
        except ValueError:
            pass  # an overlapping stem stays a convolution
    if attention:
        unfold_attention(visual)
    return ImageEncoder(visual, proj).eval()


def build_text_encoder(model: nn.Module, attention: bool = True, truncate: bool | None = False) -> TextEncoder:
    """A deep-copied, fp32 text tower (open_clip ``CLIP`` or ``CustomTextCLIP`` with a TextTransformer);
    ``truncate`` skips the padding after the last end-of-text token (see :class:`TextEncoder`); ``None``
    does so exactly where that is exact in fp32 (a causal tower pooled at its end-of-text token)."""
    text = getattr(model, "text", None)
    if text is not None:
        from open_clip.transformer import TextTransformer

        if not isinstance(text, TextTransformer):
            raise ModelError(f"text tower {type(text).__name__} is not supported (open_clip TextTransformer only)")
        if text.cls_emb is not None or text.use_pad_mask:
            raise ModelError("text towers with a class token or pad mask (CoCa-style) are not supported")
        owner, pool_type, eos_id = text, text.pool_type, text.eos_id
    else:
        owner, pool_type, eos_id = model, model.text_pool_type, getattr(model, "text_eos_id", None)
    transformer = copy.deepcopy(owner.transformer)
    if attention:
        unfold_attention(transformer)
    if truncate is None:  # the default: wherever it is exact in fp32
        truncate = pool_type in ("argmax", "eos") and owner.attn_mask is not None and is_causal_mask(owner.attn_mask)
    return TextEncoder(
        token_embedding=copy.deepcopy(owner.token_embedding),
        positional_embedding=owner.positional_embedding,
        transformer=transformer,
        ln_final=copy.deepcopy(owner.ln_final),
        attn_mask=owner.attn_mask,
        projection=_projection(owner.text_projection),
        pool_type=pool_type,
        eos_id=-1 if eos_id is None else int(eos_id),
        truncate=truncate,
    ).eval()


@dataclass
class Towers:
    """The encoders of one recipe: ``fp32`` (structured as the recipe says: attention unfolded, patch
    convolution as a Linear, where those become int8) and ``modules``, what gets exported (int8 where the
    recipe quantizes, else the fp32 tower itself)."""

    fp32: dict[str, nn.Module]
    modules: dict[str, nn.Module]
    reports: dict[str, QuantReport] = field(default_factory=dict)


def build_towers(model: nn.Module, quant: QuantConfig, roles: tuple[str, ...] = ENCODER_ROLES, *,
                 truncate_text: bool | None = False, pack: str = "load", quantize: bool = True) -> Towers:
    """The one recipe -> towers function: wrap ``model``'s encoders per ``quant`` and quantize them.

    Used by the converter, sensitivity analysis, the bench's eager variants, the ONNX peer and the
    benchmarks, so all of them measure the same towers. ``pack='first-call'`` defers fbgemm weight
    packing (``convert.packing``); ``quantize=False`` returns the fp32 towers as ``modules``.
    """
    fp32: dict[str, nn.Module] = {}
    for role in roles:
        if role == "image_encoder":
            fp32[role] = build_image_encoder(model, attention=quant.image and quant.attention == "int8",
                                             patch=quant.image and quant.patch == "int8")
        elif role == "text_encoder":
            fp32[role] = build_text_encoder(model, attention=quant.text and quant.attention == "int8",
                                            truncate=truncate_text)
        else:
            raise ValueError(f"role {role!r} is not an encoder ({', '.join(ENCODER_ROLES)})")
    towers = Towers(fp32=fp32, modules=dict(fp32))
    if not quantize:
        return towers
    if set(roles) == set(ENCODER_ROLES):  # patterns may name either tower: check them against both
        check_patterns(quant, [f"{role}.{name}" for role, tower in fp32.items() for name, _ in tower.named_modules()
                               if name])
    for role, tower in fp32.items():
        if (quant.image if role == "image_encoder" else quant.text):
            towers.modules[role], towers.reports[role] = quantize_encoder(tower, quant, role, pack=pack)
    return towers


def quantize_encoder(tower: nn.Module, quant: QuantConfig, role: str, *, pack: str = "load") -> tuple[nn.Module, QuantReport]:
    """One fp32 tower of :func:`build_towers` -> its int8 module exactly as the converter ships it: dynamic
    int8 per ``quant``, fbgemm packing deferred with ``pack='first-call'``, 8-bit activations with
    ``quant.full_range``. Sensitivity analysis quantizes its per-group variants through here too, so it
    ranks the tower that ships."""
    module, report = quantize_tower(tower, quant, role)
    if pack == "first-call":
        defer_packing(module)
    if quant.full_range:  # refused on a CPU that would saturate (it could not verify the result)
        use_full_range(module, quant.engine)
    return module, report
