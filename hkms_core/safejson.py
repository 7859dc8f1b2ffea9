"""JSON decoding with a nesting limit checked before the decoder runs.

Python's C decoder recurses once per level, so ``"[" * 5000`` ends in a
``RecursionError`` (a 500 if nobody catches it), and a raised recursion limit
would let it run off the C stack.  :func:`loads` measures the nesting first, in
linear time and at C speed:

1. fast path: a document with at most ``max_depth`` opening brackets cannot be deeper;
2. otherwise strings are cut out (one regular expression, linear: brackets inside
   strings do not nest), every byte but ``[]{}`` is deleted (``bytes.translate``),
   and innermost ``[]``/``{}`` pairs are removed ``max_depth`` times: anything left
   is deeper than ``max_depth`` (or unbalanced, which the decoder would refuse anyway).

Every failure is a :class:`ValueError` (:class:`TooDeep` for the nesting), so
callers that already turn ``ValueError`` into a 400 need nothing more.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Scaleway's request bodies nest four levels at most; typed secret payloads are flat or shallow.
MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class TooDeep(ValueError):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels")


def depth_exceeds(data: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """True if ``data`` (JSON text) nests brackets deeper than ``max_depth``."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return False
        brackets = shorter
    return True


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` (:class:`TooDeep`)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if depth_exceeds(raw, max_depth):
        raise TooDeep(max_depth)
    try:
        return json.loads(data, **kwargs)
    except RecursionError:  # cannot happen below the limit; never a 500 if it does
        raise TooDeep(max_depth) from None
