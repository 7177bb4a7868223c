"""The device-side image input path, driven only by a manifest's ``preprocess`` block.

Follows the kit spec (docs/formats.md "Preprocessing", same as the Android Java core):

1. open the file; refuse images above ``max_pixels`` (default 100 megapixels) from the header alone,
   before any pixel is decoded (decompression-bomb guard), and strips above ``MAX_ASPECT``:1; apply the EXIF orientation
   (``ImageOps.exif_transpose``);
2. convert to 8-bit RGB *first* (:func:`to_rgb`), alpha dropped without compositing;
3. resize / crop / pad per ``resize_mode`` with open_clip's exact size arithmetic (see :class:`Preprocessor`);
4. ``(x / 255 - mean) / std`` in float32, CHW.

Differences from open_clip's own eval transform (which resizes first and converts to RGB last):

- Opaque RGB and L images: identical (max abs difference 0; tested against ``image_transform`` for
  several configurations within 1e-6).
- Translucent RGBA / LA / PA images: PIL premultiplies alpha when resizing an RGBA image, so open_clip's
  colours under partly transparent pixels are darkened/blended by the resampling, while the kit (and the
  phone) resample the un-premultiplied colours. Fully opaque RGBA images are identical.
- Palette (``P``) and 1-bit images: PIL resizes those modes with nearest-neighbour only, so open_clip
  gets a nearest-neighbour resize; the kit converts to RGB first and resamples with the configured
  filter (what the phone does with a decoded bitmap).
- 16-bit images (``I;16``, ``I;16B``, ``I;16L``, and ``I`` holding values above 255): PIL's
  ``convert("RGB")`` clips them at 255 (mostly white); the kit scales the full 16-bit range linearly to
  8 bits, ``round(v * 255 / 65535)``, then replicates to three channels. Float (``F``) images in [0, 1]
  are scaled by 255, otherwise clipped to [0, 255].
- CMYK / YCbCr / LAB / HSV: converted to RGB by PIL first (the resize then runs in RGB).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from convert.errors import ImageError, quoted
from convert.files import describe_path, path_kind

DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_HELP = (f"refuse images above this many pixels, read from the header before decoding (default "
                   f"{DEFAULT_MAX_PIXELS}; 0 = no limit)")
# Longest side / shortest side. Resizing the short side of a 1 x 1,000,000 strip to 64 asks for a 64 x 64e6
# image (MemoryError); at 1000:1 a 336-pixel input needs at most a 336 x 336,000 RGB image (340 MB).
MAX_ASPECT = 1000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "random": Image.BICUBIC}


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, alpha dropped (no compositing); see the module docstring for 16-bit."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        if mode == "I" and (arr.size == 0 or arr.max() <= 255) and arr.min() >= 0:
            arr8 = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            arr8 = np.clip(np.rint(arr * 255.0 / 65535.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2), "RGB")
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if arr.size and np.nanmax(arr) <= 1.0 and np.nanmin(arr) >= 0.0:
            arr = arr * 255.0
        arr8 = np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2), "RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"image mode {mode} cannot be converted to RGB ({exc})") from None


class Preprocessor:
    """``PIL image -> float32 [3, H, W]`` for one manifest ``preprocess`` block.

    Size arithmetic (open_clip / torchvision, what the Java core ports):
    - ``shortest``, square target ``S``: shorter side -> ``S``, longer -> ``int(S * long / short)``,
      then centre crop; non-square target: open_clip's ``ResizeKeepRatio`` (``round(x / ratio)``,
      ratio = min(h/th, w/tw)), always bicubic (open_clip passes no interpolation there), then centre crop.
    - ``longest``: ``ResizeKeepRatio(longest=1)`` with the configured interpolation, then centre
      crop-or-pad with ``fill_color``.
    - ``squash``: resize to ``image_size``.
    Crop offsets ``int(round(d / 2))``, pads ``(d // 2, (d + 1) // 2)``.
    """

    def __init__(self, block: dict[str, Any]) -> None:
        try:
            size = block["image_size"]
            self.height, self.width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
            self.mean = torch.tensor([float(v) for v in block["mean"]], dtype=torch.float32).view(3, 1, 1)
            self.std = torch.tensor([float(v) for v in block["std"]], dtype=torch.float32).view(3, 1, 1)
            self.interpolation = block.get("interpolation", "bicubic")
            self.resize_mode = block.get("resize_mode", "shortest")
            self.fill = int(block.get("fill_color", 0))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ImageError(f"manifest preprocess block is incomplete or malformed ({exc!r})") from None
        if self.interpolation not in _FILTERS:
            raise ImageError(f"preprocess interpolation {quoted(self.interpolation)} is not supported (bicubic, bilinear)")
        if self.resize_mode not in ("shortest", "longest", "squash"):
            raise ImageError(f"preprocess resize_mode {quoted(self.resize_mode)} is not supported (shortest, longest, squash)")
        self.filter = _FILTERS[self.interpolation]

    @staticmethod
    def _keep_ratio(h: int, w: int, th: int, tw: int, longest: float) -> tuple[int, int]:
        rh, rw = h / th, w / tw
        ratio = max(rh, rw) * longest + min(rh, rw) * (1.0 - longest)
        return round(h / ratio), round(w / ratio)

    @staticmethod
    def _resize(img: Image.Image, w: int, h: int, resample) -> Image.Image:
        w, h = max(1, w), max(1, h)
        if img.size == (w, h):
            return img
        return img.resize((w, h), resample)

    def _crop_or_pad(self, img: Image.Image, ch: int, cw: int, fill: int) -> Image.Image:
        w, h = img.size
        if cw > w or ch > h:
            left = (cw - w) // 2 if cw > w else 0
            top = (ch - h) // 2 if ch > h else 0
            right = (cw - w + 1) // 2 if cw > w else 0
            bottom = (ch - h + 1) // 2 if ch > h else 0
            canvas = Image.new("RGB", (w + left + right, h + top + bottom), (fill, fill, fill))
            canvas.paste(img, (left, top))
            img = canvas
            w, h = img.size
            if (w, h) == (cw, ch):
                return img
        top = int(round((h - ch) / 2.0))
        left = int(round((w - cw) / 2.0))
        return img.crop((left, top, left + cw, top + ch))

    def resize_rgb(self, img: Image.Image) -> Image.Image:
        """Steps 2-3: RGB at exactly ``image_size``."""
        img = to_rgb(img)
        th, tw = self.height, self.width
        w, h = img.size
        if self.resize_mode == "squash":
            return self._resize(img, tw, th, self.filter)
        if self.resize_mode == "longest":
            nh, nw = self._keep_ratio(h, w, th, tw, 1.0)
            return self._crop_or_pad(self._resize(img, nw, nh, self.filter), th, tw, self.fill)
        if th == tw:
            short, long_ = min(w, h), max(w, h)
            new_long = int(th * long_ / short)
            nw, nh = (th, new_long) if w <= h else (new_long, th)
            img = self._resize(img, nw, nh, self.filter)
        else:
            nh, nw = self._keep_ratio(h, w, th, tw, 0.0)
            img = self._resize(img, nw, nh, Image.BICUBIC)
        return self._crop_or_pad(img, th, tw, 0)

    def to_tensor(self, rgb: Image.Image) -> torch.Tensor:
        """Step 4: ``(x / 255 - mean) / std``, float32 CHW."""
        arr = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1)
        return (arr.float().div(255) - self.mean) / self.std

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.resize_rgb(img))


def open_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``path`` as a decoded PIL image with EXIF orientation applied; :class:`ImageError` on failure.

    ``max_pixels`` (None = no limit) is checked from the header, before decoding.
    """
    kind = path_kind(str(path))
    if kind != "file":  # never opened: a named pipe would block, a device never ends
        raise ImageError(describe_path(str(path), kind, "image"))
    path = Path(path)
    if path.stat().st_size == 0:
        raise ImageError(f"image {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked before decoding
            try:
                img = Image.open(path)
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    img.close()
                    raise ImageError(
                        f"image {path} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the "
                        f"{max_pixels / 1e6:g}-megapixel limit (decompression-bomb guard; raise it with --max-pixels)"
                    )
                if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
                    img.close()
                    raise ImageError(
                        f"image {path} is {w}x{h}, an aspect ratio above {MAX_ASPECT}:1: scaling its short side to "
                        "the model's input would make a huge image (a 1x1000000 strip needed 12 GB), so it is refused"
                    )
                img.load()
                img = ImageOps.exif_transpose(img) or img
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image PIL can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as exc:
        raise ImageError(f"image {path} cannot be decoded ({' '.join(str(exc).split())[:160]})") from None
    if img.size[0] < 1 or img.size[1] < 1:
        raise ImageError(f"image {path} has no pixels ({img.size[0]}x{img.size[1]})")
    return img


def list_images(folder: str | Path, recursive: bool = True, *, required: bool = False) -> list[Path]:
    """Image files below ``folder`` (by suffix), sorted; with ``required``, none is an :class:`ImageError`."""
    kind = path_kind(str(folder))
    if kind != "a directory":
        raise ImageError(describe_path(str(folder), kind, "image folder", "a directory"))
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if required and not found:
        raise ImageError(f"image folder {folder} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def image_files(specs: Sequence[str | Path]) -> list[str]:
    """The image arguments of a command: each file as given, each folder replaced by the images below it
    (:func:`list_images`, the listing ``search --images`` uses too)."""
    files: list[str] = []
    for spec in specs:
        if path_kind(str(spec)) == "a directory":
            files += [str(p) for p in list_images(spec, required=True)]
        else:
            files.append(str(spec))
    return files
