"""Golden vectors for the plain-Java core (org.clipkit.core), written by the reference Python stack.

Run (deterministic; rewrites everything it owns):
    /work/venv/bin/python android_demo/core/golden/make_golden.py

Writes, under android_demo/core/src/test/resources/:
  bpe_simple_vocab_16e6.txt.gz   copy of open_clip's vocabulary (the file the kit ships)
  images/*.png                   synthetic 8-bit RGB / RGBA sample images
  golden/tokens.json             open_clip.get_tokenizer('ViT-B-32') ids, context 77 and 32
  golden/pixels.json             index of preprocessing cases (+ per-channel lookup tables)
  golden/pixels.bin.gz           uint8 HWC images (source RGB, then each transformed case)

Pixel goldens: open_clip's eval transform ends in ToTensor + Normalize, which maps every uint8
value v of channel c to one float32, LUT[c][v]. We therefore store the uint8 image right before
ToTensor (PIL output of resize/crop/pad) plus the 3x256 float32 LUT computed by torch, and assert
here, bit for bit, that LUT[uint8] == the float tensor open_clip returns. That is equivalent to
storing the float tensors, at 1/4 of the size (then gzip).

Tokens: for every string we also record the ids obtained with ftfy's `fix_encoding` step
disabled. Where they differ from open_clip the string needs ftfy's mojibake repair (org.clipkit.core.FixEncoding,
goldens of its own in make_mojibake_golden.py); those strings are marked `"parity": false` and tested separately.
"""
from __future__ import annotations

import gzip
import io
import json
import pathlib
import random
import shutil

import numpy as np
import torch
from PIL import Image

import ftfy
import open_clip
from open_clip import tokenizer as oc_tok
from open_clip.transform import image_transform

