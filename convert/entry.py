"""What every entry point of the kit does around its command: the environment before torch loads (the OpenMP
default, thread counts bounded by the CPUs), quiet third-party logging, the console, report tables and the
output streams (escapes where the console cannot encode, JSON always UTF-8, the one ``--json`` convention),
usage errors, signals, and the one top-level error handler (interrupts included).

``python -m convert``, ``python -m deploy`` (and ``python -m deploy.verify``), the benchmark scripts and the
tests' ``conftest`` use this module; it imports no torch (``import convert`` must stay light).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigError, KitError, quoted

KIT_SPINCOUNT = "1000"
_set_by_kit: set[str] = set()


def set_openmp_default() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` (and, with it, ``GOMP_SPINCOUNT=1000``) unless the user set them.

    Call it before anything imports torch: libgomp reads the variables once, at load. Why: OpenMP threads that
    spin while waiting fight each other (and everything else) on small shared machines; with PASSIVE alone a
    worker sleeps the moment a parallel region ends and the next operator pays a wake-up, which the short spin
    avoids. A user's own setting wins; the spin count is set only when the kit chose PASSIVE itself.
    Measurements: docs/performance.md ("OpenMP waiting").
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        _set_by_kit.add("OMP_WAIT_POLICY")
        if "GOMP_SPINCOUNT" not in os.environ:
            os.environ["GOMP_SPINCOUNT"] = KIT_SPINCOUNT
            _set_by_kit.add("GOMP_SPINCOUNT")


# Thread-count variables the kit's runtimes read (torch sizes its OpenMP and MKL pools from them).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (``taskset``, cgroup cpusets), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return os.cpu_count() or 1


def check_thread_count(count: Any, source: str) -> int:
    """``count`` if it is 1 to :func:`usable_cpus`; else one :class:`ConfigError` line naming ``source``
    (``--threads``, ``OMP_NUM_THREADS=``). Refused before anything starts: ``bench --threads 9999`` once ran
    about 5,800 threads at once on 2 cores (load average 800) until its timeout."""
    cpus = usable_cpus()
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= cpus:
        sep = "" if source.endswith("=") else " "
        raise ConfigError(f"{source}{sep}{quoted(count)} is not a usable thread count here: 1 to {cpus} (the CPUs "
                          "this process may use, os.sched_getaffinity)")
    return count


def check_thread_environment(environ: Any = None) -> None:
    """The thread-count variables of :data:`THREAD_VARIABLES` checked like ``--threads`` (OpenMP's
    ``4,2`` nesting lists by their first level)."""
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        value = (environ.get(name) or "").strip()
        if not value:
            continue
        try:
            count = int(value.split(",")[0])
        except ValueError:
            count = value
        check_thread_count(count, f"{name}=")


def openmp_set_by_kit() -> frozenset[str]:
    """The OpenMP variables :func:`set_openmp_default` set in this process (not the user's)."""
    return frozenset(_set_by_kit)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)


@contextlib.contextmanager
def third_party_logging(verbose: bool = False):
    """Third-party log records stay out of the output while the block runs, unless ``verbose``.

    Offline, huggingface_hub logged every retry twice (its own handler, then the root handler that
    open_clip's first ``logging.warning`` call installs): 47 lines before the one that mattered. The kit
    reports what matters itself, as one line; ``--verbose`` shows the rest (INFO and up, on stderr).
    """
    root = logging.getLogger()
    hub = logging.getLogger("huggingface_hub")
    saved = (logging.root.manager.disable, root.level, list(root.handlers), hub.propagate, warnings.showwarning)
    if verbose:
        if not root.handlers:
            logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s: %(message)s")
        root.setLevel(logging.INFO)
        hub.propagate = not hub.handlers  # huggingface_hub prints through its own handler: once, not twice
    else:
        logging.disable(logging.CRITICAL)
        warnings.showwarning = _show_warning  # "warning: <message>", not "/path/file.py:93: UserWarning: <message>"
    try:
        yield
    finally:
        logging.disable(saved[0])
        root.setLevel(saved[1])
        for handler in root.handlers[:]:
            if handler not in saved[2]:
                root.removeHandler(handler)
        hub.propagate = saved[3]
        warnings.showwarning = saved[4]


class KitArgumentParser(argparse.ArgumentParser):
    """argparse with the kit's usage errors: one line, exit 2, pointing to this command's own help."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        # argparse reports a sub-command's unknown option from the top parser ("see python -m deploy --help");
        # the help that lists the valid options is the sub-command's own.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._command_parser(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, KitArgumentParser):
                    return chosen._command_parser(parsed)
        return self


def safe_output_streams() -> None:
    """Text the console cannot encode is written as backslash escapes, never a ``UnicodeEncodeError``.

    ``PYTHONIOENCODING=ascii`` (or a C locale, a Windows code page) made ``classify --labels '🐱 cat,...'``
    classify, then die printing its answer. stdout is strict by default; stderr already escapes.
    Entry points call it before parsing (``--help`` is output too). JSON is not written through this
    (see :func:`print_json`)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def print_json(data: Any, *, indent: int | None = 2) -> None:
    """``data`` as JSON on stdout, always UTF-8 whatever the console's encoding (escapes from
    :func:`safe_output_streams` would not be JSON); through the text layer when it is UTF-8 already."""
    text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    buffer = getattr(sys.stdout, "buffer", None)
    if encoding == "utf8" or buffer is None:
        sys.stdout.write(text)
    else:
        sys.stdout.flush()
        buffer.write(text.encode("utf-8"))
    sys.stdout.flush()


