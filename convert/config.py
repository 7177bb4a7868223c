"""Validated, frozen configuration of one conversion, from CLI arguments or a YAML recipe.

A recipe is a YAML mapping whose keys are :class:`ConvertConfig` field names (``-`` or ``_``);
the CLI overrides it. Built-in recipes live in ``assets/recipes`` and can be named without a path.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, LabelsError, close_matches

QUANTIZE_MODES = ("none", "image", "text", "combined")
TARGETS = ("android", "x86")
ENGINES = ("qnnpack", "fbgemm")
WEIGHT_SCHEMES = ("per-channel", "per-tensor")
PRECISIONS = ("int8", "fp32")
TEMPLATE_SETS = ("openai", "simple", "plain")
# When int8 weights are packed for the engine (see convert/packing.py).
PACK_MODES = ("load", "first-call")
DEFAULT_ENGINE = {"android": "qnnpack", "x86": "fbgemm"}
# fbgemm packs at load unless told otherwise; qnnpack (android) always packs on the first call itself.
DEFAULT_PACK = {"android": "load", "x86": "first-call"}
RECIPES_DIR = Path(__file__).resolve().parent.parent / "assets" / "recipes"
BUILTIN_MODEL = "kit-tiny-clip"


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(
            f"{name}={value!r} is not valid; choose one of: {', '.join(choices)}"
            f"{close_matches(str(value), choices)}"
        )
    return value


# What each path-like field names (in its error message).
_PATH_FIELDS = {"out": "an output directory path", "checkpoint": "a checkpoint file path",
                "install_to": "the android_demo project directory",
                "templates": f"one of {', '.join(TEMPLATE_SETS)} or a templates file"}


def _path_or_none(name: str, value: Any, valid: str) -> str | None:
    """A path field: None, or a non-empty string / ``os.PathLike``, kept as ``str`` (the manifest records it)."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{name}={value!r} is not valid: {valid} (a non-empty string)")
    return value


@dataclass(frozen=True)
class QuantConfig:
    """What dynamic int8 quantization reaches, and how.

    ``mode`` picks the towers (the paper's four rows); ``attention``, ``embedding``, ``patch`` and
    ``projection`` decide whether attention projections, the token embedding (weight-only), the patch
    convolution (as a Linear over patches) and the output projections become int8 too;
    ``keep_fp32`` lists module-name patterns (fnmatch, on ``<role>.<module>`` names such as
    ``text_encoder.transformer.resblocks.0.mlp.c_fc``) left in fp32; ``per_tensor`` patterns get one
    weight scale per tensor even when ``weights`` is per-channel.
    """

    mode: str = "combined"
    engine: str = "qnnpack"
    weights: str = "per-channel"
    attention: str = "int8"
    embedding: str = "int8"
    patch: str = "int8"
    projection: str = "int8"
    keep_fp32: tuple[str, ...] = ()
    per_tensor: tuple[str, ...] = ()
    # 8-bit activations on fbgemm (reduce_range off): needs a CPU with AVX512-VNNI to run (convert.quantize).
    full_range: bool = False

    def __post_init__(self) -> None:
        _choice("quantize", self.mode, QUANTIZE_MODES)
        _choice("engine", self.engine, ENGINES)
        _choice("weights", self.weights, WEIGHT_SCHEMES)
        for name in ("attention", "embedding", "patch", "projection"):
            _choice(name, getattr(self, name), PRECISIONS)
        for name in ("keep_fp32", "per_tensor"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p for p in value):
                raise ConfigError(f"{name}={value!r} must be a list of module-name patterns")

    @property
    def image(self) -> bool:
        return self.mode in ("image", "combined")

    @property
    def text(self) -> bool:
        return self.mode in ("text", "combined")


