"""``python -m deploy verify DIR``: check an artifact directory the way every reader does, loading no model.

The manifest's schema; every listed file a plain name inside ``DIR`` (no symbolic link leaving it) with
the listed size and sha256; each model file's embedded ``clip_kit.json`` and bytecode version
(:func:`convert.artifact.verify_artifacts`, the one reader). ``--target android`` also refuses x86
(fbgemm) artifacts. The shell wrappers that push files to a device (``benchmarks/android/*.sh``) run it
first, as ``python -m deploy.verify`` (which works whether or not ``deploy`` lists the command).

Prints one summary line (nothing with ``--quiet``) and exits 0, or one ``error:`` line and exits 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convert.cli import add_json_option, json_to_stdout, write_json


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", metavar="DIR", help="artifact directory (with manifest.json)")
    p.add_argument("--target", choices=("android", "x86"), help="also require artifacts converted for this target")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    add_json_option(p, "what was verified")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("verify", help="check an artifact directory (sizes, sha256, metadata) without loading it",
                              description=__doc__.splitlines()[0])
    _arguments(p)
    p.set_defaults(func=run)


def verify(directory: str | Path, target: str | None = None) -> dict[str, Any]:
    """Verify every file ``directory``'s manifest lists; returns the manifest. :class:`ArtifactError` otherwise."""
    from convert.artifact import MODEL_ROLES, read_manifest, require_target, verify_artifacts, verify_file

    directory = Path(directory)
    manifest = read_manifest(directory)
    if target is not None:
        require_target(manifest, target, {"android": "a phone", "x86": "an x86 machine"}[target])
    formats = tuple(sorted({e["format"] for e in manifest["files"] if e["role"] in MODEL_ROLES}))
    verified = verify_artifacts(directory, None, formats, require_image=False)
    checked = {path.name for path in verified.paths.values()}
    for entry in manifest["files"]:  # the rest (ops.yaml, ...): size and sha256
        if entry["file"] not in checked:
            verify_file(verified.directory, entry)
    return manifest


def run(args: argparse.Namespace) -> int:
    manifest = verify(args.directory, args.target)
    write_json({"directory": str(args.directory), "verified": True, "model": manifest["model"]["name"],
                "target": manifest["target"], "engine": manifest["engine"],
                "bytecode": manifest["versions"].get("bytecode"),
                "files": [{k: e.get(k) for k in ("file", "role", "format", "bytes", "sha256")} for e in manifest["files"]]},
               args.json)
    if not args.quiet and not json_to_stdout(args):
        bytecode = manifest["versions"].get("bytecode")
        print(f"{args.directory}: {len(manifest['files'])} files verified ({manifest['model']['name']}, "
              f"{manifest['target']}/{manifest['engine']}" + (f", bytecode v{bytecode})" if bytecode else ")"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deploy.verify DIR``: the same command, without going through ``python -m deploy``."""
    from convert.cli import KitArgumentParser, set_openmp_default
    from convert.errors import KitError

    set_openmp_default()
    parser = KitArgumentParser(prog="python -m deploy.verify", description=__doc__.splitlines()[0])
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
