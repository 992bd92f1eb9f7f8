"""Optional plotting (matplotlib, the `plots` extra): headless figures as PNG bytes."""

from __future__ import annotations

import io
import logging

log = logging.getLogger(__name__)


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed (pip install 'monitor[plots]'): no plots")
        return None
    return plt


def png_bytes(fig, dpi: int = 90) -> bytes:
    """Render and close a figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
