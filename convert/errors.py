"""Typed errors of the kit.

Every error a user can cause is a :class:`KitError`; the CLIs print its message as one line and exit 2.
A :class:`FidelityError` (the converted model answers too differently) exits 1: the input was fine,
the result is not.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class KitError(Exception):
    """Base of every error the kit raises on purpose; its message is one self-contained line."""

    exit_code = 2


class ConfigError(KitError, ValueError):
    """A configuration value (CLI flag, recipe key, enum value) is invalid."""


class ModelError(KitError, ValueError):
    """Unknown model name or pretrained tag, or an architecture the kit cannot convert."""


class CheckpointError(KitError, ValueError):
    """A checkpoint file is missing, truncated, unreadable or for another architecture."""


class LabelsError(KitError, ValueError):
    """A labels list is empty, has duplicates, or cannot be read."""


class OutputError(KitError, OSError):
    """The output directory cannot be written (exists and is not empty, unwritable, disk full)."""


class TorchVersionError(KitError, RuntimeError):
    """The running torch cannot do what was asked (no XNNPACK, no quantized engine, wrong version)."""


class ExportError(KitError, RuntimeError):
    """Scripting, mobile optimization or saving failed; never silently replaced by an eager model."""


class ArtifactError(KitError, ValueError):
    """An artifact directory or file is missing, tampered with, or from another toolchain."""


class ImageError(KitError, ValueError):
    """An image file is missing, empty, unreadable, not an image, or too large."""


class DatasetError(KitError, ValueError):
    """A dataset is absent, empty or unreadable."""


class PlotError(KitError, RuntimeError):
    """Plots were asked for but cannot be drawn (matplotlib missing)."""


class FidelityError(KitError):
    """A converted artifact is below the recipe's fidelity floor."""

    exit_code = 1


class ReparamError(FidelityError):
    """Folding a tower's train-time branches into its inference form changed its fp32 outputs beyond the
    tolerance (``convert.reparam``): the model was fine, its inference form is not."""


ONE_LINE_LIMIT = 300


def one_line(exc: BaseException | str, limit: int = ONE_LINE_LIMIT) -> str:
    """An exception (often a multi-line C++ or hub error) as one line of at most ``limit`` characters.

    The kit's errors are read in terminals and CI logs, so every message that quotes a third-party
    error goes through here: whitespace collapsed, cut with an ellipsis, never mid-way silently.
    """
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


QUOTE_LIMIT = 100
# A path is worth more of the line than another value (a valid one is at most PATH_MAX, 4096 bytes).
PATH_QUOTE_LIMIT = 240


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters.

    Every message that quotes a value the user gave goes through here: a 10 MB recipe value or an
    800-character label list was once echoed whole in its "one line". A cut value says how long it was.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return text[: limit - 3] + "..." + size


def close_matches(value: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean: a, b?)' suffix for an error message, or '' when nothing is close."""
    choices = list(choices)
    value = value[:200]  # nothing longer is a misspelt choice, and difflib is quadratic
    hits = difflib.get_close_matches(value, choices, n=n, cutoff=0.6)
    if not hits:
        lowered = value.lower()
        hits = [c for c in choices if lowered in c.lower()][:n]
    return f" (did you mean: {', '.join(hits)}?)" if hits else ""