@dataclass(frozen=True)
class ConvertConfig:
    """One conversion: which model, how to quantize it, for which target, where to write it."""

    model: str = BUILTIN_MODEL
    pretrained: str | None = "builtin"
    checkpoint: str | None = None
    # The quantization fields and their defaults are QuantConfig's (one source of truth).
    quantize: str = QuantConfig.mode
    target: str = "android"
    engine: str | None = None
    weights: str = QuantConfig.weights
    attention: str = QuantConfig.attention
    embedding: str = QuantConfig.embedding
    patch: str = QuantConfig.patch
    projection: str = QuantConfig.projection
    keep_fp32: tuple[str, ...] = QuantConfig.keep_fp32
    per_tensor: tuple[str, ...] = QuantConfig.per_tensor
    labels: tuple[str, ...] | None = None
    templates: str = "openai"
    out: str | None = None
    force: bool = False
    also_pt: bool = False
    bytecode_version: int | None = None
    min_cosine: float = 0.99
    seed: int = 0
    install_to: str | None = None
    pack: str | None = None
    # None: on where it is exact in fp32 (causal text towers pooled at the end-of-text token), else off.
    truncate_text: bool | None = None
    full_range: bool = QuantConfig.full_range
    # The recipe the config was built from (a built-in name or a file's stem); names the default --out.
    recipe: str | None = None

    def __post_init__(self) -> None:
        # Types first (a recipe's `force: "false"` is a true string: it once replaced a user's output).
        for name in ("out", "checkpoint", "install_to", "templates"):
            object.__setattr__(self, name, _path_or_none(name, getattr(self, name), _PATH_FIELDS[name]))
        for name in ("force", "also_pt", "truncate_text", "full_range"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "truncate_text" and value is None):
                raise ConfigError(f"{name}={value!r} must be true or false (a boolean, not {type(value).__name__})")
        if self.labels is not None and (isinstance(self.labels, (str, bytes)) or not isinstance(self.labels, (list, tuple))):
            raise ConfigError(f"labels={self.labels!r} must be a list of class names, a labels file or comma-separated names")
        for name in ("keep_fp32", "per_tensor"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name}={value!r} must be a list of module-name patterns")
        if self.recipe is not None and not isinstance(self.recipe, str):
            raise ConfigError(f"recipe={self.recipe!r} must be a recipe name")
        _choice("target", self.target, TARGETS)
        if self.engine is None:
            object.__setattr__(self, "engine", DEFAULT_ENGINE[self.target])
        if self.pack is None:
            object.__setattr__(self, "pack", DEFAULT_PACK[self.target])
        _choice("pack", self.pack, PACK_MODES)
        if self.full_range and self.engine != "fbgemm":
            raise ConfigError(f"full_range needs engine fbgemm, not {self.engine!r}: qnnpack already quantizes "
                              "activations to 8 bits")
        if self.pack == "first-call" and self.target != "x86":
            raise ConfigError(
                f"pack='first-call' needs target x86, not {self.target!r}: android artifacts are frozen by "
                "optimize_for_mobile (and qnnpack already packs on the first call); use pack='load'"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model={self.model!r} must be an open_clip model name")
        if self.checkpoint is not None and self.pretrained not in (None, "builtin"):
            raise ConfigError(
                f"checkpoint={self.checkpoint!r} and pretrained={self.pretrained!r} both given; "
                "use one of them"
            )
        if self.pretrained == "builtin" and self.model != BUILTIN_MODEL and self.checkpoint is None:
            # Weights are always a decision: converting random weights by accident looks like success.
            from .load import check_model_name  # an unknown model name is the first thing to say

            check_model_name(self.model)
            raise ConfigError(f"model={self.model!r} needs its weights named: --pretrained TAG "
                              f"({pretrained_choices(self.model)}), --pretrained none (seeded random weights) "
                              "or --checkpoint FILE")
        if self.pretrained == "builtin" and self.model == BUILTIN_MODEL and self.checkpoint is None:
            pass  # the trained tiny checkpoint that ships in assets/
        elif self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained):
            raise ConfigError(f"pretrained={self.pretrained!r} must be an open_clip pretrained tag or 'none'")
        if self.checkpoint is not None:
            object.__setattr__(self, "pretrained", None)
        for name in ("keep_fp32", "per_tensor"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        _ = self.quant  # validates the quantization fields
        if self.target == "android" and self.engine != "qnnpack":
            raise ConfigError(f"engine={self.engine!r} needs target x86: android artifacts run qnnpack weights on the phone")
        if self.labels is not None:
            validate_labels(self.labels, "labels")
        if self.bytecode_version is not None and (
            isinstance(self.bytecode_version, bool) or not isinstance(self.bytecode_version, int)
            or self.bytecode_version < 1
        ):
            raise ConfigError(f"bytecode_version={self.bytecode_version!r} must be a positive integer")
        if isinstance(self.min_cosine, bool) or not isinstance(self.min_cosine, (int, float)) or not (
            -1.0 <= self.min_cosine <= 1.0
        ):
            raise ConfigError(f"min_cosine={self.min_cosine!r} must be a number in [-1, 1]")
        if self.install_to is not None and self.target != "android":
            raise ConfigError(f"install_to={self.install_to!r} needs target android, not {self.target!r}: the app runs "
                              "qnnpack weights (fbgemm weights on a phone are the wrong file)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed={self.seed!r} must be an integer from 0 to 2**63-1")
        if not isinstance(self.templates, str) or not self.templates:
            raise ConfigError(f"templates={self.templates!r} must be one of {', '.join(TEMPLATE_SETS)} or a file")

    @property
    def quant(self) -> QuantConfig:
        return QuantConfig(
            mode=self.quantize, engine=self.engine, weights=self.weights, attention=self.attention,
            embedding=self.embedding, patch=self.patch, projection=self.projection,
            keep_fp32=self.keep_fp32, per_tensor=self.per_tensor, full_range=self.full_range,
        )

    @property
    def needs_xnnpack(self) -> bool:
        """Android artifacts get optimize_for_mobile's XNNPACK rewrites; x86 ones do not."""
        return self.target == "android"

    @property
    def out_dir(self) -> Path:
        """``--out``, else ``out/<model>-<recipe>`` (``out/<model>-<target>`` without a recipe), so that two
        recipes never share a default folder."""
        if self.out:
            return Path(self.out)
        return Path("out") / f"{self.model.replace('/', '_').replace(':', '_')}-{self.recipe or self.target}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["keep_fp32"] = list(self.keep_fp32)
        data["per_tensor"] = list(self.per_tensor)
        data["labels"] = list(self.labels) if self.labels is not None else None
        return data


FIELD_NAMES = tuple(f.name for f in fields(ConvertConfig))
RECIPE_KEYS = tuple(name for name in FIELD_NAMES if name != "recipe")


def pretrained_choices(model: str) -> str:
    """The pretrained tags open_clip knows for ``model`` (imports open_clip: only on the error path)."""
    try:
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(model)
    except Exception:  # noqa: BLE001 - an unknown model is reported by the loader with its own message
        tags = []
    if not tags:
        return "open_clip has none for this model"
    return ", ".join(tags[:8]) + (f", ... {len(tags) - 8} more" if len(tags) > 8 else "")


def validate_labels(labels: tuple[str, ...] | list[str], source: str) -> tuple[str, ...]:
    """Labels must be non-empty, non-blank strings without duplicates."""
    labels = tuple(labels)
    if not labels:
        raise LabelsError(f"{source}: the label list is empty; give at least one class name")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise LabelsError(f"{source}: label {i + 1} is blank or not text ({label!r})")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        key = label.strip().lower()
        if key in seen:
            raise LabelsError(
                f"{source}: duplicate label {label!r} (entries {seen[key] + 1} and {i + 1})"
            )
        seen[key] = i
    return tuple(label.strip() for label in labels)


def read_labels(spec: str) -> tuple[str, ...]:
    """``spec`` is a file with one label per line (blank lines and ``#`` comments skipped) or a
    comma-separated list of names."""
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LabelsError(f"labels file {spec}: cannot be read ({exc})") from None
        lines = [ln.strip() for ln in text.splitlines()]
        return validate_labels([ln for ln in lines if ln and not ln.startswith("#")], f"labels file {spec}")
    if path.is_dir() and ("/" in spec or path.suffix):  # a bare word is a label, even if a folder has its name
        raise LabelsError(f"labels file {spec} is a directory; give a file with one label per line")
    if path.suffix in (".txt", ".csv", ".lst") or "/" in spec:
        raise LabelsError(f"labels file {spec} does not exist")
    return validate_labels([s for s in (p.strip() for p in spec.split(",")) if s] or [], f"labels {spec!r}")


def resolve_recipe_path(recipe: str) -> Path:
    path = Path(recipe)
    if path.is_file():
        return path
    builtin = RECIPES_DIR / f"{recipe}.yaml"
    if builtin.is_file():
        return builtin
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise ConfigError(
        f"recipe {recipe!r} is neither a file nor a built-in recipe ({', '.join(names)})"
        f"{close_matches(recipe, names)}"
    )


def load_recipe(recipe: str) -> dict[str, Any]:
    """Read a YAML recipe into a dict of ConvertConfig fields (keys checked, not yet validated)."""
    import yaml  # here, not at the top: every deploy command imports this module, only recipes need yaml

    path = resolve_recipe_path(recipe)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"recipe {path}: malformed YAML{where} ({getattr(exc, 'problem', exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe {path}: cannot be read ({exc})") from None
    except RecursionError:
        raise ConfigError(f"recipe {path}: nested too deeply (a recipe is a flat mapping of options)") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"recipe {path}: must be a mapping of options, got {type(data).__name__}")
    return normalise_keys(data, f"recipe {path}")


def normalise_keys(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name == "description":
            continue
        if name not in RECIPE_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r}{close_matches(name, RECIPE_KEYS)}"
            )
        if name in out:
            raise ConfigError(f"{source}: {name} is given twice (as {name!r} and {name.replace('_', '-')!r})")
        out[name] = value
    if isinstance(out.get("labels"), str):
        out["labels"] = read_labels(out["labels"])
    return out


def build_config(recipe: str | None = None, **overrides: Any) -> ConvertConfig:
    """Recipe values, then the overrides that are not None, into a validated ConvertConfig."""
    values: dict[str, Any] = load_recipe(recipe) if recipe else {}
    values.update(normalise_keys({k: v for k, v in overrides.items() if v is not None and k != "recipe"}, "options"))
    if recipe:
        values["recipe"] = resolve_recipe_path(recipe).stem
    elif overrides.get("recipe"):
        values["recipe"] = overrides["recipe"]
    try:
        return ConvertConfig(**values)
    except TypeError as exc:  # a recipe value of the wrong shape
        raise ConfigError(f"invalid option value: {exc}") from None
