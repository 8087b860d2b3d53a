"""Per-frame metric curves: every method of a protocol on one axis per metric, with 95 % bands.

:func:`plot_per_frame` draws from ``metrics.json`` documents (``per_frame`` and ``per_frame_ci95``), so the
evaluate stage and the report draw the same picture. Matplotlib with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path


def plot_per_frame(curves: dict[str, dict], out_png: str | Path, title: str = "") -> Path | None:
    """``curves``: label → metrics.json document. One subplot per metric that has per-frame values;
    x = frame index in the clip (the first predicted frame is K). Returns the PNG path (None: nothing to plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    for doc in curves.values():
        for name, m in doc.get("metrics", {}).items():
            if m.get("per_frame") and name not in names:
                names.append(name)
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for label, doc in curves.items():
            m = doc.get("metrics", {}).get(name)
            if not m or not m.get("per_frame"):
                continue
            x = doc.get("frames") or list(range(len(m["per_frame"])))
            tag = f"{label} (stand-in)" if m.get("stand_in") else label
            line, = ax.plot(x, m["per_frame"], marker="o", markersize=3, label=tag)
            if m.get("per_frame_ci95"):
                lo, hi = zip(*m["per_frame_ci95"])
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        higher = next((d["metrics"][name].get("higher_is_better") for d in curves.values()
                       if name in d.get("metrics", {})), True)
        unit = next((d["metrics"][name].get("unit") for d in curves.values() if name in d.get("metrics", {})), "")
        ax.set_title(f"{name} ({'↑' if higher else '↓'})")
        ax.set_xlabel("frame index in the clip")
        ax.set_ylabel(f"{name} [{unit}]" if unit else name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


__all__ = ["plot_per_frame"]
