"""Digits as a person draws them: strokes of points in [0, 1] of the drawing pad, drawn with
real mouse or touch events, one stroke at a time (the page sends each finished stroke), or
rendered as the page would draw them (`render_like_the_page`, for the digit benchmark)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

MOUSE_STEP_PX = 8
STATIC = Path(__file__).resolve().parent.parent / "service" / "static"
Point = tuple[float, float]
Stroke = list[Point]


def arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, points: int = 24) -> Stroke:
    """Points along an ellipse, clockwise on screen from `start_deg` (0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(angle)), cy + ry * math.sin(math.radians(angle)))
            for angle in (start_deg + (end_deg - start_deg) * i / (points - 1) for i in range(points))]


DIGITS: dict[str, list[Stroke]] = {
    "1": [[(0.54, 0.2), (0.5, 0.8)]],
    "7": [[(0.3, 0.24), (0.7, 0.24)],  # the bar, then the stem: two strokes
          [(0.7, 0.24), (0.58, 0.46), (0.46, 0.8)]],
    "0": [arc(0.5, 0.5, 0.18, 0.3, -90, 270, 40)],
    "4": [[(0.4, 0.2), (0.3, 0.58), (0.7, 0.58)],
          [(0.6, 0.3), (0.6, 0.82)]],
    "2": [arc(0.5, 0.36, 0.17, 0.14, 200, 380, 20) + [(0.32, 0.8), (0.7, 0.8)]],
    "3": [arc(0.48, 0.35, 0.16, 0.14, 210, 450, 22) + arc(0.48, 0.64, 0.18, 0.16, -90, 150, 22)],
}

# Other writers' habits, each as its digit: a 1 with a flag and a foot, a crossed 7, a closed
# (triangular) 4 (DIGITS' 4 is the open kind).
HABITS: dict[str, tuple[str, list[Stroke]]] = {
    "1-flag-foot": ("1", [[(0.4, 0.33), (0.54, 0.2), (0.52, 0.8)], [(0.38, 0.8), (0.66, 0.8)]]),
    "7-crossed": ("7", [[(0.3, 0.24), (0.7, 0.24)], [(0.7, 0.24), (0.58, 0.46), (0.46, 0.8)],
                        [(0.42, 0.52), (0.72, 0.52)]]),
    "4-closed": ("4", [[(0.62, 0.82), (0.62, 0.2), (0.3, 0.6), (0.74, 0.6)]]),
}


def _page_fact(file: str, pattern: str) -> str:
    """A constant of the page's own source, so this rendering cannot drift from it."""
    found = re.search(pattern, (STATIC / file).read_text())
    assert found, f"service/static/{file} no longer matches {pattern!r}: update handwriting.py"
    return found.group(1)


PAD_PX = int(_page_fact("index.html", r'<canvas id="digit-canvas" width="(\d+)"'))
STROKE_FRACTION = float(_page_fact("drawing.js", r"const STROKE_FRACTION = ([\d.]+);"))
PAPER = int(_page_fact("drawing.js", r'const PAPER = "#([0-9a-f]{2})\1\1";'), 16)
INK = int(_page_fact("drawing.js", r'const INK = "#([0-9a-f]{2})\1\1";'), 16)


def render_like_the_page(strokes: list[Stroke], supersample: int = 2) -> Image.Image:
    """The drawing pad's picture of `strokes` (greyscale, PAD_PX square): round-capped,
    round-joined lines of the page's width and colours, anti-aliased as a canvas draws them."""
    side = PAD_PX * supersample
    width = STROKE_FRACTION * PAD_PX * supersample
    image = Image.new("L", (side, side), PAPER)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x * side, y * side) for x, y in stroke]
        if len(points) > 1:
            draw.line(points, fill=INK, width=round(width), joint="curve")
        for x, y in (points[0], points[-1]):  # round caps (the page also dots where a stroke starts)
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=INK)
    return image.resize((PAD_PX, PAD_PX), Image.Resampling.BOX)


def _on_screen(box: dict, point: Point) -> tuple[float, float]:
    return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]


def draw_with_mouse(page, canvas, strokes: list[Stroke],
                    after_stroke: Callable[[int], None] | None = None) -> None:
    """Press, move through the points and release, for each stroke; `after_stroke(i)` after each."""
    box = canvas.bounding_box()
    for number, stroke in enumerate(strokes):
        page.mouse.move(*_on_screen(box, stroke[0]))
        page.mouse.down()
        for previous, point in zip(stroke, stroke[1:]):
            # A move event every few pixels, as a real mouse reports them.
            distance = math.dist(_on_screen(box, previous), _on_screen(box, point))
            page.mouse.move(*_on_screen(box, point), steps=max(1, round(distance / MOUSE_STEP_PX)))
        page.mouse.up()
        if after_stroke:
            after_stroke(number)


def draw_with_touch(page, canvas, strokes: list[Stroke]) -> None:
    """The same with a finger: touch events through the DevTools protocol (Playwright's own
    touchscreen API only taps)."""
    box = canvas.bounding_box()
    devtools = page.context.new_cdp_session(page)
    for stroke in strokes:
        for kind, points in (("touchStart", stroke[:1]), *(("touchMove", [p]) for p in _dense(stroke)),
                             ("touchEnd", [])):
            touch_points = [dict(zip(("x", "y"), _on_screen(box, p))) for p in points]
            devtools.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})
    devtools.detach()


def _dense(stroke: Stroke, steps: int = 6) -> Stroke:
    """Intermediate points, as a finger reports them while it moves."""
    points = []
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
        points += [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps) for i in range(1, steps + 1)]
    return points
