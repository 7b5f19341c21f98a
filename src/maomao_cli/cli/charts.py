"""Pictures of a series with its spikes: a terminal chart (Rich) and a PNG (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BadInput
from .output import safe

if TYPE_CHECKING:
    from rich.text import Text

    from ..detect.series import Point

BLOCKS = " ▁▂▃▄▅▆▇█"


def terminal_chart(
    points: Sequence[Point], marks: Mapping[str, str], *, title: str, width: int = 100
) -> Text:
    """A sparkline of the newest `width` points, spikes in colour, plus a marker row."""
    from rich.text import Text

    shown = list(points)[-width:]
    text = Text(f"{title} ({len(points)} points, last {len(shown)} shown)\n", style="bold")
    if not shown:
        return text
    low, high = min(p.value for p in shown), max(p.value for p in shown)
    span = (high - low) or 1.0
    for p in shown:
        block = BLOCKS[1 + round((p.value - low) / span * (len(BLOCKS) - 2))]
        style = {"up": "bold red", "down": "bold blue"}.get(marks.get(p.sortable, ""), "green")
        text.append(block, style=style)
    text.append("\n")
    for p in shown:
        text.append(
            {"up": "▲", "down": "▼"}.get(marks.get(p.sortable, ""), " "),
            style="red" if marks.get(p.sortable) == "up" else "blue",
        )
    first, last = safe(shown[0].sortable), safe(shown[-1].sortable)  # a container wrote them
    text.append(f"\nmin {low:.6g}  max {high:.6g}  from {first} to {last}")
    return text


def write_png(points: Sequence[Point], marks: Mapping[str, str], path: Path, *, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("--plot needs matplotlib", hint="pip install 'maomao-cli[plot]'") from None
    xs = list(range(len(points)))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(xs, [p.value for p in points], color="tab:green", linewidth=1)
    for direction, colour, marker in (("up", "tab:red", "^"), ("down", "tab:blue", "v")):
        idx = [i for i, p in enumerate(points) if marks.get(p.sortable) == direction]
        ax.scatter(
            idx,
            [points[i].value for i in idx],
            color=colour,
            marker=marker,
            zorder=3,
            label=f"spike {direction}",
        )
    ax.set_title(title)
    ax.set_xlabel("run")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
