"""What every backend can store, checked once at the edges.

PostgreSQL refuses NUL in text and json, and no UTF-8 encoder accepts a lone surrogate;
SQLite stores both. Integers are stored as 32-bit (seq) or used as offsets by every backend.
Refusing these at the edge with `invalid_input` keeps the backends alike: what one stores,
the other stores, and nothing reaches a database that it cannot take.
"""

from __future__ import annotations

import math
import re
from typing import Any

# NUL, and UTF-16 surrogates that Python keeps in str when a decoder let them through.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Largest seq / offset / after_seq accepted: the database's 32-bit INTEGER.
MAX_INT = 2**31 - 1
# Deepest JSON nesting accepted in a request body (rich_media needs 4).
MAX_JSON_DEPTH = 32
# Largest magnitude of an integer inside a stored JSON value: beyond 2^53 the widget and the
# inbox (JavaScript numbers) would read another number than the one stored.
MAX_JSON_INT = 2**53 - 1


def unstorable_reason(value: str) -> str | None:
    """Why `value` cannot be stored on every backend, or None."""
    m = _UNSTORABLE.search(value)
    if m is None:
        return None
    if m.group() == "\x00":
        return "Must not contain NUL characters."
    return "Must be valid Unicode (no lone surrogates)."


def first_unstorable(value: Any, depth: int = 0) -> str | None:
    """The reason the first unstorable part of a JSON value is refused, or None when all of
    it can be stored: a string (key or value) with NUL or a lone surrogate, nesting deeper
    than MAX_JSON_DEPTH, an integer beyond MAX_JSON_INT, a non-finite number, or anything
    JSON has no type for (bytes: a Socket.IO binary attachment)."""
    if depth > MAX_JSON_DEPTH:
        return f"Nested deeper than {MAX_JSON_DEPTH} levels."
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return unstorable_reason(value)
    if isinstance(value, int):
        return None if -MAX_JSON_INT <= value <= MAX_JSON_INT else "Integer out of range."
    if isinstance(value, float):
        return None if math.isfinite(value) else "Must be a finite number."
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return "Object keys must be strings."
            reason = unstorable_reason(k) or first_unstorable(v, depth + 1)
            if reason:
                return reason
        return None
    if isinstance(value, list | tuple):
        for v in value:
            reason = first_unstorable(v, depth + 1)
            if reason:
                return reason
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return "Binary data is not accepted here."
    return "Not a JSON value."


def json_depth_exceeds(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when a JSON document nests deeper than `limit`, found by scanning its brackets
    (outside strings) before any parser recurses into it."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogatepass")
    depth = 0
    in_str = False
    escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False
