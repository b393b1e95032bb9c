"""`/schema`: the OpenAPI description, and Swagger UI to read it, every file served from here.

Litestar's pages fetch their scripts from public CDNs (without subresource integrity), so on a
machine without the internet they stay blank. Swagger UI comes instead from the `swagger-ui-py`
package, under `/schema/assets/`; the pages whose scripts no package ships (ReDoc, Elements,
RapiDoc) are not served. `/schema` and `/schema/swagger` show Swagger UI; `/schema/openapi.json`
and `/schema/openapi.yaml` are the description itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from litestar import Router, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin, YamlRenderPlugin
from litestar.params import FromPath
from litestar.response import File

from service.page import shipped_file

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
SWAGGER_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"})
FAVICON = "<link rel='icon' type='image/svg+xml' href='/static/favicon.svg'>"


def swagger_dir() -> Path:
    """The swagger-ui-py package's copy of Swagger UI (found without importing the package)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (a core dependency: pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@get("/assets/{name:str}", include_in_schema=False, cache_control=CacheControlHeader(max_age=86400))
async def swagger_asset(name: FromPath[str]) -> File:
    return shipped_file(swagger_dir(), SWAGGER_ASSETS, name)


def openapi_config(version: str) -> OpenAPIConfig:
    folder = swagger_dir()
    missing = [name for name in SWAGGER_ASSETS if not (folder / name).is_file()]
    if missing:  # at startup, not on the first visit
        raise RuntimeError(f"swagger-ui-py lacks {', '.join(sorted(missing))}: reinstall it")
    swagger = SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js", css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js", favicon=FAVICON,
        path="/swagger")
    return OpenAPIConfig(
        title="cnnzoo", version=version, path=SCHEMA_PATH,
        description="Classic CNNs on MNIST and CIFAR-10, served on ONNX Runtime.",
        render_plugins=[swagger, YamlRenderPlugin()],
        openapi_router=Router(SCHEMA_PATH, route_handlers=[swagger_asset], include_in_schema=False))
