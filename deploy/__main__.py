"""``python -m deploy <command>``: run converted artifacts exactly as the phone does.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which sets ``func``);
this file only dispatches, so the modules stay independent.
"""
import importlib
import sys

from convert.cli import KitArgumentParser, set_openmp_default
from convert.errors import KitError

COMMANDS = {
    "classify": "deploy.classify",
    "search": "deploy.search",
    "evaluate": "deploy.evaluate",
    "bench": "deploy.bench.cli",
}


def main(argv=None) -> int:
    """``python -m deploy`` and the ``clip-kit-deploy`` console script."""
    set_openmp_default()  # before the command modules import torch
    parser = KitArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=KitArgumentParser)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
