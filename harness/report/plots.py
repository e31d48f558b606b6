"""What every figure of a report shares: matplotlib without pyplot (Agg, no display, no global
state) and the PNG the report embeds. The analyses draw their own figures with these
(``harness/analyses/*/figures.py``)."""

from __future__ import annotations

import io

from matplotlib.figure import Figure  # figures without pyplot: no global state, no display, quicker to import

__all__ = ["Figure", "png"]


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (90 dpi, tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")  # Agg; nothing global to close
    return buf.getvalue()
