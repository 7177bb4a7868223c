"""clip-mobile-kit conversion: open_clip CLIP -> int8, scripted, mobile-optimized ``.ptl`` artifacts."""
from .config import ConvertConfig, QuantConfig, build_config
from .errors import KitError

__all__ = ["ConvertConfig", "QuantConfig", "build_config", "convert", "KitError"]


def convert(config: ConvertConfig, log=lambda message: None):
    """Run a conversion (see :func:`convert.pipeline.convert`)."""
    from .pipeline import convert as _convert

    return _convert(config, log)
