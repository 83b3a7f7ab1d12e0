"""Checks on CRD schemas: structural-schema rules, and "ours is a superset of Fleet's".

Pure functions over plain dicts, used by the unit tests and usable against any CRD (for instance
one fetched from a cluster) to tell whether a manifest written for Fleet will apply unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["crd_schema", "structural_problems", "superset_problems", "walk"]

Schema = Mapping[str, Any]

_INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]
_FORBIDDEN_KEYS = ("$ref", "$defs", "definitions", "const", "uniqueItems", "patternProperties", "title")


def crd_schema(crd: Schema, version: str = "v1alpha1") -> Schema:
    """The ``openAPIV3Schema`` of ``version`` in a CRD."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: Schema = entry["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"CRD {crd['metadata']['name']} has no version {version}")


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every node of a schema with its path: ``.spec.helm``, ``.spec.targets[]``, ``.status.x{}``."""
    yield path, schema
    for key, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{key}")
    if isinstance(schema.get("items"), Mapping):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def structural_problems(schema: Schema) -> list[str]:
    """Ways ``schema`` breaks the API server's structural-schema rules (plus our own: no defaults).

    An empty list means the schema is structural: every node has a type (or is explicitly
    int-or-string or free-form), nothing refers elsewhere, ``nullable`` replaces null types, and no
    keyword the API server rejects is present.
    """
    found: list[str] = []
    for path, node in walk(schema):
        where = path or "(root)"
        for key in _FORBIDDEN_KEYS:
            if key in node:
                found.append(f"{where}: has {key!r}")
        if "default" in node:
            found.append(f"{where}: has a default (Fleet's CRD has none; it would change stored objects)")
        for key in ("anyOf", "oneOf", "allOf"):
            for alternative in node.get(key) or []:
                if alternative.get("type") == "null":
                    found.append(f"{where}: {key} with type null (use nullable: true)")
        if node.get("type") == "null":
            found.append(f"{where}: type null")
        int_or_string = bool(node.get("x-kubernetes-int-or-string"))
        if int_or_string:
            if "type" in node:
                found.append(f"{where}: int-or-string node must not have a type")
            if "anyOf" in node and list(node["anyOf"]) != _INT_OR_STRING_ANYOF:
                found.append(f"{where}: int-or-string anyOf must be [integer, string]")
        elif "anyOf" in node or "oneOf" in node:
            for key in ("anyOf", "oneOf"):
                for alternative in node.get(key) or []:
                    if "type" in alternative:
                        found.append(f"{where}: {key} alternatives must not carry a type")
        preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
        if "type" not in node and not int_or_string and not preserve:
            found.append(f"{where}: no type")
        if "properties" in node and "additionalProperties" in node:
            found.append(f"{where}: additionalProperties next to properties")
        if "additionalProperties" in node and not isinstance(node["additionalProperties"], Mapping):
            found.append(f"{where}: additionalProperties must be a schema, not {node['additionalProperties']!r}")
        if node.get("type") == "array" and not isinstance(node.get("items"), Mapping):
            found.append(f"{where}: array without items")
        if (
            node.get("type") == "object"
            and path != ".metadata"
            and not node.get("properties")
            and "additionalProperties" not in node
            and not preserve
        ):
            found.append(f"{where}: object with no fields (everything under it would be pruned)")
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node and not isinstance(node[key], bool):
                found.append(f"{where}: {key} must be a boolean in OpenAPI v3.0")
        if path.startswith(".metadata") and path != ".metadata":
            found.append(f"{where}: metadata must not be given a schema beyond type: object")
    return found


def _covered_by_preserve(ours: Schema, path: str) -> bool:
    """Whether some ancestor of ``path`` in ``ours`` keeps unknown fields, so ``path`` survives anyway."""
    nodes = dict(walk(ours))
    candidate = path
    while candidate:
        cut = max(candidate.rfind("."), candidate.rfind("["), candidate.rfind("{"))
        candidate = candidate[:cut] if cut > 0 else ""
        node = nodes.get(candidate)
        if node is not None:
            return bool(node.get("x-kubernetes-preserve-unknown-fields"))
    return bool(ours.get("x-kubernetes-preserve-unknown-fields"))


def _kind(node: Schema) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    return str(node.get("type", "any"))


def superset_problems(ours: Schema, fleet: Schema, roots: tuple[str, ...] = (".spec", ".status")) -> list[str]:
    """Ways ``ours`` would reject, prune or change something ``fleet`` keeps, under ``roots``.

    For every node of Fleet's schema: ours must have the same path (or keep unknown fields above
    it), the same type, nullability where Fleet is nullable, the same list/map merge semantics,
    and no stricter validation (pattern, lengths, bounds, enum, required, format, CEL rules).
    """
    found: list[str] = []
    our_nodes = dict(walk(ours))
    for path, theirs in walk(fleet):
        if not any(path == root or path.startswith(root + ".") or path.startswith(root + "[") for root in roots):
            continue
        mine = our_nodes.get(path)
        if mine is None:
            if not _covered_by_preserve(ours, path):
                found.append(f"{path}: missing (Fleet's CRD has it)")
            continue
        if _kind(mine) != _kind(theirs) and not (
            _kind(mine) == "any" and mine.get("x-kubernetes-preserve-unknown-fields")
        ):
            found.append(f"{path}: type {_kind(mine)}, Fleet's is {_kind(theirs)}")
        if theirs.get("nullable") and not mine.get("nullable"):
            found.append(f"{path}: not nullable, Fleet's is (a null would be pruned instead of kept)")
        if theirs.get("x-kubernetes-preserve-unknown-fields") and not mine.get("x-kubernetes-preserve-unknown-fields"):
            found.append(f"{path}: prunes unknown fields, Fleet's keeps them")
        for key in ("x-kubernetes-list-type", "x-kubernetes-map-type", "x-kubernetes-list-map-keys"):
            if mine.get(key) != theirs.get(key):
                found.append(f"{path}: {key} {mine.get(key)!r}, Fleet's is {theirs.get(key)!r}")
        for key in ("pattern", "format"):
            if key in mine and mine[key] != theirs.get(key):
                found.append(f"{path}: {key} {mine[key]!r}, Fleet's is {theirs.get(key)!r}")
        for key in ("maxLength", "maxItems", "maxProperties", "maximum"):
            if key in mine and (key not in theirs or mine[key] < theirs[key]):
                found.append(f"{path}: {key} {mine[key]!r} is stricter than Fleet's {theirs.get(key)!r}")
        for key in ("minLength", "minItems", "minProperties", "minimum"):
            if key in mine and (key not in theirs or mine[key] > theirs[key]):
                found.append(f"{path}: {key} {mine[key]!r} is stricter than Fleet's {theirs.get(key)!r}")
        if "enum" in mine and ("enum" not in theirs or not set(theirs["enum"]) <= set(mine["enum"])):
            found.append(f"{path}: enum {mine['enum']!r} is stricter than Fleet's {theirs.get('enum')!r}")
        extra_required = set(mine.get("required") or []) - set(theirs.get("required") or [])
        if extra_required:
            found.append(f"{path}: requires {sorted(extra_required)} which Fleet's does not")
        their_rules = [rule.get("rule") for rule in theirs.get("x-kubernetes-validations") or []]
        for rule in mine.get("x-kubernetes-validations") or []:
            if rule.get("rule") not in their_rules:
                found.append(f"{path}: CEL rule {rule.get('rule')!r} on a field Fleet's CRD does not restrict")
        if isinstance(theirs.get("additionalProperties"), Mapping) and not (
            isinstance(mine.get("additionalProperties"), Mapping) or mine.get("x-kubernetes-preserve-unknown-fields")
        ):
            found.append(f"{path}: not a map, Fleet's is")
    return found
