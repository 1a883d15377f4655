"""The hostile input space: what an attacker, a fuzzer or a buggy client sends.

NUL and lone surrogates (which the stdlib JSON encoder of python-socketio's client escapes as
\\udXXX, as a hostile client would), huge and negative integers, NaN and infinities, deeply
nested JSON, wrong types, very long strings, unknown fields, binary values (Socket.IO binary
attachments) and bad UUIDs; mixed with valid-looking values so that deep paths are reached.

Requests start from a valid base and take a few mutations (a field replaced, dropped or added),
so a fair share of examples is valid or nearly so.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from server.validation import unstorable_reason

BAD_CHARS = ("\x00", "\ud800", "\udbff", "\udc00", "\udfff")

CURATED_STRINGS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ud83d",  # the first half of an emoji
    "\ud83d\ude00",  # both halves, as Python sees a mis-decoded emoji: still two lone ones
    "\U0001f600",
    "\u202e\u2028\ufeff",
    "\r\n",
    "%00",
    "\\u0000",
    "null",
    "NaN",
    "-1",
    "1e309",
    "<script>alert(1)</script>",
    "'; DROP TABLE messages;--",
    "../../etc/passwd",
    "a" * 256,
    "a" * 10_001,
    "x" * 30_000,
)

BIG_INTS = (
    -1,
    0,
    1,
    2**31 - 1,
    2**31,
    2**32,
    2**53,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    10**30,
    -(2**31) - 1,
    -(2**63) - 1,
    -(10**30),
)

FLOATS = (0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"))

BAD_UUIDS = (
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    str(uuid.UUID(int=0)).upper(),
    "12345678-1234-1234-1234-1234567890ab\n",
    "12345678-1234-1234-1234-1234567890a\x00",
    "12345678-1234-1234-1234-1234567890a\ud800",
    "{12345678-1234-1234-1234-1234567890ab}",
    "12345678123412341234123456789 0ab",
    "f" * 36,
    "../" * 12,
)


def poisoned_text() -> st.SearchStrategy[str]:
    """Ordinary text with a NUL or a lone surrogate somewhere in it."""
    return st.builds(
        lambda a, bad, b: a + bad + b,
        st.text(max_size=6),
        st.sampled_from(BAD_CHARS),
        st.text(max_size=6),
    )


def hostile_strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(CURATED_STRINGS),
        poisoned_text(),
        st.text(max_size=12),
        st.sampled_from(BAD_UUIDS),
    )


def hostile_ints() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(BIG_INTS), st.integers())


def hostile_scalars(binary: bool) -> st.SearchStrategy[Any]:
    options = [
        hostile_strings(),
        hostile_ints(),
        st.sampled_from(FLOATS),
        st.booleans(),
        st.none(),
    ]
    if binary:
        options.append(st.binary(max_size=16))
    return st.one_of(*options)


@dataclass(frozen=True)
class Deep:
    """A JSON array nested `depth` times, written out by `encode_json` without recursion (an
    encoder would hit its own recursion limit first)."""

    depth: int

    def __repr__(self) -> str:
        return f"Deep({self.depth})"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def hostile_json(binary: bool = False, raw_depth: bool = False) -> st.SearchStrategy[Any]:
    """Any JSON value (or, with `binary`, a value with bytes in it), sometimes nested deep.

    With `raw_depth` the deep values are `Deep` markers for `encode_json` (10,000 levels, the
    issue's RecursionError); otherwise real lists of up to 600 levels, which python-socketio's
    client can still encode."""
    tree = st.recursive(
        hostile_scalars(binary),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(hostile_strings(), children, max_size=3),
        ),
        max_leaves=6,
    )
    if raw_depth:
        deep = st.sampled_from((40, 1000, 10_000)).map(Deep)
    else:
        deep = st.sampled_from((40, 300, 600)).map(nested)
    return st.one_of(tree, deep)


# ---- requests: a valid base, mutated -------------------------------------------------------

# How a field is mutated: a hostile value of its own type most often (it passes the type check
# and must be caught by the next one), else of any type, dropped, or an unknown field added.
KINDS = ("typed", "typed", "typed", "typed", "replace", "replace", "drop", "add")
KINDS_UNTYPED = ("replace", "replace", "replace", "drop", "add")


def mutated(
    base: st.SearchStrategy[dict],
    hostile: st.SearchStrategy[Any],
    *,
    typed: dict[str, st.SearchStrategy[Any]] | None = None,
    max_mutations: int = 3,
) -> st.SearchStrategy[Any]:
    """A payload drawn from `base` with 0..max_mutations changes: a field replaced by a
    hostile value (of its own kind, from `typed`, or of any kind), dropped, or an unknown
    field added; now and then the whole payload replaced by a hostile value."""
    typed = typed or {}

    @st.composite
    def build(draw):
        payload = dict(draw(base))
        if draw(st.integers(0, 19)) == 0:
            return draw(hostile)
        for _ in range(draw(st.integers(0, max_mutations))):
            kind = draw(st.sampled_from(KINDS if typed else KINDS_UNTYPED))
            if kind == "typed":
                key = draw(st.sampled_from(sorted(typed)))
                payload[key] = draw(typed[key])
            elif kind in ("replace", "drop") and payload:
                key = draw(st.sampled_from(sorted(payload)))
                if kind == "drop":
                    del payload[key]
                else:
                    payload[key] = draw(hostile)
            else:
                payload[draw(hostile_strings())] = draw(hostile)
        return payload

    return build()


def has_unstorable(value: Any) -> bool:
    """Whether a NUL or a lone surrogate is in any string (key or value) of a payload: what
    no backend can store and every edge must refuse with invalid_input."""
    if isinstance(value, str):
        return unstorable_reason(value) is not None
    if isinstance(value, dict):
        return any(has_unstorable(k) or has_unstorable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_unstorable(v) for v in value)
    return False


# ---- encoding ------------------------------------------------------------------------------


def encode_json(value: Any) -> bytes:
    """JSON as Python's stdlib writes it (NaN, Infinity, \\udXXX escapes for lone surrogates),
    with `Deep` markers written out flat."""
    if isinstance(value, Deep):
        return b"[" * value.depth + b"]" * value.depth
    if isinstance(value, dict):
        items = (encode_json(str(k)) + b":" + encode_json(v) for k, v in value.items())
        return b"{" + b",".join(items) + b"}"
    if isinstance(value, list | tuple):
        return b"[" + b",".join(encode_json(v) for v in value) + b"]"
    if isinstance(value, bytes):
        return encode_json(value.decode("latin-1"))
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value).encode()
    return json.dumps(value).encode("ascii")


def pct(value: str) -> str:
    """Percent-encode a path segment or query value as UTF-8, lone surrogates included (the
    bytes a client would send for them, which are not valid UTF-8)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def query_string(params: dict[str, Any]) -> str:
    """key=value&... from str values or lists of them (a list repeats the key)."""
    parts = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f"{pct(str(key))}={pct(str(v))}")
    return "&".join(parts)
