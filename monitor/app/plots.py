"""Optional plotting (matplotlib, the `plots` extra): headless figures as PNG bytes."""

from __future__ import annotations

import io
import logging

log = logging.getLogger(__name__)


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:  # an optional extra, and ~0.7 s to import: only when a plot is drawn
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log.info("matplotlib not installed (pip install 'monitor[plots]'): no plots")
        return None
    return plt


def png_bytes(fig, dpi: int = 90) -> bytes:
    """Render and close a figure (one that `pyplot()` made, so matplotlib is loaded)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  # the optional extra, loaded by pyplot()

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
