"""Where each part of a cluster's values came from, and how to show values without leaking Secrets."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SourceKind = Literal["values", "target", "templateValues", "configMap", "secret"]

Path = tuple[str, ...]


@dataclass(frozen=True)
class ValueSource:
    """One contribution to the merged values, in the order it was applied.

    `keys` are the top-level keys this source set. For `values`/`target`, `name` is the HelmApp/target name
    part ("values" or the target's name); for `templateValues`, the key; for `configMap`/`secret`, the object
    name, with `namespace`, `key` and `resource_version`. `origin` says which target a templateValues entry
    came from, when it was not the root's.
    """

    kind: SourceKind
    name: str
    keys: tuple[str, ...] = ()
    namespace: str | None = None
    key: str | None = None
    resource_version: str | None = None
    origin: str | None = None

    def describe(self) -> str:
        """One line for status messages, logs and `helmops` CLI output. Never contains values."""
        keys = ", ".join(self.keys) if self.keys else "(none)"
        if self.kind == "values":
            what = "inline values (helm.values)"
        elif self.kind == "target":
            what = f"target {self.name} (targets[].helm.values)"
        elif self.kind == "templateValues":
            where = f" from target {self.origin}" if self.origin else ""
            what = f'templateValues["{self.name}"]{where}'
        else:
            kind = "ConfigMap" if self.kind == "configMap" else "Secret"
            what = f"valuesFrom {kind} {self.namespace}/{self.name} key {self.key}"
            if self.resource_version:
                what += f" (resourceVersion {self.resource_version})"
        return f"{what}: sets {keys}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for status, events, the CLI)."""
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "keys": list(self.keys)}
        for attr, label in (
            ("namespace", "namespace"),
            ("key", "key"),
            ("resource_version", "resourceVersion"),
            ("origin", "origin"),
        ):
            value = getattr(self, attr)
            if value is not None:
                out[label] = value
        return out


def secret_label(namespace: str, name: str, key: str) -> str:
    return f"*** (from Secret {namespace}/{name} key {key})"


def leaf_paths(value: Mapping[str, Any], prefix: Path = ()) -> Iterable[Path]:
    """Paths to the non-map values of a nested map (what a deep merge of it replaces)."""
    for k, v in value.items():
        path = (*prefix, k)
        if isinstance(v, Mapping) and v:
            yield from leaf_paths(v, path)
        else:
            yield path


def _related(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def update_secret_paths(marks: dict[Path, str], merged_doc: Mapping[str, Any], label: str | None) -> None:
    """After `merged_doc` was deep-merged into the values: paths it replaced lose their Secret mark, and
    if it came from a Secret (`label` given) its leaves gain one."""
    paths = list(leaf_paths(merged_doc))
    for path in paths:
        for marked in [m for m in marks if _related(m, path)]:
            del marks[marked]
    if label is not None:
        for path in paths:
            marks[path] = label


def redact(values: Mapping[str, Any], marks: Mapping[Path, str]) -> dict[str, Any]:
    """A copy of `values` with every Secret-derived leaf replaced by its label."""
    result: dict[str, Any] = copy.deepcopy(dict(values))
    for path, label in marks.items():
        node: Any = result
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = label
    return result


@dataclass(frozen=True, repr=False, eq=False)
class RenderedValues:
    """The values for one (HelmApp, cluster): the merged map, its canonical YAML, digest and provenance.

    `yaml` is exactly what is passed to Helm; `digest` is `sha256:<hex>` of it. `values` and `yaml` may hold
    Secret-derived content: log or display `redacted()` / `describe()`, never them. `repr()` is redacted.
    """

    values: dict[str, Any]
    yaml: str
    digest: str
    sources: list[ValueSource]
    secret_paths: Mapping[Path, str] = field(default_factory=dict)

    @property
    def has_secret_content(self) -> bool:
        return bool(self.secret_paths)

    def redacted(self) -> dict[str, Any]:
        """The values with Secret-derived leaves replaced by `"*** (from Secret ns/name key k)"`."""
        return redact(self.values, self.secret_paths)

    def describe(self) -> list[str]:
        """Provenance, one line per source, in the order applied."""
        return [s.describe() for s in self.sources]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RenderedValues) and (self.digest, self.sources) == (
            other.digest,
            other.sources,
        )

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return (
            f"RenderedValues(values={self.redacted()!r}, digest={self.digest!r}, "
            f"sources={[s.describe() for s in self.sources]!r})"
        )
