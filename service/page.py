"""The web page to try the models: `GET /` and its files under `/static/`.

Plain HTML, CSS and JavaScript shipped in `service/static/`: no build step, nothing fetched
from elsewhere (the Content-Security-Policy forbids it), so the page works offline. It talks
to the service through the same public API as any client: `GET /models`, `POST /predict/{model}`.
`/static/{name}` serves only the files shipped there, by name: nothing a client sends reaches the
file system (a NUL byte or a 300-character name is a 404, not an error from the OS).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from litestar import Response, get, route
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import File

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = frozenset(path.name for path in STATIC_DIR.iterdir() if path.is_file())

# Only this server's own files and API; `blob:` for the preview of the photo being sent.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob:; object-src 'none'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Revalidate on every load, so a new release's page and scripts are never mixed with old ones.
REVALIDATE = CacheControlHeader(no_cache=True)


@get("/", include_in_schema=False, cache_control=REVALIDATE)
async def index() -> Response[bytes]:
    return Response((STATIC_DIR / "index.html").read_bytes(), media_type=MediaType.HTML,
                    headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@route("/static/{name:str}", http_method=["GET", "HEAD"], include_in_schema=False, cache_control=REVALIDATE)
async def static_file(name: FromPath[str]) -> File:
    return shipped_file(STATIC_DIR, STATIC_FILES, name)


def shipped_file(folder: Path, names: frozenset[str], name: str) -> File:
    """`folder/name` if `name` is one of `names`; else 404, the file system never asked."""
    if name not in names:
        raise NotFoundException(f"no file {name!r} here")
    return File(folder / name, filename=name, content_disposition_type="inline",
                media_type=mimetypes.guess_type(name)[0])


PAGE_ROUTES = [index, static_file]
