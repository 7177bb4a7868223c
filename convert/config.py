"""Validated, frozen configuration of one conversion, from CLI arguments or a YAML recipe.

A recipe is a YAML mapping whose keys are :class:`ConvertConfig` field names (``-`` or ``_``);
the CLI overrides it. Built-in recipes live in ``assets/recipes`` and can be named without a path.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, LabelsError, close_matches, one_line, quoted

QUANTIZE_MODES = ("none", "image", "text", "combined")
TARGETS = ("android", "x86")
ENGINES = ("qnnpack", "fbgemm")
WEIGHT_SCHEMES = ("per-channel", "per-tensor")
PRECISIONS = ("int8", "fp32")
TEMPLATE_SETS = ("openai", "simple", "plain")
# When int8 weights are packed for the engine (see convert/packing.py).
PACK_MODES = ("load", "first-call")
# Which model files a conversion writes: TorchScript lite (.ptl, pytorch_android_lite), ExecuTorch (.pte,
# XNNPACK; needs the executorch extra), or both from the one recipe.
FORMATS = ("ptl", "pte", "both")
DEFAULT_ENGINE = {"android": "qnnpack", "x86": "fbgemm"}
# fbgemm packs at load unless told otherwise; qnnpack (android) always packs on the first call itself.
DEFAULT_PACK = {"android": "load", "x86": "first-call"}
RECIPES_DIR = Path(__file__).resolve().parent.parent / "assets" / "recipes"
BUILTIN_MODEL = "kit-tiny-clip"


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(
            f"{name}={quoted(value)} is not valid; choose one of: {', '.join(choices)}"
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
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}={quoted(value)} is not valid: {valid} (a non-empty string)")
    from .files import not_a_path

    why = not_a_path(value)  # decided here, so that no later Path(...).exists() meets ENAMETOOLONG
    if why is not None:
        raise ConfigError(f"{name}={quoted(value)} is not valid: {valid} (not a file name: {why})")
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
                raise ConfigError(f"{name}={quoted(value)} must be a list of module-name patterns")

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
    format: str = "ptl"
    # .pte only: accept a Linear/matmul/attention op that XNNPACK does not take (it then runs in portable kernels).
    allow_undelegated: bool = False
    # The recipe the config was built from (a built-in name or a file's stem); names the default --out.
    recipe: str | None = None

    def __post_init__(self) -> None:
        # Types first (a recipe's `force: "false"` is a true string: it once replaced a user's output).
        for name in ("out", "checkpoint", "install_to", "templates"):
            object.__setattr__(self, name, _path_or_none(name, getattr(self, name), _PATH_FIELDS[name]))
        for name in ("force", "also_pt", "truncate_text", "full_range", "allow_undelegated"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "truncate_text" and value is None):
                raise ConfigError(f"{name}={quoted(value)} must be true or false (a boolean, not {type(value).__name__})")
        if self.labels is not None and (isinstance(self.labels, (str, bytes)) or not isinstance(self.labels, (list, tuple))):
            raise ConfigError(f"labels={quoted(self.labels)} must be a list of class names, a labels file or comma-separated names")
        for name in ("keep_fp32", "per_tensor"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name}={quoted(value)} must be a list of module-name patterns")
        if self.recipe is not None and not isinstance(self.recipe, str):
            raise ConfigError(f"recipe={quoted(self.recipe)} must be a recipe name")
        _choice("target", self.target, TARGETS)
        _choice("format", self.format, FORMATS)
        if self.format == "pte":
            for name, default in (("also_pt", False), ("bytecode_version", None), ("full_range", False)):
                if getattr(self, name) != default:
                    raise ConfigError(f"{name}={getattr(self, name)!r} applies to .ptl files only; with format='pte' "
                                      "leave it out, or use format='both'")
        if self.engine is None:
            object.__setattr__(self, "engine", DEFAULT_ENGINE[self.target])
        if self.pack is None:
            object.__setattr__(self, "pack", DEFAULT_PACK[self.target])
        _choice("pack", self.pack, PACK_MODES)
        if self.full_range and self.engine != "fbgemm":
            raise ConfigError(f"full_range needs engine fbgemm, not {quoted(self.engine)}: qnnpack already quantizes "
                              "activations to 8 bits")
        if self.pack == "first-call" and self.target != "x86":
            raise ConfigError(
                f"pack='first-call' needs target x86, not {quoted(self.target)}: android artifacts are frozen by "
                "optimize_for_mobile (and qnnpack already packs on the first call); use pack='load'"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model={quoted(self.model)} must be an open_clip model name")
        if self.checkpoint is not None and self.pretrained not in (None, "builtin"):
            raise ConfigError(
                f"checkpoint={quoted(self.checkpoint)} and pretrained={quoted(self.pretrained)} both given; "
                "use one of them"
            )
        if self.pretrained == "builtin" and self.model != BUILTIN_MODEL and self.checkpoint is None:
            # Weights are always a decision: converting random weights by accident looks like success.
            from .load import check_model_name  # an unknown model name is the first thing to say

            check_model_name(self.model)
            raise ConfigError(f"model={quoted(self.model)} needs its weights named: --pretrained TAG "
                              f"({pretrained_choices(self.model)}), --pretrained none (seeded random weights) "
                              "or --checkpoint FILE")
        if self.pretrained == "builtin" and self.model == BUILTIN_MODEL and self.checkpoint is None:
            pass  # the trained tiny checkpoint that ships in assets/
        elif self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained):
            raise ConfigError(f"pretrained={quoted(self.pretrained)} must be an open_clip pretrained tag or 'none'")
        if self.checkpoint is not None:
            object.__setattr__(self, "pretrained", None)
        for name in ("keep_fp32", "per_tensor"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.labels, list):
            object.__setattr__(self, "labels", tuple(self.labels))
        _ = self.quant  # validates the quantization fields
        if self.target == "android" and self.engine != "qnnpack":
            raise ConfigError(f"engine={quoted(self.engine)} needs target x86: android artifacts run qnnpack weights on the phone")
        if self.labels is not None:
            validate_labels(self.labels, "labels")
        if self.bytecode_version is not None and (
            isinstance(self.bytecode_version, bool) or not isinstance(self.bytecode_version, int)
            or self.bytecode_version < 1
        ):
            raise ConfigError(f"bytecode_version={quoted(self.bytecode_version)} must be a positive integer")
        if isinstance(self.min_cosine, bool) or not isinstance(self.min_cosine, (int, float)) or not (
            -1.0 <= self.min_cosine <= 1.0
        ):
            raise ConfigError(f"min_cosine={quoted(self.min_cosine)} must be a number in [-1, 1]")
        if self.install_to is not None and self.target != "android":
            raise ConfigError(f"install_to={quoted(self.install_to)} needs target android, not {quoted(self.target)}: the app runs "
                              "qnnpack weights (fbgemm weights on a phone are the wrong file)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed={quoted(self.seed)} must be an integer from 0 to 2**63-1")
        if not isinstance(self.templates, str) or not self.templates:
            raise ConfigError(f"templates={quoted(self.templates)} must be one of {', '.join(TEMPLATE_SETS)} or a file")

    @property
    def quant(self) -> QuantConfig:
        return QuantConfig(
            mode=self.quantize, engine=self.engine, weights=self.weights, attention=self.attention,
            embedding=self.embedding, patch=self.patch, projection=self.projection,
            keep_fp32=self.keep_fp32, per_tensor=self.per_tensor, full_range=self.full_range,
        )

    @property
    def formats(self) -> tuple[str, ...]:
        """The model-file formats written, in order: ``("ptl",)``, ``("pte",)`` or ``("ptl", "pte")``."""
        return ("ptl", "pte") if self.format == "both" else (self.format,)

    @property
    def needs_xnnpack(self) -> bool:
        """Android ``.ptl`` files get optimize_for_mobile's XNNPACK rewrites; x86 ones (and ``.pte``) do not."""
        return self.target == "android" and "ptl" in self.formats

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
            raise LabelsError(f"{source}: label {i + 1} is blank or not text ({quoted(label)})")
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        key = label.strip().lower()
        if key in seen:
            raise LabelsError(
                f"{source}: duplicate label {quoted(label)} (entries {seen[key] + 1} and {i + 1})"
            )
        seen[key] = i
    return tuple(label.strip() for label in labels)