ROOT = pathlib.Path(__file__).resolve().parents[1]
RES = ROOT / "src/test/resources"
GOLD = RES / "golden"
IMAGES = RES / "images"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------------------- tokens
def token_strings() -> list[str]:
    s = [
        "", " ", "   ", "\t\n\r", "a", "A", "a photo of a cat", "A PHOTO OF A DOG.",
        "a photo of a {}.", "itap of a {}.", "a bad photo of the {}.", "a origami {}.",
        "Hello, world!", "hello world", "HeLLo WoRLD", "don't", "DON'T", "it's", "we're", "they've",
        "I'm", "you'll", "he'd", "rock'n'roll", "'s 't 're 've 'm 'll 'd", "o'clock", "''quoted''",
        "ain't isn't wouldn't", "the dog's ball's colour", "3.14159", "1,000,000", "2024-01-01",
        "12:30pm", "100%", "$9.99", "#hashtag @mention", "e-mail user@example.com",
        "https://example.com/a/b?c=d&e=f", "C++ and C#", "x^2 + y^2 = z^2", "a_b_c", "snake_case_name",
        "CamelCaseWord", "!!!???...", "...", "--", "—em dash—", "–en dash–", "« guillemets »",
        "(parens) [brackets] {braces} <angles>", "tab\tseparated\tvalues", "new\nline\nsplit",
        "multiple     spaces", "  leading and trailing  ", "\u00a0nbsp\u00a0inside\u00a0",
        "\u2003em space\u2009thin space", "\u3000ideographic space\u3000",
        "café", "cafe\u0301", "naïve résumé", "Ærøskøbing", "straße", "STRASSE", "İstanbul",
        "ΣΊΣΥΦΟΣ", "Σ", "ΟΔΟΣ ΟΔΟΣ", "Москва", "Ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย",
        "한국어 텍스트", "日本語のテキスト", "中文字符", "汉字汉字汉字", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
        "ｶﾀｶﾅ halfwidth", "ﬁne ﬂowers ﬀ ﬃ ﬄ ﬅ ﬆ", "Ĳssel ǆ ǈ ǋ", "ŉ", "😀", "😀😃😄", "👍🏽 thumbs",
        "👨‍👩‍👧‍👦 family", "🇫🇷 flag", "❤️ heart", "☃ snowman", "♠♣♥♦", "∑∫√∞≠≤≥", "€£¥₹",
        "“curly double” ‘curly single’ ‚low‛ „low double‟ ʼapostrophe",
        "&amp;", "&amp;amp;", "&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b> &amp; tags",
        "Tom &amp; Jerry", "&quot;quoted&quot;", "&#39;apos&#39;", "&#x27;hex&#x27;", "&#65;&#66;&#67;",
        "&#x1F600;", "&eacute;t&eacute;", "P&EACUTE;REZ", "BUNDESSTRA&SZLIG;E", "&ntilde; &Ntilde; &NTILDE; &nTILDE;",
        "&Jscr;ohn &HilbertSpace;ancock", "&checkmark;", "this&not that", "&notit; &notin;", "&amp",
        "&ampxyz", "&nbsp;x&nbsp;", "&#0;", "&#128;", "&#x80;", "&#xD800;", "&#1114112;",
        "&#99999999999999999999;", "&#13;", "&#1;x", "&unknownentity;", "& ampersand alone &",
        "&#;", "&#x;", "&lt;&lt;&lt;", "&amp;lt;", "&amp;amp;amp;", "a<b &amp; c>d",
        "line one\nline <two> &amp;\nline three &amp;", "&gt;\n&lt;", "\x1b[31mred\x1b[0m text",
        "bell\x07char", "nul\x00char", "del\x7fchar", "zero\u200bwidth", "bom\ufeffhere",
        "soft\u00adhyphen", "rtl\u200fmark", "\u2028line sep\u2029para sep", "win\r\nbreaks\rmac",
        "c1 \x85 next line", "c1 \x80\x9f controls", "\x93smart\x94 c1 quotes", "object\ufffcrepl",
        "replacement \ufffd char", "interlinear\ufff9a\ufffab\ufffb", "arabic\u206adeprecated",
        "tag chars \U000e0041\U000e0042", "musical 𝄞 symbol", "math 𝐀𝐁𝐂 bold", "𝒥ohn",
        "ⅰⅱⅲ roman", "①②③", "²³¹ superscripts", "½ ¼ ¾", "µ micro", "Å angstrom", "K kelvin",
        "Ω ohm", "ſ long s", "ǅungla", "Ǳ", "ß ẞ", "ﬀ", "ᾈ greek", "ŉ n", "Ὀδυσσεύς",
        "0123456789", "١٢٣ arabic digits", "०१२ devanagari digits", "一二三", "Ⅻ", "⁰",
        "a1b2c3", "abc123def", "v1.2.3-beta+build.5", "0x1F600", "1e-5", "-42", "+42",
        "word-word", "word.word", "word/word", "word\\word", "word|word", "word~word",
        "👍👍👍👍👍👍👍👍👍👍", "????", "¿Qué?", "¡Hola!", "Ça va?", "Ñandú", "Œuvre", "Ÿ",
        "Mojibake: Ã©tÃ©", "sÃ³", "voilÃ le travail", "â€œquotesâ€\x9d", "Ã‰", "Ã¡rbol",
        "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "æ—¥æœ¬", "Ã\xa0 la carte", "ÃƒÂ©", "cafÃ© au lait", "Â£5",
        "<start_of_text>", "<end_of_text>", "a <start_of_text> b", "<START_OF_TEXT>", "<|endoftext|>",
        "</w>", "a</w>b", "\u0345", "\u03b1\u0345 \u1fb3", "it'\u017f", "IT'S", "\u212a 'K kelvin", "!" * 100, "a" * 300, "ab" * 200, "the " * 100,
        "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
        "x" * 10000, "lorem ipsum " * 900, "é" * 2000, "日本" * 3000, "😀" * 2500, "a-" * 5000,
        " " * 5000 + "spaces" + " " * 5000, "\n" * 1000 + "x", "&amp;" * 2000, "abc\u0301" * 1000,
    ]
    rng = random.Random(20261126)
    words = ["dog", "cat", "photo", "red", "blue", "car", "the", "of", "a", "small", "large", "bird",
             "tree", "house", "banana", "zebra", "keyboard", "Eiffel", "tower", "Montréal", "naïve",
             "東京", "猫", "강아지", "😀", "🐶", "don't", "it's", "&amp;", "&lt;", "3", "42", "9.5",
             "!", "?", "...", "—", "(", ")", "'", "\"", "“", "”", "ﬁsh", "ＡＢＣ", "x²", "Σοφία"]
    seps = [" ", " ", " ", "  ", "", "\t", "\n", ", ", "-", "/"]
    while len(s) < 360:
        n = rng.randint(1, 40)
        parts = []
        for _ in range(n):
            parts.append(rng.choice(words))
            parts.append(rng.choice(seps))
        t = "".join(parts)
        if rng.random() < 0.3:
            t = t.upper()
        s.append(t)
    # random code points from a few planes (letters, marks, symbols), deterministic
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF),
              (0x3040, 0x30FF), (0xAC00, 0xAD00), (0x1F300, 0x1F6FF), (0x2000, 0x206F), (0x300, 0x36F)]
    while len(s) < 400:
        cps = []
        for _ in range(rng.randint(1, 60)):
            lo, hi = rng.choice(ranges)
            cps.append(chr(rng.randint(lo, hi)))
        s.append("".join(cps))
    return s


