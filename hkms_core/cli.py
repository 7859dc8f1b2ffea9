"""Output of the listing commands (every app's): ``--json`` (one JSON array) or aligned columns."""

from __future__ import annotations

import json
from typing import Any


def write_rows(out: Any, rows: list[dict[str, Any]], columns: list[str], *, as_json: bool, empty: str) -> None:
    if as_json:
        out.write(json.dumps(rows, sort_keys=True) + "\n")
        return
    if not rows:
        out.write(empty + "\n")
        return
    cells = [[("-" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for line in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")
