"""``python -m deploy verify DIR``: check an artifact directory the way every reader does, loading no model.

The manifest's schema; every listed file a plain name inside ``DIR`` (no symbolic link leaving it) with
the listed size and sha256; each model file's embedded ``clip_kit.json``, a ``.ptl``'s bytecode version and a
``.pte``'s executorch version (:func:`convert.artifact.verify_all`, over the one reader). ``--target android`` also refuses x86
(fbgemm) artifacts. The shell wrappers that push files to a device (``benchmarks/android/*.sh``) run it
first, as ``python -m deploy.verify`` (which works whether or not ``deploy`` lists the command).

Prints one summary line (nothing with ``--quiet``; ``--json`` alone: one JSON document instead) and exits 0, or
one ``error:`` line and exits 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from convert.entry import add_json_option, json_to_stdout, write_json


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


def run(args: argparse.Namespace) -> int:
    from convert.artifact import verify_all

    manifest = verify_all(args.directory, args.target)
    write_json({"directory": str(args.directory), "verified": True, "model": manifest["model"]["name"],
                "target": manifest["target"], "engine": manifest["engine"],
                "bytecode": manifest["versions"].get("bytecode"), "executorch": manifest["versions"].get("executorch"),
                "files": [{k: e.get(k) for k in ("file", "role", "format", "bytes", "sha256")} for e in manifest["files"]]},
               args.json)
    if not args.quiet and not json_to_stdout(args):
        bytecode = manifest["versions"].get("bytecode")
        executorch = manifest["versions"].get("executorch")
        runtimes = ([f"bytecode v{bytecode}"] if bytecode else []) + ([f"executorch {executorch}"] if executorch else [])
        print(f"{args.directory}: {len(manifest['files'])} files verified ({manifest['model']['name']}, "
              f"{', '.join([manifest['target'] + '/' + manifest['engine'], *runtimes])})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deploy.verify DIR``: the same command, without going through ``python -m deploy``."""
    from convert.entry import KitArgumentParser, run_command, safe_output_streams, set_openmp_default

    set_openmp_default()
    safe_output_streams()
    parser = KitArgumentParser(prog="python -m deploy.verify", description=__doc__.splitlines()[0])
    _arguments(parser)
    args = parser.parse_args(argv)
    return run_command(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
