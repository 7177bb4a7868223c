"""``python -m deploy <command>``: run converted artifacts exactly as the phone does.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which sets ``func``);
this file only dispatches, so the modules stay independent.
"""
import importlib
import sys

from convert.entry import KitArgumentParser, run_command, safe_output_streams, set_openmp_default

COMMANDS = {
    "classify": "deploy.classify",
    "search": "deploy.search",
    "evaluate": "deploy.evaluate",
    "bench": "deploy.bench.cli",
    "verify": "deploy.verify",
}


def main(argv=None) -> int:
    """``python -m deploy`` and the ``clip-kit-deploy`` console script."""
    set_openmp_default()  # before the command modules import torch
    safe_output_streams()

    def command() -> int:
        from convert.torchcheck import check_torch

        # The same start-up check (and the same advice) as python -m convert: a torch other than the pin warns.
        check_torch()
        parser = KitArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
        sub = parser.add_subparsers(dest="command", required=True, parser_class=KitArgumentParser)
        for module in COMMANDS.values():
            importlib.import_module(module).add_parser(sub)
        args = parser.parse_args(argv)
        return args.func(args)

    # Index and cache writes clean up their temporary files on SIGTERM.
    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
