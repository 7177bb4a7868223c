"""Files that are never half-written, and files named by the user that are read safely.

Every file the kit writes goes through :func:`atomic_write`: written into a temporary folder beside the
target and renamed into place; a failure (disk full, an unwritable folder, a writer error) removes the
temporary file and is one :class:`OutputError` line.

Every file a user names as "a list or a file" (labels, templates, recipes) or "a file or a folder" (images)
is looked at with :func:`path_kind` first and read with :func:`read_user_text`: a string that cannot be a
path is never given to the file system, and nothing but a regular file is opened.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import PATH_QUOTE_LIMIT, ExportError, KitError, OutputError, one_line, quoted

# Linux's limits (<linux/limits.h>). A longer string cannot name a file, so the file system is not asked:
# Path(spec).is_file() raised ENAMETOOLONG (a traceback) for an ordinary 800-character label list.
NAME_MAX = 255
PATH_MAX = 4096
_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A failure (disk full, unwritable directory, a writer error) removes the temporary file, so no
    half-written artifact is ever visible under ``path``.
    """
    path = Path(path)
    # The temporary file keeps the final name inside a temporary folder: a TorchScript archive takes
    # its top-level folder name from the file name, and readers should see `image_encoder/...`.
    try:
        folder = tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = os.path.join(folder, path.name)
    try:
        try:
            writer(tmp)
            os.chmod(tmp, 0o666 & ~current_umask())  # ordinary files, not mkstemp's 0600
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        except RuntimeError as exc:
            message = one_line(exc)
            if "No space left" in message or ("write" in message.lower() and "fail" in message.lower()):
                raise OutputError(f"cannot write {path}: {message}") from None
            raise ExportError(f"cannot save {path.name}: {message}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """:func:`atomic_write` of bytes already in memory, written with Python's checked I/O.

    Why (measured on a 1-3 MiB tmpfs, torch 2.12.1): torch's C++ zip writer ignores the failed write and
    then trips over its own position check (``c10::Error "unexpected pos 64 vs 0"``). Under
    ``torch.jit.save``/``_save_for_lite_interpreter`` to a file name that error escapes a C++ destructor:
    ``std::terminate``, SIGABRT (exit -6), no ``except``/``finally`` runs and the staging folder stays;
    ``torch.save`` to a file name raises a RuntimeError that says nothing of the disk. Serialize to memory
    first (``torch.save(obj, BytesIO)``, ``torch.jit.save(module, BytesIO)``,
    ``module._save_to_buffer_for_lite_interpreter()``), then write with this: ENOSPC is one
    :class:`OutputError` line and the temporary file is removed.
    """
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def torch_save_atomic(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` into ``path`` through memory and :func:`atomic_write_bytes` (no abort on a full disk)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def not_a_path(spec: str) -> str | None:
    """Why ``spec`` cannot name a file, decided without the file system (empty, a NUL, longer than
    ``PATH_MAX`` bytes or a part longer than ``NAME_MAX``, not encodable); ``None`` when it can."""
    if not isinstance(spec, str) or not spec:
        return "empty" if spec == "" else f"a {type(spec).__name__}, not a string"
    if "\0" in spec:
        return "it contains a NUL character"
    try:
        raw = os.fsencode(spec)
    except UnicodeEncodeError:
        return "it cannot be encoded as a file name"
    if len(raw) > PATH_MAX:
        return f"{len(raw)} bytes, above the {PATH_MAX}-byte path limit"
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > NAME_MAX:
        return f"a name of {longest} bytes, above the {NAME_MAX}-byte limit"
    return None


def path_kind(spec: str) -> str:
    """What ``spec`` names, from ``os.stat`` alone (nothing is opened): ``"file"`` (a regular file, symlinks
    followed), ``"missing"``, ``"a directory"``, ``"a named pipe"``, ``"a socket"``, ``"a character device"``,
    ``"a block device"``, or ``"not a file name (why)"`` / ``"not accessible (why)"``."""
    why = not_a_path(spec)
    if why is not None:
        return f"not a file name ({why})"
    try:
        mode = os.stat(spec).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:  # a loop of links, a folder without permission, ENAMETOOLONG after link expansion
        return f"not accessible ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return "file"
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")


def describe_path(spec: str, kind: str, what: str, want: str = "a regular file") -> str:
    """The one line for a ``spec`` that is not ``want`` (``kind`` from :func:`path_kind`), e.g.
    ``labels file 'x' does not exist`` or ``recipe 'fifo' is a named pipe, not a regular file``."""
    if kind == "missing":
        return f"{what} {quoted(spec, PATH_QUOTE_LIMIT)} does not exist"
    if kind == "file" or kind.startswith("a "):
        return f"{what} {quoted(spec, PATH_QUOTE_LIMIT)} is {'a regular file' if kind == 'file' else kind}, not {want}"
    return f"{what} {quoted(spec, PATH_QUOTE_LIMIT)} is {kind}"


def read_user_text(spec: str, what: str, error: type[KitError]) -> str:
    """The UTF-8 text of the regular file ``spec`` (a labels, templates or recipe file); ``error`` (one line
    starting with ``what``) for anything else. Only a regular file is opened: a named pipe nobody writes to
    blocked ``classify --templates FIFO`` forever, and a device never ends. The open is non-blocking and
    re-checked on the descriptor, so a file swapped for a pipe after the check cannot block either."""
    kind = path_kind(spec)
    if kind != "file":
        raise error(describe_path(spec, kind, what))
    try:
        fd = os.open(spec, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{what} {quoted(spec, PATH_QUOTE_LIMIT)}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{what} {quoted(spec, PATH_QUOTE_LIMIT)} is not a regular file")
        try:
            data = handle.read()
        except OSError as exc:
            raise error(f"{what} {quoted(spec, PATH_QUOTE_LIMIT)}: cannot be read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {quoted(spec, PATH_QUOTE_LIMIT)}: cannot be read: not UTF-8 text (byte {exc.start}); save it as "
                    "UTF-8") from None


def check_output_folder(spec: str, what: str) -> Path:
    """A folder the command will create or fill at its end (``--plots DIR``), checked before the work starts."""
    kind = path_kind(str(spec))
    if kind not in ("a directory", "missing"):
        raise OutputError(describe_path(str(spec), kind, what, "a directory"))
    return Path(spec)


def check_output_file(spec: str, what: str) -> Path:
    """A file the command will write at its end (``--json FILE``, ``--markdown FILE``), checked before the
    work starts: a name that cannot be a path, a directory, or a missing or non-directory parent is one
    :class:`OutputError` line now, not a traceback after minutes of measuring."""
    kind = path_kind(str(spec))
    if kind not in ("file", "missing"):
        raise OutputError(describe_path(str(spec), kind, what))
    parent = Path(spec).parent
    if path_kind(str(parent)) != "a directory":
        raise OutputError(f"{what} {spec}: its folder {parent} does not exist or is not a directory")
    return Path(spec)
