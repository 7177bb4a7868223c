"""The kit's tower modules against open_clip, and the exactness of the attention / patch rewrites."""
import pytest
import torch
from torch import nn

from convert.attention import ExplicitSelfAttention, unfold_attention
from convert.towers import PatchLinear, build_image_encoder, build_text_encoder

# fp32 rewrites change only the order of float operations.
ATOL = 1e-5


def _model(name):
    import open_clip

    from assets import register_tiny_model

    register_tiny_model()
    torch.manual_seed(0)
    return open_clip.create_model(name).eval()


@pytest.fixture(scope="module")
def tiny():
    return _model("kit-tiny-clip")


@pytest.fixture(scope="module")
def inputs(tiny):
    import open_clip

    torch.manual_seed(1)
    images = torch.randn(3, 3, 64, 64)
    tokens = open_clip.get_tokenizer("kit-tiny-clip")(["a red circle", "", "a photo of a blue star on grass"])
    return images, tokens


@pytest.mark.parametrize("attention,patch", [(False, False), (True, False), (True, True)])
def test_image_tower_matches_encode_image(tiny, inputs, attention, patch):
    _assert_matches(build_image_encoder(tiny, attention=attention, patch=patch), tiny.encode_image, inputs[0])


@pytest.mark.parametrize("attention,truncate", [(False, False), (True, False), (False, True), (True, True)])
def test_text_tower_matches_encode_text(tiny, inputs, attention, truncate):
    _assert_matches(build_text_encoder(tiny, attention=attention, truncate=truncate), tiny.encode_text, inputs[1])


def _assert_matches(tower, reference, x):
    """The tower, eager and scripted, computes open_clip's encoder to ``ATOL``."""
    with torch.no_grad():
        ref = reference(x)
        got = tower(x)
        scripted = torch.jit.script(tower)(x)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(scripted, ref, atol=ATOL, rtol=0)


def test_towers_do_not_modify_the_reference(tiny, inputs):
    images, tokens = inputs
    with torch.no_grad():
        before = tiny.encode_image(images), tiny.encode_text(tokens)
        build_image_encoder(tiny, attention=True, patch=True)
        build_text_encoder(tiny, attention=True)
        after = tiny.encode_image(images), tiny.encode_text(tokens)
    assert isinstance(tiny.visual.conv1, nn.Conv2d)
    assert isinstance(tiny.transformer.resblocks[0].attn, nn.MultiheadAttention)
    torch.testing.assert_close(before, after, atol=0, rtol=0)


def test_open_clip_encode_text_breaks_after_quantization_but_tower_does_not(tiny, inputs):
    """The known obstacle: Transformer.get_cast_dtype reads .weight of a quantized Linear."""
    import copy

    from convert.config import QuantConfig
    from convert.quantize import quantize_tower

    _, tokens = inputs
    quantized_clip = torch.ao.quantization.quantize_dynamic(copy.deepcopy(tiny), {nn.Linear}, dtype=torch.qint8)
    with pytest.raises((AttributeError, TypeError, RuntimeError)):
        quantized_clip.encode_text(tokens)
    tower, _ = quantize_tower(build_text_encoder(tiny), QuantConfig(engine="qnnpack"), "text_encoder")
    with torch.no_grad():
        out = torch.jit.script(tower)(tokens)
    assert out.shape == (3, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("with_mask", [False, True])
def test_explicit_attention_equals_multihead_attention(with_mask):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(48, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    explicit = ExplicitSelfAttention.from_mha(mha)
    x = torch.randn(2, 7, 48)
    mask = torch.full((7, 7), float("-inf")).triu(1) if with_mask else None
    with torch.no_grad():
        ref = mha(x, x, x, need_weights=False, attn_mask=mask)[0]
        got = explicit(x, x, x, need_weights=False, attn_mask=mask)[0]
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


def test_unfold_attention_skips_cross_attention_blocks():
    from open_clip.transformer import ResidualAttentionBlock

    self_block = ResidualAttentionBlock(32, 4)
    cross_block = ResidualAttentionBlock(32, 4, is_cross_attention=True)
    holder = nn.ModuleList([self_block, cross_block])
    assert unfold_attention(holder) == 1
    assert isinstance(self_block.attn, ExplicitSelfAttention)
    assert isinstance(cross_block.attn, nn.MultiheadAttention)


def test_patch_linear_equals_strided_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, kernel_size=8, stride=8, bias=True)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(PatchLinear(conv)(x), conv(x), atol=1e-5, rtol=0)


def test_patch_linear_refuses_overlapping_conv():
    with pytest.raises(ValueError):
        PatchLinear(nn.Conv2d(3, 16, kernel_size=7, stride=2, padding=3))


def test_truncated_text_tower_computes_only_up_to_the_last_end_of_text_token(tiny, inputs):
    """Causal mask: the pooled token never sees the padding after it, so computing the padding is waste."""
    _, tokens = inputs
    tower = build_text_encoder(tiny, truncate=True)
    seen = []
    hook = tower.transformer.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].shape[1]),
                                                       with_kwargs=True)
    with torch.no_grad():
        ref = tiny.encode_text(tokens)
        for i in range(len(tokens)):
            torch.testing.assert_close(tower(tokens[i:i + 1]), ref[i:i + 1], atol=ATOL, rtol=0)
    hook.remove()
    assert seen == [int(t.argmax()) + 1 for t in tokens] and max(seen) < tokens.shape[1]


@pytest.mark.parametrize("truncate", [False, True])
def test_text_tower_accepts_shorter_token_inputs(tiny, inputs, truncate):
    """Any length up to the context: the mask's leading block is used (as open_clip slices it), so a
    [B, L] input equals the full-length one (how the ONNX peer runs at its own length); scripted too."""
    _, tokens = inputs
    tower = torch.jit.script(build_text_encoder(tiny, truncate=truncate))
    length = int(tokens.argmax(dim=-1).max()) + 1
    with torch.no_grad():
        full = tower(tokens)
        short = tower(tokens[:, :length])
    torch.testing.assert_close(short, full, atol=ATOL, rtol=0)
    assert length < tokens.shape[1]


def test_truncation_is_refused_without_a_causal_mask(tiny):
    from convert.errors import ModelError
    from convert.towers import TextEncoder

    parts = dict(token_embedding=tiny.token_embedding, positional_embedding=tiny.positional_embedding,
                 transformer=tiny.transformer, ln_final=tiny.ln_final, projection=nn.Identity(),
                 pool_type="argmax", eos_id=-1)
    with pytest.raises(ModelError, match="truncate_text needs a causal text tower"):
        TextEncoder(attn_mask=None, truncate=True, **parts)
    with pytest.raises(ModelError, match="non-causal"):
        TextEncoder(attn_mask=torch.zeros(32, 32), truncate=True, **parts)
    with pytest.raises(ModelError, match="pools 'last'"):
        TextEncoder(attn_mask=tiny.attn_mask, truncate=True, **{**parts, "pool_type": "last"})
    assert TextEncoder(attn_mask=tiny.attn_mask, truncate=True, **parts).truncate
