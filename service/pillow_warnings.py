"""Pillow's warnings about uploaded files, logged at a bounded rate, the rest counted.

Pillow warns once per oddity it meets, often with the tag or size in the text (a TIFF with
4,000 bad tags: 4,000 distinct warnings). Python's default filter prints each distinct text
once and remembers it in the module's `__warningregistry__` for the life of the process, so a
stream of hostile files floods the log and grows that registry without end. Pillow's warnings
are therefore let through with `always` (nothing remembered) and this hook logs at most
`BURST` of them per `WINDOW_S` seconds, then counts the rest and logs the count. Their text
comes from the file: logged with repr, cut to `TEXT_CHARS`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings

log = logging.getLogger("service.images")

BURST = 5
WINDOW_S = 60.0
TEXT_CHARS = 200
_PILLOW_DIR = os.sep + "PIL" + os.sep


class RateLimitedLog:
    """At most `burst` lines per `window_s`; the number left out is logged when the next
    window opens."""

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S) -> None:
        self.burst, self.window_s = burst, window_s
        self._lock = threading.Lock()  # warnings come from every worker thread
        self._opened, self._logged, self._left_out = time.monotonic(), 0, 0

    def warning(self, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            left_out = 0
            if now - self._opened >= self.window_s:
                left_out, self._opened, self._logged, self._left_out = self._left_out, now, 0, 0
            show = self._logged < self.burst
            self._logged += show
            self._left_out += not show
            first_left_out = not show and self._left_out == 1
        if left_out:
            log.warning("%d more Pillow warning(s) about uploaded images were not logged", left_out)
        if show:
            log.warning("Pillow: %r", text[:TEXT_CHARS])
        elif first_left_out:
            log.warning("more than %d Pillow warnings in %.0f s: the rest are counted, not logged",
                        self.burst, self.window_s)


_pillow_log = RateLimitedLog()
_original_showwarning = warnings.showwarning


def install() -> None:
    """Route Pillow's warnings through the rate limit; other warnings are left as they were."""
    warnings.filterwarnings("always", module=r"PIL(\.|$)")
    warnings.showwarning = _show


def _show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' signature
    if _PILLOW_DIR in str(filename):  # warned from inside Pillow
        _pillow_log.warning(f"{category.__name__}: {message}")
    else:
        _original_showwarning(message, category, filename, lineno, file, line)
