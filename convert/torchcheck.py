"""The kit owns the torch pin: check, at start-up, that the running torch can do the job.

torch 2.13 and newer wheels are built without XNNPACK (``optimize_for_mobile`` then dies with an
internal assert), and TorchScript, the lite interpreter and ``torch.ao.quantization`` are deprecated
upstream; 2.12.1 is the version this kit is built and tested against.
"""
from __future__ import annotations

import warnings

from .errors import TorchVersionError

PINNED_TORCH = "2.12.1"
PINNED_TORCHVISION = "0.27.1"
FIX = f"pip install torch=={PINNED_TORCH} torchvision=={PINNED_TORCHVISION}"


def _base(version: str) -> str:
    return version.split("+", 1)[0]


def xnnpack_available() -> bool:
    """True when this torch build carries XNNPACK (needed by ``optimize_for_mobile``'s rewrites)."""
    import torch

    probe = getattr(torch._C, "_is_xnnpack_enabled", None)
    return bool(probe and probe())


def supported_engines() -> list[str]:
    import torch

    return list(torch.backends.quantized.supported_engines)


def check_torch(engine: str | None = None, needs_xnnpack: bool = False) -> str:
    """Raise :class:`TorchVersionError` (one line, naming version and fix) if torch cannot do the job.

    ``engine`` is the quantized engine the conversion will use; ``needs_xnnpack`` is true when the
    export applies ``optimize_for_mobile``'s XNNPACK rewrites. Returns the torch version string.
    A different torch that still has every capability asked for only warns.
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the install pins it
        raise TorchVersionError(f"torch is not installed ({exc}); fix: {FIX}") from None
    version = torch.__version__
    if needs_xnnpack and not xnnpack_available():
        raise TorchVersionError(
            f"torch {version} is built without XNNPACK, so optimize_for_mobile cannot run "
            f"(torch>=2.13 wheels lack it); fix: {FIX}"
        )
    engines = supported_engines()
    if engine is not None and engine not in engines:
        raise TorchVersionError(
            f"torch {version} has no '{engine}' quantized engine (it has: {', '.join(engines)}); fix: {FIX}"
        )
    if _base(version) != PINNED_TORCH:
        warnings.warn(
            f"torch {version} is not the pinned {PINNED_TORCH}; results are untested (fix: {FIX})",
            stacklevel=2,
        )
    return version
