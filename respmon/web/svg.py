"""Small charts drawn on the server as inline SVG: they show without JavaScript, print, and need no
chart library for a table of hundreds of rows."""

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 120.0, 28.0, 2.5


def sparkline(values: Sequence[float | None], label: str = "trend", width: float = WIDTH,
              height: float = HEIGHT) -> Markup:
    """A line of the values (oldest first) scaled to the box, the last one marked with a dot; its accessible
    name says what it is, how many values, and the first and last. An em dash when there is nothing to draw."""
    points = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not points:
        return Markup('<span class="muted" title="no values">—</span>')
    low, high = min(points), max(points)
    span = high - low or 1.0
    step = (width - 2 * PAD) / max(1, len(points) - 1)
    xy = [(PAD + i * step if len(points) > 1 else width / 2, height - PAD - (v - low) / span * (height - 2 * PAD))
          for i, v in enumerate(points)]
    name = escape(f"{label}: {len(points)} values, from {points[0]:g} to {points[-1]:g}")
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    last_x, last_y = xy[-1]
    return Markup(f'<svg class="spark" viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{name}">'
                  f"<title>{name}</title>"
                  + (f'<polyline points="{line}"/>' if len(points) > 1 else "")
                  + f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2"/></svg>')
