"""``python -m deploy <command>``: run converted artifacts exactly as the phone does.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which sets ``func``);
this file only dispatches, so the modules stay independent.
"""
import importlib
import sys

from convert.cli import KitArgumentParser, Terminated, raise_on_sigterm, report_interrupt, set_openmp_default, third_party_logging
from convert.errors import KitError

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
    from convert.torchcheck import check_torch

    try:
        with third_party_logging():
            # The same start-up check (and the same advice) as python -m convert: a torch other than the pin warns.
            check_torch()
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    parser = KitArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=KitArgumentParser)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    args = parser.parse_args(argv)
    previous_sigterm = raise_on_sigterm()  # so index and cache writes clean up their temporary files
    try:
        with third_party_logging():
            return int(args.func(args) or 0)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Terminated, KeyboardInterrupt) as exc:  # index, cache and report writes are atomic
        return report_interrupt(exc, "nothing half-written was left behind")
    finally:
        if previous_sigterm is not None:
            import signal

            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    sys.exit(main())
