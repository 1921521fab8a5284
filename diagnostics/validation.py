"""A pydantic ValidationError as one line: the YAML path of the first problem, what is wrong, what is allowed."""

from __future__ import annotations

from .messages import did_you_mean

# pydantic's location parts that name a validator or a union member rather than a key
_INTERNAL_PARTS = ("function-after", "function-", "literal[", "str", "list[", "dict[", "tagged-union[", "[key]")


def _is_tag(part) -> bool:
    """A discriminated union's tag: our schemas spell them KEY=VALUE (model=systolic)."""
    return isinstance(part, str) and "=" in part


def _location(loc) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        elif not (_is_tag(part) or str(part).startswith(_INTERNAL_PARTS)):
            parts.append(str(part))
    return ".".join(parts)


def _tagged_members(annotation) -> dict:
    """tag -> model class of the discriminated unions an annotation holds."""
    from typing import get_args

    from pydantic import Tag

    members = {}
    args = get_args(annotation)
    tags = [a.tag for a in args[1:] if isinstance(a, Tag)]
    if tags and args:
        members[tags[0]] = args[0]
    for inner in args:
        if not isinstance(inner, Tag):
            members.update(_tagged_members(inner))
    return members


def _model_classes(annotation):
    """The pydantic model classes an annotation can hold (through Optional, Union, list and dict)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for inner in getattr(annotation, "__args__", ()):
        yield from _model_classes(inner)


def _model_for(root, loc):
    """The schema class that holds the last key of `loc`, to list its allowed keys."""
    model, annotation = root, None
    for part in loc[:-1]:
        if _is_tag(part) and annotation is not None:
            model = _tagged_members(annotation).get(part, model)
            continue
        if isinstance(part, int) or str(part).startswith(_INTERNAL_PARTS):
            continue
        fields = model.model_fields
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            continue  # a key of a mapping (an engine's name): the value's class comes next
        annotation = field.annotation
        found = next(_model_classes(annotation), None)
        if found is not None:
            model = found
    return model


def _allowed_keys(model) -> list:
    return [f.alias or name for name, f in model.model_fields.items()]


def explain(error, source: str, root) -> str:
    """One line for the first problem of `error`, a ValidationError of the pydantic model `root`."""
    # an unknown key explains a "missing" one that was merely misspelt, so report it first
    first = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    where = _location(first["loc"])
    prefix = f"{source}: {where}" if where else source
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(_model_for(root, first["loc"]))
        return f"{prefix}: unknown key{did_you_mean(first['loc'][-1], allowed)}; allowed: {', '.join(allowed)}"
    if first["type"] == "missing":
        return f"{prefix}: required key is missing"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("value_error", "assertion_error"):
        return f"{prefix}: {message}"
    return f"{prefix}: {message[0].lower() + message[1:]}, got {first.get('input')!r}"


def validate(root, data, source: str, error=ValueError):
    """`data` (a YAML document) as an instance of the pydantic model `root`; `error` with one line otherwise."""
    from pydantic import ValidationError

    if not isinstance(data, dict):
        keys = ", ".join(f.alias or name for name, f in root.model_fields.items())
        raise error(f"{source}: expected a mapping with keys {keys}; got {type(data).__name__}")
    try:
        return root.model_validate(data)
    except ValidationError as err:
        raise error(explain(err, source, root)) from None
