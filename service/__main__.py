"""`python -m service`: serve the model repository with uvicorn, configured from CNNZOO_* variables.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, lets in-flight requests finish
(up to CNNZOO_GRACEFUL_TIMEOUT_S), then the app stops its batchers and worker threads.
"""

from __future__ import annotations

import sys

import uvicorn

from service.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"python -m service: {err}", file=sys.stderr)
        return 2
    uvicorn.run(
        "service.app:create_app", factory=True,  # each worker process builds its own app
        host=settings.host, port=settings.port, workers=settings.workers,
        timeout_graceful_shutdown=settings.graceful_timeout_s, timeout_keep_alive=settings.keep_alive_s,
        log_level=settings.log_level, access_log=settings.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
