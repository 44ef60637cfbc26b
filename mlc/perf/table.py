"""Plain-text tables, for benchmark results that read the same in a notebook and a shell."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table", "print_table"]


def _cell(v: object) -> str:
    # Three significant digits: timings are not more precise than that on a shared machine.
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def format_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Rows as a plain-text table with aligned columns (floats to 3 significant digits)."""
    text = [[_cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join(out)


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    """Print :func:`format_table` of ``rows``."""
    print(format_table(rows, headers))
