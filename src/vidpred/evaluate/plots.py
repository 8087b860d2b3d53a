"""Per-frame metric curves: every method of a protocol on one axis per metric, with 95 % bands.

:func:`plot_per_frame` draws from ``metrics.json`` documents (``per_frame`` and ``per_frame_ci95``); the evaluate
stage (each method's ``per_frame.png``) and the report draw the same picture with it. Matplotlib's Agg canvas
(no display needed); baselines are dashed, stand-in scores say so in the legend.
"""

from __future__ import annotations

import math
from pathlib import Path

BASELINES = ("copy-last", "linear")


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def plot_per_frame(curves: dict[str, dict], out_png: str | Path, title: str = "") -> Path | None:
    """``curves``: label (method) → metrics.json document. One axis per metric with per-frame values, x = the
    predicted frame (1 … H). Returns the PNG path, or None when no metric has per-frame values."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names: list[str] = []
    for doc in curves.values():
        for name, m in (doc.get("metrics") or {}).items():
            if isinstance(m, dict) and m.get("per_frame") and name not in names:
                names.append(name)
    if not names:
        return None
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.3 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        higher, unit = True, ""
        for label, doc in curves.items():
            m = (doc.get("metrics") or {}).get(name)
            if not isinstance(m, dict) or not m.get("per_frame"):
                continue
            higher, unit = m.get("higher_is_better", higher), m.get("unit") or unit
            x = list(range(1, len(m["per_frame"]) + 1))
            tag = f"{label} (stand-in)" if m.get("stand_in") else label
            line, = ax.plot(x, [_num(v) for v in m["per_frame"]], marker="o", markersize=3,
                            linestyle="--" if label in BASELINES else "-", label=tag)
            band = m.get("per_frame_ci95")
            if isinstance(band, list) and len(band) == len(x) and all(isinstance(b, (list, tuple)) and len(b) == 2
                                                                      for b in band):
                ax.fill_between(x, [_num(b[0]) for b in band], [_num(b[1]) for b in band], color=line.get_color(),
                                alpha=0.2, linewidth=0)
        ax.set_title(f"{name}" + (f" ({unit})" if unit else "") + (" ↑" if higher else " ↓"))
        ax.set_xlabel("predicted frame")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, format="png")
    return out_png


__all__ = ["plot_per_frame"]
