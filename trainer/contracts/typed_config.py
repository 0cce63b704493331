"""One typed loader for every YAML/dict config: dataclass-from-mapping with type checks.

The trainer config (``specs/experiments/*.yaml``), the feature spec
(``specs/features/*.yaml``) and the pipeline config (``specs/configs/*.yaml``) are
frozen dataclasses loaded through :func:`load_yaml` and :func:`build`. Pure Python and
PyYAML (no TensorFlow, no Beam), so ``pipeline/`` can import it.

What it checks, so the dataclasses only state their own rules in ``__post_init__``:

* types from the annotations: ``int`` (``True`` and ``10.5`` are not integers),
  ``float`` (finite; integers accepted), ``bool``, ``str``, ``X | None``, enums (by
  value), ``tuple[X, ...]`` (a single number becomes a one-item tuple), ``list[X]``,
  ``dict[K, V]`` and nested dataclasses;
* unknown keys (with the closest allowed name) and missing required fields;
* in files: duplicate mapping keys, invalid UTF-8, invalid YAML, a missing file and a
  directory given as a file.

Every error is one line in the caller's error class, ``"<source>: <field path>:
<what is wrong>"``, e.g. ``exp.yaml: model.embedding.kind: 'foo' is not one of [...]``.
A ``__post_init__`` raises ``ValueError("<field>: <message>")`` (or a subclass) and the
loader prefixes the path of the dataclass it was building.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class Sizes:
    ...     rows: int
    ...     shares: tuple[float, ...] = (0.1,)
    >>> build(Sizes, {"rows": 4, "shares": 0.5}).shares
    (0.5,)
    >>> build(Sizes, {"rows": 4.5}, source="s.yaml")
    Traceback (most recent call last):
    ...
    ValueError: s.yaml: rows: must be an integer, got 4.5
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _FieldError(Exception):
    """Internal: ``"<field path>: <message>"``; :func:`build` adds the source."""

    def __init__(self, where: str, message: str | None = None):
        super().__init__(
            where if message is None else f"{where or '<root>'}: {message}"
        )


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a mapping holding the same key twice.

    PyYAML keeps the last value of a repeated key without a word, so a spec with two
    ``top_k:`` lines would silently train with the second. Merge keys (``<<``) may
    still be overridden by explicit keys, as YAML 1.1 defines.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key: SafeLoader reports it below
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r} (first on line {first.line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str, what: str, error: type[ValueError] = ValueError) -> Any:
    """Reads one YAML document from a local file, strictly.

    Args:
        path: The file.
        what: What the file is, for messages (``"feature spec file"``).
        error: The exception class to raise (a ``ValueError`` subclass).

    Returns:
        The parsed document (any YAML value; :func:`build` checks its shape).

    Raises:
        error: ``"<path>: <what> not found"``, ``"... is a directory"``, ``"... not
            UTF-8"``, ``"... not valid YAML: ..."`` (duplicate keys included).
    """
    if os.path.isdir(path):
        raise error(f"{path}: is a directory, not a {what}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1]
        raise error(
            f"{path}: not UTF-8 text (byte {e.start}: {bad!r}); a {what} must be UTF-8"
        ) from None
    loader = UniqueKeyLoader(text)
    loader.name = path  # marks in messages name the file, not "<unicode string>"
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise error(f"{path}: not valid YAML: {detail}") from None
    finally:
        loader.dispose()


def build(
    cls: type[T],
    raw: Any,
    *,
    source: str = "<dict>",
    error: type[ValueError] = ValueError,
) -> T:
    """Builds dataclass ``cls`` from a parsed mapping, checking every field.

    Args:
        cls: A dataclass whose fields are annotated with the types above.
        raw: The parsed YAML/JSON value.
        source: Named first in every message (the file path, or ``"<dict>"``).
        error: The exception class to raise.

    Raises:
        error: ``"<source>: <field path>: <message>"``.
    """
    try:
        return _build(cls, raw, "")
    except _FieldError as e:
        raise error(f"{source}: {e}") from None


def to_plain(value: Any) -> Any:
    """A dataclass (or nested value) as JSON/YAML-ready dicts, lists and scalars.

    Enums become their values and tuples lists, so ``build(cls, to_plain(x)) == x``.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------- internals


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _build(cls: type, raw: Any, path: str) -> Any:
    if not isinstance(raw, Mapping):
        raise _FieldError(path, f"must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _FieldError(
                _join(path, str(key)), f"unknown field{hint}; allowed: {sorted(names)}"
            )
    for f in fields:
        missing = (
            f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        if missing and f.name not in raw:
            raise _FieldError(_join(path, f.name), "required")
    kwargs = {
        name: _coerce(hints[name], value, _join(path, name))
        for name, value in raw.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as e:  # a rule of the dataclass: "<field>: <message>"
        raise _FieldError(_join(path, str(e))) from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            allowed = [m.value for m in tp]
            raise _FieldError(where, f"{value!r} is not one of {allowed}") from None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return _coerce_union(args, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise _FieldError(where, f"{value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        return _coerce_sequence(origin, args, value, where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _FieldError(where, f"must be a mapping, got {value!r}")
        key_tp, value_tp = args or (Any, Any)
        return {
            _coerce(key_tp, k, where): _coerce(value_tp, v, f"{where}.{k}")
            for k, v in value.items()
        }
    return _coerce_scalar(tp, value, where)


def _coerce_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    first: _FieldError | None = None
    for option in options:
        try:
            return _coerce(option, value, where)
        except _FieldError as e:
            first = first or e
    if len(options) == 1 and first is not None:
        raise first
    names = [getattr(a, "__name__", str(a)) for a in args]
    raise _FieldError(where, f"must be one of the types {names}, got {value!r}")


def _coerce_sequence(origin: type, args: tuple[Any, ...], value: Any, where: str):
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]  # `num_centroids: 256` means (256,)
    if not isinstance(value, list | tuple):
        raise _FieldError(where, f"must be a list, got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise _FieldError(where, f"must hold {len(args)} items, got {value!r}")
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    items = [
        _coerce(t, v, f"{where}[{i}]")
        for i, (t, v) in enumerate(zip(item_types, value, strict=True))
    ]
    return tuple(items) if origin is tuple else items


def _coerce_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise _FieldError(where, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(where, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _FieldError(where, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise _FieldError(where, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _FieldError(where, f"must be a string, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise _FieldError(where, f"must be null, got {value!r}")
        return None
    raise TypeError(f"typed_config: unsupported annotation {tp!r} at {where}")
