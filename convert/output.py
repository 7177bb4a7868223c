"""The output directory as a transaction: locked for the whole conversion, written into a staging folder
beside it, renamed into place only at the end, never replaced by a failure or an interruption.

``prepare_output`` resolves a symlinked ``--out`` to its target (the link is kept), refuses ``--out .`` and
a non-empty folder without ``--force``; ``output_lock`` is an exclusive ``flock`` held for the whole run (a
second conversion into the same output gets one line); ``check_free_space`` refuses before writing;
``signals_deferred`` keeps SIGINT/SIGTERM out of the few steps that must not be cut in half; and
``move_into_place`` re-checks ``--force`` at rename time.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConvertConfig
from .errors import OutputError, one_line
from .files import current_umask
from .metrics import tensor_bytes

if TYPE_CHECKING:
    from .load import LoadedModel

Log = Callable[[str], None]

# Free space asked for beside the output before anything is written: int8 artifacts are 0.25-0.6x the
# fp32 weights, an fp32 tower (quantize none) ~1.0x, and a backport rewrites one file beside itself.
SPACE_FACTOR = 1.2
# Tests only: "<stage>:<marker file>" makes a conversion write the marker and sleep at that stage
# (staging, move, moved), so that a test can signal it there (tests/test_bad_inputs.py).
TEST_PAUSE_ENV = "CLIPKIT_TEST_PAUSE"


def prepare_output(config: ConvertConfig) -> Path:
    """Check the output directory can be (re)written; return its real path; raise :class:`OutputError`.

    A symlinked ``--out`` is written through: its target is replaced, never the link itself.
    """
    out = config.out_dir
    try:
        real = out.resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a deleted working directory
        raise OutputError(f"output {out} cannot be resolved ({one_line(exc, 120)})") from None
    if real == cwd or real in cwd.parents:
        raise OutputError(f"output {out} is the current directory or contains it (a conversion replaces its output "
                          f"folder as a whole); choose a new folder, e.g. --out {Path(out, 'artifacts')}")
    if real.exists() and not real.is_dir():
        raise OutputError(f"output {out} exists and is not a directory")
    check_replaceable(out, real, config.force)
    parent = real.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")
    return real


def check_replaceable(out: Path, real: Path, force: bool) -> None:
    """A non-empty output directory is replaced only with ``force``."""
    try:
        busy = real.is_dir() and any(real.iterdir())
    except OSError as exc:
        raise OutputError(f"output directory {out} cannot be read: {exc.strerror or exc}") from None
    if busy and not force:
        raise OutputError(f"output directory {out} is not empty; pass --force to replace it or choose another --out")


def lock_path(real: Path) -> Path:
    """The lock file of an output directory: beside it, named from it."""
    return real.with_name(f".{real.name}.lock")


@contextlib.contextmanager
def output_lock(real: Path, shown: Path | None = None):
    """Hold an exclusive ``flock`` on the output's lock file for the block; a second writer gets an
    :class:`OutputError` at once. The lock file (holding the writer's pid) is removed on exit."""
    import fcntl

    path = lock_path(real)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot lock {shown or real} ({path}: {exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"output {shown or real} is being written by another conversion (pid {holder}); "
                                  "wait for it to finish or choose another --out") from None
            raise OutputError(f"cannot lock {shown or real} ({path}: {exc.strerror or exc})") from None
        try:  # the previous holder unlinks the file before unlocking: a lock on an unlinked file is no lock
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError):  # the pid is for the message only (a full disk may refuse it)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def space_needed(config: ConvertConfig, loaded: LoadedModel) -> tuple[int, int]:
    """``(bytes to ask for, fp32 bytes of the model)``: SPACE_FACTOR x the fp32 weights (x2 with the .pt
    twins), plus the vocabulary and 1 MiB for the manifest and ops.yaml."""
    import open_clip

    fp32 = tensor_bytes(loaded.model)
    vocab = Path(open_clip.__file__).parent / str(loaded.tokenizer.get("vocab_file") or "")
    extra = (vocab.stat().st_size if vocab.is_file() else 0) + (1 << 20)
    return int(SPACE_FACTOR * fp32 * (2 if config.also_pt else 1)) + extra, fp32


def check_free_space(config: ConvertConfig, loaded: LoadedModel, real: Path) -> None:
    """Refuse to start writing when the output's file system cannot hold the artifacts."""
    need, fp32 = space_needed(config, loaded)
    try:
        free = shutil.disk_usage(real.parent).free
    except OSError:
        return
    if free < need:
        twins = " x2 for --also-pt" if config.also_pt else ""
        raise OutputError(f"not enough free space for {config.out_dir}: about {need / 2**20:.1f} MiB needed "
                          f"({SPACE_FACTOR} x the model's {fp32 / 2**20:.1f} MiB of fp32 weights{twins}, plus the "
                          f"vocabulary), {free / 2**20:.1f} MiB free in {real.parent}")


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM wait until the block is done (a folder swap or a cleanup is never half done).

    Python-level handlers only run in the main thread, so elsewhere this does nothing (and is not needed).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        saved[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)


def pause_for_tests(stage: str) -> None:
    spec = os.environ.get(TEST_PAUSE_ENV, "")
    if spec.partition(":")[0] == stage:
        Path(spec.partition(":")[2]).write_text(str(os.getpid()))
        time.sleep(120)


def remove_stale_staging(real: Path, log: Log) -> None:
    """Staging folders of this output left by a conversion that was killed outright (SIGKILL, power loss):
    under the lock no other conversion is writing them, and they never hold the only copy of anything."""
    for stale in real.parent.glob(f".{real.name}.staging-*"):
        if stale.is_dir() and not stale.is_symlink():
            log(f"removing {stale.name}, left by a conversion that was killed")
            shutil.rmtree(stale, ignore_errors=True)


def make_staging(real: Path) -> Path:
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{real.name}.staging-", dir=real.parent))
        os.chmod(staging, 0o777 & ~current_umask())
    except OSError as exc:
        raise OutputError(f"cannot create a staging folder in {real.parent}: {exc.strerror or exc}") from None
    return staging


def move_into_place(staging: Path, real: Path, force: bool = True, shown: Path | None = None) -> None:
    """Rename ``staging`` to ``real``. A missing or empty ``real`` is replaced by one atomic rename (which
    fails if it has been filled meanwhile: then, without ``force``, nothing is replaced); a non-empty one,
    with ``force``, is swapped out and deleted. Call with signals deferred."""
    shown = shown or real
    try:
        os.rename(staging, real)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise OutputError(f"cannot move the artifacts into {shown}: {exc.strerror or exc}") from None
    if not force:
        raise OutputError(f"output directory {shown} was filled by something else during the conversion; nothing "
                          "was replaced (pass --force to replace it or choose another --out)")
    backup = real.with_name(f".{real.name}.old-{os.getpid()}")
    try:
        os.rename(real, backup)
    except OSError as exc:
        raise OutputError(f"cannot replace {shown}: {exc.strerror or exc}") from None
    try:
        os.rename(staging, real)
    except OSError as exc:
        os.rename(backup, real)
        raise OutputError(f"cannot move the artifacts into {shown}: {exc.strerror or exc}") from None
    shutil.rmtree(backup, ignore_errors=True)
