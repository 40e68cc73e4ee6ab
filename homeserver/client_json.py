"""Parsing JSON that clients send.

Stricter than `json.loads`, because whatever is accepted here is stored and later sent
to other clients: a value that cannot be written back out as valid UTF-8 JSON would
break every response that includes it (a room's /sync for all its members).

- UTF-8 only (the Matrix spec's encoding), decoded strictly;
- no `NaN` / `Infinity`, nor numbers that overflow to them (not JSON; PostgreSQL's
  jsonb refuses them);
- no lone UTF-16 surrogates (`"\\ud800"`): they cannot be encoded as UTF-8;
- no NUL characters (PostgreSQL cannot store them; refused on every backend);
- at most MAX_DEPTH levels of arrays and objects. Python's parser itself goes to
  about 1,000, but whatever is accepted is later copied, encoded (canonical JSON,
  storage codecs, cjson in Redis' Lua) and wrapped in /sync responses by recursive
  code; a value ~500 deep parsed here once made those recurse past the interpreter's
  limit (HTTP 500). No event or account data format of the spec comes near the limit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from homeserver.errors import BadJson, NotJson

# Levels of arrays/objects a client's JSON may have: {"a": [1]} has 2.
MAX_DEPTH = 64

# A \uD800-\uDFFF escape. It may be half of a valid pair, so a match only triggers the
# exact (slower) check below.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")


def _reject_constant(name: str) -> NoReturn:
    raise BadJson(f"{name} is not a valid JSON value")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BadJson(f"Number {literal[:32]} is out of range")
    return value


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _too_deep(value: dict[str, Any] | list[Any]) -> bool:
    # Iterative: the point is not to recurse on the client's nesting.
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth == MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def loads(data: bytes | str) -> object:
    """Parse client JSON (any value); M_NOT_JSON / M_BAD_JSON when it is unacceptable."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise NotJson("Content is not valid UTF-8") from None
    else:
        text = data
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        # The cheap test may hit an escaped backslash before "u0000"; confirm on the value.
        # Cheap bound first: fewer brackets in the text than the limit, whatever their
        # place (inside strings too), cannot nest deeper than it.
        if (
            isinstance(value, dict | list)
            and text.count("[") + text.count("{") > MAX_DEPTH
            and _too_deep(value)
        ):
            raise BadJson(f"JSON nested more than {MAX_DEPTH} levels deep")
        if ("\\u0000" in text or "\x00" in text) and _has_nul(value):
            # PostgreSQL cannot store NUL in text; refuse it on every backend alike.
            raise BadJson("JSON strings may not contain NUL characters")
    except RecursionError:
        raise BadJson("JSON nested too deeply") from None
    except UnicodeEncodeError:
        raise BadJson("JSON contains an unpaired UTF-16 surrogate") from None
    except ValueError:
        raise NotJson() from None
    return value
