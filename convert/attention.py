"""Replace ``nn.MultiheadAttention`` by explicit Linear projections, with identical numerics.

Dynamic quantization only reaches ``nn.Linear`` modules; ``nn.MultiheadAttention`` keeps its
``in_proj_weight`` as a bare Parameter (and its ``out_proj`` is a ``NonDynamicallyQuantizableLinear``),
which is why the paper's 343 MB model still carried every attention weight in fp32. The module below
computes the same function with an ``in_proj`` Linear (q, k, v stacked, as MHA stores them) and an
``out_proj`` Linear, so quantization sees them.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class ExplicitSelfAttention(nn.Module):
    """Batch-first multi-head self-attention with plain Linear projections.

    Call-compatible with the way open_clip's ``ResidualAttentionBlock`` calls ``nn.MultiheadAttention``
    (``attn(q, k, v, need_weights=False, attn_mask=mask)[0]``). Only self-attention is supported: the
    replacement is applied only where key and value are the query, so ``key``/``value`` are ignored.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> "ExplicitSelfAttention":
        """Copy the weights of a self-attention ``nn.MultiheadAttention`` (batch_first, no bias_k/v)."""
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn or not mha.batch_first:
            raise ValueError("only batch-first self-attention MHA without bias_k/bias_v can be replaced")
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, bias=bias)
        with torch.no_grad():
            new.in_proj.weight.copy_(mha.in_proj_weight)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if bias:
                new.in_proj.bias.copy_(mha.in_proj_bias)
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.train(mha.training)

    def forward(
        self,
        query: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        value: Optional[torch.Tensor] = None,
        need_weights: bool = False,
        attn_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        batch, length, _ = query.shape
        qkv = self.in_proj(query).reshape(batch, length, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # [3, B, H, L, hd]
        q, k, v = qkv[0], qkv[1], qkv[2]
        # One fused kernel for scale, q @ k.T, mask, softmax and @ v (what nn.MultiheadAttention itself calls
        # when need_weights=False). Measured on ViT-B-32 shapes (2 threads): the attention core alone 0.79-0.85x
        # the explicit ops; it scripts, survives optimize_for_mobile and runs in torch 2.1.0's lite runtime.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(batch, length, self.embed_dim)
        return self.out_proj(out), None


def unfold_attention(module: nn.Module) -> int:
    """Replace, in place, every self-attention ``nn.MultiheadAttention`` below ``module``.

    Blocks that do cross-attention (open_clip's ``ln_1_kv``) and attentional poolers keep their MHA.
    Returns how many were replaced.
    """
    count = 0
    for parent in list(module.modules()):
        attn = getattr(parent, "attn", None)
        if isinstance(attn, nn.MultiheadAttention) and not hasattr(parent, "ln_1_kv"):
            try:
                parent.attn = ExplicitSelfAttention.from_mha(attn)
            except ValueError:
                continue
            count += 1
    return count


class QKVLinear(nn.Module):
    """``in_proj`` as three Linears (``q``, ``k``, ``v``: the rows of the stacked weight), for torch.export.

    XNNPACK takes no ``select`` or ``split``, so slicing one stacked projection's output would cut every
    attention block out of its delegate; three Linears (as ExecuTorch's own llama example writes
    attention) keep the block in one. Per-channel int8 weights are the same numbers either way (a row's
    scale is its own); per-tensor ones get a scale per projection instead of one for the three.
    """

    def __init__(self, in_proj: nn.Linear) -> None:
        super().__init__()
        width = in_proj.out_features // 3
        bias = in_proj.bias is not None
        self.q, self.k, self.v = (nn.Linear(in_proj.in_features, width, bias=bias) for _ in range(3))
        with torch.no_grad():
            for i, linear in enumerate((self.q, self.k, self.v)):
                linear.weight.copy_(in_proj.weight[i * width:(i + 1) * width])
                if bias:
                    linear.bias.copy_(in_proj.bias[i * width:(i + 1) * width])


class ExportSelfAttention(nn.Module):
    """:class:`ExplicitSelfAttention` written for torch.export and XNNPACK (the ``.pte`` path), same function.

    Every reshape has at most one inferred dimension and no symbolic one (XNNPACK's reshape takes neither),
    so the batch must be static (the ``.pte`` towers take one input a call, as a phone does) while the
    sequence length may vary; the core is bmm, add, softmax, bmm: ``scaled_dot_product_attention``'s export
    decomposition masks fully-masked rows with any/where/full_like, which XNNPACK cannot take.
    """

    def __init__(self, attention: ExplicitSelfAttention) -> None:
        super().__init__()
        self.embed_dim = attention.embed_dim
        self.num_heads = attention.num_heads
        self.head_dim = attention.head_dim
        self.scale = attention.scale
        self.in_proj = QKVLinear(attention.in_proj)
        self.out_proj = attention.out_proj

    def _heads(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        # [B, L, E] -> [B * H, L, hd]
        x = x.reshape(batch, -1, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        return x.reshape(batch * self.num_heads, -1, self.head_dim)

    def forward(self, query: torch.Tensor, key: Optional[torch.Tensor] = None, value: Optional[torch.Tensor] = None,
                need_weights: bool = False, attn_mask: Optional[torch.Tensor] = None):
        batch = query.shape[0]
        q = self._heads(self.in_proj.q(query) * self.scale, batch)
        k = self._heads(self.in_proj.k(query), batch)
        v = self._heads(self.in_proj.v(query), batch)
        scores = torch.bmm(q, k.transpose(1, 2))
        if attn_mask is not None:
            scores = scores + attn_mask
        out = torch.bmm(torch.softmax(scores, dim=-1), v)
        out = out.reshape(batch, self.num_heads, -1, self.head_dim).permute(0, 2, 1, 3)
        return self.out_proj(out.reshape(batch, -1, self.embed_dim)), None


def attention_for_export(module: nn.Module) -> int:
    """Replace, in place, every :class:`ExplicitSelfAttention` below ``module`` by its
    :class:`ExportSelfAttention` form. Returns how many were replaced."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ExplicitSelfAttention):
                setattr(parent, name, ExportSelfAttention(child))
                count += 1
    return count