def read_labels(spec: str) -> tuple[str, ...]:
    """``spec`` is a file with one label per line (blank lines and ``#`` comments skipped) or a list of names
    with at least one comma (``cat,dog``; a one-label list is ``cat,``).

    A spec without a comma is always a file name: a mistyped ``--labels mylabels`` was once a one-label
    head that read every image as "mylabels 1.00". A comma-separated list that also names a regular file
    is the file. Strings that cannot be paths (an 800-character list) never reach the file system.
    """
    from .files import describe_path, path_kind, read_user_text

    if not isinstance(spec, str):
        raise LabelsError(f"labels={quoted(spec)} must be a labels file or comma-separated names")
    kind = path_kind(spec)
    if kind == "file":
        text = read_user_text(spec, "labels file", LabelsError)
        lines = [ln.strip() for ln in text.splitlines()]
        return validate_labels([ln for ln in lines if ln and not ln.startswith("#")], f"labels file {quoted(spec)}")
    if "," in spec or not spec.strip():
        return validate_labels([s for s in (p.strip() for p in spec.split(",")) if s], f"labels {quoted(spec)}")
    hint = ""
    if kind == "missing" or kind.startswith("not a file name"):
        word = spec.strip()
        hint = f"; for a one-label list write `{word if len(word) <= 40 else word[:37] + '...'},`"
    raise LabelsError(describe_path(spec, kind, "labels file") + hint)


