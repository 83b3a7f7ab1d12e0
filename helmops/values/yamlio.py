"""YAML in and out, the way the values pipeline needs it.

* Loading resolves what Go's YAML (sigs.k8s.io/yaml) resolves, except timestamps, which stay strings as they
  do for Helm; keys become strings; errors never quote the document (it may come from a Secret).
* Dumping is canonical: sorted keys, no line folding, multi-line strings as literal blocks, so the same values
  always give the same bytes (and digest), and a `${ }` action is never split or escaped by the emitter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


class YamlError(ValueError):
    """A document failed to parse; the message has the problem and position but no document text."""

    def __init__(self, problem: str, line: int | None, column: int | None) -> None:
        self.problem = problem
        self.line = line
        self.column = column
        where = f" at line {line} column {column}" if line is not None else ""
        super().__init__(f"{problem}{where}")


def _key(key: object) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


#: Largest document (nodes + string characters) accepted once YAML aliases are expanded ("billion laughs").
MAX_DOCUMENT_UNITS = 8_000_000


def normalize(value: Any, _budget: list[int] | None = None) -> Any:
    """JSON-shaped copy: string keys, lists for sequences; rejects what Helm values cannot hold.

    Aliases are expanded into independent copies, within `MAX_DOCUMENT_UNITS`.
    """
    budget = [MAX_DOCUMENT_UNITS] if _budget is None else _budget
    budget[0] -= 1 + (len(value) if isinstance(value, str) else 0)
    if budget[0] < 0:
        raise YamlError(f"document too large once aliases are expanded (limit {MAX_DOCUMENT_UNITS} units)", None, None)
    if isinstance(value, Mapping):
        return {_key(k): normalize(v, budget) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v, budget) for v in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise YamlError(f"unsupported number {value!r} (Helm values are JSON)", None, None)
        return value
    raise YamlError(f"unsupported YAML value of type {type(value).__name__}", None, None)


def sort_keys(value: Any) -> Any:
    """The same structure with every map's keys in sorted order (as the YAML is written)."""
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    return value


def load(text: str) -> Any:
    """Parse one YAML document; an empty document is None."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        raise YamlError(problem, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except yaml.YAMLError as err:
        raise YamlError(type(err).__name__, None, None) from None
    except RecursionError:
        raise YamlError("document nested too deeply", None, None) from None
    docs = [d for d in docs if d is not None] if len(docs) > 1 else docs
    if len(docs) > 1:
        raise YamlError("expected one YAML document, found several", None, None)
    return normalize(docs[0]) if docs else None


def dump(value: Any) -> str:
    """Canonical YAML text ("{}\\n" for an empty map)."""
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=math.inf,
    )
