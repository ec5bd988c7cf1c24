"""The matplotlib figure every crmlab plot function returns: a plain :class:`matplotlib.figure.Figure`
(made without pyplot, so no global state and no GUI window) that also shows itself as a PNG in
Jupyter and IPython.

A figure made without pyplot has no display hook: IPython only draws figures once an inline backend
has been switched on (``%matplotlib inline`` or a pyplot import) and otherwise shows the text
``<Figure size 700x450 with 1 Axes>``. :meth:`Figure._repr_png_` is the hook IPython looks for on any
object, so a crmlab chart is drawn in every notebook; outside one nothing changes (``savefig``,
``mlflow.log_figure`` and ``isinstance(fig, matplotlib.figure.Figure)`` work as before).
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure as _MplFigure

__all__ = ["Figure"]


class Figure(_MplFigure):
    """:class:`matplotlib.figure.Figure` with ``_repr_png_``, so notebooks draw it."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()
