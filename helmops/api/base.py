"""The pydantic base every API model shares.

The models mirror objects that the Kubernetes API server stores as JSON, so they parse strictly (an
API server never turns ``"30"`` into ``30`` for an integer field, and neither do we) and speak
camelCase on the wire while Python code uses snake_case names.

Every model module (options, spec, status, objects) follows Fleet's CRD for nullability: a field Fleet
marks nullable is ``X | None = None``; a field Fleet does not is a plain type with its zero value as
default (the generated CRD carries no defaults, so nothing is added to stored objects). The schema hints
below mark the fields whose Kubernetes schema pydantic cannot infer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

#: ``json_schema_extra`` of an ``int`` field Kubernetes stores as int64.
INT64: dict[str, Any] = {"format": "int64"}
#: ``json_schema_extra`` of an ``int | str`` field (a count or a percentage such as ``25%``).
INT_OR_STRING: dict[str, Any] = {"x-kubernetes-int-or-string": True}
#: ``json_schema_extra`` of a free-form ``dict[str, Any]`` field (Helm values, template values).
FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


def plain(data: Any) -> Any:
    """A deep copy of ``data`` made of plain dicts and lists (kopf bodies are read-only Mappings)."""
    if isinstance(data, Mapping):
        return {key: plain(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [plain(value) for value in data]
    return data


class ApiModel(BaseModel):
    """Base of all API models: camelCase aliases, strict types, unknown keys ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        strict=True,
        # Unknown keys are dropped, as the API server prunes fields its schema does not know.
        extra="ignore",
        # Field docstrings become the CRD field descriptions (`kubectl explain`).
        use_attribute_docstrings=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _accept_any_mapping(cls, data: Any) -> Any:
        # Strict mode only takes real dicts; objects from kopf or the kubernetes client are Mappings.
        if isinstance(data, Mapping) and type(data) is not dict:
            return plain(data)
        return data

    def to_dict(self) -> dict[str, Any]:
        """The object as the API server would store it: camelCase keys, only the fields that were set.

        This is the inverse of ``model_validate`` for any manifest the CRD accepts.
        """
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")