JSON_STDOUT = "-"


def _json_target(value: str) -> str:
    if value != JSON_STDOUT and not value.lower().endswith(".json"):
        # `--json photo.jpg` would overwrite the photo: argparse hands --json the next word when it is not an option.
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a .json file name (--json FILE writes FILE; --json alone prints JSON on stdout: "
            "put it after the positional arguments)")
    return value


def add_json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """The kit's one ``--json`` convention (docs/deploy.md): ``--json`` alone prints ``what`` as one JSON
    document on stdout and nothing else there (progress and warnings stay on stderr); ``--json FILE.json``
    writes it to the file, atomically, and the usual output is printed as well."""
    parser.add_argument("--json", nargs="?", const=JSON_STDOUT, type=_json_target, metavar="FILE.json", help=(
        f"{what} as JSON: alone, on stdout (and nothing else there); with FILE.json, written to that file "
        "besides the usual output"))


def json_to_stdout(args: argparse.Namespace) -> bool:
    """True when ``--json`` alone asked for JSON on stdout: the human-readable output is then left out."""
    return getattr(args, "json", None) == JSON_STDOUT


def write_json(data: Any, target: str | None) -> None:
    """``data`` where ``--json`` says: stdout (``-``, through :func:`print_json`: UTF-8 whatever the console),
    or the file, written atomically (never half-written)."""
    if not target:
        return
    if target == JSON_STDOUT:
        print_json(data)
        return
    from pathlib import Path

    from .files import atomic_write_bytes

    atomic_write_bytes(Path(target), (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def make_console(stderr: bool = False, wide: bool = False):
    """A rich console that stays readable in a pipe or a log: 100 columns (``wide``: 200) when not a
    terminal, no source paths on log lines."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else (200 if wide else 100), log_path=False)


def report_table(columns: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1):
    """The kit's table for reports that must fit a pipe (100 columns) or a narrow terminal: no outer
    border, headers may take two lines (``"median\nms"``), the first ``text_columns`` columns left-aligned
    and folded when space runs out; the others (numbers) right-aligned and never cut, each at least as
    wide as its widest cell (rich would otherwise cut "2239.41" to "2239…")."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for i, col in enumerate(columns):
        if i < text_columns:
            t.add_column(col, justify="left", overflow="fold")
        else:
            width = max([len(str(r[i])) for r in rows] + [len(part) for part in col.split("\n")])
            t.add_column(col, justify="right", no_wrap=True, min_width=width)
    for r in rows:
        t.add_row(*r)
    return t


class Terminated(BaseException):
    """SIGTERM as an exception (like KeyboardInterrupt for SIGINT), so cleanup (staging folders, temporary
    files) runs on the way out."""


def _terminated(signum, frame) -> None:
    raise Terminated()


def raise_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` (main thread only); returns the handler to restore, or None.
    Without it SIGTERM killed the process before ``convert()`` could remove its staging folder."""
    try:
        return signal.signal(signal.SIGTERM, _terminated) or signal.SIG_DFL
    except ValueError:  # not the main thread: signals are not ours to handle
        return None


def print_error(message: object) -> None:
    """The ``error: <message>`` line on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def run_command(command: Callable[[], int | None], verbose: bool = False) -> int:
    """Run one command the way every entry point does; returns its exit code.

    The thread-count variables are checked first (:func:`check_thread_environment`); third-party logging
    stays quiet (unless ``verbose``); SIGTERM becomes :class:`Terminated`; a
    :class:`KitError` is one ``error:`` line and its ``exit_code``; SIGTERM and Ctrl-C are one line and
    128 + the signal number (the kit's writes are atomic, so nothing half-written is left behind).
    """
    previous_sigterm = raise_on_sigterm()
    try:
        with third_party_logging(verbose):
            check_thread_environment()
            return int(command() or 0)
    except KitError as exc:
        print_error(exc)
        return exc.exit_code
    except (Terminated, KeyboardInterrupt) as exc:
        what, signum = ("SIGTERM", signal.SIGTERM) if isinstance(exc, Terminated) else ("Ctrl-C", signal.SIGINT)
        print_error(f"interrupted by {what}; nothing half-written was left (every output is the previous one, "
                    "or the new one if it was complete)")
        return 128 + signum
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
