"""What the drivers print and draw: the final table and the curves plot."""

from __future__ import annotations

from pathlib import Path


def table(headers: list[str], rows: list[list]) -> str:
    """A text table; the floats of a column share one number of decimals (four below 10, one
    fewer per digit before the point, at least one), so a column never mixes 12.6 and 7.2236."""
    decimals = [_decimals([row[i] for row in rows]) for i in range(len(headers))]
    cells = [list(headers)] + [[_fmt(v, d) for v, d in zip(row, decimals)] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _decimals(column: list) -> int:
    floats = [abs(v) for v in column if isinstance(v, float) and v == v and abs(v) != float("inf")]
    digits = len(str(int(max(floats)))) if floats else 1
    return max(1, 5 - digits)


def _fmt(v, decimals: int) -> str:
    return f"{v:.{decimals}f}" if isinstance(v, float) else str(v)


def _moving_average(values, alpha: float) -> list:
    out, current = [], values[0]
    for v in values:
        current = (1 - alpha) * current + alpha * v
        out.append(current)
    return out


def plot_curves(path: Path, series: dict, panels: list[tuple[str, str, str]], title: str) -> None:
    """series: recipe -> list of history rows (dicts). panels: (x key, y key, y label) each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    axes = axes if len(panels) > 1 else [axes]
    for ax, (x_key, y_key, label) in zip(axes, panels):
        smoothed = False
        for recipe, rows in series.items():
            points = [(r[x_key], r[y_key]) for r in rows if r.get(y_key) is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            if len(ys) > 50:  # per-step losses: draw their exponential moving average
                ys, smoothed = _moving_average(ys, 0.05), True
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=recipe)
        ax.set_xlabel(x_key.replace("_", " "))
        ax.set_ylabel(label + (" (moving average)" if smoothed else ""))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
