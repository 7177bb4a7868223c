"""``python -m deploy classify IMAGE... --artifacts DIR``: zero-shot labels on the converted artifacts.

Uses the shipped zero-shot head when the artifacts have one and neither ``--labels`` nor a different
``--templates`` is given; otherwise builds class embeddings with the artifact's own (quantized) text
encoder and tokenizer.

Class embeddings built with the text encoder are cached on disk (``deploy.runtime.cached_class_embeddings``),
so a repeated call with the same artifacts, labels and templates loads them instead of encoding every
prompt again (ViT-B-32, 3 labels x 80 templates: 240 prompts).

Output: one line per image, ``path: label 0.93, label 0.05, label 0.01`` (``--topk``, default 3);
``--verbose`` a table per image; ``--json`` JSON; ``--quiet`` only that output and errors (no warnings,
no progress bar).

Exit status: 0 when every image was classified; 1 when some images failed (each reported, the others
still answered); 2 when all images failed or the input was unusable (artifacts, labels, templates).
Labels longer than the context are truncated (like open_clip and the phone) with a warning on stderr.
"""
from __future__ import annotations

import argparse
import sys

from convert.config import TEMPLATE_SETS, read_labels
from convert.entry import add_json_option, json_to_stdout, write_json
from convert.errors import ImageError

from .artifacts import add_runtime_option, load_artifacts
from .preprocess import DEFAULT_MAX_PIXELS, MAX_PIXELS_HELP, Preprocessor, image_files, open_image
from .runtime import cached_class_embeddings, encode_images, head_logits, logits_from_weights, topk, warn_random_weights


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("classify", help="zero-shot classify images on the converted artifacts",
                              description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...), or folders of images "
                                                              "(searched recursively)")
    p.add_argument("--artifacts", required=True, help="artifact directory (with manifest.json)")
    p.add_argument("--labels", help="labels file (one a line) or names with a comma: cat,dog (one label: cat,); a word "
                                    "without a comma is a file name (default: the shipped head's labels)")
    p.add_argument("--templates", help="openai (80), simple (7), plain, or a file (default: the head's, else openai)")
    p.add_argument("--topk", type=int, default=3, help="labels shown per image (default 3)")
    add_json_option(p, "the results")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="a table per image instead of one line")
    loud.add_argument("-q", "--quiet", action="store_true", help="print only the results and errors")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the class-embedding cache")
    add_runtime_option(p)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=MAX_PIXELS_HELP)
    p.set_defaults(func=run)


def classifier(artifacts_dir, labels=None, templates=None, kind="lite", *, quiet=False, use_cache=True):
    """Load artifacts and return ``(artifacts, labels, logits_fn)``; ``logits_fn(image_embeddings)``.

    With labels (or templates other than the head's) the class embeddings come from the disk cache, or
    from the text encoder, which is only loaded when they are not cached."""
    from convert.artifact import read_manifest
    from convert.errors import LabelsError

    manifest = read_manifest(artifacts_dir)
    zs = manifest.get("zero_shot") or {}
    has_head = any(e.get("role") == "zero_shot_head" for e in manifest["files"])
    same_templates = templates is None or str(zs.get("templates") or "").startswith(f"{templates}-")
    if has_head and labels is None and same_templates:
        artifacts = load_artifacts(artifacts_dir, kind, roles=("image_encoder", "zero_shot_head"))
        return artifacts, artifacts.labels, lambda emb: head_logits(artifacts, emb)
    if labels is None:
        labels = zs.get("labels")
        if not labels:
            raise LabelsError(f"{artifacts_dir} has no zero-shot head and no labels; pass --labels")
    artifacts = load_artifacts(artifacts_dir, kind, roles=("image_encoder",))
    weights = cached_class_embeddings(artifacts, labels, templates or "openai", quiet=quiet, use_cache=use_cache)
    scale = artifacts.logit_scale
    return artifacts, list(labels), lambda emb: logits_from_weights(emb, weights, scale)


def run(args: argparse.Namespace) -> int:
    labels = read_labels(args.labels) if args.labels is not None else None
    if args.templates is not None and args.templates not in TEMPLATE_SETS:
        from convert.head import load_templates

        load_templates(args.templates)  # a bad templates file is one line before any artifact is loaded
    images = image_files(args.images)
    if args.topk < 1:
        from convert.errors import ConfigError

        raise ConfigError(f"--topk {args.topk} must be at least 1")
    artifacts, labels, logits_fn = classifier(args.artifacts, labels, args.templates, args.runtime,
                                              quiet=args.quiet, use_cache=not args.no_cache)
    pre = Preprocessor(artifacts.preprocess)
    max_pixels = args.max_pixels or None
    results = []
    for path in images:
        try:
            x = pre(open_image(path, max_pixels)).unsqueeze(0)
            logits = logits_fn(encode_images(artifacts, x))
            top = topk(logits, labels, args.topk)[0]
            results.append({"image": path, "top": [{"label": lab, "score": round(s, 6)} for lab, s in top]})
        except ImageError as exc:  # this image only: the others are still classified
            results.append({"image": path, "error": str(exc)})
    failed = sum("error" in r for r in results)
    if failed < len(results) and not args.quiet:  # with the answers it qualifies, not with an error line
        warn_random_weights(artifacts.manifest)
    write_json({"artifacts": str(args.artifacts), "kind": artifacts.kind, "results": results}, args.json)
    if json_to_stdout(args):
        pass
    elif args.verbose:
        _print_tables(results, artifacts)
    else:
        for r in results:
            if "error" not in r:
                print(format_line(r))
    for r in results:
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
    if failed == 0:
        return 0
    return 2 if failed == len(results) else 1


def format_line(result: dict) -> str:
    """``path: label 0.93, label 0.05, label 0.01`` (probabilities, best first)."""
    return f"{result['image']}: " + ", ".join(f"{t['label']} {t['score']:.2f}" for t in result["top"])


def _print_tables(results, artifacts) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for r in results:
        if "error" in r:
            continue
        # The file name on its own line, never inside a table title (rich wraps titles mid-word).
        print(f"{r['image']} ({artifacts.manifest['model']['name']}, {artifacts.kind})", flush=True)
        table = Table()
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("probability", justify="right")
        for i, item in enumerate(r["top"], 1):
            table.add_row(str(i), item["label"], f"{item['score']:.4f}")
        console.print(table)
