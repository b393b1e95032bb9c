"""Digits as a person draws them: strokes of points in [0, 1] of the drawing pad, drawn with
real mouse or touch events, one stroke at a time (the page sends each finished stroke)."""

from __future__ import annotations

import math
from collections.abc import Callable

MOUSE_STEP_PX = 8
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