def tokenize_all(strings: list[str]) -> dict:
    tok = open_clip.get_tokenizer("ViT-B-32")
    assert isinstance(tok, oc_tok.SimpleTokenizer)
    out = []
    orig_fix = ftfy.fix_text
    for t in strings:
        ids = {}
        for ctx in (77, 32):
            row = tok([t], context_length=ctx)[0].tolist()
            n = len(row)
            while n > 0 and row[n - 1] == 0:
                n -= 1
            ids[ctx] = row[:n]
        # the same without ftfy's fix_encoding (mojibake repair), which the Java core lacks
        oc_tok.ftfy.fix_text = lambda x: orig_fix(x, fix_encoding=False)
        try:
            tok.cache = {k: v for k, v in tok.cache.items() if k.startswith("<")}
            noenc = tok([t], context_length=77)[0].tolist()
        finally:
            oc_tok.ftfy.fix_text = orig_fix
            tok.cache = {k: v for k, v in tok.cache.items() if k.startswith("<")}
        n = len(noenc)
        while n > 0 and noenc[n - 1] == 0:
            n -= 1
        noenc = noenc[:n]
        case = {"text": t, "ids77": ids[77], "ids32": ids[32], "parity": noenc == ids[77]}
        if not case["parity"]:
            case["ids77_no_fix_encoding"] = noenc
            case["cleaned"] = oc_tok._clean_lower(t)
        out.append(case)
    return {"tokenizer": "open_clip.get_tokenizer('ViT-B-32')", "open_clip": open_clip.__version__,
            "ftfy": ftfy.__version__, "clean": "lower", "sot": tok.sot_token_id, "eot": tok.eot_token_id,
            "cases": out}


