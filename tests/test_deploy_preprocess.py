"""deploy.preprocess: parity with open_clip's eval transform (opaque images), modes, EXIF, size guards."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from convert.probes import preprocess_transform, probe_pil_images
from deploy.preprocess import ImageError, Preprocessor, open_image, to_rgb

OPENAI = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])


def block(size, resize_mode="shortest", interpolation="bicubic", fill=0, mean=OPENAI[0], std=OPENAI[1]):
    return {"image_size": size, "mean": mean, "std": std, "interpolation": interpolation,
            "resize_mode": resize_mode, "fill_color": fill, "mode": "RGB"}


CONFIGS = {
    "kit-tiny-clip": block([64, 64]),
    "ViT-B-32": block([224, 224]),
    "siglip-like squash bilinear": block([96, 96], "squash", "bilinear", mean=[0.5] * 3, std=[0.5] * 3),
    "longest fill": block([80, 80], "longest", fill=128),
    "non-square shortest": block([48, 80]),
    "non-square longest": block([80, 48], "longest", "bilinear", fill=7),
}
TOLERANCE = 1e-6


def images():
    rng = np.random.default_rng(0)
    out = probe_pil_images(8, seed=3)
    out.append(Image.new("RGB", (1, 1), (200, 10, 30)))
    out.append(Image.fromarray(rng.integers(0, 256, (300, 17, 3), dtype=np.uint8), "RGB"))  # very tall
    out.append(Image.fromarray(rng.integers(0, 256, (5, 400, 3), dtype=np.uint8), "RGB"))  # very wide
    out.append(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB"))  # exact size
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_with_open_clip_opaque(name):
    cfg = CONFIGS[name]
    ours, ref = Preprocessor(cfg), preprocess_transform(cfg)
    for img in images():
        for variant in (img, img.convert("L"), img.convert("RGBA")):  # opaque alpha: same result
            a, b = ours(variant), ref(variant)
            assert a.shape == b.shape == (3, *cfg["image_size"])
            assert float((a - b).abs().max()) <= TOLERANCE, (name, variant.mode, variant.size)


def test_translucent_rgba_follows_kit_spec_not_open_clip():
    """Kit spec: convert('RGB') (alpha dropped) before resizing; open_clip resizes the premultiplied RGBA."""
    cfg = CONFIGS["kit-tiny-clip"]
    rng = np.random.default_rng(1)
    rgba = Image.fromarray(rng.integers(0, 256, (120, 90, 4), dtype=np.uint8), "RGBA")
    ours = Preprocessor(cfg)(rgba)
    assert torch.equal(ours, Preprocessor(cfg)(rgba.convert("RGB")))
    assert float((ours - preprocess_transform(cfg)(rgba)).abs().max()) > 1e-3  # the documented difference


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16", "I", "F", "CMYK", "LA", "1", "YCbCr", "HSV"])
def test_any_mode(mode):
    rng = np.random.default_rng(2)
    base = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        img = Image.fromarray((rng.integers(0, 65536, (37, 53))).astype(np.uint16))
        assert img.mode.startswith("I;16")
    elif mode == "HSV":
        img = base.convert("HSV")
    else:
        img = base.convert(mode)
    x = Preprocessor(CONFIGS["kit-tiny-clip"])(img)
    assert x.shape == (3, 64, 64) and torch.isfinite(x).all()


def test_16_bit_scaled_to_8_bit():
    arr = np.array([[0, 65535, 32896, 257]], dtype=np.uint16)
    img16 = Image.fromarray(arr)
    assert img16.mode == "I;16"
    rgb = np.asarray(to_rgb(img16))
    assert rgb[0, :, 0].tolist() == [0, 255, 128, 1]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_exif_orientation(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes())
    assert open_image(path).size == (20, 40)


def test_one_pixel_image(tmp_path):
    p = tmp_path / "px.png"
    Image.new("RGB", (1, 1), (1, 2, 3)).save(p)
    x = Preprocessor(CONFIGS["ViT-B-32"])(open_image(p))
    assert x.shape == (3, 224, 224)


def _png_header_only(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_huge_image_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    _png_header_only(p, 20000, 10000)  # 200 megapixels claimed, a few bytes on disk
    with pytest.raises(ImageError, match="200.0 megapixels, above the 100-megapixel limit"):
        open_image(p)
    with pytest.raises(ImageError, match="megapixels"):
        open_image(p, max_pixels=1000)


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"hello, not an image", "not an image"),
                                           (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image|cannot be decoded")])
def test_bad_files(tmp_path, content, match):
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=match):
        open_image(p)
    with pytest.raises(ImageError, match="does not exist"):
        open_image(tmp_path / "missing.png")


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ImageError, match="cannot be decoded"):
        open_image(p)
