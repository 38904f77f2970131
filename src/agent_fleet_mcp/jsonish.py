"""Reading parsed JSON of unknown shape (a CLI's stream line, a request body) without a type error at every step:
the value when it has the expected type, else an empty one, so lookups chain (``as_dict(as_dict(obj).get("a"))``).
"""

from __future__ import annotations

from typing import Any, TypeGuard, cast


def is_object(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether ``value`` is a JSON object (a dict)."""
    return isinstance(value, dict)


def as_dict(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else ``{}``."""
    return value if is_object(value) else {}


def as_list(value: object) -> list[Any]:
    """``value`` when it is a JSON array, else ``[]``."""
    return cast(list[Any], value) if isinstance(value, list) else []


def as_int(value: object) -> int:
    """``value`` as an int when it is a JSON number (a float is truncated), else 0. ``true``/``false`` are not
    numbers here."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
