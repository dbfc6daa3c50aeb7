"""The one config loader: YAML plus `a.b.c=value` overrides, validated into typed models.

Every problem becomes one line that names the path and the rule, e.g.
``mix.sources[2].fraction=1.3: must be between 0 and 1``. Nothing is written before a config validates.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Sequence

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from spt.errors import InputError


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ConfigError(InputError):
    """A config failed to load; ``problems`` holds one human-readable line per problem."""


def format_path(root: str, loc: Iterable[Any]) -> str:
    """``("sources", 2, "fraction")`` under root ``mix`` -> ``mix.sources[2].fraction``."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e6:
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation may hold (Optional/Union/Annotated flattened)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _step(annotation: Any, part: Any) -> Any:
    """The annotation one location step below ``annotation`` (a field name, a list index or a dict key)."""
    for cand in _unwrap(annotation):
        origin, args = typing.get_origin(cand), typing.get_args(cand)
        if isinstance(part, int) and origin in (list, tuple) and args:
            return args[0]
        if isinstance(cand, type) and issubclass(cand, BaseModel) and part in cand.model_fields:
            return cand.model_fields[part]
        if origin is dict and args:
            return args[1]
    return None


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> Any:
    """Follows an error location through the schema; returns the FieldInfo or annotation there, or None."""
    node: Any = model
    for part in loc:
        node = _step(getattr(node, "annotation", node), part)
        if node is None:
            return None
    return node


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    node = _walk(model, loc)
    for cand in _unwrap(getattr(node, "annotation", node)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _bounds(field) -> tuple[Any, Any]:
    low = high = None
    for meta in getattr(field, "metadata", []):
        if isinstance(meta, (annotated_types.Ge, annotated_types.Gt)):
            low = getattr(meta, "ge", getattr(meta, "gt", None))
        if isinstance(meta, (annotated_types.Le, annotated_types.Lt)):
            high = getattr(meta, "le", getattr(meta, "lt", None))
    return low, high


_TYPE_RULES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "path_type": "must be a path",
    "finite_number": "must be a finite number",
    "too_short": "must not be empty",
}


def _rule(error: dict, model: type[BaseModel]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(_walk(model, error["loc"]))
        if low is not None and high is not None:
            return f"must be between {low} and {high}"
        return {
            "greater_than_equal": f"must be >= {ctx.get('ge')}",
            "greater_than": f"must be > {ctx.get('gt')}",
            "less_than_equal": f"must be <= {ctx.get('le')}",
            "less_than": f"must be < {ctx.get('lt')}",
        }[kind]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        owner = _model_at(model, error["loc"][:-1])
        allowed = ", ".join(owner.model_fields) if owner is not None else ""
        return f"unknown key (allowed: {allowed})" if allowed else "unknown key"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "enum":
        return f"must be one of {ctx.get('expected')}"
    if kind == "too_short" and ctx.get("min_length", 0) > 1:
        return f"must have at least {ctx['min_length']} items"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    return _TYPE_RULES.get(kind, error["msg"][:1].lower() + error["msg"][1:])


def validation_problems(root: str, model: type[BaseModel], exc: ValidationError) -> list[str]:
    """One line per pydantic error: ``path=value: rule``."""
    problems = []
    for error in exc.errors():
        loc = [part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
        path = format_path(root, loc)
        # A rule about a whole section (a model validator) names the section, not its contents.
        whole_section = error["type"] == "value_error" and isinstance(error.get("input"), dict)
        shown = error["type"] not in ("missing", "extra_forbidden") and loc and not whole_section
        value = f"={_format_value(error['input'])}" if shown else ""
        problems.append(f"{path}{value}: {_rule(error, model)}")
    return problems


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``sources[1].fraction=0.2`` or ``sources.1.fraction=0.2`` -> (["sources", 1, "fraction"], 0.2)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"override {text!r}: expected KEY=VALUE, e.g. seed=3"])
    parts: list[str | int] = []
    for piece in key.strip().replace("[", ".").replace("]", "").split("."):
        if piece == "":
            raise ConfigError([f"override {text!r}: empty key segment"])
        parts.append(int(piece) if piece.isdigit() else piece)
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_override(data: dict, parts: list[str | int], value: Any, text: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                raise ConfigError([f"override {text!r}: index {part} out of range (list has {len(node)} items)"])
            node = node[part]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError([f"override {text!r}: {'.'.join(map(str, parts[:depth + 1]))} is not a mapping"])
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int):
        if last >= len(node):
            raise ConfigError([f"override {text!r}: index {last} out of range (list has {len(node)} items)"])
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError([f"override {text!r}: cannot set {last!r} here"])


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e9`` and ``2.5e-3`` as floats (YAML 1.1 wants a dot and a sign)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"),
    list("-+0123456789."),
)


def load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: str | Path) -> dict:
    """Reads a YAML mapping, turning every I/O and syntax problem into a ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"{path}: file not found"])
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, expected a YAML file"])
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{path}: invalid YAML at {where}{problem}"]) from None
    if data is None:
        raise ConfigError([f"{path}: empty file, expected a mapping with a 'kind' key"])
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping, got {type(data).__name__}"])
    return data


def validate(data: dict, kinds: dict[str, type[BaseModel]], expected_kind: str | None = None) -> BaseModel:
    """Validates a mapping whose ``kind`` key selects the model; raises ConfigError."""
    kind = data.get("kind")
    if kind is None:
        raise ConfigError([f"kind: required; one of {', '.join(sorted(kinds))}"])
    if kind not in kinds:
        raise ConfigError([f"kind={_format_value(kind)}: must be one of {', '.join(sorted(kinds))}"])
    if expected_kind is not None and kind != expected_kind:
        raise ConfigError([f"kind={kind!r}: this command expects a {expected_kind!r} config"])
    model = kinds[kind]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(kind, model, exc)) from None

