"""JSON Schema (2020-12, as OpenAPI 3.1 uses it) derived from the attrs classes of the wire.

The response bodies are attrs classes (:mod:`vidgate.wire`) that the handlers unstructure
with the one converter; their schemas in ``/openapi.json`` are read off the same classes,
so the document cannot drift from what is served. A type says the shape; what a type
cannot say (a description, bounds, examples, a URI format) is given per field as
``attrs.field(metadata={"schema": {...}})``, and a class's docstring (its first paragraph)
becomes its description. A class may set ``__schema_name__`` to be published under
another name than its own.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

#: Names for classes that cannot carry ``__schema_name__`` (defined for another audience).
NAMES: dict[type, str] = {}


def schema_name(cls: type) -> str:
    """The name ``cls`` is published under in ``components.schemas``."""
    return NAMES.get(cls) or str(cls.__dict__.get("__schema_name__", cls.__name__))


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _description(cls: type) -> str | None:
    doc = inspect.getdoc(cls)
    if not doc or doc == inspect.getdoc(object):
        return None
    # reST literals (``x``) read as Markdown code (`x`) in the rendered document.
    return " ".join(doc.split("\n\n", 1)[0].split()).replace("``", "`")


def _type_schema(hint: Any, found: dict[type, None]) -> dict[str, Any]:
    """The schema of one type hint; attrs classes become references (and are collected)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        inner = (
            _type_schema(members[0], found)
            if len(members) == 1
            else {"anyOf": [_type_schema(a, found) for a in members]}
        )
        if len(members) < len(args):  # optional
            simple = inner.get("type")
            if isinstance(simple, str) and set(inner) <= {"type"}:
                return {"type": [simple, "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        return inner
    if origin is typing.Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin in (list, tuple, Sequence, Iterable, frozenset, set) or hint in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        return {"type": "array", **({"items": _type_schema(items[0], found)} if items else {})}
    if origin in (dict, Mapping) or hint in (dict,):
        value = args[1] if len(args) == 2 else Any
        extra = _type_schema(value, found)
        return {"type": "object", **({"additionalProperties": extra} if extra else {})}
    if isinstance(hint, type) and attrs.has(hint):
        found.setdefault(hint)
        return ref(schema_name(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [m.value for m in hint]}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    raise TypeError(f"no JSON Schema for {hint!r}")


def json_schema(cls: type, found: dict[type, None] | None = None) -> dict[str, Any]:
    """The schema of attrs class ``cls``: every field required (the wire always sends
    them, null when unset), typed from its annotation, with the field's
    ``metadata["schema"]`` merged in. Nested attrs classes are added to ``found``."""
    found = {} if found is None else found
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    for field in attrs.fields(cls):
        prop = _type_schema(hints[field.name], found)
        extra = field.metadata.get("schema", {})
        if {"anyOf", "oneOf", "$ref"} & set(extra):
            prop = {}  # the metadata states the whole schema (what the type cannot say)
        elif "$ref" in prop and extra:
            prop = {"allOf": [prop]}  # a sibling of $ref is ignored by older validators
        properties[field.name] = {**prop, **extra}
    schema: dict[str, Any] = {"type": "object", "required": list(properties), "properties": properties}
    if (description := _description(cls)) is not None:
        schema["description"] = description
    return schema


def schemas(*classes: type) -> dict[str, dict[str, Any]]:
    """``{name: schema}`` for ``classes`` and every attrs class they refer to."""
    found: dict[type, None] = dict.fromkeys(classes)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < len(found):
        for cls in list(found):
            name = schema_name(cls)
            if name not in out:
                out[name] = json_schema(cls, found)
    return out


def doc(text: str, **more: Any) -> dict[str, Any]:
    """``attrs.field`` metadata giving a field's description (and other keywords)."""
    return {"schema": {"description": text, **more}}
