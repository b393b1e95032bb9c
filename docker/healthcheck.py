"""The container's health check: exit 0 when GET /health/ready answers 200, else 1.

Standard library only, because the slim base image has no curl. Ready means every model has
been tried and at least one serves; while models load the server answers 503.
"""

import os
import sys
import urllib.request

port = os.environ.get("CNNZOO_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except Exception as err:  # noqa: BLE001 - any failure (503, refused, timeout) is "not healthy"
    print(f"not ready: {err}")
    sys.exit(1)
