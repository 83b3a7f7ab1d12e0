"""Keys a HelmApp manifest sets that its schema does not know: the API server prunes them silently, so a
misspelled ``disablePreprocess`` or ``valuesfrom`` just does nothing. :func:`unknown_fields` names them with
the nearest known key (for ``helmops validate``), and :func:`pruned_fields` finds the ones the API server
dropped from a live object by comparing it with kubectl's last-applied annotation (for the controller).

Bounded: at most ``MAX_REPORTED`` findings, nesting cut at :data:`helmops.kubeio.bounded.MAX_DEPTH`, the
annotation parsed only up to ``MAX_LAST_APPLIED_BYTES`` and with the bounded JSON parser. Free-form maps
(``helm.values``, ``templateValues``, labels …) are not walked: any key is valid there.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from helmops.api.objects import HelmApp
from helmops.api.problems import Problem

__all__ = ["LAST_APPLIED", "MAX_LAST_APPLIED_BYTES", "MAX_REPORTED", "pruned_fields", "unknown_fields"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_LAST_APPLIED_BYTES = 256 * 1024
MAX_REPORTED = 50
_MAX_LIST_ITEMS = 1000
#: metadata and status are the API server's business; only the spec's keys are checked.
_ROOTS = ("spec",)


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the model a field holds, whether it is a list of them); (None, _) for anything free-form."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        args = typing.get_args(annotation)
        inner, _ = _model_of(args[0]) if args else (None, False)
        return inner, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _known(model: type[BaseModel]) -> dict[str, Any]:
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def _nearest(key: str, known: list[str]) -> str | None:
    lower = {k.lower(): k for k in known}
    if key.lower() in lower:
        return lower[key.lower()]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _walk(doc: Mapping[str, Any], model: type[BaseModel], path: str, depth: int) -> Iterator[tuple[str, str | None]]:
    if depth > 64:
        return
    known = _known(model)
    for key, value in doc.items():
        key = str(key)
        if key not in known:
            yield f"{path}.{key}", _nearest(key, list(known))
            continue
        inner, many = _model_of(known[key])
        if inner is None:
            continue
        if many and isinstance(value, list):
            for index, item in enumerate(value[:_MAX_LIST_ITEMS]):
                if isinstance(item, Mapping):
                    yield from _walk(item, inner, f"{path}.{key}[{index}]", depth + 1)
        elif isinstance(value, Mapping):
            yield from _walk(value, inner, f"{path}.{key}", depth + 1)


def _findings(body: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    known = _known(HelmApp)
    for root in _ROOTS:
        value = body.get(root)
        inner, _ = _model_of(known[root])
        if isinstance(value, Mapping) and inner is not None:
            for found in _walk(value, inner, root, 1):
                out.append(found)
                if len(out) >= MAX_REPORTED:
                    return out
    return out


def _message(nearest: str | None, what: str) -> str:
    hint = f"; did you mean {nearest!r}?" if nearest else ""
    return f"{what}{hint}"


def unknown_fields(body: Mapping[str, Any]) -> list[Problem]:
    """Warnings for every key of a HelmApp manifest's spec its schema does not have (the API server would
    drop them), each with the nearest known key when one is close."""
    return [
        Problem(path, _message(nearest, "unknown field: the API server drops it"), "warning")
        for path, nearest in _findings(body)
    ]


def pruned_fields(obj: Mapping[str, Any]) -> list[str]:
    """Spec keys kubectl applied (last-applied annotation) that the live object lacks because the API server
    pruned them, as ``path (did you mean …?)`` lines; empty without the annotation or when it is too large or
    not JSON."""
    from helmops.kubeio.bounded import loads  # the one bounded JSON parser

    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(LAST_APPLIED)
    if not isinstance(raw, str) or not raw or len(raw) > MAX_LAST_APPLIED_BYTES:
        return []
    try:
        applied = loads(raw)
    except Exception:
        return []
    if not isinstance(applied, Mapping):
        return []
    out = []
    for path, nearest in _findings(applied):
        if _present(obj, path):
            continue  # the live object has it: not pruned (our CRD knows a field the model does not)
        out.append(path + (f" (did you mean {nearest!r}?)" if nearest else ""))
    return out


def _present(obj: Mapping[str, Any], path: str) -> bool:
    node: Any = obj
    for part in path.replace("]", "").replace("[", ".").split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return False
    return True