def resolve_recipe_path(recipe: str) -> Path:
    """A recipe file (a regular file) or a built-in recipe's name; :class:`ConfigError` otherwise."""
    from .files import describe_path, not_a_path, path_kind

    kind = path_kind(recipe)
    if kind == "file":
        return Path(recipe)
    builtin = RECIPES_DIR / f"{recipe}.yaml"
    if "/" not in recipe and not_a_path(recipe) is None and builtin.is_file():
        return builtin
    if kind != "missing" and not kind.startswith("not a file name"):
        raise ConfigError(describe_path(recipe, kind, "recipe"))
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise ConfigError(
        f"recipe {quoted(recipe)} is neither a file nor a built-in recipe ({', '.join(names)})"
        f"{close_matches(recipe, names)}"
    )


@functools.cache
def _recipe_loader():
    """``(loader, duplicate-key error)``: the safe loader (libyaml's parser when PyYAML has it: a 1 MB value
    took 4.7 s to parse in Python, 0.05 s in C) refusing a key given twice in one mapping. YAML lets the last
    value win silently; in a recipe that is almost always a mistake (the first ``keep_fp32:`` list was dropped).
    Built on first use, not at import: every deploy command imports this module, only recipes need yaml."""
    import yaml

    class DuplicateKey(yaml.constructor.ConstructorError):
        pass

    class RecipeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    try:
                        if key in seen:
                            raise DuplicateKey(None, None, f"key {quoted(key)} is given twice (lines {seen[key]} "
                                               f"and {line}); YAML would keep only the last: remove one")
                        seen[key] = line
                    except TypeError:  # an unhashable key: SafeLoader's own error says so
                        continue
            return super().construct_mapping(node, deep=deep)

    return RecipeLoader, DuplicateKey


def load_recipe(recipe: str) -> dict[str, Any]:
    """Read a YAML recipe into a dict of ConvertConfig fields (keys checked, not yet validated)."""
    import yaml  # here, not at the top: every deploy command imports this module, only recipes need yaml

    from .files import read_user_text

    path = resolve_recipe_path(recipe)
    text = read_user_text(str(path), "recipe", ConfigError)
    loader, duplicate_key = _recipe_loader()
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except duplicate_key as exc:
        raise ConfigError(f"recipe {path}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        if "nesting depth" not in str(problem):  # libyaml's own depth limit: said as below
            raise ConfigError(f"recipe {path}: malformed YAML{where} ({one_line(problem, 200)})") from None
        raise ConfigError(f"recipe {path}: nested too deeply (a recipe is a flat mapping of options)") from None
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
                f"{source}: unknown key {quoted(key)}{close_matches(name, RECIPE_KEYS)}"
            )
        if name in out:
            raise ConfigError(f"{source}: {name} is given twice (as {quoted(name)} and {quoted(name.replace('_', '-'))})")
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
