"""Log lines a client cannot forge.

Whatever a client sends (a path, a filename, a header) is logged with `%r`, so a newline in it
is written as `\\n` and cannot start a line of its own ("... INFO service: FORGED LINE"). The
formatter makes sure of it for every message, whoever wrote it: control characters in the
formatted line are escaped, so one record is one line (a traceback, on lines of its own, aside).
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # everything but the tab


class UntrustedTextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return _CONTROL.sub(lambda match: repr(match.group())[1:-1], super().formatMessage(record))


def granian_log_config() -> dict[str, object]:
    """Granian's logging (its own lines and the access log), through the same formatter: the
    access log would otherwise write the decoded path raw, `%0a` a new line."""
    formatter = f"{__name__}.{UntrustedTextFormatter.__name__}"
    return {"formatters": {
        "generic": {"()": formatter, "fmt": "[%(levelname)s] %(message)s", "datefmt": "[%Y-%m-%d %H:%M:%S %z]"},
        "access": {"()": formatter, "fmt": "%(message)s", "datefmt": "[%Y-%m-%d %H:%M:%S %z]"},
    }}
