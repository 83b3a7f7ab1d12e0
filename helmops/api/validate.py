"""Checks of a HelmApp (and of the Cluster fields helmops reads): limits on the raw object, then the
semantics of the parsed spec.

The CRD (admission) accepts everything Fleet's CRD accepts; what is wrong or pointless beyond that
is found here and reported as :class:`~helmops.api.problems.Problem` s, which the controller turns into a
condition and Events. ``error`` problems stop the HelmApp from being deployed; ``warning`` ones do not.
The pure rules the checks share with the rest of helmops live in their own modules: release and target
names in :mod:`helmops.api.naming`, chart references in :mod:`helmops.api.chart_source`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from helmops.api.chart_source import chart_ref, effective_chart_source, is_oci
from helmops.api.duration import is_polling_interval
from helmops.api.naming import DNS_LABEL_RE, target_name
from helmops.api.options import BundleDeploymentOptions, BundleTarget, HelmOptions
from helmops.api.problems import Problem, errors, warnings
from helmops.api.selector import LabelSelector
from helmops.api.spec import HelmAppSpec
from helmops.kubeio.bounded import TRUNCATED

__all__ = [
    "ANNOTATIONS_MAX_BYTES",
    "ANNOTATIONS_RESERVED_BYTES",
    "IGNORED_FIELDS",
    "MAX_NESTING",
    "cluster_problems",
    "helmapp_problems",
    "nesting_problem",
    "validate",
]

#: Fields Fleet accepts that mean nothing to helmops (yet). Setting one yields a warning.
#: Keys are spec paths relative to ``spec`` (or to a target), values say why.
IGNORED_FIELDS: dict[str, str] = {
    "kustomize": "kustomize options apply to GitRepo bundles only",
    "yaml": "yaml overlays apply to GitRepo bundles only",
    "helm.valuesFiles": "valuesFiles are read from git by GitRepos; a HelmApp cannot use them",
    "resources": "bundle resources are internal to Fleet and unused by a HelmApp",
    "contentsId": "contentsId is internal to Fleet and unused by a HelmApp",
    "helmAppOptions": "helmAppOptions are internal to Fleet (use helmSecretName/insecureSkipTLSVerify)",
}
#: Of :data:`IGNORED_FIELDS`, those that can also appear inside a target.
_TARGET_IGNORED = ("kustomize", "yaml", "helm.valuesFiles")


# --------------------------------------------------------------------------------------------------
# limits on the raw object, checked before anything recursive (pydantic, merging, templating, YAML) runs

MAX_NESTING = 64
"""Levels of maps and lists allowed in a HelmApp's ``spec`` (values included) and in the Cluster fields
helmops reads, counted from that field. The API server accepts 10000; helm values never need many."""

ANNOTATIONS_MAX_BYTES = 256 * 1024
"""The API server's limit on the total size of an object's annotations (keys plus values)."""

ANNOTATIONS_RESERVED_BYTES = 16 * 1024
"""Room the controller keeps for its own annotations (deployed clusters, last poll): a HelmApp whose other
annotations leave less cannot be tracked, because those writes would be refused with 422."""


def nesting_problem(value: Any, path: str, limit: int = MAX_NESTING) -> Problem | None:
    """A problem if ``value`` holds more than ``limit`` levels of maps/lists (``value`` itself is level 1)
    or a subtree the bounded JSON loader cut (helmops.kubeio.bounded). Iterative: safe at any depth. The
    problem names the path down to the third level, where the excess lies."""
    stack: list[tuple[Any, int, str]] = [(value, 1, path)]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, str):
            if node == TRUNCATED:
                return Problem(where, f"nested deeper than {limit} levels of maps and lists")
            continue
        if not isinstance(node, Mapping | list):
            continue
        if depth > limit:
            return Problem(where, f"nested deeper than {limit} levels of maps and lists")
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        for key, child in items:
            if isinstance(child, Mapping | list | str):
                named = depth < 3 + path.count(".")
                child_path = (f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}") if named else where
                stack.append((child, depth + 1, child_path))
    return None


def _annotation_problem(meta: Mapping[str, Any]) -> Problem | None:
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return None
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES - ANNOTATIONS_RESERVED_BYTES:
        return Problem(
            "metadata.annotations",
            f"{size} bytes in total leave no room for the controller's own annotations (the API server allows "
            f"{ANNOTATIONS_MAX_BYTES}; helmops needs {ANNOTATIONS_RESERVED_BYTES}): remove some annotations",
        )
    return None


def helmapp_problems(helmapp: Mapping[str, Any]) -> list[Problem]:
    """Limits on a raw HelmApp object, to check before parsing its spec: nesting depth of ``spec`` and the
    annotation room the controller needs. Errors only."""
    found = [
        nesting_problem(helmapp.get("spec"), "spec"),
        _annotation_problem(helmapp.get("metadata") or {}),
    ]
    return [p for p in found if p is not None]


def cluster_problems(cluster: Mapping[str, Any]) -> list[Problem]:
    """Limits on a raw Fleet Cluster object, on the fields helmops reads (its spec, with templateValues, and
    its labels and annotations), before any of them is used for targeting or templating."""
    meta = cluster.get("metadata") or {}
    found = [
        nesting_problem(cluster.get("spec"), "spec"),
        nesting_problem(meta.get("labels"), "metadata.labels"),
        nesting_problem(meta.get("annotations"), "metadata.annotations"),
    ]
    return [p for p in found if p is not None]


# --------------------------------------------------------------------------------------------------
# validation


def _set(value: object) -> bool:
    """Whether an ignored field carries something (empty strings, lists and objects do not count)."""
    if value is None or value is False or value == "" or value == 0:
        return False
    if isinstance(value, dict | list):
        return bool(value)
    if hasattr(value, "model_dump"):
        dumped = value.model_dump(exclude_defaults=True)
        return any(_set(v) for v in dumped.values())
    return True


def _lookup(options: object, dotted: str) -> object:
    value: object = options
    for part in dotted.split("."):
        if value is None:
            return None
        attr = re.sub(r"(?<!^)([A-Z])", r"_\1", part).lower()
        value = getattr(value, attr, None)
    return value


def _selector_problems(selector: LabelSelector | None, path: str) -> Iterable[Problem]:
    if selector is None:
        return
    for where, why in selector.problems():
        yield Problem(f"{path}.{where}", why)


def _check_chart(helm: HelmOptions, path: str) -> Iterable[Problem]:
    try:
        chart_ref(helm)
    except ValueError as exc:
        field = "repo" if is_oci((helm.repo or "").strip()) else "chart"
        yield Problem(f"{path}.{field}", str(exc))


def _check_namespaces(options: BundleDeploymentOptions, path: str) -> Iterable[Problem]:
    """``namespace`` and ``defaultNamespace`` name the release namespace (created when missing): the API
    server takes only a DNS-1123 label, so anything else can never deploy."""
    for field, value in (("namespace", options.namespace), ("defaultNamespace", options.default_namespace)):
        if value and (len(value) > 63 or not DNS_LABEL_RE.match(value)):
            yield Problem(
                f"{path}.{field}",
                f"{value[:80]!r} is not a valid namespace name (lower-case letters, digits and '-', starting "
                "and ending with a letter or digit, at most 63 characters)",
            )


def _check_target(spec: HelmAppSpec, target: BundleTarget, index: int) -> Iterable[Problem]:
    path = f"spec.targets[{index}]"
    yield from _check_namespaces(target, path)
    has_selector = any(
        value is not None and value != ""
        for value in (
            target.cluster_name,
            target.cluster_selector,
            target.cluster_group,
            target.cluster_group_selector,
        )
    )
    if not has_selector and not target.do_not_deploy:
        yield Problem(
            path,
            f"target {target_name(target, index)!r} has no clusterName, clusterSelector, clusterGroup "
            "or clusterGroupSelector, so it matches no cluster",
            "warning",
        )
    yield from _selector_problems(target.cluster_selector, f"{path}.clusterSelector")
    yield from _selector_problems(target.cluster_group_selector, f"{path}.clusterGroupSelector")
    own = target.helm
    if own.chart or own.repo or own.version:
        # A target that names its own chart source must make sense together with the spec's.
        yield from _check_chart(effective_chart_source(spec, target), f"{path}.helm")
    yield from _check_helm_options(own, f"{path}.helm")
    for field in _TARGET_IGNORED:
        if _set(_lookup(target, field)):
            yield Problem(f"{path}.{field}", f"ignored: {IGNORED_FIELDS[field]}", "warning")


def _check_helm_options(helm: HelmOptions, path: str) -> Iterable[Problem]:
    if helm.wait_for_jobs and helm.timeout_seconds <= 0:
        yield Problem(
            f"{path}.waitForJobs",
            "waitForJobs has no effect without a positive timeoutSeconds",
            "warning",
        )
    if helm.max_history < 0:
        yield Problem(f"{path}.maxHistory", "maxHistory must not be negative")
    for index, source in enumerate(helm.values_from or []):
        entry = f"{path}.valuesFrom[{index}]"
        refs = [
            (name, ref)
            for name, ref in (
                ("configMapKeyRef", source.config_map_key_ref),
                ("secretKeyRef", source.secret_key_ref),
            )
            if ref is not None
        ]
        if not refs:
            yield Problem(entry, "names neither a configMapKeyRef nor a secretKeyRef", "warning")
        for name, ref in refs:
            if not ref.name:
                yield Problem(f"{entry}.{name}.name", "the name of the object to read values from is empty")


def _check_rollout(spec: HelmAppSpec) -> Iterable[Problem]:
    """rolloutStrategy numbers Fleet cannot use (it then changes nothing; helmops holds every install and
    upgrade) and dependsOn/partition selectors that cannot be evaluated (issue 17)."""
    from helmops.rollout.limits import LimitError, limit

    s = spec.rollout_strategy
    if s is not None:
        numbers = [("maxUnavailable", s.max_unavailable), ("maxUnavailablePartitions", s.max_unavailable_partitions),
                   ("autoPartitionSize", s.auto_partition_size)]  # fmt: skip
        numbers += [(f"partitions[{i}].maxUnavailable", p.max_unavailable) for i, p in enumerate(s.partitions or [])]
        for field, value in numbers:
            if value is None:
                continue
            try:
                limit(10, value)
            except LimitError as exc:
                yield Problem(f"spec.rolloutStrategy.{field}", str(exc))
        for index, p in enumerate(s.partitions or []):
            path = f"spec.rolloutStrategy.partitions[{index}]"
            yield from _selector_problems(p.cluster_selector, f"{path}.clusterSelector")
            yield from _selector_problems(p.cluster_group_selector, f"{path}.clusterGroupSelector")
            if not (p.cluster_name or p.cluster_group or p.cluster_selector or p.cluster_group_selector):
                yield Problem(path, "partition has no selector, so it takes no cluster", "warning")
    for index, ref in enumerate(spec.depends_on or []):
        yield from _selector_problems(ref.selector, f"spec.dependsOn[{index}].selector")
        if not ref.name and ref.selector is None:
            yield Problem(f"spec.dependsOn[{index}]", "names neither a HelmApp nor a selector: ignored", "warning")


def validate(spec: HelmAppSpec) -> list[Problem]:
    """Everything wrong or ineffective in ``spec``, errors first, in field order within each severity.

    Checks: the chart reference (one of HTTP repo + chart name, an ``oci://`` reference in chart or
    repo, a full ``.tgz``/URL with empty repo and version) for the spec and for targets that set
    their own; release namespaces (``namespace``, ``defaultNamespace``, also per target) that are no valid
    namespace name; label selectors that cannot be evaluated; targets that can match nothing;
    ``pollingInterval``; and fields Fleet accepts that helmops ignores (warnings).
    """
    found: list[Problem] = list(_check_namespaces(spec, "spec"))
    if "helm" not in spec.model_fields_set:
        found.append(Problem("spec.helm", "helm options are missing: no chart to deploy"))
    else:
        found.extend(_check_chart(spec.helm, "spec.helm"))
    found.extend(_check_helm_options(spec.helm, "spec.helm"))

    if spec.polling_interval is not None and not is_polling_interval(spec.polling_interval):
        found.append(Problem("spec.pollingInterval", "must be '0' or a Go duration such as 5m, at most 2562047h"))

    for index, target in enumerate(spec.targets):
        found.extend(_check_target(spec, target, index))
    seen: dict[str, int] = {}
    for index, target in enumerate(spec.targets):
        if target.name:
            if target.name in seen:
                found.append(
                    Problem(
                        f"spec.targets[{index}].name",
                        f"target name {target.name!r} is also used by targets[{seen[target.name]}]",
                        "warning",
                    )
                )
            seen.setdefault(target.name, index)

    for index, restriction in enumerate(spec.target_restrictions):
        found.extend(
            _selector_problems(restriction.cluster_selector, f"spec.targetRestrictions[{index}].clusterSelector")
        )

    found.extend(_check_rollout(spec))

    for field, why in IGNORED_FIELDS.items():
        if _set(_lookup(spec, field)):
            found.append(Problem(f"spec.{field}", f"ignored: {why}", "warning"))

    return errors(found) + warnings(found)
