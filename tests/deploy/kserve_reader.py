"""Read KServe resources strictly, through the `kserve` SDK's model classes.

The SDK's generated classes name every field of KServe's API with its type (made from the same
Go types as KServe's CRDs) and refuse a missing required field when built. Their own
deserializer drops unknown keys without a word, so this one walks the document itself: an
unknown key or a value of the wrong type is an error, and the Kubernetes parts (containers,
volumes, metadata) go to the kubernetes client's models, which are as strict.
"""

from __future__ import annotations

import re
from typing import Any

from testkit.kserve_sdk import kserve  # importable beside tritonclient.grpc (see testkit/kserve_sdk.py)
from kubernetes.client import models as kubernetes_models  # kserve's own dependency

# The SDK's class for each kind this project writes.
KINDS = {
    (kserve.constants.KSERVE_V1ALPHA1, "ClusterServingRuntime"): kserve.V1alpha1ClusterServingRuntime,
    (kserve.constants.KSERVE_V1BETA1, kserve.constants.KSERVE_KIND_INFERENCESERVICE): kserve.V1beta1InferenceService,
}
_SCALARS: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool, "float": (int, float)}


class InvalidResource(ValueError):
    """The document is not what KServe's API accepts."""


def read_resource(document: dict[str, Any]) -> object:
    """The SDK object for a KServe document; InvalidResource says where it goes wrong."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in KINDS:
        raise InvalidResource(f"not a KServe kind this reader knows: {key}")
    return _read(document, KINDS[key], "$")


def _read(value: Any, type_: str | type, path: str) -> Any:
    if isinstance(type_, str):
        if match := re.fullmatch(r"[lL]ist\[(.+)\]", type_):
            if not isinstance(value, list):
                raise InvalidResource(f"{path}: expected a list, got {value!r}")
            return [_read(item, match[1], f"{path}[{i}]") for i, item in enumerate(value)]
        if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_):
            if not isinstance(value, dict):
                raise InvalidResource(f"{path}: expected a mapping, got {value!r}")
            return {key: _read(item, match[1] or match[2], f"{path}.{key}") for key, item in value.items()}
        if type_ == "object":
            return value
        if type_ in _SCALARS:
            # YAML's true is no integer, whatever Python's bool says.
            if isinstance(value, bool) is not (type_ == "bool") or not isinstance(value, _SCALARS[type_]):
                raise InvalidResource(f"{path}: expected {type_}, got {value!r}")
            return value
        type_ = getattr(kserve.models, type_, None) or getattr(kubernetes_models, type_, None) or type_
        if isinstance(type_, str):
            raise InvalidResource(f"{path}: neither SDK has a type {type_!r}")
    if hasattr(type_, "model_validate"):  # the kubernetes client's pydantic models (extra="forbid")
        try:
            return type_.model_validate(value)
        except ValueError as err:
            raise InvalidResource(f"{path}: {err}") from None
    return _read_generated(value, type_, path)


def _read_generated(value: Any, cls: type, path: str) -> object:
    """An OpenAPI-generator class (KServe's; older kubernetes clients' too), field by field."""
    if not isinstance(value, dict):
        raise InvalidResource(f"{path}: expected a {cls.__name__} mapping, got {value!r}")
    attribute_of = {key: attribute for attribute, key in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(attribute_of))
    if unknown:
        raise InvalidResource(f"{path}: {cls.__name__} has no field {', '.join(unknown)}")
    fields = {attribute_of[key]: _read(item, cls.openapi_types[attribute_of[key]], f"{path}.{key}")
              for key, item in value.items()}
    try:
        return cls(**fields)
    except ValueError as err:  # a required field missing, a value outside its enum
        raise InvalidResource(f"{path}: {err}") from None