# ----------------------------------------------------------------------------------------- images
def make_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(1234)

    def photo(w, h, seed):
        r = np.random.default_rng(seed)
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        img = np.zeros((h, w, 3))
        img[..., 0] = 255 * (0.5 + 0.5 * np.sin(x / max(w, 1) * 7.0 + y / max(h, 1) * 3.0))
        img[..., 1] = 255 * (x / max(w - 1, 1)) * (1 - y / max(h - 1, 1) * 0.5)
        img[..., 2] = 255 * ((((x // 6) + (y // 6)) % 2) * 0.6 + 0.2)
        img += r.normal(0, 25, img.shape)
        # a hard edged disc: ringing / clipping in bicubic
        cx, cy, rad = w * 0.6, h * 0.4, min(w, h) * 0.25
        img[((x - cx) ** 2 + (y - cy) ** 2) < rad ** 2] = (250, 10, 245)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    ims = {
        "wide_97x61.png": Image.fromarray(photo(97, 61, 1), "RGB"),
        "tall_61x97.png": Image.fromarray(photo(61, 97, 2), "RGB"),
        "photo_300x200.png": Image.fromarray(photo(300, 200, 3), "RGB"),
        "tiny_7x5.png": Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB"),
    }
    rgba = np.dstack([photo(45, 33, 4), rng.integers(0, 256, (33, 45), dtype=np.uint8)])
    ims["alpha_45x33.png"] = Image.fromarray(rgba, "RGBA")
    return ims


def lut(mean, std) -> list[list[float]]:
    from torchvision.transforms import Normalize, ToTensor
    ramp = Image.fromarray(np.stack([np.arange(256, dtype=np.uint8)] * 3, -1)[None], "RGB")
    t = Normalize(mean, std)(ToTensor()(ramp))  # 3 x 1 x 256
    return [[float(v) for v in t[c, 0].tolist()] for c in range(3)]


def pixel_cases(images: dict[str, Image.Image]):
    cases, blob = [], io.BytesIO()
    sources = {}
    for name, im in images.items():
        rgb = np.asarray(im.convert("RGB"))
        sources[name] = {"offset": blob.tell(), "width": im.width, "height": im.height,
                         "mode": im.mode}
        blob.write(rgb.tobytes())
    normalizers = {"openai": (OPENAI_MEAN, OPENAI_STD), "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
    luts = {k: lut(*v) for k, v in normalizers.items()}
    configs = []
    for size in (64, 224):
        for mode in ("shortest", "longest", "squash"):
            for interp in ("bicubic", "bilinear"):
                for name in images:
                    configs.append((name, [size, size], mode, interp, 0, "openai"))
    # extras: non-square targets, fill colour, other normaliser
    for name in ("wide_97x61.png", "photo_300x200.png", "tiny_7x5.png"):
        configs.append((name, [48, 80], "shortest", "bicubic", 0, "openai"))
        configs.append((name, [80, 48], "longest", "bilinear", 128, "openai"))
        configs.append((name, [40, 56], "squash", "bicubic", 0, "half"))
    configs.append(("wide_97x61.png", [97 * 0 + 61, 61], "shortest", "bicubic", 0, "openai"))
    configs.append(("tall_61x97.png", [61, 61], "longest", "bicubic", 255, "openai"))
    for name, size, mode, interp, fill, norm in configs:
        mean, std = normalizers[norm]
        tf = image_transform(tuple(size) if size[0] != size[1] else size[0], is_train=False,
                             mean=mean, std=std, interpolation=interp, resize_mode=mode, fill_color=fill)
        # docs/formats.md step 1: RGB first (alpha dropped, no premultiplied resize)
        src = images[name].convert("RGB")
        full = tf(src)
        # the same pipeline stopped before ToTensor
        pil = src
        for t in tf.transforms:
            if type(t).__name__ in ("MaybeToTensor", "ToTensor", "Normalize"):
                continue
            pil = t(pil)
        u8 = np.asarray(pil.convert("RGB"))
        h, w = size
        assert u8.shape == (h, w, 3), (name, size, mode, u8.shape)
        table = torch.tensor(luts[norm], dtype=torch.float32)  # 3 x 256
        recon = torch.stack([table[c][torch.from_numpy(u8[..., c].astype(np.int64))] for c in range(3)])
        assert full.dtype == torch.float32 and full.shape == recon.shape
        assert torch.equal(full, recon), f"LUT reconstruction differs for {name} {size} {mode} {interp}"
        cases.append({"image": name, "image_size": size, "resize_mode": mode, "interpolation": interp,
                      "fill_color": fill, "normalizer": norm, "offset": blob.tell()})
        blob.write(u8.tobytes())
    index = {"sources": sources, "normalizers": {k: {"mean": list(v[0]), "std": list(v[1]), "lut": luts[k]}
                                                for k, v in normalizers.items()},
             "layout": "uint8 HWC RGB; case tensor = lut[normalizer][c][byte], CHW",
             "pillow": Image.__version__, "open_clip": open_clip.__version__, "cases": cases}
    return index, blob.getvalue()


def main() -> None:
    GOLD.mkdir(parents=True, exist_ok=True)
    IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(oc_tok.default_bpe(), RES / "bpe_simple_vocab_16e6.txt.gz")
    tokens = tokenize_all(token_strings())
    (GOLD / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=True, indent=0), encoding="ascii")
    images = make_images()
    for name, im in images.items():
        im.save(IMAGES / name, optimize=False)
    # re-read from disk so the goldens come from exactly the PNG bytes Java decodes
    images = {name: Image.open(IMAGES / name) for name in images}
    for im in images.values():
        im.load()
    index, blob = pixel_cases(images)
    (GOLD / "pixels.json").write_text(json.dumps(index, indent=0), encoding="ascii")
    with gzip.GzipFile(GOLD / "pixels.bin.gz", "wb", mtime=0) as f:
        f.write(blob)
    n_gap = sum(1 for c in tokens["cases"] if not c["parity"])
    print(f"tokens: {len(tokens['cases'])} strings, {n_gap} need ftfy fix_encoding; "
          f"pixels: {len(index['cases'])} cases, {len(blob)} bytes raw")


if __name__ == "__main__":
    main()
