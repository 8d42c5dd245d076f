"""The one figure style of the suite: resolution and the save helper of every PNG.

Used by the per-run plots (``callbacks/plots.py``) and the figures across runs (``scripts/figures.py``),
which may both import ``callbacks/`` (the scripts sit above it). Figures are ``matplotlib.figure.Figure``
objects rendered by Agg, never ``pyplot``: no global backend switch, no figure left open.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

#: dots per inch of every PNG the suite writes
DPI = 120


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI`, cropped to what was drawn, and return the path.

    The parent folder is created. The axes' titles also go into the PNG's ``Title`` metadata, where
    tools (and tests) can read them without OCR.

    Args:
        fig: the figure.
        path: the PNG file to write.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    titles = [" ".join(fig.get_suptitle().split())] if fig.get_suptitle() else []
    titles += [" ".join(ax.get_title().split()) for ax in fig.axes if ax.get_title()]
    metadata = {"Title": " / ".join(titles)} if titles else None
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata=metadata)
    return path
