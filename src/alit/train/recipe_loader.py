"""Recipes read from YAML: found by name or path, `--set key=value` overrides applied, every value
checked against its dataclass field (recipe.py) before any work starts.

The shipped recipes live in `alit/configs/<stage>-<name>.yaml` and are found by name (`--config
tiny` for the stage at hand, or the full `distill-tiny`). Unknown keys are an error, and so are
values of the wrong type: `--set lr=abc` fails at once.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from importlib import resources
from pathlib import Path

import yaml

from ..errors import AlitError
from .recipe import Recipe
from .stages import STAGE_NAMES, stage_spec


def shipped() -> dict[str, Path]:
    """Shipped recipe name ("distill-tiny") -> file."""
    folder = resources.files("alit") / "configs"
    out = {}
    if folder.is_dir():
        for f in folder.iterdir():
            if f.name.endswith(".yaml"):
                out[f.name[:-5]] = Path(str(f))
    return dict(sorted(out.items()))


def find(name: str, stage: str) -> Path:
    """A recipe file: a path to a YAML file, or a shipped name (`tiny` or `distill-tiny`)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise AlitError(f"recipe file {name} not found")
        return path
    recipes = shipped()
    for key in (f"{stage}-{name}", name):
        if key in recipes:
            return recipes[key]
    names = [k[len(stage) + 1:] for k in recipes if k.startswith(stage + "-")]
    raise AlitError(f"no {stage} recipe named {name!r}; shipped {stage} recipes: {', '.join(names)} "
                    f"(or give a path to a YAML file)")


def load(name_or_path: str | Path, stage: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe for `stage`, then apply `key=value` overrides (dotted keys for sections)."""
    path = find(str(name_or_path), stage)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise AlitError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise AlitError(f"{path}: a recipe is a mapping of keys to values")
    raw.setdefault("stage", stage)
    if raw["stage"] != stage:
        raise AlitError(f"{path} is a {raw['stage']!r} recipe, not a {stage!r} one")
    return from_dict(raw, overrides, source=str(path))


# removed keys that the recipe.yaml of older runs still holds at their default (None): ignored
RETIRED = ("qkv_init_std",)


def from_dict(raw: dict, overrides=(), source: str = "recipe") -> Recipe:
    """The recipe of a mapping (its `stage` picks the class), `overrides` applied."""
    stage = raw.get("stage")
    if stage not in STAGE_NAMES:
        raise AlitError(f"{source}: stage must be one of {STAGE_NAMES}, got {stage!r}")
    cls = stage_spec(stage).recipe
    raw = dict(raw)
    for key in RETIRED:
        if raw.pop(key, None) is not None:
            raise AlitError(f"{source}: {key} is no longer a recipe option; remove it")
    for item in overrides:
        key, value = parse_override(item)
        _set(raw, key, value, cls, source)
    if raw["stage"] != stage:
        raise AlitError(f"{source}: a {stage!r} recipe cannot become a {raw['stage']!r} one (stage={raw['stage']})")
    return build(cls, raw, source)


def parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise AlitError(f"--set expects key=value, got {item!r}")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set(raw: dict, key: str, value, cls, source: str) -> None:
    parts = key.split(".")
    hints = typing.get_type_hints(cls)
    node = raw
    for i, part in enumerate(parts):
        if part not in hints:
            raise AlitError(f"--set {key}: unknown key {part!r}; known: {', '.join(sorted(hints))}")
        if i == len(parts) - 1:
            node[part] = value
            return
        sub = _dataclass_of(hints[part])
        if sub is None:
            if hints[part] is dict or typing.get_origin(hints[part]) is dict:
                node = node.setdefault(part, {})  # a free-form mapping (model_overrides): nest the rest
                for sub_key in parts[i + 1:-1]:
                    node = node.setdefault(sub_key, {})
                node[parts[-1]] = value
                return
            raise AlitError(f"--set {key}: {part!r} has no sub-keys")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise AlitError(f"{source}: {part} must be a mapping")
        hints, cls = typing.get_type_hints(sub), sub


def build(cls, raw: dict, source: str = "recipe"):
    """Dataclass `cls` from a mapping, every value checked against its annotation."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise AlitError(f"{source}: unknown key(s) {unknown} for a {cls.__name__}; "
                        f"known: {', '.join(sorted(hints))}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = check(value, hints[name], name, source)
    try:
        return cls(**kwargs)
    except AlitError as e:
        raise AlitError(f"{source}: {e}") from None


def check(value, tp, name: str, source: str = "recipe"):
    """`value` converted to annotation `tp`, or an AlitError naming the key and the expected type."""
    sub = _dataclass_of(tp)
    if sub is not None:
        if isinstance(value, sub):
            return value
        if not isinstance(value, dict):
            raise AlitError(f"{source}: {name} must be a mapping of {sub.__name__} fields, got {value!r}")
        return build(sub, value, f"{source}: {name}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return check(value, option, name, source)
            except AlitError:
                continue
        raise AlitError(f"{source}: {name} must be {_describe(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise AlitError(f"{source}: {name} must be null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise AlitError(f"{source}: {name} must be {_describe(tp)}, got {value!r}")
                return tuple(check(v, a, f"{name}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
            item = args[0] if args else object
            out = [check(v, item, f"{name}[{i}]", source) if item is not object else v
                   for i, v in enumerate(value)]
            return tuple(out) if origin is tuple else out
    raise AlitError(f"{source}: {name} must be {_describe(tp)}, got {value!r}")


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        return f"a list of {', '.join(_describe(a) for a in args if a is not Ellipsis)}"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    return getattr(tp, "__name__", str(tp))


def _dataclass_of(tp):
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None
