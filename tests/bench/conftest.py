"""The benchmark scripts' modules (bench/) and the service tests' helpers, importable here.

Appended, not prepended: bench/service.py must never shadow the `service` package.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path += [str(ROOT / "bench"), str(ROOT / "tests" / "service")]
