"""OpenAPI descriptions of the image uploads, which the handlers read from the raw request.

The handlers take the body themselves (raw `image/*` or multipart), so Litestar cannot infer
the request body; these Operation classes state it for /schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


@dataclass
class SingleImageOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="One image in any format Pillow reads (PNG, JPEG, GIF, BMP, TIFF, WebP, ...): "
                        "the raw body with an image/* Content-Type, or the multipart field `file`.",
            content={
                "image/*": OpenAPIMediaType(schema=_BINARY),
                "multipart/form-data": OpenAPIMediaType(schema=Schema(
                    type=OpenAPIType.OBJECT, properties={"file": _BINARY}, required=["file"])),
            })


@dataclass
class BatchOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="Several images as multipart file parts, all named `files`; answered in order.",
            content={
                "multipart/form-data": OpenAPIMediaType(schema=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={"files": Schema(type=OpenAPIType.ARRAY, items=_BINARY)},
                    required=["files"])),
            })
