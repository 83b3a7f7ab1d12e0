"""One merged, explained set of values per (HelmApp, cluster), in Fleet's order.

1. The target's `helm` options are merged over the root's (`merge_target_options`, Fleet's `options.Merge`).
2. String values `global.fleet.clusterLabels.<LABEL>` anywhere in `values` (maps, and maps inside lists; at
   most 50 levels deep) become that cluster label's value, or `""` when the cluster lacks it. This runs even
   with `disablePreProcess`.
3. Unless `disablePreProcess`: `values` is written out as YAML, rendered as ONE `${ }` template, and parsed
   back; then each `templateValues` entry is rendered on its own, parsed as YAML, and replaces that top-level
   key.
4. `valuesFrom` entries (root's, then the target's), read from the cluster the release goes to: within an
   entry the ConfigMap's document, then the Secret's, are merged together, and that result is merged over the
   values. No templating happens on them (as in Fleet, where the agent reads them downstream).

Steps 1-3 are `render_inline` (pure, synchronous, usable offline); `assemble` adds step 4 through a
`ValuesFromReader`. The result's YAML is canonical, so equal inputs give byte-identical YAML and digests.

Decided Fleet quirks (docs/values.md): Fleet skips steps 2-3 entirely when the cluster's filtered label map is
empty; we always run them, so `${ .ClusterName }` means the same on every cluster. Fleet converts numbers to
float64 (so 1000000 renders as `1e+06`); we keep integers as integers.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from . import yamlio
from .context import ClusterContext
from .errors import TemplateError, ValuesError
from .merge import deep_merge, merge_target_options
from .provenance import Path, RenderedValues, ValueSource, secret_label, update_secret_paths
from .template import DELIMITERS, render_template
from .template_budget import MAX_SOURCE_CHARS, render_budget

CLUSTER_LABEL_PREFIX = "global.fleet.clusterLabels."
MAX_LABEL_RECURSION = 50
DEFAULT_VALUES_KEY = "values.yaml"


class ValuesFromReader(Protocol):
    """Reads the objects `valuesFrom` points at, on the cluster the release goes to.

    Both return the object's data as text (Secret data already base64-decoded) and its resourceVersion.
    They raise `ValuesError` (usually `retryable=True`) when the object is missing or unreadable; the message
    must name the object, never its content.
    """

    async def read_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]: ...

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str]: ...


def _fail(ctx: ClusterContext, message: str, *, retryable: bool = False) -> ValuesError:
    return ValuesError(f"{ctx.describe()}: {message}", retryable=retryable)


def substitute_cluster_labels(values: dict[str, Any], labels: Mapping[str, str], depth: int = 0) -> None:
    """Step 2, in place. Raises ValueError past `MAX_LABEL_RECURSION` levels."""
    if depth > MAX_LABEL_RECURSION:
        raise ValueError(
            f"maximum recursion depth of {MAX_LABEL_RECURSION} exceeded for cluster label prefix processing, "
            "too many nested values"
        )
    for key, value in values.items():
        if isinstance(value, str) and value.startswith(CLUSTER_LABEL_PREFIX):
            values[key] = labels.get(value[len(CLUSTER_LABEL_PREFIX) :], "")
        elif isinstance(value, dict):
            substitute_cluster_labels(value, labels, depth + 1)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    substitute_cluster_labels(item, labels, depth + 1)


def _yaml_problem(err: yamlio.YamlError) -> str:
    return str(err)


_KEY_LINE = re.compile(r"^(\s*)(?:- )?(['\"]?)([^'\"#:\s][^:]*?)\2:(?: |$)")


def key_path_at(document: str, line: int) -> str | None:
    """The dotted key path whose entry holds `line` (1-based) of a YAML document written by `yamlio.dump`.

    Line numbers of the values template refer to that generated document, not to the HelmApp manifest, so
    errors also name the key the user wrote.
    """
    stack: list[tuple[int, str]] = []
    for text in document.splitlines()[:line]:
        match = _KEY_LINE.match(text)
        if not match:
            continue
        indent = len(match.group(1)) + (2 if text.lstrip().startswith("- ") else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(3)))
    return ".".join(k for _, k in stack) or None


def _render_values(values: dict[str, Any], ctx: ClusterContext, data: dict[str, Any]) -> dict[str, Any]:
    source = yamlio.dump(values)
    if DELIMITERS[0] not in source and len(source) <= MAX_SOURCE_CHARS:
        # no action: the template renders to its own text, and parsing that back gives the values again
        return copy.deepcopy(values)
    try:
        rendered = render_template(source, data, name="values")
    except TemplateError as err:
        where = key_path_at(source, err.line) if err.line else None
        at = f" (at {where})" if where else ""
        raise _fail(ctx, f"failed to render values{at}: {err}") from None
    try:
        parsed = yamlio.load(rendered)
    except yamlio.YamlError as err:
        raise _fail(ctx, f"values: rendered output is not valid YAML: {_yaml_problem(err)}") from None
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise _fail(ctx, f"values: rendered output is a {type(parsed).__name__}, not a map")
    return parsed


def _render_template_value(key: str, template: Any, ctx: ClusterContext, data: dict[str, Any]) -> Any:
    label = f'templateValues["{key}"]'
    if not isinstance(template, str):
        raise _fail(ctx, f"{label} must be a string template, not {type(template).__name__}")
    try:
        rendered = render_template(template, data, name=key)
    except TemplateError as err:
        raise _fail(ctx, f"failed to render {label}: {err}") from None
    try:
        return yamlio.load(rendered)
    except yamlio.YamlError as err:
        raise _fail(ctx, f"{label}: rendered output is not valid YAML: {_yaml_problem(err)}") from None


def _finish(
    values: dict[str, Any], sources: list[ValueSource], secret_paths: dict[Path, str], ctx: ClusterContext
) -> RenderedValues:
    try:
        canonical = yamlio.sort_keys(yamlio.normalize(values))
    except yamlio.YamlError as err:
        raise _fail(ctx, f"values cannot be passed to Helm: {err}") from None
    text = yamlio.dump(canonical)
    digest = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return RenderedValues(values=canonical, yaml=text, digest=digest, sources=sources, secret_paths=secret_paths)


def _inline(
    helm_options: Mapping[str, Any], ctx: ClusterContext, target: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], list[ValueSource]]:
    with render_budget():  # one wall-time budget for all of this HelmApp's templates on this cluster
        return _inline_budgeted(helm_options, ctx, target)


def _inline_budgeted(
    helm_options: Mapping[str, Any], ctx: ClusterContext, target: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], list[ValueSource]]:
    root_values = helm_options.get("values") or {}
    if not isinstance(root_values, Mapping):
        raise _fail(ctx, "helm.values must be a map")
    sources: list[ValueSource] = []
    if root_values:
        sources.append(ValueSource("values", "values", tuple(sorted(root_values))))
    if target is not None:
        helm = merge_target_options(helm_options, target)
        target_helm = target.get("helm") or {}
        target_values = target_helm.get("values") or {}
        if not isinstance(target_values, Mapping):
            raise _fail(ctx, f"target {target.get('name') or '(unnamed)'}: helm.values must be a map")
        if target_values:
            sources.append(ValueSource("target", str(target.get("name") or "(unnamed)"), tuple(sorted(target_values))))
    else:
        helm = merge_target_options(helm_options, {})
    try:
        values = yamlio.normalize(helm.get("values") or {})
    except yamlio.YamlError as err:
        raise _fail(ctx, f"helm.values: {err}") from None

    try:
        substitute_cluster_labels(values, ctx.labels)
    except ValueError as err:
        raise _fail(ctx, str(err)) from None

    template_values = helm.get("templateValues") or {}
    if not isinstance(template_values, Mapping):
        raise _fail(ctx, "helm.templateValues must be a map of strings")
    if helm.get("disablePreProcess"):
        return helm, values, sources

    data = ctx.template_data()
    if values:
        values = _render_values(values, ctx, data)
    target_tv = ((target or {}).get("helm") or {}).get("templateValues") or {}
    target_name = str((target or {}).get("name") or "(unnamed)")
    for key in sorted(template_values):
        values[key] = _render_template_value(key, template_values[key], ctx, ctx.template_data())
        sources.append(ValueSource("templateValues", key, (key,), origin=target_name if key in target_tv else None))
    return helm, values, sources


def render_inline(
    helm_options: Mapping[str, Any], ctx: ClusterContext, *, target: Mapping[str, Any] | None = None
) -> RenderedValues:
    """Steps 1-3 (no `valuesFrom`): pure and synchronous, for previews, validation and tests.

    `helm_options` is the root `spec.helm` mapping; `target` an optional `targets[]` entry whose `helm`
    block is merged over it first. Raises `ValuesError` naming the cluster.
    """
    _, values, sources = _inline(helm_options, ctx, target)
    return _finish(values, sources, {}, ctx)


def _ref(entry: Mapping[str, Any], field: str) -> Mapping[str, Any] | None:
    ref = entry.get(field)
    return ref if isinstance(ref, Mapping) else None


async def _read_doc(
    reader: ValuesFromReader,
    kind: Literal["configMap", "secret"],
    ref: Mapping[str, Any],
    release_namespace: str,
    ctx: ClusterContext,
) -> tuple[dict[str, Any], ValueSource]:
    name = str(ref.get("name") or "")
    namespace = str(ref.get("namespace") or release_namespace)
    key = str(ref.get("key") or DEFAULT_VALUES_KEY)
    noun = "configmap" if kind == "configMap" else "secret"
    if not name:
        raise _fail(ctx, f"valuesFrom {noun} reference has no name")
    if kind == "secret" and namespace != release_namespace and not getattr(reader, "confines_namespaces", False):
        # The controller reads with its own identity: a HelmApp must not copy another namespace's Secret
        # into a release its author can read. Fleet allows it; we refuse before any API call — unless the
        # reader confines namespaces itself (it acts as the HelmApp's serviceAccount, so RBAC decides, or it
        # reads only the HelmApp's own namespace; see helmops.desired.adapters).
        raise _fail(
            ctx,
            f"valuesFrom secret {namespace}/{name}: cross-namespace Secret references are refused "
            f"(Secrets are read only from the release namespace {release_namespace})",
        )
    try:
        if kind == "configMap":
            data, resource_version = await reader.read_configmap(namespace, name)
        else:
            data, resource_version = await reader.read_secret(namespace, name)
    except ValuesError as err:
        raise ValuesError(f"{ctx.describe()}: {err.message}", retryable=err.retryable) from None
    if key not in data:
        raise _fail(ctx, f"valuesFrom {noun} {namespace}/{name} key {key} not found", retryable=True)
    try:
        doc = yamlio.load(data[key])
    except yamlio.YamlError as err:
        # Secret content is never quoted; position only.
        if kind == "configMap" or err.line is None:  # without a position, the problem is our own wording
            detail = _yaml_problem(err)
        else:
            detail = f"line {err.line} column {err.column}"
        raise _fail(
            ctx, f"valuesFrom {noun} {namespace}/{name} key {key} is not valid YAML: {detail}", retryable=True
        ) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise _fail(
            ctx,
            f"valuesFrom {noun} {namespace}/{name} key {key} holds a {type(doc).__name__}, not a map",
            retryable=True,
        )
    source = ValueSource(kind, name, tuple(sorted(doc)), namespace=namespace, key=key,
                         resource_version=resource_version or None)  # fmt: skip
    return doc, source


async def assemble(
    helm_options: Mapping[str, Any],
    ctx: ClusterContext,
    *,
    release_namespace: str,
    reader: ValuesFromReader | None,
    target: Mapping[str, Any] | None = None,
) -> RenderedValues:
    """The values Helm gets for this cluster: `render_inline` plus `valuesFrom` merged last.

    `reader` reads ConfigMaps/Secrets on the cluster the release goes to; it may be None only when no
    `valuesFrom` is configured. Raises `ValuesError` (naming the cluster; `.retryable` set for problems with
    the referenced objects).
    """
    # Rendering is CPU work bounded by the template budget; keep it off the event loop.
    helm, values, sources = await asyncio.to_thread(_inline, helm_options, ctx, target)
    secret_paths: dict[Path, str] = {}
    entries = helm.get("valuesFrom") or []
    if entries and reader is None:
        raise _fail(ctx, "valuesFrom is set but no reader for the downstream cluster was given", retryable=True)
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise _fail(ctx, "valuesFrom entries must be maps")
        assert reader is not None
        combined: dict[str, Any] = {}
        secret_doc: dict[str, Any] | None = None
        secret_mark = ""
        cm_ref = _ref(entry, "configMapKeyRef")
        if cm_ref is not None:
            doc, source = await _read_doc(reader, "configMap", cm_ref, release_namespace, ctx)
            combined = deep_merge(combined, doc)
            sources.append(source)
        sec_ref = _ref(entry, "secretKeyRef")
        if sec_ref is not None:
            doc, source = await _read_doc(reader, "secret", sec_ref, release_namespace, ctx)
            combined = deep_merge(combined, doc)
            sources.append(source)
            secret_doc = doc
            secret_mark = secret_label(source.namespace or "", source.name, source.key or "")
        if combined:
            values = deep_merge(values, combined)
            update_secret_paths(secret_paths, combined, None)
            if secret_doc:
                update_secret_paths(secret_paths, secret_doc, secret_mark)
    return _finish(values, sources, secret_paths, ctx)
